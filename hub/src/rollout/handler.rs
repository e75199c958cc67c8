//! The rollout engine on the link: it takes the agents' `RunningVersions` frames and sends
//! each agent that (re)connects its desired versions, so an agent that was away catches up
//! to the version its step says.

use synapse_proto::link::v1::frame::Body;

use super::RolloutEngine;
use crate::link::{ConnectedAgent, ControlHandler, ControlRefusal, Handled};

/// Most targets one `RunningVersions` frame may carry.
const MAX_TARGETS: usize = 1024;

impl ControlHandler for RolloutEngine {
    fn frame(&self, agent: &str, body: Body) -> Result<Handled, ControlRefusal> {
        match body {
            Body::RunningVersions(running) => {
                if running.targets.len() > MAX_TARGETS {
                    return Err(ControlRefusal {
                        code: "malformed",
                        message: format!(
                            "running_versions with {} targets (at most {MAX_TARGETS})",
                            running.targets.len()
                        ),
                    });
                }
                self.running_reported(agent, running.targets);
                Ok(Handled::Consumed)
            }
            other => Ok(Handled::Declined(other)),
        }
    }

    fn connected(&self, agent: &ConnectedAgent) {
        if let Err(e) = self.send_desired(&agent.agent) {
            tracing::error!(agent = %agent.agent, "cannot read its desired versions: {e}");
        }
    }
}
