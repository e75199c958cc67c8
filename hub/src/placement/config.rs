//! `[placement]` of the hub's configuration: how often and how freely the fleet is
//! re-planned, the objective's weights, prices per tier and declared latencies. Every default
//! is stated here and in `hub.example.toml`.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use super::{
    Rules,
    inputs::{DeclaredLatencies, Weights},
};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PlacementConfig {
    /// Settle placement at all. With `false` the hub makes no plan: every agent keeps its own
    /// functions warm and forwards nothing. Default true.
    pub enabled: bool,
    /// Time between two plans (a lost host re-plans at once). Default `600s`.
    #[serde(with = "humantime_serde")]
    pub optimization_interval: Duration,
    /// A function moves only when that lowers its part of the objective by more than this
    /// fraction of it. Default 0.05.
    pub improvement_margin: f64,
    /// At most this share of all functions moves per plan. Default 0.1.
    pub max_moved_share: f64,
    /// Plans kept in the store for `synapsectl placement history`. Default 100.
    pub history: usize,
    pub cost_weights: CostWeights,
    /// Price of one GB·s of warm pool memory per tier, in the unit of the `cost` weight.
    /// Default edge 0.05, regional 0.02, cloud 0.01 (edge hosts are scarce and dear).
    pub cost_per_gb_s: TierPrices,
    /// Round trips between tiers that replace the estimate from the hub's QUIC RTTs (the sum
    /// of both hosts' RTTs to the hub). Default none.
    pub declared_latency: Vec<DeclaredLatency>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CostWeights {
    /// Weight of the seconds users wait per second (forwarding round trips, cold starts).
    /// Default 1.0.
    pub user_latency: f64,
    /// Weight of the share of a host's pool memory a function takes. Default 1.0.
    pub resource_utilization: f64,
    /// Weight of the price of pool memory (GB·s per second × tier price). Default 1.0.
    pub cost: f64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TierPrices {
    pub edge: f64,
    pub regional: f64,
    pub cloud: f64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum TierName {
    Edge,
    Regional,
    Cloud,
}

impl TierName {
    pub fn number(self) -> i32 {
        use synapse_proto::link::v1::Tier;
        match self {
            Self::Edge => Tier::Edge as i32,
            Self::Regional => Tier::Regional as i32,
            Self::Cloud => Tier::Cloud as i32,
        }
    }
}

/// `{ tiers = ["edge", "cloud"], rtt = "80ms" }`: both directions.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeclaredLatency {
    pub tiers: [TierName; 2],
    #[serde(with = "humantime_serde")]
    pub rtt: Duration,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            optimization_interval: Duration::from_secs(600),
            improvement_margin: 0.05,
            max_moved_share: 0.1,
            history: 100,
            cost_weights: CostWeights::default(),
            cost_per_gb_s: TierPrices::default(),
            declared_latency: Vec::new(),
        }
    }
}

impl Default for CostWeights {
    fn default() -> Self {
        Self {
            user_latency: 1.0,
            resource_utilization: 1.0,
            cost: 1.0,
        }
    }
}

impl Default for TierPrices {
    fn default() -> Self {
        Self {
            edge: 0.05,
            regional: 0.02,
            cloud: 0.01,
        }
    }
}

impl PlacementConfig {
    /// What serde cannot check: numbers in range.
    pub fn check(&self) -> Result<(), String> {
        let w = &self.cost_weights;
        let p = &self.cost_per_gb_s;
        for (name, value) in [
            ("cost_weights.user_latency", w.user_latency),
            ("cost_weights.resource_utilization", w.resource_utilization),
            ("cost_weights.cost", w.cost),
            ("cost_per_gb_s.edge", p.edge),
            ("cost_per_gb_s.regional", p.regional),
            ("cost_per_gb_s.cloud", p.cloud),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(format!(
                    "placement.{name} must be a finite number ≥ 0, not {value}"
                ));
            }
        }
        for (name, value) in [
            ("improvement_margin", self.improvement_margin),
            ("max_moved_share", self.max_moved_share),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!(
                    "placement.{name} must be between 0 and 1, not {value}"
                ));
            }
        }
        if self.optimization_interval.is_zero() {
            return Err("placement.optimization_interval must be longer than 0".into());
        }
        Ok(())
    }

    pub fn rules(&self) -> Rules {
        Rules {
            improvement_margin: self.improvement_margin,
            max_moved_share: self.max_moved_share,
        }
    }

    pub fn weights(&self) -> Weights {
        Weights {
            user_latency: self.cost_weights.user_latency,
            resource_utilization: self.cost_weights.resource_utilization,
            cost: self.cost_weights.cost,
        }
    }

    pub fn prices(&self) -> BTreeMap<i32, f64> {
        let p = &self.cost_per_gb_s;
        [
            (TierName::Edge, p.edge),
            (TierName::Regional, p.regional),
            (TierName::Cloud, p.cloud),
        ]
        .into_iter()
        .map(|(t, price)| (t.number(), price))
        .collect()
    }

    pub fn declared_latencies(&self) -> DeclaredLatencies {
        let mut out = DeclaredLatencies::default();
        for d in &self.declared_latency {
            out.declare(
                d.tiers[0].number(),
                d.tiers[1].number(),
                d.rtt.as_secs_f64(),
            );
        }
        out
    }
}
