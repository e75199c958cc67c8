//! Function instances are isolated from the agent and from each other, with real processes
//! and real cgroups (on whichever hierarchy holds each controller): they run as a uid of
//! their own (or their configured user), never root, with no supplementary group, no
//! capability and `no_new_privs`; they cannot read a root-only file nor reach a descriptor
//! the agent inherited; a fork bomb stops at its `pids_max` while another function keeps
//! serving; and `cpu` is written as the cgroup's CPU quota. Runs as root.

mod common;

use std::{
    os::{fd::AsRawFd as _, unix::fs::PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use common::*;

fn start(name: &str, config: &str) -> (Agent, tempfile::TempDir) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let subtree = format!("synapse-test-iso-{name}-{}", std::process::id());
    let agent = Agent::start(dir.path(), free_ports(1), &subtree, config);
    (agent, dir)
}

fn function(name: &str, extra: &str) -> String {
    format!("[[functions]]\nname = \"{name}\"\ncommand = \"{SAMPLE_FN}\"\n{extra}\n\n")
}

/// Invokes `function` with `query` and returns its JSON answer (200 expected).
fn call(agent: &Agent, function: &str, query: &str) -> serde_json::Value {
    let r = agent.invoke(function, query, b"");
    assert_eq!(r.status, 200, "{function}{query}: {r:?}\n{}", agent.log());
    r.json()
}

fn pid_of(answer: &serde_json::Value) -> u32 {
    answer["pid"].as_u64().unwrap() as u32
}

/// The value of `field` in `/proc/PID/status`.
fn status(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// The file `name` of `controller` for process `pid`: in its cgroup of the v1 hierarchy that
/// holds the controller, or in its v2 cgroup when no v1 hierarchy does.
fn cgroup_file(pid: u32, controller: &str, name: &str) -> PathBuf {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let v1_mount = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut right = right.split(' ');
        let (fs, _, options) = (right.next()?, right.next()?, right.next()?);
        (fs == "cgroup" && options.split(',').any(|o| o == controller))
            .then(|| PathBuf::from(left.split(' ').nth(4).unwrap()))
    });
    let line = cgroups
        .lines()
        .map(|l| l.splitn(3, ':').collect::<Vec<_>>())
        .find(|p| match &v1_mount {
            Some(_) => p[1].split(',').any(|c| c == controller),
            None => p[0] == "0",
        })
        .unwrap_or_else(|| panic!("process {pid} has no {controller} cgroup: {cgroups}"));
    let mount = v1_mount.unwrap_or_else(cgroup_v2_mount);
    mount.join(line[2].trim_start_matches('/')).join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn instances_run_as_their_own_unprivileged_users_with_no_new_privs() {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        "[instances]\nuid_range = [61100, 61109]\n\n{}{}",
        function("a", "min_warm = 1"),
        function(
            "b",
            &format!(
                "user = \"nobody\"\nworking_dir = \"{}\"\nmin_warm = 1",
                work.path().display()
            )
        )
    );
    // Started as systemd starts it: a notify socket, and its configuration named in the
    // environment. Neither reaches an instance.
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let systemd = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    let agent = Agent::start_with_env(
        dir.path(),
        free_ports(1),
        &format!("synapse-test-iso-uid-{}", std::process::id()),
        "test",
        "edge",
        "",
        &config,
        &[
            ("NOTIFY_SOCKET", notify.to_str().unwrap()),
            ("SYNAPSE_AGENT_CONFIG", "/etc/synapse/agent.toml"),
        ],
    );
    let a = pid_of(&call(&agent, "a", ""));
    let b = pid_of(&call(&agent, "b", ""));
    // Function a, the first configured, gets the range's first uid, and its gid.
    assert_eq!(status(a, "Uid"), "61100\t61100\t61100\t61100");
    assert_eq!(status(a, "Gid"), "61100\t61100\t61100\t61100");
    // b runs as its user, with that user's primary group.
    assert_eq!(status(b, "Uid"), "65534\t65534\t65534\t65534");
    assert_eq!(status(b, "Gid"), "65534\t65534\t65534\t65534");
    for pid in [a, b] {
        assert_eq!(
            status(pid, "Groups"),
            "",
            "instance {pid}: supplementary groups"
        );
        assert_eq!(status(pid, "NoNewPrivs"), "1", "instance {pid}");
        for caps in ["CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(
                status(pid, caps),
                "0000000000000000",
                "instance {pid}: {caps}"
            );
        }
    }
    let mut ready = [0u8; 256];
    let n = systemd.recv(&mut ready).unwrap();
    assert!(
        String::from_utf8_lossy(&ready[..n]).contains("READY=1"),
        "the agent itself still notifies"
    );
    for pid in [a, b] {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        for name in ["NOTIFY_SOCKET=", "SYNAPSE_AGENT_CONFIG="] {
            assert!(
                !environ
                    .split(|&c| c == 0)
                    .any(|v| v.starts_with(name.as_bytes())),
                "instance {pid} inherited {name}"
            );
        }
    }
    // b works in its working_dir, entered as its user.
    assert_eq!(
        std::fs::read_link(format!("/proc/{b}/cwd")).unwrap(),
        work.path()
    );
    assert!(agent.stop(), "the agent exited with an error");
}

#[test]
fn a_working_dir_the_user_cannot_enter_fails_the_start_with_a_clear_error() {
    let locked = tempfile::tempdir().unwrap();
    std::fs::set_permissions(locked.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = function(
        "f",
        &format!(
            "working_dir = \"{}\"\nqueue_timeout = \"20s\"",
            locked.path().display()
        ),
    );
    let (agent, _dir) = start("cwd", &config);
    let r = agent.invoke("f", "", b"");
    assert_ne!(r.status, 200, "{r:?}");
    agent.wait_until("the refused start logged", |a| {
        a.log().contains("as uid 61000 gid 61000") && a.log().contains("Permission denied")
    });
    assert!(agent.stop());
}

#[test]
fn an_instance_cannot_read_a_root_only_file_nor_a_descriptor_the_agent_inherited() {
    let keys = tempfile::tempdir().unwrap();
    std::fs::set_permissions(keys.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = keys.path().join("agent.key");
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let public = keys.path().join("ca.pem");
    std::fs::write(&public, "-----BEGIN CERTIFICATE-----\n").unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The key open without close-on-exec, as a careless parent of the agent could leave it:
    // the agent inherits it at the same number.
    let held = std::fs::File::open(&key).unwrap();
    let fd = held.as_raw_fd();
    // SAFETY: plain fcntl on a descriptor this test owns.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    let (agent, _dir) = start("read", &function("f", "min_warm = 1"));
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/fd/{fd}", agent.child.id())).ok(),
        Some(key.clone()),
        "the agent should hold the inherited key at fd {fd}"
    );

    let answer = call(&agent, "f", &format!("?read={}&fd={fd}", key.display()));
    let body = answer.to_string();
    assert_eq!(
        answer["read"], 13,
        "EACCES reading the 0600 root file: {body}"
    );
    assert_ne!(
        answer["fd"].as_str().map(PathBuf::from),
        Some(key.clone()),
        "the instance holds the agent's inherited key: {body}"
    );
    let control = call(&agent, "f", &format!("?read={}", public.display()));
    assert_eq!(control["read"], "ok", "the world-readable file next to it");
    drop(held);
    assert!(agent.stop());
}

#[test]
fn a_fork_bomb_stops_at_pids_max_while_another_function_keeps_serving() {
    const LIMIT: u64 = 24;
    let config = format!(
        "{}{}",
        function("bomb", &format!("pids_max = {LIMIT}\nmin_warm = 1")),
        function("steady", "min_warm = 1")
    );
    let (agent, _dir) = start("bomb", &config);
    let bomb = pid_of(&call(&agent, "bomb", ""));
    let pids_max = cgroup_file(bomb, "pids", "pids.max");
    assert_eq!(read(&pids_max), LIMIT.to_string(), "{}", pids_max.display());
    let current = pids_max.with_file_name("pids.current");

    // Sample the bomb's pids.current all the while.
    let done = Arc::new(AtomicBool::new(false));
    let highest = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, highest, current) = (done.clone(), highest.clone(), current.clone());
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = std::fs::read_to_string(&current) {
                    highest.fetch_max(n.trim().parse().unwrap(), Ordering::Relaxed);
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            samples
        })
    };
    // Bounded, so that a host without the limit is not brought down by this test.
    let blast = call(&agent, "bomb", "?fork=2000");
    assert_eq!(blast["fork_errno"], libc::EAGAIN, "{blast}");
    let forked = blast["forked"].as_u64().unwrap();
    assert!(
        forked < LIMIT,
        "{forked} processes forked past pids.max {LIMIT}"
    );
    // While its processes hold every pid it may have, the other function serves on.
    for i in 0..10 {
        let r = agent.invoke("steady", "", b"ping");
        assert_eq!(r.status, 200, "steady invocation {i}: {r:?}");
        assert_eq!(r.json()["bytes"], 4);
    }
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    assert!(samples > 0);
    let highest = highest.load(Ordering::Relaxed);
    assert!(highest <= LIMIT, "pids.current reached {highest} > {LIMIT}");
    // The kernel refused forks at the limit, and the bomb's processes are all in the cgroup.
    let events = read(&pids_max.with_file_name("pids.events"));
    let refused: u64 = events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("pids.events: {events}"));
    assert!(refused >= 1, "pids.events: {events}");
    assert!(read(&current).parse::<u64>().unwrap() > forked);
    assert!(agent.stop(), "the agent exited with an error");
}

#[test]
fn the_cpu_quota_is_written_as_configured() {
    let config = format!(
        "{}{}",
        function("capped", "cpu = 0.25\nmin_warm = 1"),
        function("free", "min_warm = 1")
    );
    let (agent, _dir) = start("cpu", &config);
    let capped = pid_of(&call(&agent, "capped", ""));
    let free = pid_of(&call(&agent, "free", ""));
    let max = cgroup_file(capped, "cpu", "cpu.max");
    if max.exists() {
        assert_eq!(read(&max), "25000 100000");
    } else {
        let quota = cgroup_file(capped, "cpu", "cpu.cfs_quota_us");
        assert_eq!(read(&quota), "25000", "{}", quota.display());
        assert_eq!(read(&quota.with_file_name("cpu.cfs_period_us")), "100000");
    }
    // Without `cpu`, no quota: in v2 no cpu.max of its own (or `max`), in v1 no cgroup of ours.
    let max = cgroup_file(free, "cpu", "cpu.max");
    if max.to_string_lossy().contains("/free/") {
        assert!(
            !max.exists() || read(&max).starts_with("max "),
            "{}",
            max.display()
        );
    } else {
        assert!(
            !max.to_string_lossy().contains(&agent.subtree),
            "{}",
            max.display()
        );
    }
    assert!(agent.stop(), "the agent exited with an error");
}
