//! Model versions from federated rounds go out through rollouts: the federated-learning
//! module asks [`RolloutEngine::model_recipients`] whom to send a merged version now (which
//! starts its rollout with the model policy the first time), asks
//! [`RolloutEngine::model_wanted`] which earlier version the other agents should run (a
//! failed rollout's hosts go back to theirs), and tells [`RolloutEngine::model_reported`]
//! what each agent installed or refused, which the gates read as they read
//! `RunningVersions`.

use synapse_proto::link::v1::RunningVersion;

use super::{RolloutEngine, RolloutError, spec::Target, state::State};

impl RolloutEngine {
    /// The agents among `connected` that should receive model `version` now. Starts the
    /// version's rollout (canary per tier, then everyone, as `[rollouts.models]` says) unless
    /// it has one; a version whose rollout ended unsuccessfully goes to nobody new.
    pub fn model_recipients(
        &self,
        version: &str,
        sha256: &str,
        connected: &[String],
    ) -> Result<Vec<String>, RolloutError> {
        let known = self
            .history(Some(&Target::Model), usize::MAX)?
            .into_iter()
            .any(|r| r.new.version == version);
        if !known {
            // A newer model replaces one still rolling out: that rollout stops there.
            if let Some(old) = self
                .active()?
                .into_iter()
                .find(|r| r.target == Target::Model)
            {
                self.operate(
                    &old.id,
                    super::Operation::Abort,
                    "federated-learning",
                    &format!("superseded by model {version}"),
                )?;
            }
            self.start_model(version, sha256, &format!("federated model {version}"))?;
            // The first wave is sent at the next tick; begin it now so the caller can send.
            self.tick(crate::registry::now_ms())?;
        }
        let wanted = self.agents_for_model(version)?;
        Ok(connected
            .iter()
            .filter(|a| wanted.contains(a))
            .cloned()
            .collect())
    }

    /// `agent` reports the model version it serves, and the version it refused with why.
    pub fn model_reported(&self, agent: &str, serving: &str, refused: Option<(&str, &str)>) {
        let (refused_version, error) = refused
            .map(|(v, e)| (v.to_owned(), e.to_owned()))
            .unwrap_or_default();
        self.running_reported(
            agent,
            vec![RunningVersion {
                target: Target::Model.to_string(),
                version: serving.to_owned(),
                refused_version,
                error,
            }],
        );
    }

    /// The registered model version `agent` should run now, if the rollouts name one (an
    /// agent told to run its own model, version "", restores it by itself).
    pub fn model_wanted(&self, agent: &str) -> Option<u64> {
        match self.desired(agent) {
            Ok(desired) => desired.get(&Target::Model)?.version.parse().ok(),
            Err(e) => {
                tracing::error!(agent, "model rollout: {e}");
                None
            }
        }
    }

    /// Whether model `version`'s rollout ended rolled back or aborted.
    pub fn model_refused(&self, version: &str) -> Result<bool, RolloutError> {
        Ok(self
            .history(Some(&Target::Model), usize::MAX)?
            .iter()
            .any(|r| {
                r.new.version == version && matches!(r.state, State::RolledBack | State::Aborted)
            }))
    }
}

/// Federated model versions reach agents in the waves of their rollout.
impl crate::federation::rollout::Recipients for RolloutEngine {
    fn recipients(&self, model: &crate::models::ModelRecord, connected: &[String]) -> Vec<String> {
        self.model_recipients(&model.version.to_string(), &model.sha256, connected)
            .unwrap_or_else(|e| {
                tracing::error!(version = model.version, "model rollout: {e}");
                Vec::new()
            })
    }

    fn reported(&self, agent: &str, report: &synapse_proto::link::v1::ModelReport) {
        use synapse_proto::link::v1::model_report::Outcome;
        let serving = report.serving_version.to_string();
        let refused = (report.outcome == Outcome::Refused as i32)
            .then(|| (report.version.to_string(), report.reason.clone()));
        self.model_reported(
            agent,
            &serving,
            refused.as_ref().map(|(v, e)| (v.as_str(), e.as_str())),
        );
    }

    fn wanted(&self, agent: &str) -> Option<u64> {
        self.model_wanted(agent)
    }

    fn refused(&self, version: u64) -> bool {
        self.model_refused(&version.to_string())
            .unwrap_or_else(|e| {
                tracing::error!(version, "model rollout: {e}");
                false
            })
    }
}
