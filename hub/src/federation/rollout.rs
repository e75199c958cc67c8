//! Which agents receive a model version. One small trait, so that the rollout subsystem can
//! stage versions (canaries, waves) and send hosts back to an earlier version;
//! [`AllAgents`] gives every connected agent every version.

use synapse_proto::link::v1::ModelReport;

use crate::models::ModelRecord;

/// Decides the recipients of a version among the connected agents.
pub trait Recipients: Send + Sync {
    fn recipients(&self, model: &ModelRecord, connected: &[String]) -> Vec<String>;
    /// `agent` installed or refused a version (what it serves is in the report).
    fn reported(&self, _agent: &str, _report: &ModelReport) {}
    /// The registered version `agent` should run when it is not a recipient of the newest
    /// one (a rollout that failed sends its hosts back to the version they ran); `None`:
    /// nothing to send.
    fn wanted(&self, _agent: &str) -> Option<u64> {
        None
    }
    /// Whether `version` was turned down (its rollout rolled back or aborted): rounds then
    /// train from the newest version before it that was not.
    fn refused(&self, _version: u64) -> bool {
        false
    }
}

/// Every connected agent receives every version.
pub struct AllAgents;

impl Recipients for AllAgents {
    fn recipients(&self, _model: &ModelRecord, connected: &[String]) -> Vec<String> {
        connected.to_vec()
    }
}
