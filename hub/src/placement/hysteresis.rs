//! Stability between plans. The solver's candidate replaces a function's previous placement
//! only when, under today's inputs, it lowers that function's part of the objective by more
//! than `improvement_margin` of it; of those moves, only the `max_moved_share` of all
//! functions with the largest gains happen in one plan, the rest are held back for the next.
//!
//! Not subject to either rule: new functions, and functions whose previous hosts are gone (a
//! lost host must not keep its functions cold until the next interval). When keeping
//! previous placements would overfill a host (demand grew, capacity shrank), functions on that
//! host take their candidate placement, largest gain first, until it fits; if that is not
//! enough the candidate is taken whole (it always fits).

use std::collections::BTreeMap;

use super::{
    inputs::Inputs,
    objective::{Shares, function_objective, host_loads},
    plan::Plan,
    solver::Solution,
};

/// Shares closer than this (sum of absolute differences) are the same placement.
const SAME_PLACEMENT: f64 = 0.02;

/// The configured stability rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Relative improvement a move needs, e.g. 0.05.
    pub improvement_margin: f64,
    /// Largest share of the functions that may move per plan, e.g. 0.1.
    pub max_moved_share: f64,
}

/// The plan after the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Stabilized {
    pub shares: Vec<Shares>,
    pub moved: Vec<bool>,
    pub held_back: usize,
}

fn distance(a: &Shares, b: &Shares) -> f64 {
    let mut by_host: BTreeMap<usize, f64> = BTreeMap::new();
    for &(h, x) in a {
        *by_host.entry(h).or_default() += x;
    }
    for &(h, x) in b {
        *by_host.entry(h).or_default() -= x;
    }
    let warm = |s: &Shares| s.iter().map(|p| p.1).sum::<f64>();
    by_host.values().map(|d| d.abs()).sum::<f64>() + (warm(a) - warm(b)).abs()
}

/// The previous placement of each function in today's host indices; `Err(())` when one of its
/// hosts is gone, `Ok(None)` when it was not placed before.
fn previous(inputs: &Inputs, plan: Option<&Plan>) -> Vec<Result<Option<Shares>, ()>> {
    inputs
        .functions
        .iter()
        .map(|f| {
            let Some(placed) = plan.and_then(|p| p.functions.get(&f.name)) else {
                return Ok(None);
            };
            placed
                .hosts
                .iter()
                .map(|(agent, share)| inputs.host_index(agent).map(|h| (h, *share)).ok_or(()))
                .collect::<Result<Shares, ()>>()
                .map(Some)
        })
        .collect()
}

/// Applies the rules to `candidate` given the plan in force.
pub fn stabilize(
    inputs: &Inputs,
    in_force: Option<&Plan>,
    candidate: &Solution,
    rules: &Rules,
) -> Stabilized {
    let n = inputs.functions.len();
    let mut shares = candidate.shares.clone();
    let mut moved = vec![false; n];
    // Functions kept where they were, with what moving would gain.
    let mut kept: Vec<(usize, f64)> = Vec::new();
    let mut wanted: Vec<(usize, f64)> = Vec::new();
    for (i, prev) in previous(inputs, in_force).into_iter().enumerate() {
        match prev {
            Ok(None) => {}
            Err(()) => moved[i] = true,
            Ok(Some(prev)) => {
                if distance(&prev, &candidate.shares[i]) <= SAME_PLACEMENT {
                    shares[i] = prev;
                    continue;
                }
                let f = &inputs.functions[i];
                let before = function_objective(inputs, f, &prev);
                let after = function_objective(inputs, f, &candidate.shares[i]);
                let gain = before - after;
                if gain > rules.improvement_margin * before.abs() {
                    wanted.push((i, gain));
                } else {
                    kept.push((i, gain));
                }
                shares[i] = prev;
            }
        }
    }
    wanted.sort_by(|a, b| b.1.total_cmp(&a.1));
    let cap = if rules.max_moved_share > 0.0 && n > 0 {
        ((rules.max_moved_share * n as f64).floor() as usize).max(1)
    } else {
        0
    };
    let mut held_back = kept.len();
    for (rank, &(i, gain)) in wanted.iter().enumerate() {
        if rank < cap {
            shares[i] = candidate.shares[i].clone();
            moved[i] = true;
        } else {
            kept.push((i, gain));
            held_back += 1;
        }
    }
    // Capacity: kept placements give way, largest gain first, host by host.
    let capacity: Vec<f64> = inputs
        .hosts
        .iter()
        .map(|h| h.pool_memory_bytes as f64 * (1.0 + 1e-9))
        .collect();
    let mut loads = host_loads(inputs, &shares);
    let gain: BTreeMap<usize, f64> = kept.iter().copied().collect();
    let mut kept_on: Vec<Vec<usize>> = vec![Vec::new(); inputs.hosts.len()];
    for &(i, _) in &kept {
        for &(h, _) in &shares[i] {
            kept_on[h].push(i);
        }
    }
    for list in &mut kept_on {
        // Largest gain last, to pop first.
        list.sort_by(|a, b| gain[a].total_cmp(&gain[b]));
    }
    let pool = |i: usize| inputs.functions[i].pool_bytes();
    loop {
        let mut changed = false;
        for h in 0..loads.len() {
            while loads[h] > capacity[h] {
                let Some(i) = kept_on[h].pop() else { break };
                if moved[i] {
                    continue;
                }
                for &(g, x) in &shares[i] {
                    loads[g] -= x * pool(i);
                }
                shares[i] = candidate.shares[i].clone();
                for &(g, x) in &shares[i] {
                    loads[g] += x * pool(i);
                }
                moved[i] = true;
                held_back -= 1;
                changed = true;
            }
        }
        let over = (0..loads.len()).any(|h| loads[h] > capacity[h]);
        if !over {
            break;
        }
        if !changed {
            // Kept placements alone cannot make room: the candidate fits by construction.
            let previous_shares = shares;
            for i in 0..n {
                if distance(&previous_shares[i], &candidate.shares[i]) > SAME_PLACEMENT {
                    moved[i] = true;
                }
            }
            return Stabilized {
                shares: candidate.shares.clone(),
                moved,
                held_back: 0,
            };
        }
    }
    Stabilized {
        shares,
        moved,
        held_back,
    }
}
