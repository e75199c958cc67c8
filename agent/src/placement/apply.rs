//! Applies this agent's part of a plan, function by function:
//!
//! - a share above 0: this host keeps a warm pool and serves the plan's `local_fraction` of
//!   the invocations arriving here, forwarding the rest to the other warm hosts. Its `PlacementShare` is 1 — the pool
//!   follows the planner, which sees exactly the invocations served here (local ones and those
//!   forwarded in), so scaling it again by the fleet-wide share would count the split twice —
//!   and invocations are served here. A host that gains a function starts warming at once
//!   (its pool holds at least `min_warm`).
//! - share 0 with targets: invocations go to the targets. Pre-warm the new before retiring
//!   the old: while this host still has ready instances it keeps serving locally and keeps
//!   its pool, until a target's gateway lists a ready instance of the function or
//!   `handover_timeout` passes; then it forwards and its share drops to 0 (idle instances
//!   retire at their keep-alive).
//! - share 0 without targets: warm nowhere; served here, cold, with no pool held.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use synapse_proto::link::v1::{FunctionPlacement, PlacementAssignment};

use crate::{
    gateway::remote::{Remote, Route, Target},
    runtime::{Runtime, pool::SlotState},
};

/// Time a target's gateway has to list its functions during a hand-over.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

struct Handover {
    route: Route,
    since: Instant,
}

pub struct Applier {
    handover_timeout: Duration,
    pending: BTreeMap<String, Handover>,
    version: u64,
}

/// Targets of a placement, refusing weights that are not finite or not positive.
fn targets(p: &FunctionPlacement) -> Vec<Target> {
    let mut out: Vec<Target> = p
        .forward
        .iter()
        .filter(|t| t.weight.is_finite() && t.weight > 0.0 && !t.gateway.is_empty())
        .map(|t| Target {
            agent: t.agent_id.clone(),
            gateway: t.gateway.clone(),
            weight: t.weight,
        })
        .collect();
    let sum: f64 = out.iter().map(|t| t.weight).sum();
    for t in &mut out {
        t.weight /= sum;
    }
    out
}

impl Applier {
    pub fn new(handover_timeout: Duration) -> Self {
        Self {
            handover_timeout,
            pending: BTreeMap::new(),
            version: 0,
        }
    }

    pub fn apply(&mut self, assignment: PlacementAssignment, runtime: &Runtime, remote: &Remote) {
        if assignment.version < self.version {
            tracing::info!(
                version = assignment.version,
                in_force = self.version,
                "older placement plan ignored"
            );
            return;
        }
        self.version = assignment.version;
        for p in &assignment.functions {
            let Some(f) = runtime.function(&p.function) else {
                tracing::warn!(function = %p.function, "placement names a function this agent does not run");
                continue;
            };
            if !p.share.is_finite() || !(0.0..=1.0).contains(&p.share) {
                tracing::warn!(function = %p.function, share = p.share, "placement share refused");
                continue;
            }
            self.pending.remove(&p.function);
            let share = f.placement();
            let targets = targets(p);
            let local = if p.local_fraction.is_finite() {
                p.local_fraction.clamp(0.0, 1.0)
            } else {
                0.0
            };
            if p.share > 0.0 || targets.is_empty() {
                let keep = if p.share > 0.0 { 1.0 } else { 0.0 };
                let _ = share.set(keep);
                let route = if p.share > 0.0 && local < 1.0 && !targets.is_empty() {
                    Route::Forward { local, targets }
                } else {
                    Route::Local
                };
                remote.set_route(&p.function, route);
                continue;
            }
            let route = Route::Forward {
                local: 0.0,
                targets,
            };
            let warm_here = f
                .snapshot()
                .iter()
                .any(|(_, state, _, _)| *state == SlotState::Ready);
            if warm_here && share.keeps_warm() {
                self.pending.insert(
                    p.function.clone(),
                    Handover {
                        route,
                        since: Instant::now(),
                    },
                );
            } else {
                let _ = share.set(0.0);
                remote.set_route(&p.function, route);
            }
        }
        tracing::info!(
            version = assignment.version,
            functions = assignment.functions.len(),
            handovers = self.pending.len(),
            "placement plan applied"
        );
    }

    /// Completes the hand-overs whose targets are warm or whose time is up.
    pub async fn hand_over(&mut self, runtime: &Runtime, remote: &Remote) {
        let mut done = Vec::new();
        for (function, h) in &self.pending {
            let Route::Forward { targets, .. } = &h.route else {
                continue;
            };
            let mut ready = false;
            for t in targets {
                if target_ready(&t.gateway, function).await {
                    ready = true;
                    break;
                }
            }
            let late = h.since.elapsed() >= self.handover_timeout;
            if ready || late {
                tracing::info!(
                    function,
                    ready,
                    "placement hand-over: forwarding from now on"
                );
                if let Some(f) = runtime.function(function) {
                    let _ = f.placement().set(0.0);
                }
                remote.set_route(function, h.route.clone());
                done.push(function.clone());
            }
        }
        for function in done {
            self.pending.remove(&function);
        }
    }
}

/// Whether the gateway at `gateway` lists a ready instance of `function`.
async fn target_ready(gateway: &str, function: &str) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(gateway).await.ok()?;
        let request =
            format!("GET /v1/functions HTTP/1.1\r\nHost: {gateway}\r\nConnection: close\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .ok()?;
        let mut answer = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer)
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&answer);
        let (_, body) = text.split_once("\r\n\r\n")?;
        let listed: serde_json::Value = serde_json::from_str(body).ok()?;
        let found = listed.as_array()?.iter().find(|f| f["name"] == function)?;
        Some(
            found["instances"]
                .as_array()?
                .iter()
                .any(|i| i["state"] == "ready"),
        )
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
