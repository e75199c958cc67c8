//! The node-level function runtime: per function a warm pool of instances, each a process in
//! its own cgroup registered with the eBPF filter; the gateway (`crate::gateway`) leases
//! instances from here for every invocation.
//!
//! A manager task per function (`manager.rs`) ticks every second: it asks the function's
//! [`Planner`] for a pool plan, scales its target by this host's [`PlacementShare`], starts
//! instances up to the target and pre-warms ahead of demand, retires idle ones past their
//! keep-alive, and accounts idle memory × time. Planners that learn are fed every closed
//! telemetry interval (`feed.rs`).

mod feed;
pub mod instance;
mod manager;
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
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    sync::{Notify, mpsc, oneshot, watch},
    task::JoinHandle,
};

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
    /// The agent's main runtime, where instance tasks run. A cold start may begin on a gateway
    /// thread, whose own runtime ends before the instances are stopped at shutdown: a task
    /// left there would be cancelled instead of stopping its instance with the grace period.
    pub tasks: tokio::runtime::Handle,
    /// Who the instances run as (`[instances]`).
    pub instances: crate::config::InstancesConfig,
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

pub struct FunctionRuntime {
    pub spec: FunctionSpec,
    pub id: u32,
    pub env: Arc<RuntimeEnv>,
    pool: Mutex<Pool>,
    planner: Mutex<Box<dyn Planner>>,
    placement: PlacementShare,
    /// Wakes the manager when the planner has a new plan.
    replanned: Notify,
    queue_depth: OnceLock<Gauge>,
    next_seq: AtomicU64,
    failures_in_row: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    started: Instant,
    /// Replaced by a newer version: it starts nothing, retires its idle instances at once
    /// and its manager ends once the last instance has.
    retired: std::sync::atomic::AtomicBool,
}

impl FunctionRuntime {
    pub fn new(spec: FunctionSpec, id: u32, env: Arc<RuntimeEnv>) -> Arc<Self> {
        let plan = FixedPlan(PoolPlan {
            target: spec.min_warm,
            keep_alive: spec.keep_alive,
            prewarm: None,
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
            replanned: Notify::new(),
            queue_depth: OnceLock::new(),
            next_seq: AtomicU64::new(0),
            failures_in_row: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
            started: Instant::now(),
            retired: std::sync::atomic::AtomicBool::new(false),
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

    fn planner(&self) -> std::sync::MutexGuard<'_, Box<dyn Planner>> {
        self.planner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `synapse_queue_depth` of the function, looked up once (it changes on every release).
    fn queue_depth(&self) -> &Gauge {
        self.queue_depth.get_or_init(|| {
            self.env
                .metrics
                .queue_depth
                .get_or_create(&self.label())
                .clone()
        })
    }

    fn label(&self) -> crate::metrics::FunctionLabel {
        Metrics::label(&self.spec.name)
    }

    /// Stops this pool (a version that could not be applied): nothing new starts, idle
    /// instances stop, and its manager ends with the last one.
    pub fn retire_pool(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Ready instances now.
    pub fn ready(&self) -> u32 {
        self.pool().ready()
    }

    /// Why the last instance failed, if one did.
    pub fn last_failure(&self) -> Option<String> {
        self.pool().last_failure.clone()
    }

    /// Starts one more instance when the pool may grow.
    fn start_instance(self: &Arc<Self>, pool: &mut Pool) -> bool {
        self.start_instance_anchored(pool, None)
    }

    /// Starts one more instance when the pool may grow; a pre-warm brings the `anchor` its
    /// keep-alive is counted from.
    fn start_instance_anchored(self: &Arc<Self>, pool: &mut Pool, anchor: Option<Instant>) -> bool {
        if !pool.can_grow() || *self.env.shutdown.borrow() {
            return false;
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("i{seq}");
        let (retire_tx, retire_rx) = oneshot::channel();
        let now = Instant::now();
        match anchor {
            Some(anchor) => pool.add_prewarming(seq, name.clone(), retire_tx, now, anchor),
            None => pool.add_starting(seq, name.clone(), retire_tx, now),
        }
        let task = self.env.tasks.spawn(instance::run(
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
            pool.cancel_prewarms();
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
            self.queue_depth().set(pool.queue_depth() as i64);
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

    /// The invocation on `lease` ended.
    pub fn release(&self, lease: &Lease) {
        let mut pool = self.pool();
        pool.release(lease.seq, Instant::now());
        self.queue_depth().set(pool.queue_depth() as i64);
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
}

/// Every function's runtime, by name. The map is shared by every clone and swappable: a new
/// version of a function replaces its runtime for every invocation that arrives afterwards.
#[derive(Default, Clone)]
pub struct Runtime {
    functions: Arc<std::sync::RwLock<BTreeMap<String, Arc<FunctionRuntime>>>>,
}

impl Runtime {
    /// Every function with the fixed plan of its own bounds (`min_warm`, `keep_alive`).
    pub fn new(specs: &[FunctionSpec], env: Arc<RuntimeEnv>) -> Self {
        Self::with_planners(specs, env, |spec| {
            Box::new(FixedPlan(PoolPlan {
                target: spec.min_warm,
                keep_alive: spec.keep_alive,
                prewarm: None,
            }))
        })
    }

    /// Every function with the planner `planner` makes for it (function ids in `specs` order).
    pub fn with_planners(
        specs: &[FunctionSpec],
        env: Arc<RuntimeEnv>,
        planner: impl Fn(&FunctionSpec) -> Box<dyn Planner>,
    ) -> Self {
        let functions = specs
            .iter()
            .enumerate()
            .map(|(id, spec)| {
                let f = FunctionRuntime::with_planner(
                    spec.clone(),
                    id as u32,
                    env.clone(),
                    planner(spec),
                );
                (spec.name.clone(), f)
            })
            .collect();
        Self {
            functions: Arc::new(std::sync::RwLock::new(functions)),
        }
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<FunctionRuntime>>> {
        self.functions.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn function(&self, name: &str) -> Option<Arc<FunctionRuntime>> {
        self.map().get(name).cloned()
    }

    pub fn functions(&self) -> impl Iterator<Item = Arc<FunctionRuntime>> + use<> {
        self.map().values().cloned().collect::<Vec<_>>().into_iter()
    }

    /// A runtime for `spec` beside the current one of its function, with the same telemetry
    /// id and instance numbers after the current ones (so cgroups never collide); it serves
    /// nothing until [`Runtime::swap`]. `None` when the function is not on this agent.
    pub fn prepare(&self, spec: FunctionSpec) -> Option<Arc<FunctionRuntime>> {
        let current = self.function(&spec.name)?;
        let next = FunctionRuntime::new(spec, current.id, current.env.clone());
        // The host's placement share is the function's, whatever its version.
        next.placement.take_from(&current.placement);
        // Far past the current numbers: the current runtime keeps starting instances while
        // the next one warms up.
        next.next_seq.store(
            current.next_seq.load(Ordering::Relaxed) + 1_000_000,
            Ordering::Relaxed,
        );
        Some(next)
    }

    /// Makes `next` its function's runtime for every new invocation, and retires the one it
    /// replaces: invocations already on it finish, then its instances stop. The planner goes
    /// with the function: what the pool policy learned of its demand holds for any version.
    pub fn swap(&self, next: Arc<FunctionRuntime>) -> Option<Arc<FunctionRuntime>> {
        let old = self
            .functions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(next.spec.name.clone(), next.clone());
        if let Some(old) = &old {
            old.retired.store(true, Ordering::Relaxed);
            let retired_plan: Box<dyn Planner> = Box::new(FixedPlan(PoolPlan {
                target: 0,
                keep_alive: Duration::ZERO,
                prewarm: None,
            }));
            let planner = std::mem::replace(&mut *old.planner(), retired_plan);
            *next.planner() = planner;
            next.replanned.notify_one();
            next.placement.take_from(&old.placement);
        }
        old
    }
}
