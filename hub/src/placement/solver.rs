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
    inputs::Inputs,
    objective::{self, Pricing, Shares},
};

/// Cheapest hosts kept per function before the first full scan.
pub const CANDIDATES: usize = 6;
/// Pool memory below this is not worth a share, bytes.
const CRUMB_BYTES: f64 = 1.0;

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
    improve(&pricing, inputs, &choices, &mut bytes, &mut free);
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

/// Passes of the improvement phase at most.
const PASSES: usize = 4;

/// Improvement phase: moves pool memory of each function to a cheaper candidate host with
/// room, or — when that host is full — swaps it with another function's memory there (that
/// function takes the freed room, or goes cold) when the exchange lowers the objective. These
/// are the transportation simplex's cheapest pivots, restricted to the candidate lists.
fn improve(
    pricing: &Pricing,
    inputs: &Inputs,
    choices: &[Choice],
    bytes: &mut [Vec<(usize, f64)>],
    free: &mut [f64],
) {
    let functions = &inputs.functions;
    let per_byte = |f: usize, site: Option<usize>| -> f64 {
        let total = match site {
            Some(h) => pricing.warm(f, h),
            None => pricing.cold(f),
        };
        total / pricing.bytes(f)
    };
    // Per host: the functions on it, with their cost per byte there.
    let mut on_host: Vec<Vec<(usize, f64)>> = vec![Vec::new(); inputs.hosts.len()];
    for (f, pieces) in bytes.iter().enumerate() {
        for &(h, _) in pieces {
            on_host[h].push((f, per_byte(f, Some(h))));
        }
    }
    for _ in 0..PASSES {
        let mut changed = false;
        for f in 0..functions.len() {
            let total = pricing.bytes(f);
            // Every site of f: its hosts, and cold for what is not on any.
            let mut sites: Vec<(Option<usize>, f64)> =
                bytes[f].iter().map(|&(h, x)| (Some(h), x)).collect();
            let cold = total - bytes[f].iter().map(|p| p.1).sum::<f64>();
            if cold > CRUMB_BYTES {
                sites.push((None, cold));
            }
            for (source, mut amount) in sites {
                let source_cost = per_byte(f, source);
                for &(_, target) in &choices[f].hosts {
                    if amount <= CRUMB_BYTES {
                        break;
                    }
                    if Some(target) == source {
                        continue;
                    }
                    let target_cost = per_byte(f, Some(target));
                    let saving = source_cost - target_cost;
                    if saving <= 0.0 {
                        continue;
                    }
                    if free[target] > CRUMB_BYTES {
                        let x = amount.min(free[target]);
                        shift(
                            bytes,
                            free,
                            &mut on_host,
                            f,
                            source,
                            (target, target_cost),
                            x,
                        );
                        amount -= x;
                        changed = true;
                        continue;
                    }
                    // Target full: swap with the function there that gains most from leaving.
                    let mut best: Option<(f64, usize, Option<usize>)> = None;
                    for &(g, stay) in &on_host[target] {
                        if g == f {
                            continue;
                        }
                        // Staying costs g at most this much more than leaving anywhere.
                        if saving + stay <= best.map_or(0.0, |b| b.0) {
                            continue;
                        }
                        for dest in [None, source] {
                            let gain = saving + stay - per_byte(g, dest);
                            if gain > 0.0 && best.is_none_or(|b| gain > b.0) {
                                best = Some((gain, g, dest));
                            }
                        }
                    }
                    if let Some((gain, g, dest)) = best {
                        let x = amount.min(held(bytes, g, target));
                        if gain * x <= 1e-12 {
                            continue;
                        }
                        let g_cost = dest.map(|d| (d, per_byte(g, Some(d))));
                        leave(bytes, free, &mut on_host, g, target, g_cost, x);
                        shift(
                            bytes,
                            free,
                            &mut on_host,
                            f,
                            source,
                            (target, target_cost),
                            x,
                        );
                        amount -= x;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
}

fn held(bytes: &[Vec<(usize, f64)>], f: usize, h: usize) -> f64 {
    bytes[f].iter().find(|p| p.0 == h).map_or(0.0, |p| p.1)
}

/// Moves `x` bytes of `f` from `from` (`None`: cold) to host `to` (with `f`'s cost per byte
/// there).
fn shift(
    bytes: &mut [Vec<(usize, f64)>],
    free: &mut [f64],
    on_host: &mut [Vec<(usize, f64)>],
    f: usize,
    from: Option<usize>,
    to: (usize, f64),
    x: f64,
) {
    if let Some(h) = from {
        take(bytes, free, on_host, f, h, x);
    }
    put(bytes, free, on_host, f, to, x);
}

/// Moves `x` bytes of `f` off host `from`, to host `to` or cold (`None`).
fn leave(
    bytes: &mut [Vec<(usize, f64)>],
    free: &mut [f64],
    on_host: &mut [Vec<(usize, f64)>],
    f: usize,
    from: usize,
    to: Option<(usize, f64)>,
    x: f64,
) {
    take(bytes, free, on_host, f, from, x);
    if let Some(to) = to {
        put(bytes, free, on_host, f, to, x);
    }
}

fn take(
    bytes: &mut [Vec<(usize, f64)>],
    free: &mut [f64],
    on_host: &mut [Vec<(usize, f64)>],
    f: usize,
    h: usize,
    x: f64,
) {
    if let Some(p) = bytes[f].iter_mut().find(|p| p.0 == h) {
        p.1 -= x;
    }
    bytes[f].retain(|p| p.1 > CRUMB_BYTES);
    if !bytes[f].iter().any(|p| p.0 == h) {
        on_host[h].retain(|g| g.0 != f);
    }
    free[h] += x;
}

fn put(
    bytes: &mut [Vec<(usize, f64)>],
    free: &mut [f64],
    on_host: &mut [Vec<(usize, f64)>],
    f: usize,
    (h, unit): (usize, f64),
    x: f64,
) {
    match bytes[f].iter_mut().find(|p| p.0 == h) {
        Some(p) => p.1 += x,
        None => {
            bytes[f].push((h, x));
            on_host[h].push((f, unit));
        }
    }
    free[h] -= x;
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
