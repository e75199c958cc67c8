//! The solver's improvement phase (see [`super::solver`]): moves pool memory of each function
//! to a cheaper candidate host with room, or — when that host is full — swaps it with another
//! function's memory there (that function takes the freed room, or goes cold) when the
//! exchange lowers the objective. These are the transportation simplex's cheapest pivots,
//! restricted to the candidate lists.
//!
//! It compares costs per byte of pool (`Pricing::unit`). A full host can hold hundreds of
//! functions, and every function that wants it looks at all of them; so each resident keeps
//! what it would gain by leaving for cold and the most it could gain by leaving for anywhere,
//! and a resident is priced at the leaving function's site only when that bound could win.
//! Every value compared is fixed for the whole phase, so a search for a partner that found
//! none stays true for the residents it saw: the next pass looks only at the residents that
//! arrived since.

use super::objective::{LatencyTable, Pricing};

/// Passes of the improvement phase at most.
const PASSES: usize = 4;
/// Pool memory below this is not worth a share, bytes.
pub const CRUMB_BYTES: f64 = 1.0;

/// A function with pool memory on a host, and what leaving it is worth, per byte.
#[derive(Clone, Copy)]
struct Resident {
    function: usize,
    /// Arrival number on its host: residents are kept in arrival order.
    arrival: u64,
    /// Its cost here.
    stay: f64,
    /// Its cost here less its cost cold.
    leave_cold: f64,
    /// Its cost here less the least it can cost anywhere (cold included): the most leaving
    /// can gain.
    leave_best: f64,
    /// Its latency table, to price it at another host without a trip through memory.
    latency: LatencyTable,
}

/// Pool memory of every function per host (`bytes[f]`: `(host, bytes)`), the room left on
/// each host, and the residents of each host.
struct Exchange<'a> {
    pricing: &'a Pricing<'a>,
    cold_unit: Vec<f64>,
    floor: Vec<f64>,
    bytes: &'a mut [Vec<(usize, f64)>],
    free: &'a mut [f64],
    on_host: Vec<Vec<Resident>>,
    /// Per host: the arrival number of the next resident.
    arrivals: Vec<u64>,
    /// Per function: (source, target, arrival) of partner searches that found none among the
    /// residents that arrived before.
    no_partner: Vec<Vec<(Option<usize>, usize, u64)>>,
    /// Per host: the functions whose demand arrives there (priced there the long way).
    origin_of: Vec<Vec<usize>>,
    /// Per function: whether its demand arrives at the source being searched.
    at_source: Vec<bool>,
}

/// Improves the placement `bytes` (with `free` room per host) over `candidates[f]`, each
/// function's cheapest hosts.
pub fn improve(
    pricing: &Pricing,
    candidates: &[Vec<usize>],
    bytes: &mut [Vec<(usize, f64)>],
    free: &mut [f64],
) {
    let functions = candidates.len();
    let cold_unit: Vec<f64> = (0..functions).map(|f| pricing.cold_unit(f)).collect();
    // The cheapest host of a function is its first candidate.
    let floor: Vec<f64> = (0..functions)
        .map(|f| {
            candidates[f]
                .iter()
                .map(|&h| pricing.unit(f, h))
                .fold(cold_unit[f], f64::min)
        })
        .collect();
    let mut x = Exchange {
        pricing,
        cold_unit,
        floor,
        on_host: vec![Vec::new(); free.len()],
        arrivals: vec![0; free.len()],
        no_partner: vec![Vec::new(); functions],
        origin_of: {
            let mut origin_of = vec![Vec::new(); free.len()];
            for f in 0..functions {
                for &(o, _) in pricing.origins(f) {
                    origin_of[o].push(f);
                }
            }
            origin_of
        },
        at_source: vec![false; functions],
        bytes,
        free,
    };
    for f in 0..functions {
        for i in 0..x.bytes[f].len() {
            let h = x.bytes[f][i].0;
            x.arrive(f, h);
        }
    }
    let mut sites: Vec<(Option<usize>, f64)> = Vec::new();
    for _ in 0..PASSES {
        let mut changed = false;
        for (f, targets) in candidates.iter().enumerate() {
            let total = pricing.bytes(f);
            // Every site of f: its hosts, and cold for what is not on any.
            sites.clear();
            sites.extend(x.bytes[f].iter().map(|&(h, b)| (Some(h), b)));
            let cold = total - x.bytes[f].iter().map(|p| p.1).sum::<f64>();
            if cold > CRUMB_BYTES {
                sites.push((None, cold));
            }
            for &(source, amount) in &sites {
                changed |= x.improve_site(f, source, amount, targets);
            }
        }
        if !changed {
            break;
        }
    }
}

impl Exchange<'_> {
    fn unit(&self, f: usize, site: Option<usize>) -> f64 {
        match site {
            Some(h) => self.pricing.unit(f, h),
            None => self.cold_unit[f],
        }
    }

    fn arrive(&mut self, f: usize, h: usize) {
        let stay = self.pricing.unit(f, h);
        let arrival = self.arrivals[h];
        self.arrivals[h] += 1;
        self.on_host[h].push(Resident {
            function: f,
            arrival,
            stay,
            leave_cold: stay - self.cold_unit[f],
            leave_best: stay - self.floor[f],
            latency: *self.pricing.latency_table(f),
        });
    }

    /// Moves what it can of `amount` bytes of `f` at `source` to cheaper `targets`; true if
    /// anything moved.
    fn improve_site(
        &mut self,
        f: usize,
        source: Option<usize>,
        mut amount: f64,
        targets: &[usize],
    ) -> bool {
        let mut changed = false;
        let source_cost = self.unit(f, source);
        // The least any function can cost at the source: its memory terms.
        let source_floor = source.map_or(f64::INFINITY, |s| self.pricing.memory_unit(s));
        for &target in targets {
            if amount <= CRUMB_BYTES {
                break;
            }
            if Some(target) == source {
                continue;
            }
            let target_cost = self.unit(f, Some(target));
            let saving = source_cost - target_cost;
            if saving <= 0.0 {
                continue;
            }
            if self.free[target] > CRUMB_BYTES {
                let moved = amount.min(self.free[target]);
                self.shift(f, source, Some(target), moved);
                amount -= moved;
                changed = true;
                continue;
            }
            // Target full: swap with the function there that gains most from leaving.
            let memo = self.no_partner[f]
                .iter()
                .position(|m| m.0 == source && m.1 == target);
            let seen = memo.map_or(0, |i| self.no_partner[f][i].2);
            if let Some(s) = source {
                for &g in &self.origin_of[s] {
                    self.at_source[g] = true;
                }
            }
            let (tier, rtt) = source.map_or((0, 0.0), |s| self.pricing.site(s));
            let residents = &self.on_host[target];
            let new = residents.partition_point(|r| r.arrival < seen);
            let mut best: Option<(f64, usize, Option<usize>)> = None;
            for r in &residents[new..] {
                let g = r.function;
                if g == f {
                    continue;
                }
                let bar = best.map_or(0.0, |b| b.0);
                if saving + r.leave_best <= bar {
                    continue;
                }
                let gain = saving + r.leave_cold;
                if gain > bar {
                    best = Some((gain, g, None));
                }
                let Some(s) = source else { continue };
                if !self.pricing.runs(g, s) {
                    continue;
                }
                let bar = best.map_or(0.0, |b| b.0);
                if saving + r.stay - self.floor[g].max(source_floor) <= bar {
                    continue;
                }
                let there = if self.at_source[g] {
                    self.pricing.unit(g, s)
                } else {
                    Pricing::unit_away(&r.latency, tier, rtt, source_floor)
                };
                let gain = saving + r.stay - there;
                if gain > bar {
                    best = Some((gain, g, source));
                }
            }
            if let Some(s) = source {
                for &g in &self.origin_of[s] {
                    self.at_source[g] = false;
                }
            }
            let Some((gain, g, dest)) = best else {
                let mark = (source, target, self.arrivals[target]);
                match memo {
                    Some(i) => self.no_partner[f][i] = mark,
                    None => self.no_partner[f].push(mark),
                }
                continue;
            };
            {
                let moved = amount.min(held(self.bytes, g, target));
                if gain * moved <= 1e-12 {
                    continue;
                }
                self.shift(g, Some(target), dest, moved);
                self.shift(f, source, Some(target), moved);
                amount -= moved;
                changed = true;
            }
        }
        changed
    }

    /// Moves `x` bytes of `f` from `from` to `to` (`None`: cold).
    fn shift(&mut self, f: usize, from: Option<usize>, to: Option<usize>, x: f64) {
        if let Some(h) = from {
            self.take(f, h, x);
        }
        if let Some(h) = to {
            self.put(f, h, x);
        }
    }

    fn take(&mut self, f: usize, h: usize, x: f64) {
        let pieces = &mut self.bytes[f];
        if let Some(p) = pieces.iter_mut().find(|p| p.0 == h) {
            p.1 -= x;
        }
        pieces.retain(|p| p.1 > CRUMB_BYTES);
        if !pieces.iter().any(|p| p.0 == h) {
            self.on_host[h].retain(|r| r.function != f);
        }
        self.free[h] += x;
    }

    fn put(&mut self, f: usize, h: usize, x: f64) {
        match self.bytes[f].iter_mut().find(|p| p.0 == h) {
            Some(p) => p.1 += x,
            None => {
                self.bytes[f].push((h, x));
                self.arrive(f, h);
            }
        }
        self.free[h] -= x;
    }
}

fn held(bytes: &[Vec<(usize, f64)>], f: usize, h: usize) -> f64 {
    bytes[f].iter().find(|p| p.0 == h).map_or(0.0, |p| p.1)
}
