//! The agent's own model (version 0: `policy.model`, else the one built in), kept aside so a
//! rollout can send the agent back to it. The hub's model versions arrive as offers (see
//! [`super::learner`]); the agent's own is no file the hub holds, so when a model rollout
//! that started from it is rolled back or aborted, the rollout's word (`model` at version "")
//! reaches [`OwnModel`], which puts it back in service and reports it like an installed
//! version.

use std::sync::Arc;

use synapse_proto::link::v1::{ModelReport, frame::Body, model_report::Outcome};

use crate::{
    control::ToHub,
    forecast::neural::{ModelHandle, ServingModel},
    rollout::ModelApplier,
};

/// Restores the agent's own model in its [`ModelHandle`].
pub struct OwnModel {
    handle: ModelHandle,
    own: Arc<ServingModel>,
    to_hub: ToHub,
}

impl OwnModel {
    /// The model in service in `handle` now is the agent's own: call before any version of
    /// the hub is installed.
    pub fn new(handle: ModelHandle, to_hub: ToHub) -> Self {
        let own = handle.current();
        Self {
            handle,
            own,
            to_hub,
        }
    }

    /// Whether the agent's own model is in service.
    pub fn in_service(&self) -> bool {
        Arc::ptr_eq(&self.handle.current(), &self.own)
    }
}

impl ModelApplier for OwnModel {
    /// Version "" is the agent's own model; any other version is the learner's, which installs
    /// what the hub offers.
    fn apply(&mut self, version: &str, _sha256: &str) -> Result<(), String> {
        if !version.is_empty() {
            return Err(format!(
                "model version {version} arrives from the hub's offer, not from a rollout frame"
            ));
        }
        if self.in_service() {
            return Ok(());
        }
        let old = self.handle.install(self.own.clone());
        tracing::info!(
            replaced = old.version,
            "the agent's own model is back in service (the model rollout sent this agent back)"
        );
        let report = Body::ModelReport(ModelReport {
            version: self.own.version,
            outcome: Outcome::Installed as i32,
            reason: format!("back to the agent's own model from version {}", old.version),
            serving_version: self.own.version,
        });
        if let Err(e) = self.to_hub.send(report) {
            tracing::warn!("learning: cannot queue a frame for the hub: {e}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        control::ControlBus,
        forecast::neural::{onnx, train},
    };

    #[test]
    fn a_rollback_to_version_empty_puts_the_own_model_back_and_reports_it_once() {
        let bus = ControlBus::default();
        let handle = ModelHandle::factory().unwrap();
        let mut own = OwnModel::new(handle.clone(), bus.to_hub());
        assert_eq!(
            own.apply("", ""),
            Ok(()),
            "already in service: nothing to do"
        );
        let other = onnx::encode(&train::pretrain(&train::PretrainConfig {
            steps: 5,
            ..Default::default()
        }));
        handle.install(ServingModel::load(3, &other).unwrap());
        assert!(
            own.apply("3", "").is_err(),
            "hub versions are the learner's"
        );
        assert_eq!(own.apply("", ""), Ok(()));
        assert_eq!(handle.current().version, 0);
        assert!(own.in_service());
        own.apply("", "").unwrap();
        let (mut channels, _) = bus.into_link();
        let mut reports = Vec::new();
        while let Ok(Body::ModelReport(r)) = channels.to_hub.try_recv() {
            reports.push((r.version, r.outcome, r.serving_version));
        }
        assert_eq!(reports, vec![(0, Outcome::Installed as i32, 0)]);
    }
}
