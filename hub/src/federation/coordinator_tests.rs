//! The coordinator without a network: rounds train from the newest model the fleet kept.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use synapse_proto::link::v1::{GradientReport, frame::Body};

use super::{config::FederationConfig, coordinator::Federation, rollout::Recipients};
use crate::{
    link::{AgentOutlet, ControlHandler},
    models::{ModelRegistry, onnx},
};

/// Every connected agent gets every version; the versions in the set were turned down.
struct Refusing(Arc<Mutex<BTreeSet<u64>>>);

impl Recipients for Refusing {
    fn recipients(&self, _: &crate::models::ModelRecord, connected: &[String]) -> Vec<String> {
        connected.to_vec()
    }

    fn refused(&self, version: u64) -> bool {
        self.0.lock().unwrap().contains(&version)
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn a_round_after_a_refused_version_trains_from_the_version_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = synapse_db::open(&dir.path().join("db")).unwrap();
    let initial = onnx::synthetic(&[4, 2], 0.1);
    let parameters = onnx::read_weights(&initial).unwrap().len();
    let path = dir.path().join("initial.onnx");
    std::fs::write(&path, &initial).unwrap();
    let config = FederationConfig {
        initial_model: Some(path),
        min_clients: 1,
        round_interval: Duration::from_millis(1),
        round_timeout: Duration::from_secs(60),
        ..FederationConfig::default()
    };
    let outlet = AgentOutlet::default();
    let _frames = outlet.connect_for_test("agent-1");
    let refused = Arc::new(Mutex::new(BTreeSet::new()));
    let federation = Federation::open(
        &db,
        config,
        outlet,
        Box::new(Refusing(refused.clone())),
        1 << 20,
    )
    .unwrap();
    let models = ModelRegistry::open(&db).unwrap();
    let rounds = super::rounds::RoundStore::open(&db).unwrap();
    let answer = |round: u64, model_version: u64| {
        let report = GradientReport {
            round,
            model_version,
            gradient: vec![0.5; parameters],
            samples: 10,
            loss: 0.25,
        };
        federation
            .frame("agent-1", Body::GradientReport(report))
            .unwrap();
    };

    // Round 1 trains version 1 into version 2. (Each tick a little later: rounds open at
    // most once per `round_interval`.)
    let start = now();
    federation.tick(start).unwrap();
    assert_eq!(rounds.get(1).unwrap().unwrap().model_version, 1);
    answer(1, 1);
    assert_eq!(rounds.get(1).unwrap().unwrap().produced_version, 2);
    assert_eq!(models.get(2).unwrap().unwrap().parent, 1);

    // Version 2's rollout is rolled back: round 2 trains from version 1 again, and its
    // version's parent is 1.
    refused.lock().unwrap().insert(2);
    federation.tick(start + 10).unwrap();
    assert_eq!(rounds.get(2).unwrap().unwrap().model_version, 1);
    answer(2, 1);
    assert_eq!(rounds.get(2).unwrap().unwrap().produced_version, 3);
    assert_eq!(models.get(3).unwrap().unwrap().parent, 1);

    // Version 3 is kept: round 3 trains from it.
    federation.tick(start + 20).unwrap();
    assert_eq!(rounds.get(3).unwrap().unwrap().model_version, 3);
}
