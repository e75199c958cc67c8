//! The planner on declared fleets: where functions end up, how a squeeze and a lost host move
//! them, how hysteresis holds under noisy demand, and how far the fast solver is from the
//! exact optimum.

use std::collections::BTreeMap;

use super::{
    Rules, exact,
    inputs::{DeclaredLatencies, Function, Host, Inputs, Weights},
    make_plan, objective, solver, synthetic,
};

pub(super) const GB: u64 = 1_000_000_000;
pub(super) const MB: u64 = 1_000_000;

fn host(agent: &str, tier: i32, bytes: u64) -> Host {
    Host {
        agent: agent.into(),
        tier,
        gateway: format!("127.0.0.1:1{}", agent.len()),
        pool_memory_bytes: bytes,
        cpu_load: 0.1,
        rtt_s: 0.0,
    }
}

/// Edge 2 GB, regional 8 GB, cloud 64 GB; declared round trips edge–regional 20 ms,
/// edge–cloud 80 ms, regional–cloud 60 ms; the default weights and prices.
pub(super) fn fleet(edge_bytes: u64) -> Inputs {
    let declared = [
        ((1, 2), 0.02),
        ((1, 3), 0.08),
        ((2, 3), 0.06),
        ((1, 1), 0.01),
    ];
    Inputs {
        hosts: vec![
            host("edge-1", 1, edge_bytes),
            host("regional-1", 2, 8 * GB),
            host("cloud-1", 3, 64 * GB),
        ],
        functions: Vec::new(),
        weights: Some(Weights {
            user_latency: 1.0,
            resource_utilization: 1.0,
            cost: 1.0,
        }),
        price_per_gb_s: BTreeMap::from([(1, 0.05), (2, 0.02), (3, 0.01)]),
        declared_latency_s: {
            let mut d = DeclaredLatencies::default();
            for ((a, b), s) in declared {
                d.declare(a, b, s);
            }
            d
        },
    }
}

pub(super) fn function(
    name: &str,
    origin: usize,
    rate: f64,
    execution_s: f64,
    mb: u64,
    cold_s: f64,
) -> Function {
    Function {
        name: name.into(),
        demand: vec![(origin, rate)],
        execution_s,
        memory_bytes: mb * MB,
        cold_start_s: cold_s,
        only_on: None,
    }
}

pub(super) const NO_RULES: Rules = Rules {
    improvement_margin: 0.0,
    max_moved_share: 1.0,
};

/// Hosts holding more than half of `name`.
pub(super) fn mostly_on(plan: &super::Plan, name: &str) -> Vec<String> {
    plan.functions[name]
        .hosts
        .iter()
        .filter(|(_, share)| *share > 0.5)
        .map(|(agent, _)| agent.clone())
        .collect()
}

#[test]
fn a_latency_sensitive_function_is_warm_at_the_edge_and_a_large_rare_one_in_the_cloud() {
    let mut inputs = fleet(2 * GB);
    inputs.functions = vec![
        function("api", 0, 50.0, 0.01, 128, 0.3),
        function("report", 0, 0.02, 2.0, 4096, 10.0),
    ];
    let plan = make_plan(&inputs, None, &NO_RULES, "first", 0);
    assert_eq!(mostly_on(&plan, "api"), ["edge-1"]);
    assert_eq!(mostly_on(&plan, "report"), ["cloud-1"]);
    assert_eq!(plan.version, 1);
}

#[test]
fn a_function_is_kept_warm_only_on_hosts_that_run_it() {
    let mut inputs = fleet(2 * GB);
    // `api` would be warm at the edge, where it is called, but only the cloud runs it; `web`
    // runs on the edge and the cloud, not on the regional host.
    let mut api = function("api", 0, 50.0, 0.01, 128, 0.3);
    api.only_on = Some(vec![2]);
    let mut web = function("web", 0, 40.0, 0.01, 128, 0.3);
    web.only_on = Some(vec![0, 2]);
    inputs.functions = vec![api, web];
    for (name, solution) in [
        ("fast", solver::solve(&inputs)),
        ("exact", exact::solve(&inputs)),
    ] {
        let on = |f: usize| -> Vec<usize> { solution.shares[f].iter().map(|p| p.0).collect() };
        assert_eq!(on(0), [2], "{name}: {:?}", solution.shares);
        assert_eq!(on(1), [0], "{name}: {:?}", solution.shares);
    }
    // A host that stops running a function loses it at the next plan, outside the rules.
    let before = make_plan(&inputs, None, &NO_RULES, "first", 0);
    inputs.functions[1].only_on = Some(vec![2]);
    let strict = Rules {
        improvement_margin: 0.5,
        max_moved_share: 0.0,
    };
    let after = make_plan(&inputs, Some(&before), &strict, "interval", 0);
    let web: Vec<&str> = after.functions["web"]
        .hosts
        .iter()
        .map(|(a, _)| a.as_str())
        .collect();
    assert_eq!(web, ["cloud-1"], "{after:?}");
}

#[test]
fn a_rarely_called_function_with_a_quick_cold_start_is_kept_warm_nowhere() {
    let mut inputs = fleet(2 * GB);
    inputs.functions = vec![function("cron", 0, 0.001, 1.0, 2048, 0.5)];
    let plan = make_plan(&inputs, None, &NO_RULES, "first", 0);
    assert!(plan.functions["cron"].hosts.is_empty(), "{plan:?}");
    // Without a measured cold start, cold is no option while there is room.
    inputs.functions[0].cold_start_s = 0.0;
    let plan = make_plan(&inputs, None, &NO_RULES, "first", 0);
    assert_eq!(mostly_on(&plan, "cron"), ["cloud-1"]);
}

#[test]
fn a_capacity_squeeze_moves_the_least_valuable_functions_off_the_edge_first() {
    let rates = [20.0, 40.0, 60.0, 80.0, 100.0, 120.0];
    let mut at_edge_before = rates.len() + 1;
    for edge_mb in [1600, 1000, 700, 300] {
        let mut inputs = fleet(edge_mb * MB);
        inputs.functions = rates
            .iter()
            .enumerate()
            .map(|(i, r)| function(&format!("f{i}"), 0, *r, 0.001, 256, 0.5))
            .collect();
        let plan = make_plan(&inputs, None, &NO_RULES, "first", 0);
        let edge_share = |i: usize| plan.share(&format!("f{i}"), "edge-1");
        // Whatever is (partly) off the edge, every less demanded function is entirely off.
        for i in 0..rates.len() {
            if edge_share(i) < 1.0 - 1e-9 {
                for j in 0..i {
                    assert_eq!(
                        edge_share(j),
                        0.0,
                        "f{j} kept at the edge while f{i} left, at {edge_mb} MB"
                    );
                }
            }
        }
        let at_edge = (0..rates.len()).filter(|&i| edge_share(i) > 0.0).count();
        assert!(
            at_edge < at_edge_before,
            "{at_edge} at the edge with {edge_mb} MB"
        );
        at_edge_before = at_edge;
        let loads = objective::host_loads(&inputs, &plan.shares_in(&inputs));
        assert!(
            loads[0] <= (edge_mb * MB) as f64 * (1.0 + 1e-9),
            "edge over capacity"
        );
    }
    assert!(
        at_edge_before >= 1,
        "the most demanded function stays at the edge"
    );
}

/// Demand that wobbles ±15% around the point where edge and regional cost the same.
fn noisy(inputs: &Inputs, step: usize) -> Inputs {
    let wobble = [1.15, 0.85, 1.1, 0.9, 1.12, 0.88, 1.05, 0.95];
    let mut noisy = inputs.clone();
    for f in &mut noisy.functions {
        f.demand[0].1 *= wobble[step % wobble.len()];
    }
    noisy
}

#[test]
fn hysteresis_stops_flapping_under_noisy_demand() {
    let mut base = fleet(GB);
    base.functions = vec![function("edgy", 0, 11.6, 0.001, 256, 0.0)];
    // The solver alone flips with the noise...
    let flips = (1..8)
        .filter(|&s| {
            let a = solver::solve(&noisy(&base, s - 1));
            let b = solver::solve(&noisy(&base, s));
            a.shares[0][0].0 != b.shares[0][0].0
        })
        .count();
    assert!(
        flips >= 4,
        "the noise must flip the bare solver ({flips} flips)"
    );
    // ...the plans do not.
    let rules = Rules {
        improvement_margin: 0.25,
        max_moved_share: 1.0,
    };
    let mut plan = make_plan(&noisy(&base, 0), None, &rules, "first", 0);
    let first = plan.functions["edgy"].hosts.clone();
    for step in 1..16 {
        plan = make_plan(&noisy(&base, step), Some(&plan), &rules, "interval", 0);
        assert_eq!(plan.moved, 0, "step {step}: {plan:?}");
        assert_eq!(plan.functions["edgy"].hosts, first);
    }
    // A real change still moves it.
    let mut busy = base.clone();
    busy.functions[0].demand[0].1 = 200.0;
    let moved = make_plan(&busy, Some(&plan), &rules, "interval", 0);
    assert_eq!(mostly_on(&moved, "edgy"), ["edge-1"]);
}

#[test]
fn at_most_the_configured_share_moves_per_plan_the_largest_gains_first() {
    let mut inputs = fleet(4 * GB);
    inputs.functions = (0..10)
        .map(|i| function(&format!("f{i}"), 0, 20.0 + 10.0 * i as f64, 0.001, 128, 0.5))
        .collect();
    // In force: everything in the cloud.
    let mut in_force = make_plan(&inputs, None, &NO_RULES, "first", 0);
    for placed in in_force.functions.values_mut() {
        placed.hosts = vec![("cloud-1".into(), 1.0)];
    }
    let rules = Rules {
        improvement_margin: 0.05,
        max_moved_share: 0.2,
    };
    let plan = make_plan(&inputs, Some(&in_force), &rules, "interval", 0);
    assert_eq!(plan.moved, 2);
    assert_eq!(plan.held_back, 8);
    assert_eq!(mostly_on(&plan, "f9"), ["edge-1"]);
    assert_eq!(mostly_on(&plan, "f8"), ["edge-1"]);
    assert_eq!(mostly_on(&plan, "f7"), ["cloud-1"]);
    assert_eq!(plan.version, 2);
}

#[test]
fn losing_an_edge_host_moves_its_functions_whatever_the_rules() {
    let mut inputs = fleet(2 * GB);
    inputs.hosts.push(host("edge-2", 1, 2 * GB));
    inputs.functions = vec![Function {
        demand: vec![(0, 60.0), (3, 40.0)],
        ..function("api", 0, 0.0, 0.01, 128, 0.3)
    }];
    let frozen = Rules {
        improvement_margin: 1.0,
        max_moved_share: 0.0,
    };
    let plan = make_plan(&inputs, None, &frozen, "first", 0);
    assert_eq!(mostly_on(&plan, "api"), ["edge-1"]);
    // edge-1 is gone, with the demand that arrived there.
    let mut lost = inputs.clone();
    lost.hosts.remove(0);
    lost.functions[0].demand = vec![(2, 40.0)];
    let next = make_plan(&lost, Some(&plan), &frozen, "host lost", 0);
    assert_eq!(mostly_on(&next, "api"), ["edge-2"]);
    assert!(next.functions["api"].moved);
    assert!(!next.hosts.contains_key("edge-1"));
}

#[test]
fn the_fast_solver_stays_close_to_the_exact_optimum_on_small_fleets() {
    let mut worst: f64 = 0.0;
    for seed in 0..30 {
        // From roomy fleets to ones that cannot keep everything warm.
        let inputs = synthetic::fleet(20 + 4 * seed as usize, 6, seed);
        let fast = solver::solve(&inputs);
        let best = exact::solve(&inputs);
        assert!(
            best.objective <= fast.objective * (1.0 + 1e-6),
            "seed {seed}: the exact solution {} is worse than the greedy {}",
            best.objective,
            fast.objective
        );
        let gap = fast.objective / best.objective - 1.0;
        worst = worst.max(gap);
        for plan in [&fast.shares, &best.shares] {
            let loads = objective::host_loads(&inputs, plan);
            for (h, load) in loads.iter().enumerate() {
                assert!(*load <= inputs.hosts[h].pool_memory_bytes as f64 * (1.0 + 1e-6));
            }
        }
    }
    assert!(worst < 0.02, "worst gap {:.2}%", worst * 100.0);
}

#[test]
fn a_move_that_pushes_another_function_out_counts_both_against_the_cap() {
    // The edge holds one of `api` and `feed`; the plan in force keeps `feed` there, the
    // solver prefers `api`. Swapping them is two moves.
    let mut inputs = fleet(1000 * MB);
    inputs.functions = vec![
        function("feed", 0, 20.0, 0.001, 768, 0.5),
        function("api", 0, 100.0, 0.001, 768, 0.5),
        function("report", 0, 0.02, 2.0, 4096, 0.0),
        function("batch", 0, 0.05, 2.0, 2048, 0.0),
    ];
    let mut in_force = make_plan(&inputs, None, &NO_RULES, "first", 0);
    assert_eq!(mostly_on(&in_force, "api"), ["edge-1"]);
    in_force.functions.get_mut("feed").unwrap().hosts = vec![("edge-1".into(), 1.0)];
    in_force.functions.get_mut("api").unwrap().hosts = vec![("cloud-1".into(), 1.0)];
    let within_capacity = |plan: &super::Plan| {
        let loads = objective::host_loads(&inputs, &plan.shares_in(&inputs));
        loads
            .iter()
            .zip(&inputs.hosts)
            .all(|(load, h)| *load <= h.pool_memory_bytes as f64 * (1.0 + 1e-9))
    };
    // One move allowed (a quarter of four functions): the swap waits; `feed` may leave the
    // crowded edge on its own.
    let one = Rules {
        improvement_margin: 0.05,
        max_moved_share: 0.25,
    };
    let plan = make_plan(&inputs, Some(&in_force), &one, "interval", 0);
    assert!(plan.moved <= 1, "{} moved: {plan:?}", plan.moved);
    assert_eq!(mostly_on(&plan, "api"), ["cloud-1"]);
    assert!(within_capacity(&plan));
    // Two allowed: it happens whole.
    let two = Rules {
        max_moved_share: 0.5,
        ..one
    };
    let plan = make_plan(&inputs, Some(&in_force), &two, "interval", 0);
    assert_eq!(plan.moved, 2, "{plan:?}");
    assert_eq!(mostly_on(&plan, "api"), ["edge-1"]);
    assert!(within_capacity(&plan));
}
