//! Turns kernel events into per-function telemetry: which instances live, when each became
//! ready and served its first request, how long it lived and how long it sat idle.
//!
//! Pure: it is fed decoded events, accept-counter readings and clock ticks (all in kernel
//! monotonic nanoseconds) and never reads a clock or a map itself, so it is tested without a
//! kernel.

use std::collections::HashMap;

use synapse_agent_ebpf::{EventKind, LifecycleEvent};

use super::record::FunctionInterval;

const NS: f64 = 1e9;

/// Something the tracker concluded from an event, for live metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    InstanceStart {
        function_id: u32,
    },
    ColdStart {
        function_id: u32,
        cgroup_id: u64,
        seconds: f64,
    },
    FirstRequest {
        function_id: u32,
        seconds: f64,
    },
    InstanceExit {
        function_id: u32,
        cgroup_id: u64,
        lifetime_s: f64,
    },
}

#[derive(Debug)]
struct Instance {
    function_id: u32,
    root_tgid: u32,
    exec_ns: u64,
    ready_ns: Option<u64>,
    first_request: bool,
}

#[derive(Debug, Default)]
struct FunctionState {
    name: String,
    current: FunctionInterval,
    accepts_seen: Option<u64>,
}

/// Live state of every watched function and instance.
#[derive(Debug, Default)]
pub struct Tracker {
    functions: Vec<FunctionState>,
    instances: HashMap<u64, Instance>,
}

impl Tracker {
    /// Declares function `id` (ids are dense, from 0) under `name`.
    pub fn add_function(&mut self, id: u32, name: &str) {
        let id = id as usize;
        if self.functions.len() <= id {
            self.functions.resize_with(id + 1, FunctionState::default);
        }
        self.functions[id].name = name.to_string();
        self.functions[id].current.function = name.to_string();
    }

    pub fn function_name(&self, id: u32) -> Option<&str> {
        self.functions
            .get(id as usize)
            .map(|f| f.name.as_str())
            .filter(|n| !n.is_empty())
    }

    pub fn function_count(&self) -> u32 {
        self.functions.len() as u32
    }

    /// Instances alive now, per function id.
    pub fn live_instances(&self, function_id: u32) -> u64 {
        self.instances
            .values()
            .filter(|i| i.function_id == function_id)
            .count() as u64
    }

    /// Applies one lifecycle event.
    pub fn on_event(&mut self, ev: &LifecycleEvent) -> Vec<Observation> {
        let mut out = Vec::new();
        let Some(kind) = EventKind::from_u32(ev.kind) else {
            return out;
        };
        let Some(f) = self.functions.get_mut(ev.function_id as usize) else {
            return out;
        };
        let function_id = ev.function_id;
        if kind == EventKind::Exit {
            let is_root = self
                .instances
                .get(&ev.cgroup_id)
                .is_some_and(|i| i.root_tgid == ev.tgid);
            if is_root && let Some(inst) = self.instances.remove(&ev.cgroup_id) {
                let lifetime_s = ev.ts_ns.saturating_sub(inst.exec_ns) as f64 / NS;
                f.current.instance_exits += 1;
                f.current.lifetime.observe(lifetime_s);
                out.push(Observation::InstanceExit {
                    function_id,
                    cgroup_id: ev.cgroup_id,
                    lifetime_s,
                });
            }
            return out;
        }
        // Any other event of an unknown cgroup starts an instance, so that a lost exec event
        // costs only the start count, not the latencies (events carry the exec time).
        let inst = self.instances.entry(ev.cgroup_id).or_insert_with(|| {
            f.current.instance_starts += 1;
            out.push(Observation::InstanceStart { function_id });
            Instance {
                function_id,
                root_tgid: ev.tgid,
                exec_ns: if ev.exec_ns != 0 {
                    ev.exec_ns
                } else {
                    ev.ts_ns
                },
                ready_ns: None,
                first_request: false,
            }
        });
        match kind {
            EventKind::Ready if inst.ready_ns.is_none() => {
                inst.ready_ns = Some(ev.ts_ns);
                let seconds = ev.ts_ns.saturating_sub(inst.exec_ns) as f64 / NS;
                f.current.cold_starts += 1;
                f.current.cold_start.observe(seconds);
                out.push(Observation::ColdStart {
                    function_id,
                    cgroup_id: ev.cgroup_id,
                    seconds,
                });
            }
            EventKind::FirstAccept if !inst.first_request => {
                inst.first_request = true;
                let seconds = ev.ts_ns.saturating_sub(inst.exec_ns) as f64 / NS;
                f.current.first_request.observe(seconds);
                out.push(Observation::FirstRequest {
                    function_id,
                    seconds,
                });
            }
            _ => {}
        }
        out
    }

    /// Takes the kernel's running total of accepted connections of a function; returns how
    /// many are new since the previous reading.
    pub fn on_accept_total(&mut self, function_id: u32, total: u64) -> u64 {
        let Some(f) = self.functions.get_mut(function_id as usize) else {
            return 0;
        };
        let new = total.saturating_sub(f.accepts_seen.unwrap_or(0));
        f.accepts_seen = Some(total);
        f.current.invocations += new;
        new
    }

    /// Records one invocation the gateway served.
    pub fn on_invocation(&mut self, r: &crate::runtime::InvocationRecord) {
        let Some(f) = self.functions.get_mut(r.function_id as usize) else {
            return;
        };
        let c = &mut f.current;
        if !r.ok {
            c.failed_invocations += 1;
        } else if r.cold {
            c.cold_invocations += 1;
        } else {
            c.warm_invocations += 1;
        }
        c.invocation.observe(r.latency_s);
        c.queue.observe(r.queue_s);
    }

    /// Accounts idle time over the tick `(prev_ns, now_ns]`: a ready instance whose latest
    /// accepted connection is older than the tick was idle for the whole of it (from when it
    /// became ready, if later). Returns the idle seconds added per function id.
    pub fn on_tick(
        &mut self,
        prev_ns: u64,
        now_ns: u64,
        last_accept_ns: impl Fn(u64) -> Option<u64>,
    ) -> Vec<(u32, f64)> {
        let mut added: HashMap<u32, f64> = HashMap::new();
        for (&cgroup_id, inst) in &self.instances {
            let Some(ready) = inst.ready_ns else { continue };
            let since = prev_ns.max(ready);
            if since >= now_ns {
                continue;
            }
            let last = last_accept_ns(cgroup_id).unwrap_or(0);
            if last <= since {
                *added.entry(inst.function_id).or_default() += (now_ns - since) as f64 / NS;
            }
        }
        let mut out: Vec<(u32, f64)> = added.into_iter().collect();
        out.sort_by_key(|(id, _)| *id);
        for (id, s) in &out {
            if let Some(f) = self.functions.get_mut(*id as usize) {
                f.current.idle_instance_s += s;
            }
        }
        out
    }

    /// Ends the current interval of every function and starts the next.
    pub fn close_interval(
        &mut self,
        start_unix_ms: i64,
        interval_ms: u64,
    ) -> Vec<FunctionInterval> {
        let live: Vec<u64> = (0..self.functions.len() as u32)
            .map(|id| self.live_instances(id))
            .collect();
        self.functions
            .iter_mut()
            .zip(live)
            .filter(|(f, _)| !f.name.is_empty())
            .map(|(f, instances)| {
                let mut done = std::mem::take(&mut f.current);
                f.current.function = f.name.clone();
                done.function = f.name.clone();
                done.start_unix_ms = start_unix_ms;
                done.interval_ms = interval_ms;
                done.instances = instances;
                done
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, cgroup_id: u64, tgid: u32, ts_ms: u64, exec_ms: u64) -> LifecycleEvent {
        LifecycleEvent {
            kind: kind as u32,
            function_id: 0,
            tgid,
            pid: tgid,
            cgroup_id,
            ts_ns: ts_ms * 1_000_000,
            exec_ns: exec_ms * 1_000_000,
        }
    }

    fn tracker() -> Tracker {
        let mut t = Tracker::default();
        t.add_function(0, "thumb");
        t
    }

    #[test]
    fn cold_start_is_measured_from_exec_to_listen() {
        let mut t = tracker();
        t.on_event(&ev(EventKind::Exec, 7, 100, 1000, 1000));
        let obs = t.on_event(&ev(EventKind::Ready, 7, 100, 1150, 1000));
        assert_eq!(
            obs,
            vec![Observation::ColdStart {
                function_id: 0,
                cgroup_id: 7,
                seconds: 0.15
            }]
        );
        t.on_event(&ev(EventKind::FirstAccept, 7, 100, 1200, 1000));
        let iv = t.close_interval(0, 60_000).remove(0);
        assert_eq!(iv.instance_starts, 1);
        assert_eq!(iv.cold_starts, 1);
        assert_eq!(iv.instances, 1);
        assert!((iv.first_request.sum_s - 0.2).abs() < 1e-9);
    }

    #[test]
    fn exit_of_a_child_process_does_not_end_the_instance() {
        let mut t = tracker();
        t.on_event(&ev(EventKind::Exec, 7, 100, 1000, 1000));
        assert!(
            t.on_event(&ev(EventKind::Exit, 7, 101, 1100, 1000))
                .is_empty()
        );
        assert_eq!(t.live_instances(0), 1);
        let obs = t.on_event(&ev(EventKind::Exit, 7, 100, 3000, 1000));
        assert!(
            matches!(obs[0], Observation::InstanceExit { lifetime_s, .. } if (lifetime_s - 2.0).abs() < 1e-9)
        );
        assert_eq!(t.live_instances(0), 0);
    }

    #[test]
    fn a_lost_exec_still_gives_the_cold_start_latency() {
        let mut t = tracker();
        t.on_event(&ev(EventKind::Ready, 9, 5, 1400, 1000));
        let iv = t.close_interval(0, 1000).remove(0);
        assert_eq!(iv.cold_starts, 1);
        assert!((iv.cold_start.sum_s - 0.4).abs() < 1e-9);
    }

    #[test]
    fn accepts_are_counted_as_deltas_of_the_kernel_total() {
        let mut t = tracker();
        assert_eq!(t.on_accept_total(0, 5), 5);
        assert_eq!(t.on_accept_total(0, 12), 7);
        assert_eq!(t.close_interval(0, 1000)[0].invocations, 12);
        assert_eq!(t.on_accept_total(0, 12), 0);
        assert_eq!(t.close_interval(0, 1000)[0].invocations, 0);
    }

    #[test]
    fn idle_time_counts_ticks_without_an_accept() {
        let mut t = tracker();
        t.on_event(&ev(EventKind::Exec, 7, 100, 0, 0));
        t.on_event(&ev(EventKind::Ready, 7, 100, 500, 0));
        let s = 1_000_000_000;
        // Tick (0,1s]: ready at 0.5 s, no accept: 0.5 s idle.
        t.on_tick(0, s, |_| Some(0));
        // Tick (1s,2s]: an accept at 1.5 s: not idle.
        t.on_tick(s, 2 * s, |_| Some(s + s / 2));
        // Tick (2s,3s]: nothing new: idle.
        t.on_tick(2 * s, 3 * s, |_| Some(s + s / 2));
        let iv = t.close_interval(0, 3000).remove(0);
        assert!(
            (iv.idle_instance_s - 1.5).abs() < 1e-9,
            "{}",
            iv.idle_instance_s
        );
    }
}
