//! The placement subsystem without a network: demand reports in, plans persisted and
//! re-made at once when a host of the plan disconnects, refused reports counted.

use std::time::Duration;

use synapse_proto::link::v1::{Capacity, DemandReport, FunctionDemand, Tier, frame::Body};
use tokio_util::sync::CancellationToken;

use super::{Placement, PlanStore, config::PlacementConfig};
use crate::{
    link::{AgentOutlet, ConnectedAgent, ControlHandler, Handled},
    metrics::HubMetrics,
    registry::Registry,
};

fn agent(id: &str, tier: Tier) -> ConnectedAgent {
    ConnectedAgent {
        agent: id.into(),
        tier,
        labels: Default::default(),
        version: "test".into(),
        capacity: Capacity::default(),
        gateway: format!("127.0.0.1:{}", 9000 + id.len()),
        rtt: Duration::from_millis(1),
    }
}

fn report(pool_gb: u64, functions: &[(&str, f64)]) -> Body {
    Body::DemandReport(DemandReport {
        unix_ms: 1,
        pool_memory_bytes: pool_gb * 1_000_000_000,
        cpu_load: 0.2,
        functions: functions
            .iter()
            .map(|(name, rate)| FunctionDemand {
                function: (*name).into(),
                forecast_per_s: *rate,
                execution_s: 0.01,
                memory_bytes: 128_000_000,
                cold_start_s: 0.3,
                warm_instances: 1,
            })
            .collect(),
    })
}

async fn plan_version(placement: &Placement, version: u64) -> super::Plan {
    for _ in 0..200 {
        if let Some(plan) = placement.in_force().0.filter(|p| p.version >= version) {
            return plan;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no plan {version}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_host_is_re_planned_at_once_and_plans_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = synapse_db::open(dir.path()).unwrap();
    let registry = Registry::open(&db, Duration::from_secs(5)).unwrap();
    let config = PlacementConfig {
        // Far longer than the test: only the triggers can make plans.
        optimization_interval: Duration::from_secs(3600),
        ..PlacementConfig::default()
    };
    let metrics = HubMetrics::new();
    let placement = Placement::open(
        &db,
        config.clone(),
        registry.clone(),
        AgentOutlet::default(),
    )
    .unwrap()
    .with_metrics(metrics.clone());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(placement.clone().run(shutdown.clone()));

    placement.connected(&agent("edge-1", Tier::Edge));
    placement.connected(&agent("cloud-1", Tier::Cloud));
    let handled = placement
        .frame("edge-1", report(2, &[("api", 50.0)]))
        .unwrap();
    assert!(matches!(handled, Handled::Consumed));
    let first = plan_version(&placement, 1).await;
    assert_eq!(first.reason, "first");
    placement.frame("cloud-1", report(64, &[])).unwrap();
    let joined = plan_version(&placement, 2).await;
    assert_eq!(joined.reason, "host joined");
    assert_eq!(joined.functions["api"].hosts[0].0, "edge-1");
    let assignment = placement.assignment("edge-1").unwrap();
    assert_eq!(assignment.version, 2);
    assert_eq!(assignment.functions[0].share, 1.0);
    // The sizing the plan assumed: all of api's 50/s, one instance (50/s × 10 ms).
    assert_eq!(assignment.functions[0].expected_per_s, 50.0);
    assert_eq!(assignment.functions[0].warm_instances, 1);

    placement.disconnected("edge-1");
    let lost = plan_version(&placement, 3).await;
    assert_eq!(lost.reason, "host lost");
    assert!(!lost.hosts.contains_key("edge-1"));
    // Every plan's moves are counted, none over the cap.
    let moved: u32 = [&first, &joined, &lost].iter().map(|p| p.moved).sum();
    let exported = metrics.render();
    assert!(
        exported.contains(&format!("synapse_hub_placement_moves_total {moved}\n")),
        "{exported}"
    );
    assert!(exported.contains("synapse_hub_placement_moves_over_cap_total 0\n"));

    // Non-finite demand is refused and counted; the connection stays (no refusal).
    let bad = report(2, &[("api", f64::NAN)]);
    assert!(matches!(
        placement.frame("cloud-1", bad),
        Ok(Handled::Consumed)
    ));
    assert_eq!(placement.refused_reports(), 1);
    // Not a placement frame: the next handler's.
    let other = Body::Heartbeat(Default::default());
    assert!(matches!(
        placement.frame("cloud-1", other),
        Ok(Handled::Declined(_))
    ));

    shutdown.cancel();
    task.await.unwrap();
    let history = PlanStore::open(&db).unwrap().history(10).unwrap();
    let versions: Vec<u64> = history.iter().map(|p| p.version).collect();
    assert_eq!(versions, [3, 2, 1], "newest first");
    let reopened = Placement::open(&db, config, registry, AgentOutlet::default()).unwrap();
    assert_eq!(reopened.in_force().0.map(|p| p.version), Some(3));
}

#[test]
fn demand_reports_with_forged_names_or_figures_are_refused() {
    let Body::DemandReport(good) = report(8, &[("resize", 2.0), ("thumb", 0.5)]) else {
        unreachable!()
    };
    assert_eq!(super::subsystem::check_report(&good), Ok(()));
    type Forge = Box<dyn Fn(&mut DemandReport)>;
    let forgeries: Vec<(&str, Forge)> = vec![
        (
            "control name",
            Box::new(|r| r.functions[0].function = "a\nb".into()),
        ),
        (
            "path name",
            Box::new(|r| r.functions[0].function = "../x".into()),
        ),
        (
            "huge rate",
            Box::new(|r| r.functions[0].forecast_per_s = 1e300),
        ),
        (
            "NaN execution",
            Box::new(|r| r.functions[0].execution_s = f64::NAN),
        ),
        (
            "endless cold start",
            Box::new(|r| r.functions[1].cold_start_s = 1e12),
        ),
        (
            "memory",
            Box::new(|r| r.functions[0].memory_bytes = u64::MAX),
        ),
        (
            "warm",
            Box::new(|r| r.functions[0].warm_instances = u32::MAX),
        ),
        ("pool memory", Box::new(|r| r.pool_memory_bytes = u64::MAX)),
        (
            "too many functions",
            Box::new(|r| {
                let f = r.functions[0].clone();
                r.functions = (0..5000)
                    .map(|i| FunctionDemand {
                        function: format!("f{i}"),
                        ..f.clone()
                    })
                    .collect();
            }),
        ),
    ];
    for (what, forge) in forgeries {
        let mut r = good.clone();
        forge(&mut r);
        assert!(
            super::subsystem::check_report(&r).is_err(),
            "{what} was taken"
        );
    }
}
