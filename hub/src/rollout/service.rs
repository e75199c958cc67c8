//! The console's `Rollouts` service (behind [`crate::console::require_console_role`]; the
//! console's gate lets only operators start or steer a rollout). The operator's certificate
//! name is recorded as who started, paused, resumed, aborted or promoted a rollout.

use std::time::Duration;

use synapse_link::identity::PeerIdentity;
use synapse_proto::console::v1::{
    self as pb, HistoryRequest, RolloutList, RolloutRef, RolloutStatusRequest, StartRolloutRequest,
    rollouts_server::Rollouts,
};
use tonic::{Request, Response, Status};

use super::{
    Operation, RolloutEngine, RolloutError, StartRequest,
    spec::{Selector, Target},
    state::{Desired, Rollout, State},
};

/// Most rollouts `History` returns when the request names no limit.
const DEFAULT_HISTORY: usize = 50;

pub struct RolloutsService {
    engine: RolloutEngine,
}

impl RolloutsService {
    pub fn new(engine: RolloutEngine) -> Self {
        Self { engine }
    }

    /// Adds this service, behind the operator check, to the console's routes.
    pub fn add_to(engine: RolloutEngine, routes: &mut crate::console::RoutesBuilder) {
        routes.add_service(pb::rollouts_server::RolloutsServer::with_interceptor(
            Self::new(engine),
            crate::console::require_console_role,
        ));
    }

    fn view(&self, r: &Rollout) -> pb::Rollout {
        let updated = r.updated_hosts().len() as u32;
        let hosts = r
            .order
            .iter()
            .map(|(host, _)| {
                let desired = r.desired_for(host).unwrap_or_default().version;
                let running = self.engine.running(host, &r.target);
                pb::HostStatus {
                    agent_id: host.clone(),
                    desired,
                    running: running
                        .as_ref()
                        .map(|r| r.version.clone())
                        .unwrap_or_default(),
                    error: running.map(|r| r.error).unwrap_or_default(),
                    connected: self.engine.is_connected(host),
                }
            })
            .collect();
        pb::Rollout {
            id: r.id.clone(),
            target: r.target.to_string(),
            version: r.new.version.clone(),
            state: state(r.state) as i32,
            step: r.step,
            steps: r.steps.iter().map(ToString::to_string).collect(),
            bake_ms: r.bake_ms,
            started_by: r.started_by.clone(),
            started_unix_ms: r.started_unix_ms,
            step_started_unix_ms: r.step_started_unix_ms,
            hosts,
            updated,
            history: r
                .history
                .iter()
                .map(|e| pb::RolloutEvent {
                    unix_ms: e.unix_ms,
                    event: e.event.clone(),
                    step: e.step,
                    who: e.who.clone(),
                    detail: e.detail.clone(),
                    gates: e
                        .gates
                        .iter()
                        .map(|g| pb::GateResult {
                            gate: g.gate.clone(),
                            passed: g.passed,
                            updated: g.updated,
                            baseline: g.baseline,
                            threshold: g.threshold,
                            detail: g.detail.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn operate(
        &self,
        request: Request<RolloutRef>,
        op: Operation,
    ) -> Result<Response<pb::Rollout>, Status> {
        let who = operator(&request);
        let r = request.into_inner();
        let key = if r.id.is_empty() { r.target } else { r.id };
        let rollout = self
            .engine
            .operate(&key, op, &who, &r.reason)
            .map_err(refusal)?;
        Ok(Response::new(self.view(&rollout)))
    }
}

fn state(s: State) -> pb::RolloutState {
    match s {
        State::Pending => pb::RolloutState::Pending,
        State::Progressing => pb::RolloutState::Progressing,
        State::Paused => pb::RolloutState::Paused,
        State::Succeeded => pb::RolloutState::Succeeded,
        State::Aborted => pb::RolloutState::Aborted,
        State::RolledBack => pb::RolloutState::RolledBack,
    }
}

/// The operator certificate's name (the interceptor already checked its role).
fn operator<T>(request: &Request<T>) -> String {
    request
        .peer_certs()
        .and_then(|certs| certs.first().cloned())
        .and_then(|leaf| PeerIdentity::from_cert_der(leaf.as_ref()).ok())
        .map(|id| id.name)
        .unwrap_or_else(|| "unknown".into())
}

fn refusal(e: RolloutError) -> Status {
    match e {
        RolloutError::Spec(_) | RolloutError::Invalid(_) => Status::invalid_argument(e.to_string()),
        RolloutError::NotFound(_) => Status::not_found(e.to_string()),
        RolloutError::Transition(_) | RolloutError::Store(super::StoreError::Busy { .. }) => {
            Status::failed_precondition(e.to_string())
        }
        RolloutError::Store(_) | RolloutError::Registry(_) => {
            tracing::error!("rollout store: {e}");
            Status::internal(e.to_string())
        }
    }
}

#[tonic::async_trait]
impl Rollouts for RolloutsService {
    async fn start(
        &self,
        request: Request<StartRolloutRequest>,
    ) -> Result<Response<pb::Rollout>, Status> {
        let who = operator(&request);
        let r = request.into_inner();
        let target: Target = r
            .target
            .parse()
            .map_err(|e: super::SpecError| Status::invalid_argument(e.to_string()))?;
        let rollout = self
            .engine
            .start(StartRequest {
                target,
                new: Desired {
                    version: r.version,
                    payload: r.payload,
                    sha256: r.sha256,
                },
                selector: Selector {
                    tiers: r.tiers,
                    labels: r.labels.into_iter().collect(),
                    hosts: r.hosts,
                },
                steps: (!r.steps.is_empty()).then_some(r.steps),
                bake: (r.bake_ms > 0).then(|| Duration::from_millis(r.bake_ms)),
                who,
                reason: r.reason,
            })
            .map_err(refusal)?;
        Ok(Response::new(self.view(&rollout)))
    }

    async fn status(
        &self,
        request: Request<RolloutStatusRequest>,
    ) -> Result<Response<RolloutList>, Status> {
        let r = request.into_inner();
        let key = if r.id.is_empty() { r.target } else { r.id };
        let rollouts = if key.is_empty() {
            self.engine.active().map_err(refusal)?
        } else {
            vec![self.engine.get(&key).map_err(refusal)?]
        };
        Ok(Response::new(RolloutList {
            rollouts: rollouts.iter().map(|r| self.view(r)).collect(),
        }))
    }

    async fn pause(&self, request: Request<RolloutRef>) -> Result<Response<pb::Rollout>, Status> {
        self.operate(request, Operation::Pause)
    }

    async fn resume(&self, request: Request<RolloutRef>) -> Result<Response<pb::Rollout>, Status> {
        self.operate(request, Operation::Resume)
    }

    async fn abort(&self, request: Request<RolloutRef>) -> Result<Response<pb::Rollout>, Status> {
        self.operate(request, Operation::Abort)
    }

    async fn promote(&self, request: Request<RolloutRef>) -> Result<Response<pb::Rollout>, Status> {
        self.operate(request, Operation::Promote)
    }

    async fn history(
        &self,
        request: Request<HistoryRequest>,
    ) -> Result<Response<RolloutList>, Status> {
        let r = request.into_inner();
        let target = if r.target.is_empty() {
            None
        } else {
            Some(
                r.target
                    .parse::<Target>()
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            )
        };
        let limit = if r.limit == 0 {
            DEFAULT_HISTORY
        } else {
            r.limit as usize
        };
        let rollouts = self
            .engine
            .history(target.as_ref(), limit)
            .map_err(refusal)?;
        Ok(Response::new(RolloutList {
            rollouts: rollouts.iter().map(|r| self.view(r)).collect(),
        }))
    }
}
