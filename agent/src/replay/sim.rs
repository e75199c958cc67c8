//! The warm pool of one function on a virtual clock, exactly as `EVALUATION.md` measures it:
//! one invocation per instance at a time, a cold start when no idle warm instance exists (the
//! new instance loads for `L` before running; attaching to a loading pre-warm is cold too), the
//! most recently idle instance taken first, keep-alive counted from the end of the last
//! execution (the policy's current keep-alive applies to every idle instance), pre-warms that
//! release the instance and load a new one after the delay unless an invocation came first
//! (an instance the pool target loaded and no invocation used is no execution's end: under a
//! pre-warm window it goes once the target lets it), and idle time clipped at the end of the
//! trace.

use crate::policy::PoolDecision;

/// Counters of one window of the trace (the whole, or the second half).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowTally {
    pub invocations: u64,
    pub cold_starts: u64,
    /// Idle warm time × memory, MB·s.
    pub wasted_mb_s: f64,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Loading until `ready`; `attached` when an invocation waits for it.
    Loading {
        ready: f64,
        attached: bool,
    },
    Busy {
        until: f64,
    },
    Idle {
        since: f64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Instance {
    phase: Phase,
    /// When an idle (or pre-warmed) instance is retired, unless the pool target keeps it.
    expires: f64,
    /// End of the execution its keep-alive is counted from.
    anchor: f64,
    /// Started for the pool target and not used since: no execution end anchors it.
    for_target: bool,
}

impl Instance {
    fn next_event(&self) -> f64 {
        match self.phase {
            Phase::Loading { ready, .. } => ready,
            Phase::Busy { until } => until,
            Phase::Idle { .. } => self.expires,
        }
    }
}

/// A pre-warm waiting for its start: (start loading at, warm until, released at).
type PendingPrewarm = (f64, f64, f64);

/// One function's instances and counters.
pub struct FunctionSim {
    load_s: f64,
    duration_s: f64,
    memory_mb: f64,
    /// Start of the second half and end of the trace, seconds.
    half_s: f64,
    end_s: f64,
    instances: Vec<Instance>,
    pending: Vec<PendingPrewarm>,
    decision: PoolDecision,
    /// End of the current decision interval (retained instances are looked at again then).
    tick_end: f64,
    pub whole: WindowTally,
    pub second_half: WindowTally,
}

impl FunctionSim {
    /// A function with no instances. Times are seconds from the trace start.
    pub fn new(load_s: f64, duration_s: f64, memory_mb: f64, end_s: f64) -> Self {
        Self {
            load_s,
            duration_s,
            memory_mb,
            half_s: end_s / 2.0,
            end_s,
            instances: Vec::new(),
            pending: Vec::new(),
            decision: PoolDecision {
                pool_target: 0,
                keep_alive_s: 0.0,
                prewarm_s: None,
            },
            tick_end: 0.0,
            whole: WindowTally::default(),
            second_half: WindowTally::default(),
        }
    }

    /// Instances alive (loading, busy or idle).
    pub fn instances(&self) -> usize {
        self.instances.len()
    }

    /// Starts a decision interval `[now, until)`: settles the past under the old decision,
    /// then applies `decision` and tops the pool up to its target.
    pub fn begin_interval(&mut self, now: f64, until: f64, decision: PoolDecision) {
        // Events at `now` itself already run under the new decision.
        self.settle(now, false);
        self.decision = decision;
        self.tick_end = until;
        let target = decision.pool_target as usize;
        // Under a pre-warm window an instance is warm only from the pre-warm on after an
        // execution end: one started for the target and never used has no such end, and goes
        // as soon as the target no longer holds it.
        let unanchored_go = decision.prewarm_s.is_some();
        while self.instances.len() < target {
            let ready = now + self.load_s;
            self.instances.push(Instance {
                phase: Phase::Loading {
                    ready,
                    attached: false,
                },
                expires: if unanchored_go {
                    ready
                } else {
                    ready + decision.keep_alive_s
                },
                anchor: ready,
                for_target: true,
            });
        }
        // The keep-alive in force applies to every idle instance, counted from the end of
        // its last execution (an instance past its new window goes now, not in the past).
        for inst in &mut self.instances {
            if matches!(inst.phase, Phase::Idle { .. }) {
                inst.expires = if unanchored_go && inst.for_target {
                    now
                } else {
                    (inst.anchor + decision.keep_alive_s).max(now)
                };
            }
        }
    }

    /// One invocation arriving at `t` (arrivals must come in time order).
    pub fn arrive(&mut self, t: f64) {
        self.settle(t, true);
        self.pending.clear();
        let mut cold = false;
        let idle = self
            .instances
            .iter()
            .enumerate()
            .filter_map(|(i, inst)| match inst.phase {
                Phase::Idle { since } => Some((i, since)),
                _ => None,
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, since)) = idle {
            self.waste(since, t);
            self.instances[i].phase = Phase::Busy {
                until: t + self.duration_s,
            };
        } else {
            cold = true;
            let loading = self.instances.iter_mut().find(|inst| {
                matches!(
                    inst.phase,
                    Phase::Loading {
                        attached: false,
                        ..
                    }
                )
            });
            match loading {
                Some(inst) => {
                    if let Phase::Loading { attached, .. } = &mut inst.phase {
                        *attached = true;
                    }
                }
                None => self.instances.push(Instance {
                    phase: Phase::Loading {
                        ready: t + self.load_s,
                        attached: true,
                    },
                    expires: f64::INFINITY,
                    anchor: t,
                    for_target: false,
                }),
            }
        }
        for tally in self.windows_of(t) {
            tally.invocations += 1;
            tally.cold_starts += u64::from(cold);
        }
    }

    /// Ends the trace: settles to its end and clips idle time there.
    pub fn finish(&mut self) {
        self.settle(self.end_s, true);
        let end = self.end_s;
        let idle: Vec<f64> = self
            .instances
            .iter()
            .filter_map(|inst| match inst.phase {
                Phase::Idle { since } => Some(since),
                _ => None,
            })
            .collect();
        for since in idle {
            self.waste(since, end);
        }
        self.instances.clear();
        self.pending.clear();
    }

    fn windows_of(&mut self, t: f64) -> impl Iterator<Item = &mut WindowTally> {
        let in_second_half = t >= self.half_s;
        std::iter::once(&mut self.whole).chain(in_second_half.then_some(&mut self.second_half))
    }

    fn waste(&mut self, from: f64, to: f64) {
        let to = to.min(self.end_s);
        if to <= from {
            return;
        }
        self.whole.wasted_mb_s += (to - from) * self.memory_mb;
        let overlap = to - from.max(self.half_s);
        if overlap > 0.0 {
            self.second_half.wasted_mb_s += overlap * self.memory_mb;
        }
    }

    /// Runs every instance and pending pre-warm event before time `t` (and at `t` itself when
    /// `inclusive`).
    fn settle(&mut self, t: f64, inclusive: bool) {
        let due = |x: f64| x < t || (inclusive && x == t);
        loop {
            let next_instance = self
                .instances
                .iter()
                .enumerate()
                .map(|(i, inst)| (i, inst.next_event()))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            let next_pending = self
                .pending
                .iter()
                .enumerate()
                .map(|(i, p)| (i, p.0))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            match (next_instance, next_pending) {
                (Some((_, ti)), Some((j, tp))) if due(tp) && tp < ti => self.start_prewarm(j),
                (None, Some((j, tp))) if due(tp) => self.start_prewarm(j),
                (Some((i, ti)), _) if due(ti) => self.instance_event(i, ti),
                _ => return,
            }
        }
    }

    fn start_prewarm(&mut self, j: usize) {
        let (start, warm_until, released) = self.pending.swap_remove(j);
        self.instances.push(Instance {
            phase: Phase::Loading {
                ready: start + self.load_s,
                attached: false,
            },
            expires: warm_until,
            anchor: released,
            for_target: false,
        });
    }

    fn instance_event(&mut self, i: usize, at: f64) {
        let inst = self.instances[i];
        match inst.phase {
            Phase::Loading { attached: true, .. } => {
                self.instances[i].phase = Phase::Busy {
                    until: at + self.duration_s,
                };
            }
            Phase::Loading {
                attached: false, ..
            } => {
                self.instances[i].phase = Phase::Idle { since: at };
                if inst.expires <= at {
                    self.retire_or_keep(i, at);
                }
            }
            Phase::Busy { .. } => {
                let d = self.decision;
                match d.prewarm_s {
                    Some(delay) if d.keep_alive_s > delay + self.load_s => {
                        self.instances.swap_remove(i);
                        self.pending.push((at + delay, at + d.keep_alive_s, at));
                    }
                    _ => {
                        self.instances[i] = Instance {
                            phase: Phase::Idle { since: at },
                            expires: at + d.keep_alive_s,
                            anchor: at,
                            for_target: false,
                        };
                        if d.keep_alive_s <= 0.0 {
                            self.retire_or_keep(i, at);
                        }
                    }
                }
            }
            Phase::Idle { .. } => self.retire_or_keep(i, at),
        }
    }

    /// An idle instance whose keep-alive ran out: retired, unless the pool would fall below
    /// its target — then it is looked at again at the end of the decision interval.
    fn retire_or_keep(&mut self, i: usize, at: f64) {
        if self.instances.len() <= self.decision.pool_target as usize && self.tick_end > at {
            self.instances[i].expires = self.tick_end;
            return;
        }
        if let Phase::Idle { since } = self.instances[i].phase {
            self.waste(since, at);
        }
        self.instances.swap_remove(i);
    }
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
