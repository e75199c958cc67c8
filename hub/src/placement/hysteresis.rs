//! Stability between plans. The solver's candidate replaces a function's previous placement
//! only when, under today's inputs, it lowers that function's part of the objective by more
//! than `improvement_margin` of it; of those moves, only the `max_moved_share` of all
//! functions with the largest gains happen in one plan, the rest are held back for the next.
//!
//! Not subject to either rule: new functions, and functions whose previous hosts are gone (a
//! lost host must not keep its functions cold until the next interval).
//!
//! When keeping previous placements overfills a host by itself (demand grew, capacity
//! shrank), [`super::repair`] moves only the excess off it, with the fewest moves and no
//! knock-on moves; those count against the cap first. Capacity is the one thing that may
//! exceed the cap: the plan then says by how much (`over_cap`).
//!
//! A function that takes its candidate placement can overfill a host that others still hold
//! as before; those give way (take their candidate too), largest gain first, and each of them
//! is a move as well. So a move is tried as a group — the function and every function it
//! pushes out, down the chain — which happens only if the whole group fits in what is left
//! of the cap and improves its part of the objective by more than the margin; otherwise it
//! is undone and held back.

use std::collections::BTreeMap;

use super::{
    inputs::Inputs,
    objective::{Pricing, Shares, function_objective, host_loads},
    plan::Plan,
    repair::Fleet,
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
    /// Per function: moved (counted) because a host it was on no longer had room for it.
    pub for_capacity: Vec<bool>,
    pub held_back: usize,
    /// Moves beyond the cap that capacity forced (0 when the cap held).
    pub over_cap: usize,
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
/// hosts is gone or no longer runs it, `Ok(None)` when it was not placed before.
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
                .map(|(agent, share)| {
                    inputs
                        .host_index(agent)
                        .filter(|&h| f.runs_on(h))
                        .map(|h| (h, *share))
                        .ok_or(())
                })
                .collect::<Result<Shares, ()>>()
                .map(Some)
        })
        .collect()
}

/// Where one function stands while the rules are applied.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Standing {
    /// New, or its previous host is gone: takes its candidate, outside the rules.
    Free,
    /// Keeps its previous placement; `same` when that is the candidate's (moving it is free).
    Kept { gain: f64, before: f64, same: bool },
    /// Took its candidate placement.
    Moved { counted: bool },
}

/// The placement being settled: current shares, host loads and who stands where.
struct Settling<'a> {
    candidate: &'a [Shares],
    pool: Vec<f64>,
    capacity: Vec<f64>,
    shares: Vec<Shares>,
    loads: Vec<f64>,
    standing: Vec<Standing>,
    /// Per host: the functions that kept a placement there, the ones that give way first
    /// first (same placement, then largest gain).
    keepers: Vec<Vec<usize>>,
}

/// Moves of one group, to undo it: (function, shares, standing) before.
type Undo = Vec<(usize, Shares, Standing)>;

/// What a group of moves made of the objective and the cap.
#[derive(Default)]
struct Group {
    counted: usize,
    gain: f64,
    before: f64,
}

impl Settling<'_> {
    fn take_candidate(&mut self, i: usize, counted: bool, undo: &mut Undo) {
        undo.push((i, self.shares[i].clone(), self.standing[i]));
        for &(h, x) in &self.shares[i] {
            self.loads[h] -= x * self.pool[i];
        }
        self.shares[i] = self.candidate[i].clone();
        for &(h, x) in &self.shares[i] {
            self.loads[h] += x * self.pool[i];
        }
        self.standing[i] = Standing::Moved { counted };
    }

    fn undo(&mut self, undo: Undo) {
        for (i, shares, standing) in undo.into_iter().rev() {
            for &(h, x) in &self.shares[i] {
                self.loads[h] -= x * self.pool[i];
            }
            self.shares[i] = shares;
            for &(h, x) in &self.shares[i] {
                self.loads[h] += x * self.pool[i];
            }
            self.standing[i] = standing;
        }
    }

    /// Makes `hosts` fit by moving kept functions to their candidate, down the chain, with
    /// at most `budget` counted moves; `None` when that is not possible.
    fn make_room(&mut self, hosts: Vec<usize>, budget: usize, undo: &mut Undo) -> Option<Group> {
        let mut group = Group::default();
        let mut work = hosts;
        while let Some(h) = work.pop() {
            while self.loads[h] > self.capacity[h] {
                let i = self.keepers[h]
                    .iter()
                    .copied()
                    .find(|&i| matches!(self.standing[i], Standing::Kept { .. }))?;
                let Standing::Kept { gain, before, same } = self.standing[i] else {
                    unreachable!("found kept")
                };
                if !same {
                    if group.counted == budget {
                        return None;
                    }
                    group.counted += 1;
                }
                group.gain += gain;
                group.before += before;
                self.take_candidate(i, !same, undo);
                work.extend(self.candidate[i].iter().map(|&(g, _)| g));
            }
        }
        Some(group)
    }
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
    let mut standing = vec![Standing::Free; n];
    let mut lost = vec![false; n];
    // Moves worth their margin, with their gain.
    let mut wanted: Vec<(usize, f64)> = Vec::new();
    for (i, prev) in previous(inputs, in_force).into_iter().enumerate() {
        match prev {
            Ok(None) => {}
            Err(()) => lost[i] = true,
            Ok(Some(prev)) => {
                let f = &inputs.functions[i];
                let before = function_objective(inputs, f, &prev);
                let gain = before - function_objective(inputs, f, &candidate.shares[i]);
                let same = distance(&prev, &candidate.shares[i]) <= SAME_PLACEMENT;
                if !same && gain > rules.improvement_margin * before.abs() {
                    wanted.push((i, gain));
                }
                standing[i] = Standing::Kept { gain, before, same };
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
    let mut keepers: Vec<Vec<usize>> = vec![Vec::new(); inputs.hosts.len()];
    for (i, s) in shares.iter().enumerate() {
        if matches!(standing[i], Standing::Kept { .. }) {
            for &(h, _) in s {
                keepers[h].push(i);
            }
        }
    }
    let order = |i: &usize| match standing[*i] {
        Standing::Kept { gain, same, .. } => (!same, -gain),
        _ => (true, 0.0),
    };
    for list in &mut keepers {
        list.sort_by(|a, b| {
            let (a, b) = (order(a), order(b));
            a.0.cmp(&b.0).then(a.1.total_cmp(&b.1))
        });
    }
    let mut s = Settling {
        candidate: &candidate.shares,
        pool: inputs.functions.iter().map(|f| f.pool_bytes()).collect(),
        capacity: inputs
            .hosts
            .iter()
            .map(|h| h.pool_memory_bytes as f64 * (1.0 + 1e-9))
            .collect(),
        loads: host_loads(inputs, &shares),
        shares,
        standing,
        keepers,
    };
    // Capacity first: the excess of every overfull host leaves with the fewest moves.
    let mut free: Vec<bool> = s
        .standing
        .iter()
        .map(|st| matches!(st, Standing::Free))
        .collect();
    let pricing = Pricing::new(inputs);
    let repaired = Fleet {
        pricing: &pricing,
        shares: &mut s.shares,
        loads: &mut s.loads,
        capacity: &s.capacity,
    }
    .repair(&candidate.shares, &mut free);
    let mut for_capacity = vec![false; n];
    for &i in &repaired {
        s.standing[i] = Standing::Moved { counted: true };
        for_capacity[i] = true;
    }
    let mut used = repaired.len();
    let over_cap = used.saturating_sub(cap);
    for (i, gain) in wanted {
        if used >= cap {
            break;
        }
        let Standing::Kept { before, .. } = s.standing[i] else {
            continue; // already gave way
        };
        let mut undo = Vec::new();
        s.take_candidate(i, true, &mut undo);
        let hosts = candidate.shares[i].iter().map(|&(h, _)| h).collect();
        match s.make_room(hosts, cap - used - 1, &mut undo) {
            Some(group)
                if gain + group.gain > rules.improvement_margin * (before + group.before).abs() =>
            {
                used += 1 + group.counted;
            }
            _ => s.undo(undo),
        }
    }
    let moved: Vec<bool> = (0..n)
        .map(|i| lost[i] || matches!(s.standing[i], Standing::Moved { counted: true }))
        .collect();
    let held_back = s
        .standing
        .iter()
        .filter(|st| matches!(st, Standing::Kept { same: false, .. }))
        .count();
    Stabilized {
        shares: s.shares,
        moved,
        for_capacity,
        held_back,
        over_cap,
    }
}
