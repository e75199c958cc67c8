//! The objective a plan minimises, per second of fleet operation.
//!
//! Function `f` has demand `λ_fo` (invocations/s) arriving at origin host `o`, total `Λ_f`,
//! execution time `e_f`, instance memory `m_f` and cold-start latency `c_f`. Keeping it warm
//! for all its demand takes `N_f = max(1, Λ_f·e_f)` instances (Little's law), i.e. pool memory
//! `R_f = N_f·m_f`. The plan chooses shares `x_fh ≥ 0` of its demand served warm on host `h`
//! and `x_f0` served cold where it arrives, with `Σ_h x_fh + x_f0 = 1`, subject to each
//! host's pool memory `C_h`: `Σ_f x_fh·R_f ≤ C_h`. It minimises `Σ_f Σ_h x_fh·k_fh + x_f0·k_f0`
//! where, with the configured weights `w`:
//!
//! - `k_fh = w.user_latency · Σ_o λ_fo·d(o,h)` — seconds users wait per second for the extra
//!   round trip `d(o,h)` of a forwarded invocation (0 on the origin itself)
//! - `      + w.resource_utilization · R_f / C_h` — the share of the host's pool memory taken
//!   (crowding a small host costs more than a large one)
//! - `      + w.cost · R_f/10⁹ · price(tier_h)` — GB·s per second times the tier's price;
//! - `k_f0 = w.user_latency · Λ_f·c_f` — every invocation waits for a cold start. Without a
//!   measured cold start this option costs [`UNMEASURED_COLD`] per second, so that a function
//!   is left cold only when no host has room for it.
//!
//! Execution time itself is the same on every tier and drops out. The problem is a
//! transportation problem (functions supply `R_f` bytes, hosts absorb up to `C_h`, the cold
//! option absorbs anything); [`super::exact`] solves it exactly, [`super::solver`] fast.

use super::inputs::{Function, Inputs};

/// Cost per second of leaving a function without a measured cold-start latency cold: far
/// above any warm placement, so it happens only when capacity runs out.
pub const UNMEASURED_COLD: f64 = 1e6;

/// The weighted terms of one function served entirely on one host (or cold).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Terms {
    pub user_latency: f64,
    pub resource_utilization: f64,
    pub cost: f64,
}

impl Terms {
    pub fn total(&self) -> f64 {
        self.user_latency + self.resource_utilization + self.cost
    }
}

/// `k_fh` split in its terms.
pub fn warm_terms(inputs: &Inputs, f: &Function, host: usize) -> Terms {
    let w = inputs.weights();
    let waiting: f64 = f
        .demand
        .iter()
        .map(|&(origin, rate)| rate * inputs.latency_s(origin, host))
        .sum();
    let bytes = f.pool_bytes();
    let capacity = inputs.hosts[host].pool_memory_bytes as f64;
    let crowding = if capacity > 0.0 {
        bytes / capacity
    } else {
        f64::INFINITY
    };
    Terms {
        user_latency: w.user_latency * waiting,
        resource_utilization: w.resource_utilization * crowding,
        cost: w.cost * bytes / 1e9 * inputs.price(host),
    }
}

/// `k_fh`.
pub fn warm_cost(inputs: &Inputs, f: &Function, host: usize) -> f64 {
    if !f.runs_on(host) {
        return f64::INFINITY;
    }
    warm_terms(inputs, f, host).total()
}

/// `k_f0`.
pub fn cold_cost(inputs: &Inputs, f: &Function) -> f64 {
    if f.cold_start_s > 0.0 {
        inputs.weights().user_latency * f.total_demand() * f.cold_start_s
    } else {
        UNMEASURED_COLD
    }
}

/// Warm shares of one function: `(host index, share)`; the rest of 1 is served cold.
pub type Shares = Vec<(usize, f64)>;

/// One function's part of the objective under `shares`.
pub fn function_objective(inputs: &Inputs, f: &Function, shares: &Shares) -> f64 {
    let warm: f64 = shares.iter().map(|&(_, x)| x).sum();
    let mut total: f64 = shares
        .iter()
        .map(|&(h, x)| x * warm_cost(inputs, f, h))
        .sum();
    let cold = (1.0 - warm).max(0.0);
    if cold > 1e-9 {
        total += cold * cold_cost(inputs, f);
    }
    total
}

/// The whole objective.
pub fn objective(inputs: &Inputs, plan: &[Shares]) -> f64 {
    inputs
        .functions
        .iter()
        .zip(plan)
        .map(|(f, s)| function_objective(inputs, f, s))
        .sum()
}

/// Pool memory each host holds under `plan`, bytes.
pub fn host_loads(inputs: &Inputs, plan: &[Shares]) -> Vec<f64> {
    let mut loads = vec![0.0; inputs.hosts.len()];
    for (f, shares) in inputs.functions.iter().zip(plan) {
        let bytes = f.pool_bytes();
        for &(h, x) in shares {
            loads[h] += x * bytes;
        }
    }
    loads
}

/// Tier numbers the declared-latency table covers; any other tier indexes [`NO_TIER`].
const TIERS: usize = 4;
const NO_TIER: usize = TIERS;

/// `k_fh` and `k_f0` for the solvers, with every per-host and per-function constant computed
/// once (the same arithmetic as [`warm_terms`] and [`cold_cost`], so the same values to the
/// last bit): the solvers price millions of (function, host) pairs per plan.
pub struct Pricing<'a> {
    inputs: &'a Inputs,
    weights: super::inputs::Weights,
    /// Declared round trip between two tier indices, NaN where none is declared.
    declared: [[f64; TIERS + 1]; TIERS + 1],
    /// Per host: 1/capacity (∞ without capacity), price per byte·s, tier index, RTT.
    inverse_capacity: Vec<f64>,
    price_per_byte: Vec<f64>,
    tier: Vec<usize>,
    rtt: Vec<f64>,
    /// Per function: pool bytes, cold cost.
    bytes: Vec<f64>,
    cold: Vec<f64>,
    /// Per host: the memory terms of `k_fh` per byte of pool, `w.resource_utilization / C_h
    /// + w.cost · price_h` (∞ without capacity).
    memory_unit: Vec<f64>,
    /// Per function and tier of the host that serves it: the latency term of `k_fh` per
    /// byte of pool, as `fixed + per_rtt · rtt_h` (see [`Pricing::unit`]).
    latency_unit: Vec<LatencyTable>,
}

/// Per tier of the serving host: `(fixed, per_rtt)` of a function's latency term per byte.
pub type LatencyTable = [(f64, f64); TIERS + 1];

impl<'a> Pricing<'a> {
    pub fn new(inputs: &'a Inputs) -> Self {
        let hosts = &inputs.hosts;
        let index = |tier: i32| {
            usize::try_from(tier)
                .ok()
                .filter(|t| *t < TIERS)
                .unwrap_or(NO_TIER)
        };
        let mut declared = [[f64::NAN; TIERS + 1]; TIERS + 1];
        for (a, row) in declared.iter_mut().enumerate().take(TIERS) {
            for (b, d) in row.iter_mut().enumerate().take(TIERS) {
                if let Some(seconds) = inputs.declared_latency_s.get(a as i32, b as i32) {
                    *d = seconds;
                }
            }
        }
        let weights = inputs.weights();
        let tier: Vec<usize> = hosts.iter().map(|h| index(h.tier)).collect();
        let rtt: Vec<f64> = hosts.iter().map(|h| h.rtt_s).collect();
        let bytes: Vec<f64> = inputs.functions.iter().map(Function::pool_bytes).collect();
        let memory_unit = hosts
            .iter()
            .enumerate()
            .map(|(h, host)| {
                if host.pool_memory_bytes > 0 {
                    weights.resource_utilization / host.pool_memory_bytes as f64
                        + weights.cost * inputs.price(h) / 1e9
                } else {
                    f64::INFINITY
                }
            })
            .collect();
        // Σ_o λ_o·d(o,h) splits by h's tier into what the declared latencies and the
        // origins' own RTTs contribute, and the demand that also crosses h's RTT.
        let latency_unit = inputs
            .functions
            .iter()
            .zip(&bytes)
            .map(|(f, &b)| {
                let scale = if b > 0.0 {
                    weights.user_latency / b
                } else {
                    0.0
                };
                let mut table = [(0.0, 0.0); TIERS + 1];
                for (to, (fixed, per_rtt)) in table.iter_mut().enumerate() {
                    for &(origin, rate) in &f.demand {
                        let d = declared[tier[origin]][to];
                        if d.is_nan() {
                            *fixed += rate * rtt[origin];
                            *per_rtt += rate;
                        } else {
                            *fixed += rate * d;
                        }
                    }
                    *fixed *= scale;
                    *per_rtt *= scale;
                }
                table
            })
            .collect();
        Self {
            inputs,
            weights,
            declared,
            memory_unit,
            latency_unit,
            inverse_capacity: hosts
                .iter()
                .map(|h| {
                    if h.pool_memory_bytes > 0 {
                        1.0 / h.pool_memory_bytes as f64
                    } else {
                        f64::INFINITY
                    }
                })
                .collect(),
            price_per_byte: (0..hosts.len()).map(|h| inputs.price(h) / 1e9).collect(),
            tier,
            rtt,
            bytes,
            cold: inputs
                .functions
                .iter()
                .map(|f| cold_cost(inputs, f))
                .collect(),
        }
    }

    pub fn bytes(&self, f: usize) -> f64 {
        self.bytes[f]
    }

    /// Whether host `h` runs `f` (a host that does not costs ∞).
    #[inline]
    pub fn runs(&self, f: usize, h: usize) -> bool {
        self.inputs.functions[f].runs_on(h)
    }

    /// `k_fh`.
    #[inline]
    pub fn warm(&self, f: usize, h: usize) -> f64 {
        if !self.runs(f, h) {
            return f64::INFINITY;
        }
        let w = &self.weights;
        let to = self.tier[h];
        let mut waiting = 0.0;
        for &(origin, rate) in &self.inputs.functions[f].demand {
            if origin != h {
                let declared = self.declared[self.tier[origin]][to];
                let d = if declared.is_nan() {
                    self.rtt[origin] + self.rtt[h]
                } else {
                    declared
                };
                waiting += rate * d;
            }
        }
        let bytes = self.bytes[f];
        let crowding = if self.inverse_capacity[h].is_finite() {
            bytes * self.inverse_capacity[h]
        } else {
            f64::INFINITY
        };
        w.user_latency * waiting
            + w.resource_utilization * crowding
            + w.cost * bytes * self.price_per_byte[h]
    }

    /// `k_f0`.
    pub fn cold(&self, f: usize) -> f64 {
        self.cold[f]
    }

    /// `k_fh` per byte of `f`'s pool, from the per-tier tables: the same value as
    /// `warm(f, h) / bytes(f)` up to rounding, at a fraction of the price — the solver's
    /// exchanges compare millions of these. Without pool bytes, the latency term is left out.
    #[inline]
    pub fn unit(&self, f: usize, h: usize) -> f64 {
        if !self.runs(f, h) {
            return f64::INFINITY;
        }
        let to = self.tier[h];
        let mut unit = Self::unit_away(&self.latency_unit[f], to, self.rtt[h], self.memory_unit[h]);
        for &(origin, rate) in &self.inputs.functions[f].demand {
            if origin == h {
                // No round trip for what arrives on the host itself.
                let declared = self.declared[to][to];
                let d = if declared.is_nan() {
                    2.0 * self.rtt[h]
                } else {
                    declared
                };
                let b = self.bytes[f];
                if b > 0.0 {
                    unit -= self.weights.user_latency * rate * d / b;
                }
            }
        }
        unit
    }

    /// The memory terms of `k_fh` per byte of pool: the least any function costs on `h`.
    pub fn memory_unit(&self, h: usize) -> f64 {
        self.memory_unit[h]
    }

    /// [`Pricing::unit`] of `f` on a host with tier index `tier`, `rtt` and `memory_unit`
    /// that is not one of `f`'s origins, from `f`'s latency table.
    #[inline]
    pub fn unit_away(table: &LatencyTable, tier: usize, rtt: f64, memory_unit: f64) -> f64 {
        let (fixed, per_rtt) = table[tier];
        fixed + per_rtt * rtt + memory_unit
    }

    pub fn latency_table(&self, f: usize) -> &LatencyTable {
        &self.latency_unit[f]
    }

    /// Host `h`'s tier index and RTT, as [`Pricing::unit_away`] takes them.
    pub fn site(&self, h: usize) -> (usize, f64) {
        (self.tier[h], self.rtt[h])
    }

    /// Where `f`'s demand arrives: (origin host, invocations/s).
    pub fn origins(&self, f: usize) -> &[(usize, f64)] {
        &self.inputs.functions[f].demand
    }

    /// `k_f0` per byte of `f`'s pool.
    pub fn cold_unit(&self, f: usize) -> f64 {
        self.cold[f] / self.bytes[f]
    }
}
