//! The telemetry loop: reads lifecycle events as they arrive, samples the per-CPU counters and
//! idle time every second, and closes an interval on every multiple of the configured length,
//! writing it to the store and, if asked, printing it.

use std::{io::Write as _, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use synapse_agent_ebpf::{EventKind, LifecycleEvent};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, watch},
};
use tracing::{debug, error, warn};

use super::{
    ebpf::{Filter, KernelProbes},
    host::HostProbe,
    monotonic_ns,
    record::FunctionInterval,
    tracker::{Observation, Tracker},
    unix_ms,
};
use crate::{
    metrics::{KindLabel, Metrics, ProgramLabel, StartLabel},
    runtime::{InvocationRecord, readiness::Readiness},
    store::Store,
};

const TICK: Duration = Duration::from_secs(1);

pub struct Collector {
    pub probes: KernelProbes,
    pub tracker: Tracker,
    pub metrics: Arc<Metrics>,
    pub store: Arc<Store>,
    pub interval: Duration,
    pub print: bool,
    /// Closed intervals also go here (the link to the hub), when set.
    pub sink: Option<LinkSink>,
    /// Told when the kernel sees an instance listen.
    pub readiness: Readiness,
    /// Invocations served by the gateway.
    pub records: mpsc::Receiver<InvocationRecord>,
    /// Closed intervals also go here (the pool planners), when set.
    pub closed: Option<mpsc::Sender<Vec<FunctionInterval>>>,
    /// The pool planners, whose forecast for each closing interval is written into it.
    pub planners: Option<crate::runtime::Runtime>,
    /// Function ids from here on are watched cgroups: their accepted connections are their
    /// invocations (no gateway sees them).
    pub first_watched_id: u32,
}

/// The link's side of closed intervals: its outbox, in the store's database, and the wake-up
/// of its sender. Each interval set is written into the outbox before the store's flush, so
/// the one flush makes it durable in both: an agent killed at any moment keeps an interval in
/// its store and owes it to the hub, or has neither.
pub struct LinkSink {
    pub outbox: Arc<crate::link::Outbox>,
    pub wake: Arc<tokio::sync::Notify>,
}

impl LinkSink {
    /// Writes `intervals` into the outbox, not yet flushed: the sequence owed to the hub, or
    /// `None` when it could not be written (the store keeps the interval either way).
    fn owe(&self, intervals: &[FunctionInterval]) -> Option<u64> {
        let wire = intervals.iter().map(FunctionInterval::to_wire).collect();
        match self.outbox.push_unflushed(wire) {
            Ok(pushed) => {
                if pushed.dropped > 0 {
                    warn!(
                        dropped = pushed.dropped,
                        "outbox full: dropped the oldest telemetry batches"
                    );
                }
                Some(pushed.sequence)
            }
            Err(e) => {
                error!("telemetry for the hub not persisted; interval kept in the store only: {e}");
                None
            }
        }
    }

    /// The database was flushed after batch `sequence` was written: the link may send it.
    fn flushed(&self, sequence: u64) {
        self.outbox.durable_up_to(sequence);
        self.wake.notify_one();
    }
}

struct Clocks {
    last_tick_ns: u64,
    interval_start_ms: i64,
    next_close_ms: i64,
    lost_seen: u64,
}

fn next_boundary(now_ms: i64, interval_ms: i64) -> i64 {
    (now_ms.div_euclid(interval_ms) + 1) * interval_ms
}

impl Collector {
    /// Runs until `shutdown` turns true, then closes the current (partial) interval.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let filter = self.probes.filter();
        let ring = self
            .probes
            .take_ring()
            .context("ring buffer already taken")?;
        // SAFETY: the ring buffer owns its fd and keeps it open, unchanged, while the AsyncFd
        // owns the ring buffer.
        let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .context("polling the eBPF ring buffer")?;
        let mut host = HostProbe::new();
        let interval_ms = self.interval.as_millis() as i64;
        let now = unix_ms();
        let mut clocks = Clocks {
            last_tick_ns: monotonic_ns(),
            interval_start_ms: now,
            next_close_ms: next_boundary(now, interval_ms),
            lost_seen: self.probes.lost_events().unwrap_or(0),
        };
        // Ticks just after whole seconds, so an interval of whole seconds closes right at its
        // end and the pool planners learn of it at once.
        let to_next_second = Duration::from_millis(1005 - now.rem_euclid(1000) as u64);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + to_next_second, TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting on the ring buffer")?;
                    let rb = guard.get_inner_mut();
                    while let Some(item) = rb.next() {
                        match decode(&item) {
                            Some(ev) => self.apply(&ev, &filter),
                            None => warn!(len = item.len(), "malformed ring buffer record skipped"),
                        }
                    }
                    guard.clear_ready();
                }
                Some(record) = self.records.recv() => {
                    self.tracker.on_invocation(&record);
                }
                _ = tick.tick() => {
                    self.sample(&filter, &mut clocks, &mut host);
                    if unix_ms() >= clocks.next_close_ms {
                        self.close(&mut clocks, &mut host);
                        clocks.next_close_ms = next_boundary(unix_ms(), interval_ms);
                    }
                }
                _ = crate::shutdown::stopped(&mut shutdown) => {
                    let rb = ring.get_mut();
                    while let Some(item) = rb.next() {
                        if let Some(ev) = decode(&item) {
                            self.apply(&ev, &filter);
                        }
                    }
                    self.sample(&filter, &mut clocks, &mut host);
                    self.close(&mut clocks, &mut host);
                    self.store.flush()?;
                    return Ok(());
                }
            }
        }
    }

    fn apply(&mut self, ev: &LifecycleEvent, filter: &Filter) {
        let kind = match EventKind::from_u32(ev.kind) {
            Some(EventKind::Exec) => "exec",
            Some(EventKind::Ready) => "ready",
            Some(EventKind::FirstAccept) => "first_accept",
            Some(EventKind::Exit) => "exit",
            None => "unknown",
        };
        self.metrics
            .ebpf_events
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
        for obs in self.tracker.on_event(ev) {
            let name = |id: u32| self.tracker.function_name(id).unwrap_or("?").to_string();
            match obs {
                Observation::InstanceStart { function_id } => {
                    let l = Metrics::label(&name(function_id));
                    self.metrics.instance_starts.get_or_create(&l).inc();
                }
                Observation::ColdStart {
                    function_id,
                    cgroup_id,
                    seconds,
                } => {
                    self.readiness.ready(cgroup_id);
                    let l = Metrics::label(&name(function_id));
                    debug!(function = %l.function, seconds, "cold start");
                    self.metrics.cold_starts.get_or_create(&l).inc();
                    self.metrics
                        .cold_start_seconds
                        .get_or_create(&l)
                        .observe(seconds);
                }
                Observation::FirstRequest {
                    function_id,
                    seconds,
                } => {
                    let l = Metrics::label(&name(function_id));
                    self.metrics
                        .first_request_seconds
                        .get_or_create(&l)
                        .observe(seconds);
                }
                Observation::InstanceExit {
                    function_id,
                    cgroup_id,
                    lifetime_s,
                } => {
                    let l = Metrics::label(&name(function_id));
                    self.metrics.instance_exits.get_or_create(&l).inc();
                    self.metrics
                        .instance_lifetime_seconds
                        .get_or_create(&l)
                        .observe(lifetime_s);
                    // The cgroup may host a new instance later (a watched cgroup of another
                    // runtime): let the kernel see its exec and listen afresh.
                    filter.reset(cgroup_id);
                }
            }
        }
        // Only the event's function can have gained or lost an instance.
        if let Some(n) = self.tracker.function_name(ev.function_id) {
            let live = self.tracker.live_instances(ev.function_id) as i64;
            self.metrics
                .instances
                .get_or_create(&Metrics::label(n))
                .set(live);
        }
    }

    fn sample(&mut self, filter: &Filter, clocks: &mut Clocks, host: &mut HostProbe) {
        for id in 0..self.tracker.function_count() {
            let Some(name) = self.tracker.function_name(id).map(str::to_string) else {
                continue;
            };
            match self.probes.accepts(id) {
                Ok(total) => {
                    let new = self.tracker.on_accept_total(id, total);
                    if new > 0 {
                        self.metrics
                            .kernel_accepts
                            .get_or_create(&Metrics::label(&name))
                            .inc_by(new);
                        if id >= self.first_watched_id {
                            let l = StartLabel {
                                function: name.clone(),
                                start: "unknown".into(),
                            };
                            self.metrics.invocations.get_or_create(&l).inc_by(new);
                        }
                    }
                }
                Err(e) => warn!(function = %name, "reading accept counters: {e:#}"),
            }
        }
        let now_ns = monotonic_ns();
        for (id, idle) in self
            .tracker
            .on_tick(clocks.last_tick_ns, now_ns, |cg| filter.last_accept_ns(cg))
        {
            if let Some(n) = self.tracker.function_name(id) {
                self.metrics
                    .idle_instance_seconds
                    .get_or_create(&Metrics::label(n))
                    .inc_by(idle);
            }
        }
        clocks.last_tick_ns = now_ns;
        if let Ok(lost) = self.probes.lost_events()
            && lost > clocks.lost_seen
        {
            warn!(
                lost = lost - clocks.lost_seen,
                "eBPF ring buffer was full; lifecycle events lost"
            );
            self.metrics
                .ebpf_events_lost
                .inc_by(lost - clocks.lost_seen);
            clocks.lost_seen = lost;
        }
        for p in self.probes.program_stats() {
            let l = ProgramLabel {
                program: p.name.into(),
            };
            self.metrics
                .ebpf_program_runs
                .get_or_create(&l)
                .set(p.runs as i64);
            self.metrics
                .ebpf_program_run_seconds
                .get_or_create(&l)
                .set(p.run_time.as_secs_f64());
        }
        let h = host.sample(unix_ms());
        self.metrics.host_cpu_usage.set(h.cpu_usage);
        self.metrics
            .host_memory_total
            .set(h.memory_total_bytes as i64);
        self.metrics
            .host_memory_used
            .set(h.memory_used_bytes as i64);
        self.metrics.host_load1.set(h.load1);
    }

    fn close(&mut self, clocks: &mut Clocks, host: &mut HostProbe) {
        let now = unix_ms();
        let length = (now - clocks.interval_start_ms).max(0) as u64;
        let mut intervals = self
            .tracker
            .close_interval(clocks.interval_start_ms, length);
        if let Some(planners) = &self.planners {
            planners.stamp_forecasts(&mut intervals);
        }
        // A failing store (a full disk) must not stop telemetry: the metrics go on.
        for iv in &intervals {
            if let Err(e) = self.store.record(iv) {
                error!(function = %iv.function, "storing telemetry: {e:#}");
            }
        }
        let owed = self.sink.as_ref().and_then(|sink| sink.owe(&intervals));
        match self
            .store
            .record_host(&host.sample(now))
            .and_then(|()| self.store.apply_retention(now).map(drop))
            .and_then(|()| self.store.flush())
        {
            Err(e) => error!("storing the host sample, applying retention or flushing: {e:#}"),
            // On disk: the link may send it (a batch left unflushed by a failed flush goes
            // with the next one that succeeds).
            Ok(()) => {
                if let (Some(sink), Some(sequence)) = (&self.sink, owed) {
                    sink.flushed(sequence);
                }
            }
        }
        if self.print {
            print_table(clocks.interval_start_ms, length, &intervals);
        }
        if let Some(closed) = &self.closed
            && closed.try_send(intervals.clone()).is_err()
        {
            warn!("the pool planners lag behind; an interval was not fed to them");
        }
        clocks.interval_start_ms = now;
    }
}

fn decode(bytes: &[u8]) -> Option<LifecycleEvent> {
    (bytes.len() >= std::mem::size_of::<LifecycleEvent>()).then(|| {
        // SAFETY: length checked; LifecycleEvent is plain old data; read_unaligned copes with
        // any alignment of the ring buffer record.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<LifecycleEvent>()) }
    })
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |s| format!("{:.0}", s * 1000.0))
}

/// One block per interval on stdout, one row per function.
pub fn print_table(start_ms: i64, length_ms: u64, intervals: &[FunctionInterval]) {
    let mut out = std::io::stdout().lock();
    let secs = start_ms.div_euclid(1000);
    let _ = writeln!(
        out,
        "\n{:02}:{:02}:{:02} UTC +{:.1}s  {:<20} {:>7} {:>6} {:>8} {:>8} {:>8} {:>5} {:>6} {:>8}",
        secs.div_euclid(3600).rem_euclid(24),
        secs.div_euclid(60).rem_euclid(60),
        secs.rem_euclid(60),
        length_ms as f64 / 1000.0,
        "function",
        "invoc",
        "cold",
        "p50 ms",
        "p99 ms",
        "1st-req",
        "inst",
        "exits",
        "idle s"
    );
    for iv in intervals {
        let _ = writeln!(
            out,
            "{:24}{:<20} {:>7} {:>6} {:>8} {:>8} {:>8} {:>5} {:>6} {:>8.1}",
            "",
            iv.function,
            iv.invocations,
            iv.cold_starts,
            ms(iv.cold_start.quantile_s(0.5)),
            ms(iv.cold_start.quantile_s(0.99)),
            ms(iv.first_request.mean_s()),
            iv.instances,
            iv.instance_exits,
            iv.idle_instance_s
        );
    }
    let _ = out.flush();
}
