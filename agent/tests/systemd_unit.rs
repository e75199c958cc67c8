//! The agent as its systemd unit runs it: in a delegated cgroup (`Delegate=yes`), with only
//! the capabilities the unit grants (`CapabilityBoundingSet=` of
//! `systemd/synapse-agent.service`, applied with setpriv) and no new privileges, it moves
//! itself into the leaf `agent/` of its cgroup, loads its eBPF programs, runs an instance with
//! a memory limit in a cgroup below its own, as its own uid and with no capability, tells `NOTIFY_SOCKET`
//! `READY=1` once the gateway listens, and `STOPPING=1` when it is stopped. Needs root, like
//! the other kernel tests.

mod common;

use std::{
    net::TcpStream,
    os::unix::net::UnixDatagram,
    path::PathBuf,
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
    /// The cgroup standing in for the unit's, delegated to the agent.
    unit: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
        let _ = self.layout.remove_all();
        // An agent that did not see the delegation made its folder at the root.
        let mut at_root = self.layout.clone();
        at_root.v2_parent = PathBuf::new();
        let _ = at_root.remove_all();
        let _ = std::fs::remove_dir(self.unit.join("agent"));
        let _ = std::fs::remove_dir(&self.unit);
    }
}

/// The capability masks of process `pid`: (bounding, effective).
fn capabilities(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap()
    };
    (mask("CapBnd:"), mask("CapEff:"))
}

/// A cgroup like the one systemd gives a unit with `Delegate=yes`.
fn delegated_unit_cgroup(layout: &CgroupLayout, name: &str) -> PathBuf {
    let unit = layout.v2.join(name);
    std::fs::create_dir_all(&unit).unwrap();
    let path = std::ffi::CString::new(unit.to_str().unwrap()).unwrap();
    // systemd marks a delegated cgroup with both: trusted.* for privileged readers, and
    // user.* for those without CAP_SYS_ADMIN, such as the agent under its unit.
    for name in [c"trusted.delegate", c"user.delegate"] {
        // SAFETY: NUL-terminated strings and the value's length.
        let set =
            unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
        assert_eq!(set, 0, "marking {} delegated ({name:?})", unit.display());
    }
    unit
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
        "-all,+bpf,+perfmon,+dac_override,+setpcap,+setuid,+setgid,+kill"
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
    let mut layout = CgroupLayout::detect(None, &subtree).unwrap();
    let unit_name = format!("synapse-test-unit-{}.service", std::process::id());
    let unit = delegated_unit_cgroup(&layout, &unit_name);
    layout.v2_parent = PathBuf::from(&unit_name);
    // As systemd starts a unit's process: in the unit's cgroup first, then exec.
    let agent = Command::new("sh")
        .args(["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\""])
        .arg(&unit)
        .arg("setpriv")
        .arg(format!("--bounding-set={}", bounding_set_of_the_unit()))
        .arg("--no-new-privs")
        .args([AGENT, "run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", dir.path().join("notify"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("running setpriv (util-linux)");
    let mut run = Cleanup {
        agent,
        layout,
        unit: unit.clone(),
    };
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let ready = next_notification(&systemd);
    assert!(ready.starts_with("READY=1\n"), "{ready}\n{}", agent_log());
    // READY means the gateway already listens: no waiting here.
    TcpStream::connect(("127.0.0.1", ports + 1)).expect("the gateway listens at READY=1");
    let (_, effective) = capabilities(run.agent.id());
    let (dac_override, kill, setgid, setuid) = (1 << 1, 1 << 5, 1 << 6, 1 << 7);
    let (setpcap, perfmon, bpf) = (1 << 8, 1 << 38, 1 << 39);
    assert_eq!(
        effective,
        dac_override | kill | setgid | setuid | setpcap | perfmon | bpf,
        "the unit's capabilities only"
    );
    // The unit's cgroup is delegated: the agent moved itself into its leaf.
    let procs = std::fs::read_to_string(unit.join("agent/cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|p| p == run.agent.id().to_string()),
        "the agent is not in {}/agent: {procs:?}\n{}",
        unit.display(),
        agent_log()
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

    // The instance's cgroup is under the unit's, and it runs without any capability.
    let function_dir = unit.join(&subtree).join("f");
    let instance_pids: Vec<u32> = std::fs::read_dir(&function_dir)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", function_dir.display(), agent_log()))
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path().join("cgroup.procs")).unwrap_or_default()
        })
        .collect::<String>()
        .lines()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        !instance_pids.is_empty(),
        "no instance process under {}",
        function_dir.display()
    );
    for pid in instance_pids {
        assert_eq!(
            capabilities(pid),
            (0, 0),
            "instance {pid}: bounding, effective"
        );
        // As its function's own uid (the first of [instances] uid_range), not root.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status.contains("\nUid:\t61000\t61000\t61000\t61000\n"),
            "instance {pid}: {status}"
        );
    }

    // SAFETY: plain syscall on our child (setpriv executed the agent in place).
    unsafe { libc::kill(run.agent.id() as i32, libc::SIGTERM) };
    assert_eq!(next_notification(&systemd), "STOPPING=1\nSTATUS=stopping");
    let exit = run.agent.wait().unwrap();
    assert!(exit.success(), "{exit}\n{}", agent_log());
    let v2 = run.layout.v2_root();
    assert!(!v2.exists(), "the agent left {}", v2.display());
}
