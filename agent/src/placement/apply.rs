//! Applies this agent's part of a plan, function by function:
//!
//! - a share above 0: this host keeps a warm pool and serves the plan's `local_fraction` of
//!   the invocations arriving here, forwarding the rest to the other warm hosts. Its
//!   `PlacementShare` is 1 — the pool follows the planner, which sees exactly the invocations
//!   served here (local ones and those forwarded in), so scaling it again by the fleet-wide
//!   share would count the split twice. A host that gains a function starts warming at once:
//!   its pool holds the warm instances the plan counts on here (`warm_instances`, within
//!   `max_instances`; at least `min_warm`) — its own planner has not seen the traffic the
//!   plan sends it yet — until the hosts that lose it have handed over (at the latest their
//!   `handover_timeout`) and its planner has seen [`PLANNER_INTERVALS`] intervals of it.
//! - share 0 with targets: invocations go to the targets. Pre-warm the new before retiring
//!   the old: while this host still has ready instances it keeps serving locally and keeps
//!   its pool, until a target's gateway lists as many ready instances of the function as the
//!   plan counts on there (at least one) or `handover_timeout` passes; then it forwards and
//!   its share drops to 0 (idle instances retire at their keep-alive).
//! - share 0 without targets: warm nowhere; served here, cold, with no pool held.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use synapse_proto::link::v1::{FunctionPlacement, PlacementAssignment};

use crate::{
    gateway::remote::{Remote, Route, Target},
    runtime::{Runtime, pool::SlotState},
};

/// Time a target's gateway has to list its functions during a hand-over.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Telemetry intervals of traffic a gaining host's planner sees before the plan's warm
/// instances stop being assured: its forecast needs a few closed intervals to follow.
pub const PLANNER_INTERVALS: u32 = 3;

struct Handover {
    route: Route,
    /// Ready instances each target's gateway must list: (gateway, instances).
    needed: Vec<(String, u32)>,
    since: Instant,
}

pub struct Applier {
    handover_timeout: Duration,
    /// How long a gaining host holds the plan's warm instances.
    warmup: Duration,
    pending: BTreeMap<String, Handover>,
    /// Functions this host keeps warm in the plan in force.
    warm: BTreeSet<String>,
    /// Functions gained, holding the plan's warm instances until then.
    warming: BTreeMap<String, Instant>,
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
    /// `interval`: the telemetry interval, at which the pool planners see traffic.
    pub fn new(handover_timeout: Duration, interval: Duration) -> Self {
        Self {
            handover_timeout,
            warmup: handover_timeout + interval * PLANNER_INTERVALS,
            pending: BTreeMap::new(),
            warm: BTreeSet::new(),
            warming: BTreeMap::new(),
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
            if p.share > 0.0 {
                let assured = p.warm_instances.min(f.spec.max_instances);
                let gained = self.warm.insert(p.function.clone());
                if gained && assured > 0 {
                    self.warming
                        .insert(p.function.clone(), Instant::now() + self.warmup);
                    tracing::info!(function = %p.function, warm_instances = assured, expected_per_s = p.expected_per_s, "placement: function gained, warming the plan's instances");
                }
                if self.warming.contains_key(&p.function) {
                    share.assure(assured);
                }
            } else {
                self.warm.remove(&p.function);
                self.warming.remove(&p.function);
                share.assure(0);
            }
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
                let needed = p
                    .forward
                    .iter()
                    .map(|t| (t.gateway.clone(), t.warm_instances.max(1)))
                    .collect();
                self.pending.insert(
                    p.function.clone(),
                    Handover {
                        route,
                        needed,
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

    /// Completes the hand-overs whose targets are warm or whose time is up, and ends the
    /// warm-up of gained functions whose time is up.
    pub async fn hand_over(&mut self, runtime: &Runtime, remote: &Remote) {
        let now = Instant::now();
        self.warming.retain(|function, until| {
            if now < *until {
                return true;
            }
            if let Some(f) = runtime.function(function) {
                f.placement().assure(0);
            }
            tracing::info!(
                function,
                "placement warm-up over: the pool follows its planner"
            );
            false
        });
        let mut done = Vec::new();
        for (function, h) in &self.pending {
            let Route::Forward { targets, .. } = &h.route else {
                continue;
            };
            let mut ready = false;
            let mut target_ready_instances = 0;
            for t in targets {
                let listed = ready_instances(remote, t, function).await;
                target_ready_instances = target_ready_instances.max(listed);
                let needed = h
                    .needed
                    .iter()
                    .find(|(g, _)| *g == t.gateway)
                    .map_or(1, |n| n.1);
                if listed >= needed {
                    ready = true;
                    break;
                }
            }
            let late = h.since.elapsed() >= self.handover_timeout;
            if ready || late {
                tracing::info!(
                    function,
                    ready,
                    target_ready_instances,
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

/// Ready instances of `function` the peer listener of `target` lists (0 when it does not
/// answer, is not that agent, or this agent has no peer link).
async fn ready_instances(remote: &Remote, target: &Target, function: &str) -> u32 {
    let Some(peer) = remote.peer() else {
        return 0;
    };
    let Some(body) = peer
        .get(
            &target.agent,
            &target.gateway,
            "/v1/functions",
            PROBE_TIMEOUT,
        )
        .await
    else {
        return 0;
    };
    let ready = || -> Option<u32> {
        let listed: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let found = listed.as_array()?.iter().find(|f| f["name"] == function)?;
        let ready = found["instances"]
            .as_array()?
            .iter()
            .filter(|i| i["state"] == "ready")
            .count();
        Some(u32::try_from(ready).unwrap_or(u32::MAX))
    };
    ready().unwrap_or(0)
}
