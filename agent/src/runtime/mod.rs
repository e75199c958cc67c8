//! The node-level function runtime: per function a warm pool of instances, each a process in
//! its own cgroup registered with the eBPF filter; the gateway (`crate::gateway`) leases
//! instances from here for every invocation.
//!
//! A manager task per function ticks every second: it asks the function's [`Planner`] for a
//! pool plan, scales its target by this host's [`PlacementShare`], starts instances up to the target (pre-warming ahead of demand), retires idle
//! ones past their keep-alive, and accounts idle memory × time.

pub mod instance;
pub mod onnx;
pub mod placement;
pub mod planner;
pub mod pool;
pub mod process;
pub mod readiness;
pub mod sample_model;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tracing::warn;

use self::{
    instance::End,
    placement::PlacementShare,
    planner::{FixedPlan, Planner, PoolPlan},
    pool::{Lease, Pool},
    readiness::Readiness,
};
use crate::{
    cgroup::CgroupLayout,
    config::FunctionSpec,
    metrics::{EndLabel, Metrics},
    telemetry::ebpf::Filter,
};

/// Memory accounted for an idle instance of a function without `memory_mb`, MB.
pub const DEFAULT_ACCOUNTED_MB: u64 = 128;
/// Instance failures in a row after which queued requests are answered at once.
const FAILURES_BEFORE_GIVING_UP: u32 = 3;
const TICK: Duration = Duration::from_secs(1);

/// One invocation as the gateway saw it; the telemetry collector stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationRecord {
    pub function_id: u32,
    pub cold: bool,
    pub queue_s: f64,
    pub latency_s: f64,
    pub ok: bool,
}

/// What every function's runtime shares.
pub struct RuntimeEnv {
    pub layout: CgroupLayout,
    pub filter: Filter,
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
    pub records: mpsc::Sender<InvocationRecord>,
    pub shutdown: watch::Receiver<bool>,
}

/// Why an invocation got no instance.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("function {function}: {queued} invocations already wait for an instance (queue_limit)")]
    QueueFull { function: String, queued: usize },
    #[error("function {function}: no instance became ready within {waited:?}{}", why(.last_failure))]
    Timeout {
        function: String,
        waited: Duration,
        last_failure: Option<String>,
    },
    #[error("function {function}: its instances keep failing: {last_failure}")]
    Failing {
        function: String,
        last_failure: String,
    },
}

fn why(f: &Option<String>) -> String {
    f.as_ref()
        .map(|f| format!(" (last instance: {f})"))
        .unwrap_or_default()
}

struct Minute {
    started: Instant,
    invocations: u64,
    busy_s: f64,
}

pub struct FunctionRuntime {
    pub spec: FunctionSpec,
    pub id: u32,
    pub env: Arc<RuntimeEnv>,
    pool: Mutex<Pool>,
    planner: Mutex<Box<dyn Planner>>,
    placement: PlacementShare,
    next_seq: AtomicU64,
    failures_in_row: AtomicU64,
    minute: Mutex<Minute>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    started: Instant,
}

impl FunctionRuntime {
    pub fn new(spec: FunctionSpec, id: u32, env: Arc<RuntimeEnv>) -> Arc<Self> {
        let plan = FixedPlan(PoolPlan {
            target: spec.min_warm,
            keep_alive: spec.keep_alive,
        });
        Self::with_planner(spec, id, env, Box::new(plan))
    }

    pub fn with_planner(
        spec: FunctionSpec,
        id: u32,
        env: Arc<RuntimeEnv>,
        planner: Box<dyn Planner>,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool: Mutex::new(Pool::new(
                spec.concurrency,
                spec.max_instances,
                spec.queue_limit,
            )),
            planner: Mutex::new(planner),
            placement: PlacementShare::default(),
            next_seq: AtomicU64::new(0),
            failures_in_row: AtomicU64::new(0),
            minute: Mutex::new(Minute {
                started: Instant::now(),
                invocations: 0,
                busy_s: 0.0,
            }),
            tasks: Mutex::new(Vec::new()),
            started: Instant::now(),
            spec,
            id,
            env,
        })
    }

    /// This host's share of the function's warm pool, set by cross-tier placement and applied
    /// after the planner at every tick.
    pub fn placement(&self) -> PlacementShare {
        self.placement.clone()
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn label(&self) -> crate::metrics::FunctionLabel {
        Metrics::label(&self.spec.name)
    }

    /// Starts one more instance when the pool may grow.
    fn start_instance(self: &Arc<Self>, pool: &mut Pool) -> bool {
        if !pool.can_grow() || *self.env.shutdown.borrow() {
            return false;
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("i{seq}");
        let (retire_tx, retire_rx) = oneshot::channel();
        pool.add_starting(seq, name.clone(), retire_tx, Instant::now());
        let task = tokio::spawn(instance::run(
            self.clone(),
            seq,
            name,
            retire_rx,
            self.env.shutdown.clone(),
        ));
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
        true
    }

    pub(crate) fn instance_ready(&self, seq: u64, addr: SocketAddr, now: Instant) {
        self.failures_in_row.store(0, Ordering::Relaxed);
        let mut pool = self.pool();
        pool.mark_ready(seq, addr, now);
        self.env
            .metrics
            .warm_instances
            .get_or_create(&self.label())
            .set(pool.ready() as i64);
    }

    pub(crate) fn instance_ended(self: &Arc<Self>, seq: u64, name: &str, end: &End) {
        let label = EndLabel {
            function: self.spec.name.clone(),
            reason: end.reason().into(),
        };
        self.env.metrics.instance_ends.get_or_create(&label).inc();
        let mut pool = self.pool();
        pool.remove(seq);
        if end.is_failure() {
            pool.last_failure = Some(format!("{name}: {end:?}"));
            let failures = self.failures_in_row.fetch_add(1, Ordering::Relaxed) + 1;
            if failures >= u64::from(FAILURES_BEFORE_GIVING_UP) {
                // Do not crash-loop: the requests waiting now are answered with the reason.
                pool.fail_waiters();
            }
        }
        if pool.needs_instance() {
            self.start_instance(&mut pool);
        }
        self.env
            .metrics
            .warm_instances
            .get_or_create(&self.label())
            .set(pool.ready() as i64);
    }

    /// A lease on an instance for one invocation: a ready one if there is room, else after
    /// waiting (and starting an instance) within the queue's bounds.
    pub async fn lease(self: &Arc<Self>, arrived: Instant) -> Result<Lease, LeaseError> {
        let rx = {
            let mut pool = self.pool();
            if let Some(lease) = pool.try_lease(arrived) {
                return Ok(lease);
            }
            if self.failures_in_row.load(Ordering::Relaxed) >= u64::from(FAILURES_BEFORE_GIVING_UP)
                && pool.ready() == 0
            {
                // Try once more, but answer the queued requests at once if it fails again.
                self.failures_in_row
                    .store(u64::from(FAILURES_BEFORE_GIVING_UP) - 1, Ordering::Relaxed);
            }
            let rx = pool.enqueue(arrived).map_err(|_| LeaseError::QueueFull {
                function: self.spec.name.clone(),
                queued: pool.queue_depth(),
            })?;
            if pool.needs_instance() {
                self.start_instance(&mut pool);
            }
            self.env
                .metrics
                .queue_depth
                .get_or_create(&self.label())
                .set(pool.queue_depth() as i64);
            rx
        };
        let waited = self.spec.queue_timeout;
        match tokio::time::timeout(waited, rx).await {
            Ok(Ok(lease)) => Ok(lease),
            Ok(Err(_)) => Err(LeaseError::Failing {
                function: self.spec.name.clone(),
                last_failure: self.pool().last_failure.clone().unwrap_or_default(),
            }),
            Err(_) => Err(LeaseError::Timeout {
                function: self.spec.name.clone(),
                waited,
                last_failure: self.pool().last_failure.clone(),
            }),
        }
    }

    /// The invocation on `lease` ended after `busy`.
    pub fn release(&self, lease: &Lease, busy: Duration) {
        let mut pool = self.pool();
        pool.release(lease.seq, Instant::now());
        self.env
            .metrics
            .queue_depth
            .get_or_create(&self.label())
            .set(pool.queue_depth() as i64);
        drop(pool);
        let mut m = self.minute.lock().unwrap_or_else(|p| p.into_inner());
        m.invocations += 1;
        m.busy_s += busy.as_secs_f64();
    }

    /// The instance failed an invocation (connection refused or reset): no more work for it.
    pub fn retire(&self, seq: u64) {
        self.pool().retire(seq);
    }

    /// Instances with their state, address and invocations in flight, for the API.
    pub fn snapshot(&self) -> Vec<(String, pool::SlotState, Option<SocketAddr>, u32)> {
        self.pool()
            .slots()
            .map(|(_, s)| (s.name.clone(), s.state, s.addr, s.in_flight))
            .collect()
    }

    fn accounted_mb(&self) -> f64 {
        self.spec.memory_mb.unwrap_or(DEFAULT_ACCOUNTED_MB) as f64
    }

    /// The pool manager: runs until the agent stops, then waits for every instance to end.
    pub async fn manage(self: Arc<Self>) {
        let mut shutdown = self.env.shutdown.clone();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = crate::shutdown::stopped(&mut shutdown) => break,
            }
            let now = Instant::now();
            self.tick(now, now.duration_since(last));
            last = now;
        }
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            if let Err(e) = t.await {
                warn!(function = %self.spec.name, "instance task failed: {e}");
            }
        }
    }

    fn tick(self: &Arc<Self>, now: Instant, dt: Duration) {
        let now_s = now.duration_since(self.started).as_secs_f64();
        {
            let mut m = self.minute.lock().unwrap_or_else(|p| p.into_inner());
            if now.duration_since(m.started) >= Duration::from_secs(60) {
                let mean = if m.invocations > 0 {
                    m.busy_s / m.invocations as f64
                } else {
                    0.0
                };
                let mut planner = self.planner.lock().unwrap_or_else(|p| p.into_inner());
                planner.observe_minute(m.invocations, mean, self.accounted_mb());
                *m = Minute {
                    started: now,
                    invocations: 0,
                    busy_s: 0.0,
                };
            }
        }
        let plan = self
            .planner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .plan(now_s);
        let target = held_target(plan.target, &self.spec, &self.placement);
        let keep_alive = plan
            .keep_alive
            .clamp(self.spec.keep_alive_min, self.spec.keep_alive_max);
        let mut pool = self.pool();
        while pool.alive() < target && self.start_instance(&mut pool) {}
        for seq in pool.expired(keep_alive, target, now) {
            pool.retire(seq);
        }
        let l = self.label();
        let m = &self.env.metrics;
        m.idle_memory_mb_seconds
            .get_or_create(&l)
            .inc_by(pool.idle_ready() as f64 * self.accounted_mb() * dt.as_secs_f64());
        m.warm_instances.get_or_create(&l).set(pool.ready() as i64);
        m.pool_target.get_or_create(&l).set(target as i64);
        m.queue_depth
            .get_or_create(&l)
            .set(pool.queue_depth() as i64);
    }
}

/// Instances the pool holds for a planner's `target`: scaled by this host's placement share,
/// then clamped to `min_warm..=max_instances` — except at share 0, where the host keeps
/// nothing warm and `min_warm` is not enforced.
fn held_target(target: u32, spec: &FunctionSpec, share: &PlacementShare) -> u32 {
    if !share.keeps_warm() {
        return 0;
    }
    share
        .scale(target)
        .max(spec.min_warm)
        .min(spec.max_instances)
}

/// Every function's runtime, by name.
#[derive(Default, Clone)]
pub struct Runtime {
    functions: BTreeMap<String, Arc<FunctionRuntime>>,
}

impl Runtime {
    pub fn new(specs: &[FunctionSpec], env: Arc<RuntimeEnv>) -> Self {
        let functions = specs
            .iter()
            .enumerate()
            .map(|(id, spec)| {
                (
                    spec.name.clone(),
                    FunctionRuntime::new(spec.clone(), id as u32, env.clone()),
                )
            })
            .collect();
        Self { functions }
    }

    pub fn function(&self, name: &str) -> Option<&Arc<FunctionRuntime>> {
        self.functions.get(name)
    }

    pub fn functions(&self) -> impl Iterator<Item = &Arc<FunctionRuntime>> {
        self.functions.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min_warm: u32, max_instances: u32) -> FunctionSpec {
        let text = format!(
            "[[functions]]\nname = \"f\"\ncommand = \"/bin/true\"\nmin_warm = {min_warm}\nmax_instances = {max_instances}\n"
        );
        crate::config::AgentConfig::parse(&text, "t.toml")
            .expect("valid")
            .functions
            .remove(0)
    }

    #[test]
    fn the_placement_share_scales_the_planners_target_within_the_bounds() {
        let share = PlacementShare::default();
        assert_eq!(held_target(6, &spec(0, 8), &share), 6);
        assert_eq!(held_target(12, &spec(0, 8), &share), 8);
        share.set(0.5).unwrap();
        assert_eq!(held_target(5, &spec(0, 8), &share), 3);
        assert_eq!(held_target(1, &spec(0, 8), &share), 1);
        assert_eq!(
            held_target(0, &spec(2, 8), &share),
            2,
            "min_warm still holds"
        );
    }

    #[test]
    fn share_zero_keeps_nothing_warm_not_even_min_warm() {
        let share = PlacementShare::default();
        share.set(0.0).unwrap();
        assert_eq!(held_target(6, &spec(2, 8), &share), 0);
    }
}
