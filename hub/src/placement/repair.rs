//! Capacity repair between plans: when keeping the previous placements overfills a host
//! (demand grew, capacity shrank), the excess leaves that host with the fewest moves and
//! without knock-on moves elsewhere.
//!
//! Per overfull host, only the excess leaves, taken from as few functions as possible: first
//! from functions whose change costs no move (new ones, those whose host is gone, those that
//! already moved in this plan), then from the fewest others that can carry it — among sets of
//! that size, the ones losing least per byte. What leaves goes to hosts with free room,
//! cheapest first, while they beat the cold option, and the rest is served cold (forwarded
//! or cold-started where it arrives). Nothing ever goes to a host without room, so repairing
//! one host never overfills another: no cascade.

use super::{
    exchange::CRUMB_BYTES,
    objective::{Pricing, Shares},
};

/// The placement under repair: shares, host loads (bytes) and capacities (bytes).
pub struct Fleet<'a> {
    pub pricing: &'a Pricing<'a>,
    pub shares: &'a mut [Shares],
    pub loads: &'a mut [f64],
    pub capacity: &'a [f64],
}

/// One function that holds part of an overfull host.
struct Resident {
    function: usize,
    /// Its pool bytes on the host.
    bytes: f64,
    /// Objective lost per byte that leaves the host (estimated from its candidate hosts).
    loss: f64,
}

/// Hosts are repaired and filled to a hair below their capacity, so that shares recomputed
/// from the plan (fractions of pools) still fit after rounding.
const FILL: f64 = 1.0 - 2e-9;

impl Fleet<'_> {
    fn room(&self, h: usize) -> f64 {
        (self.capacity[h] * FILL - self.loads[h]).max(0.0)
    }

    fn excess(&self, h: usize) -> f64 {
        self.loads[h] - self.capacity[h] * FILL
    }

    /// Objective per byte of `f` where it would go from `h`: its cheapest candidate host with
    /// room, or cold.
    fn elsewhere(&self, f: usize, from: usize, candidates: &Shares) -> f64 {
        candidates
            .iter()
            .filter(|&&(g, _)| g != from && self.room(g) > CRUMB_BYTES)
            .map(|&(g, _)| self.pricing.unit(f, g))
            .fold(self.pricing.cold_unit(f), f64::min)
    }

    /// Moves `bytes` of `f` off `from`: onto hosts with room, cheapest first while they beat
    /// cold, the rest cold.
    fn shed(&mut self, f: usize, from: usize, bytes: f64) {
        let total = self.pricing.bytes(f);
        if total <= 0.0 {
            return;
        }
        if let Some(here) = self.shares[f].iter_mut().find(|(h, _)| *h == from) {
            here.1 = (here.1 - bytes / total).max(0.0);
        }
        self.shares[f].retain(|&(_, x)| x * total > CRUMB_BYTES);
        self.loads[from] -= bytes;
        let cold = self.pricing.cold_unit(f);
        let mut hosts: Vec<(f64, usize)> = (0..self.loads.len())
            .filter(|&g| g != from && self.room(g) > CRUMB_BYTES)
            .map(|g| (self.pricing.unit(f, g), g))
            .filter(|&(unit, _)| unit < cold)
            .collect();
        hosts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut left = bytes;
        for (_, g) in hosts {
            if left <= CRUMB_BYTES {
                break;
            }
            let take = left.min(self.room(g));
            left -= take;
            self.loads[g] += take;
            match self.shares[f].iter_mut().find(|(h, _)| *h == g) {
                Some(there) => there.1 += take / total,
                None => self.shares[f].push((g, take / total)),
            }
        }
    }

    /// Brings every host within its capacity. `free[f]`: changing `f` costs no move (it is
    /// set for every function changed here). Returns the functions changed that cost a move.
    pub fn repair(&mut self, candidates: &[Shares], free: &mut [bool]) -> Vec<usize> {
        let hosts = self.loads.len();
        let mut on_host: Vec<Vec<usize>> = vec![Vec::new(); hosts];
        for (f, shares) in self.shares.iter().enumerate() {
            for &(h, _) in shares {
                on_host[h].push(f);
            }
        }
        let mut counted = Vec::new();
        for (h, here) in on_host.iter().enumerate() {
            if self.loads[h] <= self.capacity[h] {
                continue;
            }
            let mut residents: Vec<Resident> = here
                .iter()
                .filter_map(|&f| {
                    let x = self.shares[f].iter().find(|p| p.0 == h)?.1;
                    let bytes = x * self.pricing.bytes(f);
                    (bytes > 0.0).then(|| Resident {
                        function: f,
                        bytes,
                        loss: self.elsewhere(f, h, &candidates[f]) - self.pricing.unit(f, h),
                    })
                })
                .collect();
            residents.sort_by(|a, b| a.loss.total_cmp(&b.loss));
            // What costs no move leaves first, least loss first.
            for r in residents.iter().filter(|r| free[r.function]) {
                let excess = self.excess(h);
                if excess <= 0.0 {
                    break;
                }
                self.shed(r.function, h, excess.min(r.bytes));
            }
            let rest: Vec<Resident> = residents
                .into_iter()
                .filter(|r| !free[r.function])
                .collect();
            for f in fewest(rest, self.excess(h)) {
                let excess = self.excess(h);
                if excess <= 0.0 {
                    break;
                }
                self.shed(f.function, h, excess.min(f.bytes));
                free[f.function] = true;
                counted.push(f.function);
            }
        }
        counted
    }
}

/// The fewest of `residents` (sorted by loss per byte) whose bytes carry `excess`, and among
/// sets of that size the cheaper ones first: each pick is the cheapest resident after which
/// the largest of the others can still carry what is left. In shedding order.
fn fewest(mut residents: Vec<Resident>, excess: f64) -> Vec<Resident> {
    let mut chosen = Vec::new();
    let mut left = excess;
    while left > 0.0 && !residents.is_empty() {
        let mut by_size: Vec<f64> = residents.iter().map(|r| r.bytes).collect();
        by_size.sort_by(|a, b| b.total_cmp(a));
        let mut prefix = vec![0.0; by_size.len() + 1];
        for (k, b) in by_size.iter().enumerate() {
            prefix[k + 1] = prefix[k] + b;
        }
        let needed = prefix
            .iter()
            .position(|&sum| sum >= left)
            .unwrap_or(by_size.len());
        // Slots after this pick; the largest `after` others must carry the rest.
        let after = needed.saturating_sub(1);
        let pick = residents
            .iter()
            .position(|r| {
                let rank = by_size.partition_point(|&b| b > r.bytes);
                let others = if rank < after {
                    prefix[after + 1] - r.bytes
                } else {
                    prefix[after]
                };
                r.bytes + others >= left
            })
            .unwrap_or(0);
        let r = residents.remove(pick);
        left -= r.bytes;
        chosen.push(r);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(function: usize, bytes: f64, loss: f64) -> Resident {
        Resident {
            function,
            bytes,
            loss,
        }
    }

    #[test]
    fn the_fewest_functions_carry_the_excess_the_cheaper_among_them_first() {
        // Sorted by loss: one large function carries it alone, though two cheap small
        // ones would lose less per byte.
        let picked = fewest(
            vec![r(0, 10.0, 0.1), r(1, 10.0, 0.2), r(2, 50.0, 0.9)],
            15.0,
        );
        assert_eq!(picked.iter().map(|r| r.function).collect::<Vec<_>>(), [2]);
        // Two are needed at any rate: the cheapest pair that carries it.
        let picked = fewest(
            vec![
                r(3, 5.0, 0.0),
                r(0, 10.0, 0.1),
                r(1, 30.0, 0.2),
                r(2, 30.0, 0.9),
            ],
            35.0,
        );
        // The free-ish small one first, then the one that carries the rest.
        assert_eq!(
            picked.iter().map(|r| r.function).collect::<Vec<_>>(),
            [3, 1]
        );
        assert!(fewest(vec![r(0, 1.0, 0.0)], 0.0).is_empty());
    }
}
