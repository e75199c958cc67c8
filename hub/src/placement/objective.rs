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

/// `k_fh` and `k_f0` for the solvers, with every per-host and per-function constant computed
/// once (the same arithmetic as [`warm_terms`] and [`cold_cost`]).
pub struct Pricing<'a> {
    inputs: &'a Inputs,
    weights: super::inputs::Weights,
    /// Per host: 1/capacity (∞ without capacity), price per byte·s, tier, RTT.
    inverse_capacity: Vec<f64>,
    price_per_byte: Vec<f64>,
    tier: Vec<i32>,
    rtt: Vec<f64>,
    /// Per function: pool bytes, cold cost.
    bytes: Vec<f64>,
    cold: Vec<f64>,
}

impl<'a> Pricing<'a> {
    pub fn new(inputs: &'a Inputs) -> Self {
        let hosts = &inputs.hosts;
        Self {
            inputs,
            weights: inputs.weights(),
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
            tier: hosts.iter().map(|h| h.tier).collect(),
            rtt: hosts.iter().map(|h| h.rtt_s).collect(),
            bytes: inputs.functions.iter().map(Function::pool_bytes).collect(),
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

    /// `k_fh`.
    pub fn warm(&self, f: usize, h: usize) -> f64 {
        let w = &self.weights;
        let declared = &self.inputs.declared_latency_s;
        let mut waiting = 0.0;
        for &(origin, rate) in &self.inputs.functions[f].demand {
            if origin != h {
                let d = declared
                    .get(self.tier[origin], self.tier[h])
                    .unwrap_or(self.rtt[origin] + self.rtt[h]);
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
}
