//! Tests of the hub's configuration: defaults, refusals with file and line, and the range
//! checks `--check` shares with the hub's start.

use super::*;

#[test]
fn an_empty_file_gives_the_documented_defaults() {
    let config = HubConfig::parse("", "hub.toml").unwrap();
    assert_eq!(config, HubConfig::default());
    assert_eq!(config.link.listen.port(), 7443);
    assert_eq!(config.console.listen.port(), 7444);
    assert_eq!(config.metrics.listen.port(), 9465);
}

#[test]
fn an_unknown_field_is_reported_with_file_and_line() {
    let text = "hub_id = \"h\"\n\n[link]\nmax_frame_byte = 10\n";
    let err = HubConfig::parse(text, "/etc/synapse/hub.toml").unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("/etc/synapse/hub.toml:4:1: "),
        "{message}"
    );
    assert!(
        message.contains("unknown field `max_frame_byte`"),
        "{message}"
    );
}

#[test]
fn a_wrong_type_is_reported_at_its_line() {
    let text = "[console]\nlisten = 7444\n";
    let message = HubConfig::parse(text, "hub.toml").unwrap_err().to_string();
    assert!(message.starts_with("hub.toml:2:"), "{message}");
}

#[test]
fn the_example_file_states_the_defaults() {
    let text = include_str!("../../hub.example.toml");
    assert_eq!(
        HubConfig::parse(text, "hub.example.toml").unwrap(),
        HubConfig::default()
    );
}

#[test]
fn values_the_hub_would_refuse_or_trip_on_at_start_are_refused_by_the_check() {
    for (text, expected) in [
        ("hub_id = \"\"\n", "hub_id"),
        ("hub_id = \"hub\\nagent\"\n", "hub_id"),
        ("[link]\nmax_frame_bytes = 0\n", "link.max_frame_bytes"),
        (
            "[link]\nhandshake_timeout = \"0s\"\n",
            "link.handshake_timeout",
        ),
        (
            "[link]\nheartbeat_interval = \"0s\"\n",
            "link.heartbeat_interval",
        ),
        ("[link]\nidle_timeout = \"0s\"\n", "link.idle_timeout"),
        (
            "[link]\nidle_timeout = \"3s\"\nheartbeat_interval = \"5s\"\n",
            "longer than link.heartbeat_interval",
        ),
        ("[rollouts]\ntick = \"0s\"\n", "tick"),
        ("[federation]\nmin_clients = 0\n", "federation.min_clients"),
        (
            "[federation]\nlearning_rate = -1.0\n",
            "federation.learning_rate",
        ),
        ("[federation]\nmomentum = 1.0\n", "federation.momentum"),
        (
            "[federation]\ndp_noise_sigma = 1.0\nclip_norm = 0.0\n",
            "federation.dp_noise_sigma",
        ),
        ("[federation]\nchunk_bytes = 10\n", "federation.chunk_bytes"),
    ] {
        let message = match HubConfig::parse(text, "hub.toml") {
            Ok(_) => panic!("{text:?} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(message.contains(expected), "{text:?}: {message}");
    }
}

#[test]
fn a_rollout_step_that_does_not_parse_is_refused() {
    let text = "[rollouts]\nsteps = [\"1/tier\", \"50%\"]\n";
    let message = HubConfig::parse(text, "hub.toml").unwrap_err().to_string();
    assert!(message.contains("last step must be 100%"), "{message}");
    let text = "[rollouts.gates]\nmax_p99_ratio = nan\n";
    assert!(HubConfig::parse(text, "hub.toml").is_err());
}

#[test]
fn placement_settings_are_read_and_checked() {
    let text = "[placement]\noptimization_interval = \"2s\"\nmax_moved_share = 0.5\n\
                [placement.cost_weights]\ncost = 3.0\n\
                [[placement.declared_latency]]\ntiers = [\"edge\", \"cloud\"]\nrtt = \"80ms\"\n";
    let config = HubConfig::parse(text, "hub.toml").unwrap();
    assert_eq!(
        config.placement.optimization_interval,
        Duration::from_secs(2)
    );
    assert_eq!(config.placement.cost_weights.cost, 3.0);
    assert_eq!(config.placement.cost_weights.user_latency, 1.0);
    let declared = config.placement.declared_latencies();
    assert_eq!(declared.get(3, 1), Some(0.08), "both directions");
    let bad = HubConfig::parse("[placement]\nmax_moved_share = 1.5\n", "hub.toml");
    let message = bad.unwrap_err().to_string();
    assert!(
        message.contains("max_moved_share must be between 0 and 1"),
        "{message}"
    );
    let bad = HubConfig::parse(
        "[[placement.declared_latency]]\ntiers = [\"edge\", \"moon\"]\nrtt = \"1ms\"\n",
        "hub.toml",
    );
    assert!(bad.unwrap_err().to_string().contains("moon"));
}

#[test]
fn console_access_settings_are_read_and_checked() {
    let text = "[console]\nrevoked = \"/etc/synapse/revoked.txt\"\naudit_keep = 500\n";
    let config = HubConfig::parse(text, "hub.toml").unwrap();
    assert_eq!(
        config.console.revoked.as_deref(),
        Some(Path::new("/etc/synapse/revoked.txt"))
    );
    assert_eq!(config.console.audit_keep, 500);
    let bad = HubConfig::parse("[console]\naudit_keep = 0\n", "hub.toml").unwrap_err();
    assert!(bad.to_string().contains("audit_keep = 0"), "{bad}");
}

#[test]
fn durations_are_human_readable() {
    let config = HubConfig::parse("[link]\nheartbeat_interval = \"250ms\"\n", "x").unwrap();
    assert_eq!(config.link.heartbeat_interval, Duration::from_millis(250));
}
