//! The placement subsystem on the hub: takes agents' demand reports from the link, re-plans
//! every `optimization_interval` (at once when a host of the plan in force disconnects, or a
//! reporting host is not in it yet), persists each plan, and sends every connected agent its
//! part — also to an agent that returns later.
//!
//! The hosts of a plan are the connected agents that have reported; demand reported by an
//! agent that is gone is dropped with it (its users cannot reach it either).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use synapse_proto::link::v1::{
    DemandReport, ForwardTarget, FunctionPlacement, PlacementAssignment, frame::Body,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    Inputs, Plan, PlanStore, PlanStoreError,
    config::PlacementConfig,
    inputs::{Function, Host},
    make_plan,
};
use crate::{
    link::{AgentOutlet, ConnectedAgent, ControlHandler, ControlRefusal, Handled},
    metrics::HubMetrics,
    registry::Registry,
};

#[derive(Default)]
struct State {
    reports: BTreeMap<String, DemandReport>,
    connected: BTreeMap<String, ConnectedAgent>,
    plan: Option<Plan>,
    /// What the plan in force was made from (none yet after a restart).
    inputs: Option<Inputs>,
    /// Why the next plan is due before its interval, if it is.
    due: Option<&'static str>,
    refused_reports: u64,
}

struct Inner {
    config: PlacementConfig,
    registry: Registry,
    store: PlanStore,
    outlet: AgentOutlet,
    state: Mutex<State>,
    wake: Notify,
    /// Where plans count their moves (`synapse_hub_placement_*`), once set.
    metrics: std::sync::OnceLock<HubMetrics>,
}

/// The placement subsystem; cheap to clone.
#[derive(Clone)]
pub struct Placement(Arc<Inner>);

pub use super::demand::check_report;

impl Placement {
    /// Opens the plan store and takes up the newest plan in it.
    pub fn open(
        db: &sled::Db,
        config: PlacementConfig,
        registry: Registry,
        outlet: AgentOutlet,
    ) -> Result<Self, PlanStoreError> {
        let store = PlanStore::open(db)?;
        let plan = store.latest()?;
        Ok(Self(Arc::new(Inner {
            config,
            registry,
            store,
            outlet,
            state: Mutex::new(State {
                plan,
                ..State::default()
            }),
            wake: Notify::new(),
            metrics: std::sync::OnceLock::new(),
        })))
    }

    /// Counts every plan's moves, and those over the cap, in `metrics`.
    pub fn with_metrics(self, metrics: HubMetrics) -> Self {
        let _ = self.0.metrics.set(metrics);
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn store(&self) -> &PlanStore {
        &self.0.store
    }

    /// The plan in force and the inputs it was made from.
    pub fn in_force(&self) -> (Option<Plan>, Option<Inputs>) {
        let state = self.state();
        (state.plan.clone(), state.inputs.clone())
    }

    /// Demand reports refused since the hub started.
    pub fn refused_reports(&self) -> u64 {
        self.state().refused_reports
    }

    fn due(&self, why: &'static str) {
        self.state().due.get_or_insert(why);
        self.0.wake.notify_one();
    }

    /// Re-plans every interval and whenever a plan falls due, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let interval = self.0.config.optimization_interval;
        loop {
            let reason = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => "interval",
                _ = self.0.wake.notified() => "due",
            };
            let reason = self.state().due.take().unwrap_or(reason);
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.plan_now(reason)).await {
                Ok(Ok(Some(plan))) => tracing::info!(
                    version = plan.version,
                    reason = %plan.reason,
                    moved = plan.moved,
                    held_back = plan.held_back,
                    objective = plan.objective,
                    solve_ms = plan.solve_ms,
                    "placement plan"
                ),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "placement plan not stored"),
                Err(e) => tracing::error!(error = %e, "placement planner failed"),
            }
        }
    }

    /// The inputs of a plan now: connected agents that reported, with their RTT from the
    /// registry and the configuration's weights, prices and declared latencies.
    pub fn inputs(&self) -> Inputs {
        let rtts: BTreeMap<String, f64> = self
            .0
            .registry
            .agents()
            .unwrap_or_default()
            .into_iter()
            .map(|a| (a.agent_id, a.rtt_ms / 1e3))
            .collect();
        let state = self.state();
        let config = &self.0.config;
        let mut inputs = Inputs {
            weights: Some(config.weights()),
            price_per_gb_s: config.prices(),
            declared_latency_s: config.declared_latencies(),
            ..Inputs::default()
        };
        let mut functions: BTreeMap<&str, Function> = BTreeMap::new();
        // Weighted sums for the means over origins.
        let mut execution: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        let mut cold: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        // The hosts that run each function: those that report it.
        let mut runs_on: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (agent, report) in &state.reports {
            let Some(connected) = state.connected.get(agent) else {
                continue;
            };
            let host = inputs.hosts.len();
            inputs.hosts.push(Host {
                agent: agent.clone(),
                tier: connected.tier as i32,
                gateway: connected.gateway.clone(),
                pool_memory_bytes: report.pool_memory_bytes,
                cpu_load: report.cpu_load,
                rtt_s: rtts
                    .get(agent)
                    .copied()
                    .unwrap_or(connected.rtt.as_secs_f64()),
            });
            for d in &report.functions {
                let f = functions.entry(&d.function).or_insert_with(|| Function {
                    name: d.function.clone(),
                    ..Function::default()
                });
                runs_on.entry(&d.function).or_default().push(host);
                if d.forecast_per_s > 0.0 {
                    f.demand.push((host, d.forecast_per_s));
                }
                f.memory_bytes = f.memory_bytes.max(d.memory_bytes);
                // Means weighted by demand, and at least a little by every measurement.
                let weight = d.forecast_per_s.max(1e-6);
                if d.execution_s > 0.0 {
                    let e = execution.entry(&d.function).or_default();
                    e.0 += weight * d.execution_s;
                    e.1 += weight;
                }
                if d.cold_start_s > 0.0 {
                    let c = cold.entry(&d.function).or_default();
                    c.0 += weight * d.cold_start_s;
                    c.1 += weight;
                }
            }
        }
        for (name, mut f) in functions {
            if let Some((sum, weight)) = execution.get(name) {
                f.execution_s = sum / weight;
            }
            if let Some((sum, weight)) = cold.get(name) {
                f.cold_start_s = sum / weight;
            }
            // Ascending already: hosts are numbered in the order their reports are read.
            if let Some(mut hosts) = runs_on.remove(name) {
                hosts.dedup();
                if hosts.len() < inputs.hosts.len() {
                    f.only_on = Some(hosts);
                }
            }
            inputs.functions.push(f);
        }
        inputs
    }

    /// Makes, stores and sends a plan now; `None` when no host has reported yet.
    pub fn plan_now(&self, reason: &str) -> Result<Option<Plan>, PlanStoreError> {
        if !self.0.config.enabled {
            return Ok(None);
        }
        let inputs = self.inputs();
        if inputs.hosts.is_empty() {
            return Ok(None);
        }
        let in_force = self.state().plan.clone();
        let reason = if in_force.is_none() { "first" } else { reason };
        let plan = make_plan(
            &inputs,
            in_force.as_ref(),
            &self.0.config.rules(),
            reason,
            crate::registry::now_ms(),
        );
        self.0.store.put(&plan)?;
        self.0.store.prune(self.0.config.history)?;
        if let Some(metrics) = self.0.metrics.get() {
            metrics.placement_moves.inc_by(u64::from(plan.moved));
            metrics
                .placement_moves_over_cap
                .inc_by(u64::from(plan.over_cap));
        }
        if plan.over_cap > 0 {
            tracing::warn!(
                version = plan.version,
                over_cap = plan.over_cap,
                "placement: host capacity forced moves beyond the move cap"
            );
        }
        let agents: Vec<String> = {
            let mut state = self.state();
            state.plan = Some(plan.clone());
            state.inputs = Some(inputs);
            state.connected.keys().cloned().collect()
        };
        for agent in agents {
            self.send_assignment(&agent);
        }
        Ok(Some(plan))
    }

    /// `agent`'s part of the plan in force: every function it reported or keeps warm.
    pub fn assignment(&self, agent: &str) -> Option<PlacementAssignment> {
        let state = self.state();
        let plan = state.plan.as_ref()?;
        let mut names: Vec<&String> = state
            .reports
            .get(agent)
            .map(|r| r.functions.iter().map(|f| &f.function).collect())
            .unwrap_or_default();
        names.extend(
            plan.functions
                .iter()
                .filter(|(_, p)| p.hosts.iter().any(|(a, _)| a == agent))
                .map(|(name, _)| name),
        );
        names.sort();
        names.dedup();
        let functions = names
            .into_iter()
            .filter(|name| plan.functions.contains_key(*name))
            .map(|name| {
                let (expected_per_s, warm_instances) = plan.sizing(name, agent);
                FunctionPlacement {
                    function: name.clone(),
                    expected_per_s,
                    warm_instances,
                    share: plan.share(name, agent),
                    local_fraction: local_fraction(state.inputs.as_ref(), plan, name, agent),
                    forward: plan
                        .warm_elsewhere(name, agent)
                        .into_iter()
                        .filter_map(|(target, weight)| {
                            let gateway = plan.hosts.get(&target)?.gateway.clone();
                            (!gateway.is_empty()).then(|| ForwardTarget {
                                warm_instances: plan.sizing(name, &target).1,
                                agent_id: target,
                                gateway,
                                weight,
                            })
                        })
                        .collect(),
                }
            })
            .collect();
        Some(PlacementAssignment {
            version: plan.version,
            functions,
        })
    }

    fn send_assignment(&self, agent: &str) {
        let Some(assignment) = self.assignment(agent) else {
            return;
        };
        let version = assignment.version;
        match self
            .0
            .outlet
            .send(agent, Body::PlacementAssignment(assignment))
        {
            Ok(()) => tracing::debug!(agent, version, "placement assignment sent"),
            // It gets the plan in force when it returns.
            Err(e) => tracing::warn!(agent, version, error = %e, "placement assignment not sent"),
        }
    }
}

/// Fraction of `agent`'s own demand of `function` it serves itself: its share of the fleet's
/// demand over its part of it, at most 1 (all of it when it keeps the function warm and no
/// demand of its own was measured).
fn local_fraction(inputs: Option<&Inputs>, plan: &Plan, function: &str, agent: &str) -> f64 {
    let share = plan.share(function, agent);
    if share <= 0.0 {
        return 0.0;
    }
    let own = inputs.and_then(|inputs| {
        let host = inputs.host_index(agent)?;
        let f = inputs.functions.iter().find(|f| f.name == function)?;
        let own: f64 = f.demand.iter().filter(|d| d.0 == host).map(|d| d.1).sum();
        (own > 0.0).then(|| share * f.total_demand() / own)
    });
    own.unwrap_or(1.0).min(1.0)
}

impl ControlHandler for Placement {
    fn frame(&self, agent: &str, body: Body) -> Result<Handled, ControlRefusal> {
        let Body::DemandReport(report) = body else {
            return Ok(Handled::Declined(body));
        };
        if let Err(why) = check_report(&report) {
            tracing::warn!(agent, "demand report refused: {why}");
            self.state().refused_reports += 1;
            return Ok(Handled::Consumed);
        }
        let new_host = {
            let mut state = self.state();
            state.reports.insert(agent.to_owned(), report);
            state
                .plan
                .as_ref()
                .is_none_or(|plan| !plan.hosts.contains_key(agent))
        };
        if new_host {
            self.due("host joined");
        }
        Ok(Handled::Consumed)
    }

    fn connected(&self, agent: &ConnectedAgent) {
        self.state()
            .connected
            .insert(agent.agent.clone(), agent.clone());
        self.send_assignment(&agent.agent);
    }

    fn disconnected(&self, agent: &str) {
        if self.0.outlet.is_connected(agent) {
            // A newer connection of the same agent took over.
            return;
        }
        let was_host = {
            let mut state = self.state();
            state.connected.remove(agent);
            state
                .plan
                .as_ref()
                .is_some_and(|plan| plan.hosts.contains_key(agent))
        };
        if was_host {
            self.due("host lost");
        }
    }
}
