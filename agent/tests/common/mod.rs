//! Shared helpers of the agent's integration tests: a real `synapse-agent` process with a
//! generated configuration, and readers for its metrics and telemetry API.

#![allow(dead_code)]

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const AGENT: &str = env!("CARGO_BIN_EXE_synapse-agent");
pub const SAMPLE_FN: &str = env!("CARGO_BIN_EXE_synapse-sample-fn");

pub fn require_root() {
    // SAFETY: plain syscall.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "this test loads eBPF programs and creates cgroups: run it as root"
    );
}

/// Ports the tests give their servers: below the kernel's ephemeral range (32768..61000 by
/// default), from which the agents' instance ports and every outgoing connection's source
/// port are drawn, so that nothing else running takes a port between its pick and its bind.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A block of `n` consecutive free loopback ports, from a place that differs between test
/// processes and between calls.
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start - n);
    let mut at = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(40_503))
        .wrapping_add(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
        );
    'search: for _ in 0..500 {
        at = at.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let base = TEST_PORTS.start + ((at >> 8) % span) as u16;
        for p in base..base + n {
            // Both protocols: the hub's link is QUIC (UDP) and its console TCP.
            if TcpListener::bind(("127.0.0.1", p)).is_err()
                || std::net::UdpSocket::bind(("127.0.0.1", p)).is_err()
            {
                continue 'search;
            }
        }
        return base;
    }
    panic!("no block of {n} free ports in {TEST_PORTS:?}");
}

pub struct Agent {
    pub child: Child,
    pub metrics: u16,
    pub gateway: u16,
    pub dir: PathBuf,
    pub subtree: String,
}

impl Agent {
    /// Starts the agent with `functions` (TOML `[[functions]]` blocks) in a fresh state dir.
    pub fn start(dir: &Path, metrics: u16, subtree: &str, functions: &str) -> Self {
        Self::start_with(dir, metrics, subtree, "test", "edge", functions)
    }

    /// Starts the agent with its id and tier; `functions` is appended to the configuration.
    pub fn start_with(
        dir: &Path,
        metrics: u16,
        subtree: &str,
        id: &str,
        tier: &str,
        functions: &str,
    ) -> Self {
        Self::start_with_gateway(dir, metrics, subtree, id, tier, "", functions)
    }

    /// [`Agent::start_with`] with more `[gateway]` settings (TOML lines).
    pub fn start_with_gateway(
        dir: &Path,
        metrics: u16,
        subtree: &str,
        id: &str,
        tier: &str,
        gateway_settings: &str,
        functions: &str,
    ) -> Self {
        Self::start_with_env(
            dir,
            metrics,
            subtree,
            id,
            tier,
            gateway_settings,
            functions,
            &[],
        )
    }

    /// [`Agent::start_with_gateway`] with more variables in the agent's environment.
    #[allow(clippy::too_many_arguments)]
    pub fn start_with_env(
        dir: &Path,
        metrics: u16,
        subtree: &str,
        id: &str,
        tier: &str,
        gateway_settings: &str,
        functions: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let gateway = free_ports(1);
        let config = format!(
            "[agent]\nid = \"{id}\"\ntier = \"{tier}\"\nstate_dir = \"{}\"\n\n[telemetry]\ninterval = \"1s\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n[gateway]\nlisten = \"127.0.0.1:{gateway}\"\n{gateway_settings}\n\n\
             [cgroup]\nsubtree = \"{subtree}\"\n\n{functions}",
            dir.join("state").display()
        );
        let path = dir.join("agent.toml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(AGENT)
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
            .spawn()
            .expect("starting synapse-agent");
        let agent = Self {
            child,
            metrics,
            gateway,
            dir: dir.to_path_buf(),
            subtree: subtree.into(),
        };
        agent.wait_until("metrics endpoint up", |a| a.get("/healthz").is_some());
        agent
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Polls `cond` every 50 ms for up to 30 s (a bound on waiting, not a timing assertion).
    pub fn wait_until(&self, what: &str, cond: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gave up waiting for {what}; agent log:\n{}", self.log());
    }

    pub fn get(&self, path: &str) -> Option<String> {
        http_get(self.metrics, path)
    }

    /// Invokes a function through the gateway.
    pub fn invoke(&self, function: &str, query: &str, body: &[u8]) -> Reply {
        http_post(
            self.gateway,
            &format!("/v1/functions/{function}/invoke{query}"),
            body,
        )
    }

    /// Value of a metric line `name{labels}`, when present.
    pub fn metric(&self, name_and_labels: &str) -> Option<f64> {
        let text = self.get("/metrics")?;
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name_and_labels)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
    }

    /// Kills the agent with SIGKILL, as a crash would: its instances are left behind.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the agent with SIGTERM and waits for it; returns whether it exited with 0.
    pub fn stop(mut self) -> bool {
        // SAFETY: plain syscall on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if !status.success() {
                    eprintln!("agent ended with {status}; log:\n{}", self.log());
                }
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("agent did not stop on SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer: status, headers (lower-case names), body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A whole HTTP/1.1 answer as read off the wire (status 0 when it has none).
    pub fn parse(text: &str) -> Reply {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_string(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A minimal HTTP/1.1 POST on loopback.
pub fn http_post(port: u16, path: &str, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the gateway");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    Reply::parse(&out)
}

/// A minimal HTTP/1.1 GET on loopback; `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The cgroup v2 mount, from the mount table.
pub fn cgroup_v2_mount() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split(' ').next()? == "cgroup2")
                .then(|| PathBuf::from(left.split(' ').nth(4).unwrap()))
        })
        .expect("a cgroup2 mount")
}
