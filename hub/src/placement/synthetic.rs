//! Synthetic fleets for the benchmark and the solver's gap tests: deterministic from a seed
//! (splitmix64), shaped like a real fleet — many small edge hosts, fewer regional ones, a few
//! large cloud ones; demand arriving mostly at the edge, spread over four orders of magnitude.

use std::collections::BTreeMap;

use super::inputs::{Function, Host, Inputs, Weights};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-uniform in `[lo, hi)`.
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.uniform(lo.ln(), hi.ln()).exp()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const GB: f64 = 1e9;

/// A fleet of `hosts` hosts and `functions` functions.
pub fn fleet(functions: usize, hosts: usize, seed: u64) -> Inputs {
    let mut rng = Rng(seed);
    let mut inputs = Inputs {
        weights: Some(Weights {
            user_latency: 1.0,
            resource_utilization: 1.0,
            cost: 1.0,
        }),
        price_per_gb_s: BTreeMap::from([(1, 0.05), (2, 0.02), (3, 0.01)]),
        ..Inputs::default()
    };
    for h in 0..hosts.max(3) {
        // At least one host of each tier.
        let tier = match h {
            0 => 1,
            1 => 2,
            2 => 3,
            _ => match rng.below(10) {
                0..6 => 1,
                6..9 => 2,
                _ => 3,
            },
        };
        let (memory, rtt) = match tier {
            1 => (rng.uniform(1.0, 4.0) * GB, rng.uniform(0.02, 0.04)),
            2 => (rng.uniform(16.0, 32.0) * GB, rng.uniform(0.008, 0.02)),
            _ => (rng.uniform(128.0, 256.0) * GB, rng.uniform(0.001, 0.005)),
        };
        inputs.hosts.push(Host {
            agent: format!("host-{h}"),
            tier,
            gateway: format!("127.0.0.1:{}", 20_000 + h),
            pool_memory_bytes: memory as u64,
            cpu_load: rng.uniform(0.0, 0.8),
            rtt_s: rtt,
        });
    }
    let edge: Vec<usize> = (0..inputs.hosts.len())
        .filter(|&h| inputs.hosts[h].tier == 1)
        .collect();
    let regional: Vec<usize> = (0..inputs.hosts.len())
        .filter(|&h| inputs.hosts[h].tier == 2)
        .collect();
    for i in 0..functions {
        let origins = 1 + rng.below(3);
        let demand = (0..origins)
            .map(|_| {
                let origin = if rng.below(5) == 0 && !regional.is_empty() {
                    regional[rng.below(regional.len())]
                } else {
                    edge[rng.below(edge.len())]
                };
                (origin, rng.log_uniform(0.001, 100.0))
            })
            .collect();
        let cold_start_s = if rng.below(5) == 0 {
            0.0
        } else {
            rng.log_uniform(0.05, 5.0)
        };
        inputs.functions.push(Function {
            name: format!("fn-{i}"),
            demand,
            execution_s: rng.log_uniform(0.002, 2.0),
            memory_bytes: (rng.log_uniform(64.0, 2048.0) * 1e6) as u64,
            cold_start_s,
            only_on: None,
        });
    }
    inputs
}
