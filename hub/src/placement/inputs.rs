//! What a plan is made from, all measured or declared: each host's tier, pool memory (sysinfo
//! or declared by the agent), current load and QUIC round-trip time to the hub; each
//! function's demand forecast per origin agent, execution time, memory and cold-start latency
//! (eBPF), as the agents reported them; the configured weights, prices and declared latencies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use synapse_proto::link::v1::Tier;

/// A host that can keep warm pools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub agent: String,
    /// `Tier` as its protobuf number.
    pub tier: i32,
    /// Where the agent's gateway accepts forwarded invocations.
    pub gateway: String,
    /// Memory it can give to warm pools, bytes.
    pub pool_memory_bytes: u64,
    /// Host CPU busy fraction, 0..1.
    pub cpu_load: f64,
    /// Round trip between the hub and this host, seconds.
    pub rtt_s: f64,
}

/// One function's measured demand and footprint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Function {
    pub name: String,
    /// Forecast invocations per second by the agent where they arrive (its index in
    /// [`Inputs::hosts`]); origins that are not hosts any more are dropped.
    pub demand: Vec<(usize, f64)>,
    /// Mean execution time, seconds.
    pub execution_s: f64,
    /// Memory of one instance, bytes.
    pub memory_bytes: u64,
    /// Mean cold-start latency, seconds; 0 when not measured.
    pub cold_start_s: f64,
    /// The hosts that run it (indices into [`Inputs::hosts`], ascending), when not every
    /// host does: a host can keep warm only the functions deployed on it.
    pub only_on: Option<Vec<usize>>,
}

impl Function {
    /// Whether host `h` runs this function.
    #[inline]
    pub fn runs_on(&self, h: usize) -> bool {
        self.only_on
            .as_ref()
            .is_none_or(|hosts| hosts.binary_search(&h).is_ok())
    }

    /// Invocations per second over every origin.
    pub fn total_demand(&self) -> f64 {
        self.demand.iter().map(|(_, rate)| rate).sum()
    }

    /// Instances the fleet keeps warm for the whole demand: by Little's law the mean number
    /// of invocations in flight, and at least one (a warm pool of none is no pool).
    pub fn instances(&self) -> f64 {
        (self.total_demand() * self.execution_s).max(1.0)
    }

    /// Pool memory of the whole demand, bytes.
    pub fn pool_bytes(&self) -> f64 {
        self.instances() * self.memory_bytes as f64
    }
}

/// The objective's weights (`[placement.cost_weights]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub user_latency: f64,
    pub resource_utilization: f64,
    pub cost: f64,
}

/// Everything one plan is computed from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub hosts: Vec<Host>,
    pub functions: Vec<Function>,
    pub weights: Option<Weights>,
    /// Price of one GB·s of pool memory, per tier number.
    pub price_per_gb_s: BTreeMap<i32, f64>,
    /// Declared round trips between tiers, seconds, indexed by tier number (both orders
    /// filled); they replace the estimate from the hub's RTTs.
    pub declared_latency_s: DeclaredLatencies,
}

impl Inputs {
    pub fn weights(&self) -> Weights {
        self.weights.unwrap_or(Weights {
            user_latency: 1.0,
            resource_utilization: 1.0,
            cost: 1.0,
        })
    }

    /// Extra round trip of an invocation that arrives at `origin` and runs on `host`: none on
    /// the same host; the declared latency of their tiers when there is one; else the sum of
    /// both hosts' round trips to the hub — the path through the hub's vantage point, an upper
    /// bound of the direct one by the triangle inequality.
    pub fn latency_s(&self, origin: usize, host: usize) -> f64 {
        if origin == host {
            return 0.0;
        }
        let (a, b) = (&self.hosts[origin], &self.hosts[host]);
        self.declared_latency_s
            .get(a.tier, b.tier)
            .unwrap_or(a.rtt_s + b.rtt_s)
    }

    pub fn price(&self, host: usize) -> f64 {
        self.price_per_gb_s
            .get(&self.hosts[host].tier)
            .copied()
            .unwrap_or(0.0)
    }

    pub fn host_index(&self, agent: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.agent == agent)
    }
}

/// Declared round trips between tiers: a table by tier number, read on every pricing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeclaredLatencies([[Option<f64>; 4]; 4]);

impl DeclaredLatencies {
    /// Declares the round trip between tiers `a` and `b`, both ways.
    pub fn declare(&mut self, a: i32, b: i32, seconds: f64) {
        if let (Ok(a), Ok(b)) = (usize::try_from(a), usize::try_from(b))
            && a < 4
            && b < 4
        {
            self.0[a][b] = Some(seconds);
            self.0[b][a] = Some(seconds);
        }
    }

    pub fn get(&self, a: i32, b: i32) -> Option<f64> {
        let a = usize::try_from(a).ok().filter(|a| *a < 4)?;
        let b = usize::try_from(b).ok().filter(|b| *b < 4)?;
        self.0[a][b]
    }
}

/// A tier's name as operators write it in the configuration.
pub fn tier_number(name: &str) -> Option<i32> {
    match name {
        "edge" => Some(Tier::Edge as i32),
        "regional" => Some(Tier::Regional as i32),
        "cloud" => Some(Tier::Cloud as i32),
        _ => None,
    }
}

pub fn tier_name(tier: i32) -> &'static str {
    match Tier::try_from(tier) {
        Ok(Tier::Edge) => "edge",
        Ok(Tier::Regional) => "regional",
        Ok(Tier::Cloud) => "cloud",
        _ => "unspecified",
    }
}
