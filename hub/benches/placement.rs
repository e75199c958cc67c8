//! Placement benchmark (prints figures; not a test): the time to make a plan — the fast
//! solver plus the hysteresis against the previous plan — for 1,000 and 10,000 functions over
//! 100 and 1,000 hosts (synthetic fleets, `synapse_hub::placement::synthetic`), and the fast
//! solver's objective against the exact optimum (min-cost flow) on small fleets.
//!
//! Run: `cargo bench -p synapse-hub --bench placement` (optional `PLACEMENT_REPEAT=3`).
//! Target: 10,000 functions × 1,000 hosts in under 2 s on the 2-core build machine.
//! With `SYNAPSE_BENCH_SMOKE=1` it runs a short version that prints the same tables: plans
//! for 100 and 300 functions over 10 and 30 hosts, one run each (unless `PLACEMENT_REPEAT`
//! says otherwise), and the comparison with the exact optimum on the two smallest fleets with
//! two seeds; it asserts nothing about timings.

use std::time::Instant;

use synapse_hub::placement::{Rules, exact, make_plan, solver, synthetic};

/// Short runs that still print every table (`SYNAPSE_BENCH_SMOKE=1`).
fn smoke() -> bool {
    std::env::var("SYNAPSE_BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn main() {
    let smoke = smoke();
    let repeat: usize = std::env::var("PLACEMENT_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 1 } else { 3 })
        .max(1);
    let plan_fleets: &[(usize, usize)] = if smoke {
        &[(100, 10), (300, 30)]
    } else {
        &[(1_000, 100), (1_000, 1_000), (10_000, 100), (10_000, 1_000)]
    };
    let exact_fleets: &[(usize, usize)] = if smoke {
        &[(20, 4), (50, 6)]
    } else {
        &[(20, 4), (50, 6), (100, 10), (200, 12)]
    };
    let seeds = if smoke { 2 } else { 5 };
    let rules = Rules {
        improvement_margin: 0.05,
        max_moved_share: 0.1,
    };
    println!("plan time (solve + hysteresis), best and median of {repeat}:");
    println!(
        "{:>10} {:>7} {:>10} {:>10} {:>8} {:>8} {:>9}",
        "functions", "hosts", "best ms", "median ms", "moved", "held", "over cap"
    );
    for &(functions, hosts) in plan_fleets {
        let first = synthetic::fleet(functions, hosts, 7);
        let in_force = make_plan(&first, None, &rules, "first", 0);
        // The next interval: the same fleet with demand that changed.
        let mut next = first.clone();
        for (i, f) in next.functions.iter_mut().enumerate() {
            for d in &mut f.demand {
                d.1 *= if i % 3 == 0 { 1.5 } else { 0.9 };
            }
        }
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..repeat {
            let started = Instant::now();
            let plan = make_plan(&next, Some(&in_force), &rules, "interval", 0);
            times.push(started.elapsed().as_secs_f64() * 1e3);
            last = Some(plan);
        }
        times.sort_by(f64::total_cmp);
        let plan = last.expect("at least one run");
        println!(
            "{functions:>10} {hosts:>7} {:>10.1} {:>10.1} {:>8} {:>8} {:>9}",
            times[0],
            times[times.len() / 2],
            plan.moved,
            plan.held_back,
            plan.over_cap
        );
    }
    println!();
    println!("fast solver against the exact optimum (continuous shares):");
    println!(
        "{:>10} {:>7} {:>6} {:>14} {:>14} {:>9}",
        "functions", "hosts", "seed", "fast", "exact", "gap %"
    );
    let mut worst: f64 = 0.0;
    let mut sum = 0.0;
    let mut n = 0;
    for &(functions, hosts) in exact_fleets {
        for seed in 0..seeds {
            let inputs = synthetic::fleet(functions, hosts, seed);
            let fast = solver::solve(&inputs);
            let best = exact::solve(&inputs);
            let gap = (fast.objective / best.objective - 1.0) * 100.0;
            worst = worst.max(gap);
            sum += gap;
            n += 1;
            println!(
                "{functions:>10} {hosts:>7} {seed:>6} {:>14.6} {:>14.6} {gap:>9.4}",
                fast.objective, best.objective
            );
        }
    }
    println!(
        "gap: mean {:.4}%, worst {:.4}% over {n} instances",
        sum / n as f64,
        worst
    );
}
