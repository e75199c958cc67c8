//! Tests of the agent configuration: defaults, refusals with file, line and field, and the
//! range checks `check-config` shares with the agent's start.

use super::*;

#[test]
fn empty_file_gives_documented_defaults() {
    let c = AgentConfig::parse("", "t.toml").unwrap();
    assert_eq!(c.telemetry.interval, Duration::from_secs(60));
    assert_eq!(c.metrics.listen.to_string(), "127.0.0.1:9464");
    assert_eq!(c.cgroup.subtree, "synapse");
    assert!(c.functions.is_empty());
}

#[test]
fn unknown_field_is_refused_with_its_line() {
    let text = "[telemetry]\ninterval = \"5s\"\nintervall = \"5s\"\n";
    let err = AgentConfig::parse(text, "agent.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("agent.toml:3:1: unknown field `intervall`"),
        "{err}"
    );
}

#[test]
fn interval_below_one_second_is_refused() {
    let err = AgentConfig::parse("[telemetry]\ninterval = \"500ms\"\n", "a.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("telemetry.interval: must be between 1s and 1h"),
        "{err}"
    );
}

#[test]
fn a_header_read_timeout_of_zero_is_refused() {
    let err = AgentConfig::parse("[gateway]\nheader_read_timeout = \"0s\"\n", "a.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gateway.header_read_timeout: must be between 1ms and 1h"),
        "{err}"
    );
}

#[test]
fn values_that_would_break_the_agent_later_are_refused_now() {
    for (text, expected) in [
        ("[cgroup]\nsubtree = \"/sys/fs/cgroup\"\n", "cgroup.subtree"),
        (
            "[link]\nheartbeat_interval = \"0s\"\n",
            "link.heartbeat_interval",
        ),
        ("[agent.labels]\n\"a b\" = \"x\"\n", "agent.labels"),
        (
            "[[functions]]\nname = \"m\"\nkind = \"onnx\"\nmodel = \"/m.onnx\"\n\
             [[functions.inputs]]\nname = \"x\"\nshape = [4]\n[[functions.outputs]]\nname = \"y\"\n",
            "functions.m.model_sha256: an onnx function needs",
        ),
        ("[agent.labels]\nzone = \"a\\u001b[2J\"\n", "agent.labels"),
        (
            "[[functions]]\nname = \"f\"\ncommand = \"/bin/x\"\nready_timeout = \"0s\"\n",
            "functions.f.ready_timeout",
        ),
        (
            "[[functions]]\nname = \"m\"\nkind = \"onnx\"\nmodel = \"/m.onnx\"\nmodel_sha256 = \"abc\"\n\
             [[functions.inputs]]\nname = \"x\"\nshape = [4]\n[[functions.outputs]]\nname = \"y\"\n",
            "functions.m.model_sha256",
        ),
    ] {
        let err = AgentConfig::parse(text, "a.toml").unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn duplicate_function_names_are_refused() {
    let text = r#"
[[functions]]
name = "f"
command = "/bin/true"
[[functions]]
name = "f"
command = "/bin/true"
"#;
    let err = AgentConfig::parse(text, "a.toml").unwrap_err().to_string();
    assert!(err.contains("`f` is defined twice"), "{err}");
}

#[test]
fn a_function_gets_its_defaults() {
    let text = "[[functions]]\nname = \"thumb\"\ncommand = \"/bin/x\"\n";
    let c = AgentConfig::parse(text, "a.toml").unwrap();
    let f = &c.functions[0];
    assert_eq!((f.concurrency, f.min_warm, f.max_instances), (1, 0, 8));
    assert_eq!(f.keep_alive, Duration::from_secs(600));
    assert_eq!(f.max_request_bytes, 1 << 20);
}

#[test]
fn a_process_function_without_command_is_refused() {
    let err = AgentConfig::parse("[[functions]]\nname = \"f\"\n", "a.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("functions.f.command: a process function needs a command"),
        "{err}"
    );
}

#[test]
fn the_gateway_limits_on_clients_are_range_checked() {
    let c = AgentConfig::parse("", "t.toml").unwrap().gateway;
    assert_eq!(
        (
            c.max_connections,
            c.body_idle_timeout,
            c.body_min_rate,
            c.body_rate_grace
        ),
        (
            10_000,
            Duration::from_secs(30),
            1024,
            Duration::from_secs(10)
        )
    );
    for (text, message) in [
        (
            "max_connections = 0",
            "gateway.max_connections: must be between 1 and 1000000, got 0",
        ),
        (
            "body_idle_timeout = \"0s\"",
            "gateway.body_idle_timeout: must be between 1ms and 1h",
        ),
        (
            "body_rate_grace = \"2h\"",
            "gateway.body_rate_grace: must be between 1ms and 1h",
        ),
        (
            "body_min_rate = 2000000000",
            "gateway.body_min_rate: must be at most 1073741824",
        ),
    ] {
        let err = AgentConfig::parse(&format!("[gateway]\n{text}\n"), "a.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains(message), "{text}: {err}");
    }
    let ok = "[gateway]\nmax_connections = 5\nbody_idle_timeout = \"200ms\"\nbody_min_rate = 0\n";
    assert_eq!(
        AgentConfig::parse(ok, "a.toml")
            .unwrap()
            .gateway
            .limits()
            .max_connections,
        5
    );
}
