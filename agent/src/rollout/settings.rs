//! Agent settings that change live through a `settings` rollout: the pool bounds of the
//! agent's functions, and nothing else (they change only how many instances are kept, never
//! what runs or where data goes, so a bad value costs capacity, not correctness).
//!
//! ```toml
//! [pools.fn-a]
//! min_warm = 2          # ready instances kept at least
//! max_instances = 8     # instances at most
//! keep_alive = "5m"     # idle keep-alive under the fixed policy
//! ```
//!
//! A function's running spec is its base (configured, or the version a rollout applied) with
//! these bounds on top; a new settings version is checked for every function it touches
//! before any pool changes, then each changed function's pool is replaced as a function
//! version would be (warmed beside the running one, then swapped).

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use crate::config::{FunctionSpec, check_function};

/// One function's live pool bounds; unset fields keep the base spec's value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    pub min_warm: Option<u32>,
    pub max_instances: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub keep_alive: Option<Duration>,
}

/// The live settings, by function.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub pools: BTreeMap<String, PoolSettings>,
}

impl Settings {
    /// Parses and checks settings against the functions of this agent (`bases`).
    pub fn parse(payload: &str, bases: &BTreeMap<String, FunctionSpec>) -> Result<Self, String> {
        let settings: Settings =
            toml::from_str(payload).map_err(|e| format!("agent settings: {}", e.message()))?;
        for (name, pool) in &settings.pools {
            let base = bases
                .get(name)
                .ok_or_else(|| format!("settings name function {name}, not configured here"))?;
            check_function(&effective(base, Some(pool)))?;
        }
        Ok(settings)
    }
}

/// `base` with `pool`'s bounds on top.
pub fn effective(base: &FunctionSpec, pool: Option<&PoolSettings>) -> FunctionSpec {
    let mut spec = base.clone();
    if let Some(pool) = pool {
        if let Some(v) = pool.min_warm {
            spec.min_warm = v;
        }
        if let Some(v) = pool.max_instances {
            spec.max_instances = v;
        }
        if let Some(v) = pool.keep_alive {
            spec.keep_alive = v;
        }
    }
    spec
}

/// Whether two specs differ in what settings change.
pub fn bounds_differ(a: &FunctionSpec, b: &FunctionSpec) -> bool {
    (a.min_warm, a.max_instances, a.keep_alive) != (b.min_warm, b.max_instances, b.keep_alive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases() -> BTreeMap<String, FunctionSpec> {
        let text = "[[functions]]\nname = \"fn-a\"\ncommand = \"/bin/true\"\nmax_instances = 4\n";
        crate::config::AgentConfig::parse(text, "a.toml")
            .unwrap()
            .functions
            .into_iter()
            .map(|f| (f.name.clone(), f))
            .collect()
    }

    #[test]
    fn settings_put_pool_bounds_on_the_base_spec() {
        let b = bases();
        let s = Settings::parse("[pools.fn-a]\nmin_warm = 2\nkeep_alive = \"5m\"\n", &b).unwrap();
        let spec = effective(&b["fn-a"], s.pools.get("fn-a"));
        assert_eq!(spec.min_warm, 2);
        assert_eq!(spec.keep_alive, Duration::from_secs(300));
        assert_eq!(spec.max_instances, 4, "unset fields keep the base value");
        assert!(bounds_differ(&spec, &b["fn-a"]));
        assert!(!bounds_differ(&effective(&b["fn-a"], None), &b["fn-a"]));
    }

    #[test]
    fn bad_settings_say_why() {
        let b = bases();
        let why = |p: &str| Settings::parse(p, &b).unwrap_err();
        assert!(why("[pools.fn-b]\nmin_warm = 1\n").contains("not configured"));
        assert!(why("[pools.fn-a]\nmin_warm = 9\n").contains("max_instances"));
        assert!(why("[pools.fn-a]\nmin_wram = 1\n").contains("unknown field"));
        assert!(why("[log]\nlevel = \"debug\"\n").contains("unknown field"));
    }
}
