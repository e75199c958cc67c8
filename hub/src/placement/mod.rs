//! Cross-tier placement: the hub settles which hosts keep each function warm, and with what
//! share of its demand.
//!
//! - [`config`]: `[placement]` of the hub's configuration;
//! - [`inputs`]: what a plan is made from (agents' demand reports, hosts, configuration);
//! - [`objective`]: the cost a plan minimises, documented there;
//! - [`solver`]: the fast regret-ordered greedy, improved by `exchange`; [`exact`]: the exact
//!   min-cost flow it is measured against;
//! - [`hysteresis`]: margin and move cap between plans; [`repair`]: hosts that no longer hold
//!   what they kept, with the fewest moves;
//! - [`plan`]: versioned plans in sled;
//! - [`subsystem`]: the link handler (reports in, assignments out) and the re-plan loop;
//! - [`synthetic`]: generated fleets for the benchmark and the gap tests;
//! - [`service`]: the console service `synapse.console.v1.Placement`.

pub mod config;
mod demand;
pub mod exact;
mod exchange;
pub mod hysteresis;
pub mod inputs;
pub mod objective;
pub mod plan;
mod repair;
#[cfg(test)]
mod repair_tests;
pub mod service;
pub mod solver;
pub mod subsystem;
#[cfg(test)]
mod subsystem_tests;
pub mod synthetic;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, time::Instant};

pub use hysteresis::Rules;
pub use inputs::Inputs;
pub use plan::{Placed, Plan, PlanStore, PlanStoreError};
pub use subsystem::Placement;

/// Solves `inputs`, applies the stability rules against `in_force` and returns the next
/// plan, numbered after it.
pub fn make_plan(
    inputs: &Inputs,
    in_force: Option<&Plan>,
    rules: &Rules,
    reason: &str,
    created_unix_ms: i64,
) -> Plan {
    let started = Instant::now();
    let candidate = solver::solve(inputs);
    let stable = hysteresis::stabilize(inputs, in_force, &candidate, rules);
    let solve_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut functions = BTreeMap::new();
    let mut total = 0.0;
    for (i, f) in inputs.functions.iter().enumerate() {
        let shares = &stable.shares[i];
        let part = objective::function_objective(inputs, f, shares);
        total += part;
        functions.insert(
            f.name.clone(),
            Placed {
                hosts: shares
                    .iter()
                    .map(|&(h, x)| (inputs.hosts[h].agent.clone(), x))
                    .collect(),
                objective: part,
                moved: stable.moved[i],
                for_capacity: stable.for_capacity[i],
                demand_per_s: f.total_demand(),
                instances: f.instances(),
            },
        );
    }
    Plan {
        version: in_force.map_or(1, |p| p.version + 1),
        created_unix_ms,
        reason: reason.to_owned(),
        objective: total,
        moved: stable.moved.iter().filter(|m| **m).count() as u32,
        held_back: stable.held_back as u32,
        over_cap: stable.over_cap as u32,
        solve_ms,
        hosts: inputs
            .hosts
            .iter()
            .map(|h| (h.agent.clone(), h.clone()))
            .collect(),
        functions,
    }
}
