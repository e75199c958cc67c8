//! Model versions on their way to agents: offers in chunks to the recipients a rollout
//! chooses, the earlier version a failed rollout sends a host back to, and what agents report
//! of the versions they were offered.

use synapse_proto::link::v1::{
    ModelChunk, ModelOffer, ModelReport, frame::Body, model_report::Outcome,
};

use super::{Federation, FederationError};
use crate::models::ModelRecord;

impl Federation {
    /// Offers `model` to the agents the rollout chooses among the connected ones.
    pub(super) fn distribute(&self, model: &ModelRecord) {
        let connected = self.outlet.agents();
        for agent in self.recipients.recipients(model, &connected) {
            self.offer(&agent, model);
        }
    }

    /// Offers each of `agents` (none a recipient of `latest`) the earlier registered version
    /// it should run, if any: how a failed model rollout takes its hosts back.
    pub(super) fn offer_wanted(&self, agents: &[String], latest: &ModelRecord) {
        for agent in agents {
            let Some(version) = self.recipients.wanted(agent) else {
                continue;
            };
            if version == latest.version {
                continue;
            }
            match self.models.get(version) {
                Ok(Some(record)) => self.offer(agent, &record),
                Ok(None) => {
                    tracing::warn!(agent, version, "wanted model version is not registered")
                }
                Err(e) => tracing::error!(agent, version, "cannot read a model version: {e}"),
            }
        }
    }

    pub(super) fn forget_offer(&self, agent: &str) {
        self.offered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(agent);
    }

    pub(super) fn offer(&self, agent: &str, model: &ModelRecord) {
        {
            let mut offered = self.offered.lock().unwrap_or_else(|p| p.into_inner());
            if offered.get(agent) == Some(&model.version) {
                return;
            }
            offered.insert(agent.to_owned(), model.version);
        }
        let bytes = match self.models.onnx(model.version) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(version = model.version, "cannot offer: {e}");
                return;
            }
        };
        let chunks: Vec<&[u8]> = bytes.chunks(self.chunk_bytes).collect();
        let offer = Body::ModelOffer(ModelOffer {
            version: model.version,
            sha256: model.sha256.clone(),
            size_bytes: bytes.len() as u64,
            chunks: chunks.len() as u32,
            parent: model.parent,
            round: model.round,
        });
        let sent = std::iter::once(offer)
            .chain(chunks.iter().enumerate().map(|(index, data)| {
                Body::ModelChunk(ModelChunk {
                    version: model.version,
                    index: index as u32,
                    data: data.to_vec(),
                })
            }))
            .try_for_each(|frame| self.outlet.send(agent, frame));
        if let Err(e) = sent {
            // The agent gets the version again at the next tick or when it reconnects.
            self.forget_offer(agent);
            tracing::warn!(agent, version = model.version, "model offer cut short: {e}");
        }
    }

    pub(super) fn take_report(
        &self,
        agent: &str,
        report: &ModelReport,
    ) -> Result<(), FederationError> {
        let (metric, outcome) = match Outcome::try_from(report.outcome) {
            Ok(Outcome::Installed) => ("installed_on_agents", "installed"),
            Ok(Outcome::Refused) => ("refused_by_agents", "refused"),
            _ => ("unclear_reports", "unspecified"),
        };
        if outcome == "refused" {
            tracing::warn!(agent, version = report.version, reason = %synapse_link::names::printable(&report.reason, 1024), serving = report.serving_version, "agent refused a model version");
        } else {
            tracing::info!(agent, version = report.version, outcome, "model report");
        }
        self.recipients.reported(agent, report);
        let _guard = self.lock();
        if let Some(record) = self.models.get(report.version)? {
            let count = record.metrics.get(metric).copied().unwrap_or(0.0) + 1.0;
            self.models.annotate(report.version, &[(metric, count)])?;
            self.rounds.flush()?;
        }
        Ok(())
    }
}
