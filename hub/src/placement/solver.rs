//! The fast solver of the placement problem (see [`super::objective`]): a regret-ordered
//! greedy for the transportation problem (Vogel's rule with static regrets).
//!
//! For every function it prices every host once, `O(F·H·origins)`, and keeps its
//! [`CANDIDATES`] cheapest hosts and the cold option. Functions are then placed in order of
//! regret — how much more their second choice costs than their first, for the whole function
//! — so the functions that lose most by being pushed away from their best host take it first,
//! and a capacity squeeze pushes out the functions that gain least from where they are. Each
//! function fills its candidates cheapest first, splitting across hosts when one is full; when
//! all its candidates are full it scans every host with room left, and falls back to cold.
//!
//! Its gap to the exact optimum ([`super::exact`]) is measured by `benches/placement.rs` and
//! bounded in the tests on small instances.

use super::{
    exchange::{self, CRUMB_BYTES},
    inputs::Inputs,
    objective::{self, Pricing, Shares},
};

/// Cheapest hosts kept per function before the first full scan.
pub const CANDIDATES: usize = 6;

/// A plan in solver terms: shares per function (in [`Inputs::functions`] order).
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    pub shares: Vec<Shares>,
    pub objective: f64,
}

struct Choice {
    function: usize,
    regret: f64,
    /// Cheapest hosts first: (cost of the whole function there, host).
    hosts: Vec<(f64, usize)>,
    cold: f64,
}

/// Solves `inputs` with the regret-ordered greedy.
pub fn solve(inputs: &Inputs) -> Solution {
    let hosts = inputs.hosts.len();
    let pricing = Pricing::new(inputs);
    let mut priced: Vec<(f64, usize)> = Vec::with_capacity(hosts);
    let mut choices: Vec<Choice> = inputs
        .functions
        .iter()
        .enumerate()
        .map(|(i, _)| {
            priced.clear();
            priced.extend((0..hosts).map(|h| (pricing.warm(i, h), h)));
            let keep = CANDIDATES.min(priced.len());
            if keep < priced.len() {
                priced.select_nth_unstable_by(keep, |a, b| a.0.total_cmp(&b.0));
                priced.truncate(keep);
            }
            priced.sort_by(|a, b| a.0.total_cmp(&b.0));
            let cold = pricing.cold(i);
            let mut firsts: Vec<f64> = priced.iter().take(2).map(|p| p.0).collect();
            firsts.push(cold);
            firsts.sort_by(f64::total_cmp);
            let regret = firsts.get(1).map_or(0.0, |second| second - firsts[0]);
            Choice {
                function: i,
                regret,
                hosts: priced.clone(),
                cold,
            }
        })
        .collect();
    choices.sort_by(|a, b| b.regret.total_cmp(&a.regret));

    let mut free: Vec<f64> = inputs
        .hosts
        .iter()
        .map(|h| h.pool_memory_bytes as f64)
        .collect();
    let mut shares: Vec<Shares> = vec![Vec::new(); inputs.functions.len()];
    for choice in &choices {
        let bytes = pricing.bytes(choice.function);
        let mut left = bytes;
        let placed = &mut shares[choice.function];
        fill(
            &choice.hosts,
            choice.cold,
            bytes,
            &mut left,
            &mut free,
            placed,
        );
        if left > CRUMB_BYTES && choice.hosts.last().is_some_and(|last| last.0 < choice.cold) {
            // Every candidate is full: any host with room that still beats cold.
            let mut rest: Vec<(f64, usize)> = (0..hosts)
                .filter(|&h| free[h] > CRUMB_BYTES && !placed.iter().any(|p| p.0 == h))
                .map(|h| (pricing.warm(choice.function, h), h))
                .collect();
            rest.sort_by(|a, b| a.0.total_cmp(&b.0));
            fill(&rest, choice.cold, bytes, &mut left, &mut free, placed);
        }
    }
    let mut bytes: Vec<Vec<(usize, f64)>> = shares
        .iter()
        .zip(&inputs.functions)
        .map(|(s, f)| s.iter().map(|&(h, x)| (h, x * f.pool_bytes())).collect())
        .collect();
    choices.sort_by_key(|c| c.function);
    let candidates: Vec<Vec<usize>> = choices
        .iter()
        .map(|c| c.hosts.iter().map(|&(_, h)| h).collect())
        .collect();
    exchange::improve(&pricing, &candidates, &mut bytes, &mut free);
    let shares: Vec<Shares> = bytes
        .iter()
        .zip(&inputs.functions)
        .map(|(b, f)| {
            let total = f.pool_bytes();
            b.iter()
                .filter(|(_, x)| *x > CRUMB_BYTES)
                .map(|&(h, x)| (h, (x / total).min(1.0)))
                .collect()
        })
        .collect();
    let objective = objective::objective(inputs, &shares);
    Solution { shares, objective }
}

/// Puts as much of `left` (of `bytes`) as fits on `hosts`, cheapest first, while they beat
/// the cold option.
fn fill(
    hosts: &[(f64, usize)],
    cold: f64,
    bytes: f64,
    left: &mut f64,
    free: &mut [f64],
    placed: &mut Shares,
) {
    for &(cost, h) in hosts {
        if *left <= CRUMB_BYTES || cost >= cold {
            break;
        }
        let take = left.min(free[h]);
        if take <= CRUMB_BYTES {
            continue;
        }
        free[h] -= take;
        *left -= take;
        placed.push((h, take / bytes));
    }
}
