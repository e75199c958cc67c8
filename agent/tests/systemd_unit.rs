//! The agent as its systemd unit runs it: with only the capabilities the unit grants
//! (`CapabilityBoundingSet=` of `systemd/synapse-agent.service`, applied with setpriv) and
//! no new privileges, it loads its eBPF programs, runs an instance with a memory limit in its
//! own cgroup, tells `NOTIFY_SOCKET` `READY=1` once the gateway listens, and `STOPPING=1`
//! when it is stopped. Needs root, like the other kernel tests.

mod common;

use std::{
    net::TcpStream,
    os::unix::net::UnixDatagram,
    process::{Command, Stdio},
    time::Duration,
};

use common::{AGENT, SAMPLE_FN, free_ports, require_root};
use synapse_agent::cgroup::CgroupLayout;

const UNIT: &str = include_str!("../../systemd/synapse-agent.service");

/// setpriv's `--bounding-set` argument for the unit's capabilities: all others dropped.
fn bounding_set_of_the_unit() -> String {
    let caps = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet=");
    let mut set = String::from("-all");
    for cap in caps.split_whitespace() {
        set.push_str(",+");
        set.push_str(&cap.trim_start_matches("CAP_").to_lowercase());
    }
    set
}

/// Kills the agent and removes its cgroups should the test fail half-way.
struct Cleanup {
    agent: std::process::Child,
    layout: CgroupLayout,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
        let _ = self.layout.remove_all();
    }
}

fn next_notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("no notification from the agent within 30 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn with_only_the_units_capabilities_the_agent_serves_and_tells_systemd() {
    require_root();
    assert_eq!(
        bounding_set_of_the_unit(),
        "-all,+bpf,+perfmon,+dac_override"
    );
    let dir = tempfile::tempdir().unwrap();
    let systemd = UnixDatagram::bind(dir.path().join("notify")).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let ports = free_ports(2);
    let subtree = format!("synapse-test-unit-{}", std::process::id());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"unit\"\nstate_dir = \"{}\"\n\n[metrics]\nlisten = \"127.0.0.1:{}\"\n\n\
             [gateway]\nlisten = \"127.0.0.1:{}\"\n\n[cgroup]\nsubtree = \"{subtree}\"\n\n\
             [[functions]]\nname = \"f\"\ncommand = \"{SAMPLE_FN}\"\nmemory_mb = 64\nmin_warm = 1\n",
            dir.path().join("state").display(),
            ports,
            ports + 1
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let layout = CgroupLayout::detect(None, &subtree).unwrap();
    let agent = Command::new("setpriv")
        .arg(format!("--bounding-set={}", bounding_set_of_the_unit()))
        .arg("--no-new-privs")
        .args([AGENT, "run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", dir.path().join("notify"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("running setpriv (util-linux)");
    let mut run = Cleanup { agent, layout };
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let ready = next_notification(&systemd);
    assert!(ready.starts_with("READY=1\n"), "{ready}\n{}", agent_log());
    // READY means the gateway already listens: no waiting here.
    TcpStream::connect(("127.0.0.1", ports + 1)).expect("the gateway listens at READY=1");
    let status = std::fs::read_to_string(format!("/proc/{}/status", run.agent.id())).unwrap();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    let (dac_override, perfmon, bpf) = (1 << 1, 1 << 38, 1 << 39);
    assert_eq!(
        effective,
        dac_override | perfmon | bpf,
        "the unit's capabilities only"
    );

    // The instance starts in its cgroup, with its memory limit, and the kernel sees it listen.
    let mut answer = String::new();
    for _ in 0..300 {
        answer = common::http_get(ports, "/metrics").unwrap_or_default();
        if answer.contains("synapse_cold_starts_total{function=\"f\"} 1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        answer.contains("synapse_cold_starts_total{function=\"f\"} 1"),
        "the instance never became ready:\n{}",
        agent_log()
    );

    // SAFETY: plain syscall on our child (setpriv executed the agent in place).
    unsafe { libc::kill(run.agent.id() as i32, libc::SIGTERM) };
    assert_eq!(next_notification(&systemd), "STOPPING=1\nSTATUS=stopping");
    let exit = run.agent.wait().unwrap();
    assert!(exit.success(), "{exit}\n{}", agent_log());
    let v2 = run.layout.v2_root();
    assert!(!v2.exists(), "the agent left {}", v2.display());
}
