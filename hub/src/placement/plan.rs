//! Versioned plans, persisted in sled: tree `placement_plans`, version (big-endian u64) →
//! JSON [`Plan`]. The newest is the plan in force, also after a hub restart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::inputs::Host;

/// A plan as agents and operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u64,
    pub created_unix_ms: i64,
    /// Why it was made: `interval`, `host lost`, `host joined` or `first`.
    pub reason: String,
    pub objective: f64,
    pub moved: u32,
    pub held_back: u32,
    /// Moves beyond the move cap that capacity forced (hosts that no longer held what they
    /// kept); 0 when the cap held, and in plans stored before it was counted.
    #[serde(default)]
    pub over_cap: u32,
    pub solve_ms: f64,
    /// The hosts it was made for, by agent id.
    pub hosts: BTreeMap<String, Host>,
    pub functions: BTreeMap<String, Placed>,
}

/// Where one function is kept warm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    /// Agent id and share of the function's fleet-wide demand; empty: warm nowhere.
    pub hosts: Vec<(String, f64)>,
    pub objective: f64,
    pub moved: bool,
    /// Moved because a host it was on no longer had room for it (counted against the cap).
    #[serde(default)]
    pub for_capacity: bool,
    /// The fleet-wide demand the plan sized it for, invocations/s (0 in plans stored before
    /// it was kept).
    #[serde(default)]
    pub demand_per_s: f64,
    /// The warm instances the plan counts on fleet-wide (Little's law, at least one; 0 in
    /// plans stored before it was kept).
    #[serde(default)]
    pub instances: f64,
}

impl Plan {
    /// Agents and weights that keep `function` warm, other than `except`.
    pub fn warm_elsewhere(&self, function: &str, except: &str) -> Vec<(String, f64)> {
        let Some(placed) = self.functions.get(function) else {
            return Vec::new();
        };
        let others: Vec<(String, f64)> = placed
            .hosts
            .iter()
            .filter(|(agent, share)| agent != except && *share > 0.0)
            .cloned()
            .collect();
        let sum: f64 = others.iter().map(|o| o.1).sum();
        others
            .into_iter()
            .map(|(agent, share)| (agent, share / sum))
            .collect()
    }

    /// The plan's shares in `inputs`' indices (hosts `inputs` lacks are left out).
    pub fn shares_in(&self, inputs: &super::Inputs) -> Vec<super::objective::Shares> {
        inputs
            .functions
            .iter()
            .map(|f| {
                self.functions.get(&f.name).map_or_else(Vec::new, |placed| {
                    placed
                        .hosts
                        .iter()
                        .filter_map(|(agent, x)| inputs.host_index(agent).map(|h| (h, *x)))
                        .collect()
                })
            })
            .collect()
    }

    /// What the plan assumed of `agent`'s part of `function`: (invocations/s, warm
    /// instances), its share of the fleet-wide demand and instances, instances rounded up
    /// (at least one on a host that keeps it warm); zeros without a share or sizing.
    pub fn sizing(&self, function: &str, agent: &str) -> (f64, u32) {
        let share = self.share(function, agent);
        let Some(placed) = self.functions.get(function).filter(|_| share > 0.0) else {
            return (0.0, 0);
        };
        if placed.instances <= 0.0 {
            return (share * placed.demand_per_s, 0);
        }
        // A share that is a whole number of instances to rounding stays that number.
        let instances = (share * placed.instances - 1e-9).ceil().max(1.0);
        (
            share * placed.demand_per_s,
            instances.min(f64::from(u32::MAX)) as u32,
        )
    }

    /// `agent`'s share of `function`.
    pub fn share(&self, function: &str, agent: &str) -> f64 {
        self.functions
            .get(function)
            .and_then(|p| p.hosts.iter().find(|(a, _)| a == agent))
            .map_or(0.0, |(_, share)| *share)
    }
}

/// Why the plan store failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanStoreError {
    #[error("placement store: {0}")]
    Store(#[from] sled::Error),
    #[error("stored placement plan {version} is corrupt: {source}")]
    Corrupt {
        version: u64,
        source: serde_json::Error,
    },
}

/// The plans kept in sled.
#[derive(Clone)]
pub struct PlanStore {
    tree: sled::Tree,
}

impl PlanStore {
    pub fn open(db: &sled::Db) -> Result<Self, PlanStoreError> {
        Ok(Self {
            tree: db.open_tree("placement_plans")?,
        })
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<Plan, PlanStoreError> {
        let version = key.try_into().map(u64::from_be_bytes).unwrap_or_default();
        serde_json::from_slice(value).map_err(|source| PlanStoreError::Corrupt { version, source })
    }

    /// Stores `plan` and flushes, so that agents never get a plan the hub could lose.
    pub fn put(&self, plan: &Plan) -> Result<(), PlanStoreError> {
        let value = serde_json::to_vec(plan).expect("plans always serialise");
        self.tree.insert(plan.version.to_be_bytes(), value)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Drops all but the newest `keep` plans.
    pub fn prune(&self, keep: usize) -> Result<(), PlanStoreError> {
        let old: Vec<sled::IVec> = self
            .tree
            .iter()
            .keys()
            .rev()
            .skip(keep.max(1))
            .collect::<Result<_, _>>()?;
        for key in old {
            self.tree.remove(key)?;
        }
        Ok(())
    }

    pub fn latest(&self) -> Result<Option<Plan>, PlanStoreError> {
        self.tree
            .last()?
            .map(|(k, v)| Self::decode(&k, &v))
            .transpose()
    }

    /// Up to `limit` plans, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<Plan>, PlanStoreError> {
        self.tree
            .iter()
            .rev()
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Self::decode(&k, &v)
            })
            .collect()
    }
}
