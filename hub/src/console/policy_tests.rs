//! Tests of the console's access policy: every served method is classified, and the roles
//! get what the policy says.

use super::*;

#[test]
fn every_served_method_is_classified_and_every_rule_is_served() {
    let served = served_methods();
    assert!(
        served.len() >= RULES.len(),
        "descriptors list {} methods",
        served.len()
    );
    let unclassified: Vec<&str> = served
        .iter()
        .map(|m| m.path.as_str())
        .filter(|p| classify(p).is_none())
        .collect();
    assert!(
        unclassified.is_empty(),
        "RPCs served without a class in console/policy.rs RULES: {unclassified:?}"
    );
    for (path, _) in RULES {
        assert!(
            served.iter().any(|m| m.path == *path),
            "{path} is classified but not served"
        );
    }
    let mut paths: Vec<&str> = RULES.iter().map(|(p, _)| *p).collect();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths.len(), RULES.len(), "a path is classified twice");
}

#[test]
fn mutations_are_unary() {
    // The guard reads a mutation's single request message to summarise it.
    for method in served_methods() {
        if classify(&method.path).is_some_and(|a| a.is_mutation()) {
            assert!(
                !method.client_streaming && !method.server_streaming,
                "{}",
                method.path
            );
        }
    }
}

#[test]
fn viewers_read_operators_do_everything_others_nothing() {
    let start = classify("/synapse.console.v1.Rollouts/Start").unwrap();
    let list = classify("/synapse.console.v1.Console/ListAgents").unwrap();
    assert!(start.is_mutation() && !list.is_mutation());
    assert!(permit(Role::Operator, start).is_ok());
    assert!(permit(Role::Operator, list).is_ok());
    assert!(permit(Role::Viewer, list).is_ok());
    assert!(permit(Role::Viewer, start).unwrap_err().contains("viewer"));
    assert!(permit(Role::Agent, list).is_err());
    assert!(permit(Role::Hub, list).is_err());
    assert!(classify("/synapse.console.v1.Rollouts/Nope").is_none());
}

#[test]
fn summaries_quote_and_cut_untrusted_text() {
    let request = StartRolloutRequest {
        target: "settings".into(),
        version: "v2\n".into(),
        payload: "x".repeat(1000),
        reason: "r".repeat(500),
        ..Default::default()
    };
    let summary = start_rollout(&request.encode_to_vec());
    assert!(summary.contains("target=\"settings\""), "{summary}");
    assert!(summary.contains("version=\"v2\\n\""), "{summary}");
    assert!(summary.contains("payload=1000B"), "{summary}");
    assert!(summary.len() < 200, "{summary}");
    assert!(rollout_ref(&[0xff, 0xff]).starts_with("undecodable"));
}
