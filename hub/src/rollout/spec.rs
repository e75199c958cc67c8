//! What a rollout takes where: its target, the version, which hosts (the selector) and in
//! which waves (the steps). Hosts are put in one fixed wave order when the rollout starts,
//! round-robin over tiers, so every step updates a prefix of that order: "1/tier" is the
//! first host of each tier (the canaries), "10%" the first tenth, and a later step always
//! includes every host of an earlier one.

use std::{collections::BTreeMap, fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Why a rollout's specification is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error(
        "target {0:?} is not a function name (letters, digits, - _ .), \"model\" or \"settings\""
    )]
    Target(String),
    #[error("step {0:?} is neither N/tier (N ≥ 1) nor P% (0 < P ≤ 100)")]
    Step(String),
    #[error("a rollout needs at least one step, and its last step must be 100%")]
    LastStep,
    #[error("the version is empty, or not at most 128 visible characters without spaces")]
    Version,
    #[error("{0}")]
    Payload(String),
    #[error("no agent matches the selector")]
    NoHosts,
}

/// What a rollout changes on each host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Target {
    /// One function's spec, by function name.
    Function(String),
    /// The forecaster's model.
    Model,
    /// The agent's live settings.
    Settings,
}

impl FromStr for Target {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        match s {
            "model" => Ok(Self::Model),
            "settings" => Ok(Self::Settings),
            name if !name.is_empty()
                && name.len() <= 128
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) =>
            {
                Ok(Self::Function(name.to_owned()))
            }
            other => Err(SpecError::Target(other.to_owned())),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Function(name) => f.write_str(name),
            Self::Model => f.write_str("model"),
            Self::Settings => f.write_str("settings"),
        }
    }
}

/// One wave.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// The first `n` hosts of every tier.
    PerTier(u32),
    /// This share of the selected hosts, in percent, rounded up.
    Percent(f64),
}

impl FromStr for Step {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = || SpecError::Step(s.to_owned());
        let t = s.trim();
        if let Some(n) = t.strip_suffix("/tier") {
            let n: u32 = n.trim().parse().map_err(|_| bad())?;
            return if n >= 1 {
                Ok(Self::PerTier(n))
            } else {
                Err(bad())
            };
        }
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            return if p.is_finite() && p > 0.0 && p <= 100.0 {
                Ok(Self::Percent(p))
            } else {
                Err(bad())
            };
        }
        Err(bad())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PerTier(n) => write!(f, "{n}/tier"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Parses step texts; the last one must take the rollout to every selected host.
pub fn parse_steps(texts: &[String]) -> Result<Vec<Step>, SpecError> {
    let steps = texts
        .iter()
        .map(|t| t.parse())
        .collect::<Result<Vec<Step>, _>>()?;
    match steps.last() {
        Some(Step::Percent(p)) if *p >= 100.0 => Ok(steps),
        _ => Err(SpecError::LastStep),
    }
}

/// Which agents a rollout may update. Empty lists match everything; all given conditions
/// must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    /// Tier numbers (`synapse.link.v1.Tier`).
    pub tiers: Vec<i32>,
    pub labels: BTreeMap<String, String>,
    pub hosts: Vec<String>,
}

/// A host as the selector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub id: String,
    pub tier: i32,
    pub labels: BTreeMap<String, String>,
}

impl Selector {
    pub fn matches(&self, host: &Host) -> bool {
        (self.tiers.is_empty() || self.tiers.contains(&host.tier))
            && (self.hosts.is_empty() || self.hosts.contains(&host.id))
            && self
                .labels
                .iter()
                .all(|(k, v)| host.labels.get(k) == Some(v))
    }
}

/// The selected hosts in wave order: round-robin over tiers (ascending), hosts of a tier by
/// id, so the first round holds one host of every tier.
pub fn wave_order(selector: &Selector, hosts: &[Host]) -> Vec<(String, i32)> {
    let mut by_tier: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    for host in hosts.iter().filter(|h| selector.matches(h)) {
        by_tier.entry(host.tier).or_default().push(&host.id);
    }
    for ids in by_tier.values_mut() {
        ids.sort_unstable();
    }
    let rounds = by_tier.values().map(Vec::len).max().unwrap_or(0);
    let mut order = Vec::new();
    for round in 0..rounds {
        for (tier, ids) in &by_tier {
            if let Some(id) = ids.get(round) {
                order.push(((*id).to_owned(), *tier));
            }
        }
    }
    order
}

/// How many hosts of `order` are updated once step `index` is reached: the largest count
/// asked by any step up to it, so waves only grow.
pub fn updated_count(order: &[(String, i32)], steps: &[Step], index: usize) -> usize {
    let total = order.len();
    let count = |step: &Step| match step {
        Step::PerTier(n) => {
            let mut per_tier: BTreeMap<i32, usize> = BTreeMap::new();
            for (_, tier) in order {
                *per_tier.entry(*tier).or_default() += 1;
            }
            per_tier.values().map(|c| (*c).min(*n as usize)).sum()
        }
        Step::Percent(p) => ((p / 100.0) * total as f64).ceil() as usize,
    };
    steps
        .iter()
        .take(index + 1)
        .map(count)
        .max()
        .unwrap_or(0)
        .min(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, tier: i32) -> Host {
        Host {
            id: id.into(),
            tier,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn steps_parse_and_the_last_must_reach_everyone() {
        let texts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_steps(&texts(&["1/tier", "10%", "100%"])).unwrap(),
            vec![Step::PerTier(1), Step::Percent(10.0), Step::Percent(100.0)]
        );
        assert_eq!(
            parse_steps(&texts(&["1/tier", "50%"])),
            Err(SpecError::LastStep)
        );
        assert_eq!(
            parse_steps(&texts(&["0/tier", "100%"])),
            Err(SpecError::Step("0/tier".into()))
        );
        assert_eq!(
            parse_steps(&texts(&["NaN%"])),
            Err(SpecError::Step("NaN%".into()))
        );
        assert_eq!(parse_steps(&[]), Err(SpecError::LastStep));
    }

    #[test]
    fn targets_are_function_names_model_or_settings() {
        assert_eq!("model".parse(), Ok(Target::Model));
        assert_eq!("fn-a.v2".parse(), Ok(Target::Function("fn-a.v2".into())));
        assert!("a b".parse::<Target>().is_err());
        assert!("".parse::<Target>().is_err());
    }

    #[test]
    fn the_first_wave_holds_one_host_per_tier_and_waves_only_grow() {
        let hosts = [
            host("e2", 1),
            host("e1", 1),
            host("e3", 1),
            host("r1", 2),
            host("c1", 3),
            host("c2", 3),
        ];
        let order = wave_order(&Selector::default(), &hosts);
        let ids: Vec<&str> = order.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["e1", "r1", "c1", "e2", "c2", "e3"]);
        let steps = [
            Step::PerTier(1),
            Step::Percent(10.0),
            Step::Percent(50.0),
            Step::Percent(100.0),
        ];
        let counts: Vec<usize> = (0..4).map(|i| updated_count(&order, &steps, i)).collect();
        assert_eq!(
            counts,
            [3, 3, 3, 6],
            "10% (1 host) never shrinks the canary wave"
        );
    }

    #[test]
    fn the_selector_needs_every_condition() {
        let mut edge = host("e1", 1);
        edge.labels.insert("zone".into(), "a".into());
        let selector = Selector {
            tiers: vec![1],
            labels: [("zone".to_string(), "a".to_string())].into(),
            hosts: vec![],
        };
        assert!(selector.matches(&edge));
        assert!(!selector.matches(&host("e2", 1)), "label missing");
        assert!(!selector.matches(&host("r1", 2)), "other tier");
    }
}
