//! The move cap when the plan in force no longer fits: demand that outgrows a host moves only
//! its excess, with the fewest moves and no knock-on moves elsewhere; when capacity needs more
//! moves than the cap allows, capacity wins and the plan says by how much.

use super::{
    Plan, Rules, make_plan, objective, service, synthetic,
    tests::{MB, NO_RULES, fleet, function},
};
use crate::placement::inputs::Inputs;

const CAP_ONE_IN_TEN: Rules = Rules {
    improvement_margin: 0.05,
    max_moved_share: 0.1,
};

fn within_capacity(inputs: &Inputs, plan: &Plan) -> bool {
    let loads = objective::host_loads(inputs, &plan.shares_in(inputs));
    loads
        .iter()
        .zip(&inputs.hosts)
        .all(|(load, h)| *load <= h.pool_memory_bytes as f64 * (1.0 + 1e-9))
}

/// Edge 1000 MB holding `small` (256 MB) and `growing` (512 MB); regional 1000 MB holding
/// three functions of 300 MB; five small ones in the cloud: ten functions, a cap of one move.
fn crowded() -> (Inputs, Plan) {
    let mut inputs = fleet(1000 * MB);
    inputs.hosts[1].pool_memory_bytes = 1000 * MB;
    inputs.functions = vec![
        function("small", 0, 100.0, 0.001, 256, 0.5),
        function("growing", 0, 50.0, 0.01, 512, 0.5),
    ];
    for i in 0..3 {
        inputs
            .functions
            .push(function(&format!("regional-{i}"), 0, 10.0, 0.01, 300, 0.5));
    }
    for i in 0..5 {
        inputs
            .functions
            .push(function(&format!("cloudy-{i}"), 0, 0.05, 1.0, 256, 0.0));
    }
    let mut in_force = make_plan(&inputs, None, &NO_RULES, "first", 0);
    for (name, placed) in in_force.functions.iter_mut() {
        let host = match name.as_str() {
            "small" | "growing" => "edge-1",
            n if n.starts_with("regional") => "regional-1",
            _ => "cloud-1",
        };
        placed.hosts = vec![(host.into(), 1.0)];
    }
    assert!(within_capacity(&inputs, &in_force));
    (inputs, in_force)
}

#[test]
fn demand_that_outgrows_a_host_moves_only_its_excess_with_one_move() {
    let (mut inputs, in_force) = crowded();
    // `growing` now needs two instances: 1024 MB, and the edge holds 1280 MB of 1000.
    inputs.functions[1].demand[0].1 = 200.0;
    let plan = make_plan(&inputs, Some(&in_force), &CAP_ONE_IN_TEN, "interval", 0);
    assert!(within_capacity(&inputs, &plan), "{plan:?}");
    assert_eq!(plan.moved, 1, "{plan:#?}");
    assert_eq!(plan.over_cap, 0);
    let growing = &plan.functions["growing"];
    assert!(growing.moved && growing.for_capacity);
    // Only the 280 MB over capacity left the edge.
    let on_edge = plan.share("growing", "edge-1");
    assert!((on_edge - 744.0 / 1024.0).abs() < 1e-6, "{growing:?}");
    // Nobody else moved: the small one keeps the edge, the regional host keeps its three.
    assert_eq!(plan.functions["small"].hosts, [("edge-1".to_string(), 1.0)]);
    for i in 0..3 {
        let name = format!("regional-{i}");
        assert_eq!(
            plan.functions[&name].hosts,
            [("regional-1".to_string(), 1.0)]
        );
    }
}

#[test]
fn a_grown_fleet_repairs_its_hosts_within_the_move_cap() {
    // A third of the functions get 1.5× their demand, the others 0.9×; 10% may move.
    let first = synthetic::fleet(400, 40, 7);
    let in_force = make_plan(&first, None, &CAP_ONE_IN_TEN, "first", 0);
    let mut next = first.clone();
    for (i, f) in next.functions.iter_mut().enumerate() {
        for d in &mut f.demand {
            d.1 *= if i % 3 == 0 { 1.5 } else { 0.9 };
        }
    }
    let plan = make_plan(&next, Some(&in_force), &CAP_ONE_IN_TEN, "interval", 0);
    assert!(within_capacity(&next, &plan));
    let repairs = plan.functions.values().filter(|p| p.for_capacity).count();
    assert!(repairs > 0, "the grown demand must overfill some host");
    assert_eq!(plan.over_cap, 0, "{repairs} repairs");
    assert!(
        plan.moved <= 40,
        "{} moved, {repairs} for capacity",
        plan.moved
    );
}

#[test]
fn capacity_wins_over_the_cap_and_the_plan_says_by_how_much() {
    let (mut inputs, in_force) = crowded();
    // The edge gives no memory to pools any more: both its functions must go, one over the
    // cap.
    inputs.hosts[0].pool_memory_bytes = 0;
    let plan = make_plan(&inputs, Some(&in_force), &CAP_ONE_IN_TEN, "interval", 0);
    assert!(within_capacity(&inputs, &plan), "{plan:?}");
    assert_eq!(plan.moved, 2);
    assert_eq!(plan.over_cap, 1);
    for name in ["small", "growing"] {
        assert!(plan.functions[name].for_capacity, "{name}");
        assert_eq!(plan.share(name, "edge-1"), 0.0);
    }
    let explained = service::explain(&plan, &inputs, "small").expect("explained");
    assert!(
        explained.summary.contains("1 moves over the cap"),
        "{}",
        explained.summary
    );
    assert_eq!(service::to_proto(&plan).over_cap, 1);
    let cloudy = &plan.functions["cloudy-0"];
    assert!(!cloudy.moved && !cloudy.for_capacity);
}

#[test]
fn plans_stored_before_the_cap_and_sizing_were_kept_still_load() {
    let (inputs, _) = crowded();
    let plan = make_plan(&inputs, None, &NO_RULES, "first", 0);
    let mut json: serde_json::Value = serde_json::to_value(&plan).unwrap();
    json.as_object_mut().unwrap().remove("over_cap");
    for placed in json["functions"].as_object_mut().unwrap().values_mut() {
        let placed = placed.as_object_mut().unwrap();
        for field in ["for_capacity", "demand_per_s", "instances"] {
            placed.remove(field);
        }
    }
    let old: Plan = serde_json::from_value(json).expect("an older plan loads");
    assert_eq!(old.over_cap, 0);
    let small = &old.functions["small"];
    assert!(!small.for_capacity);
    assert_eq!(old.sizing("small", &small.hosts[0].0), (0.0, 0));
    // A plan that keeps them sizes each host's part.
    let (rate, warm) = plan.sizing("growing", &plan.functions["growing"].hosts[0].0);
    assert!(rate > 0.0 && warm >= 1, "{rate} {warm}");
}
