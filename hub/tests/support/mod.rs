//! A fleet on loopback for the hub's integration tests: a CA and certificates made with
//! `synapsectl certs`, a `synapse-hub` process that can be killed and restarted on the same
//! store and ports, `synapse-link-driver` processes as agents, and helpers to read the
//! console (through `synapsectl -o json`, or any RPC by path in [`console`]) and the metrics
//! endpoint. Every wait is bounded.

#![allow(dead_code)]

pub mod console;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

pub const HUB: &str = env!("CARGO_BIN_EXE_synapse-hub");
pub const CTL: &str = env!("CARGO_BIN_EXE_synapsectl");
pub const DRIVER: &str = env!("CARGO_BIN_EXE_synapse-link-driver");

/// Runs a command to completion, failing the test with its output if it fails.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("command starts");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Polls `probe` every 100 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA directory with certificates issued by `synapsectl certs`.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn init(dir: PathBuf) -> Self {
        run_ok(Command::new(CTL).args(["certs", "init"]).arg(&dir));
        Self { dir }
    }

    pub fn issue(&self, role: &str, name: &str) {
        run_ok(
            Command::new(CTL)
                .args(["certs", "issue", "--role", role, "--name", name, "--ca-dir"])
                .arg(&self.dir),
        );
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
}

/// A hub process with its config, store and ports, restartable.
pub struct Hub {
    pub config: PathBuf,
    pub link: String,
    pub console: String,
    pub metrics: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Hub {
    pub fn start(root: &Path, pki: &Pki) -> Self {
        Self::start_with(root, pki, "")
    }

    /// A hub whose configuration ends with `more` (further TOML sections).
    pub fn start_with(root: &Path, pki: &Pki, more: &str) -> Self {
        Self::start_configured(root, pki, "", more)
    }

    /// A hub whose `[console]` table also holds `console` (TOML lines), and whose
    /// configuration ends with `more`.
    pub fn start_configured(root: &Path, pki: &Pki, console: &str, more: &str) -> Self {
        let (link, console_port, metrics) = (free_udp_port(), free_tcp_port(), free_tcp_port());
        let config = root.join("hub.toml");
        let text = format!(
            "hub_id = \"test-hub\"\ndata_dir = {data:?}\n\n[tls]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n\n\
             [link]\nlisten = \"127.0.0.1:{link}\"\nmax_frame_bytes = 65536\nheartbeat_interval = \"500ms\"\n\n\
             [console]\nlisten = \"127.0.0.1:{console_port}\"\n{console}\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n",
            data = root.join("hub-data"),
            ca = pki.ca(),
            cert = pki.cert("synapse-hub"),
            key = pki.key("synapse-hub"),
        );
        std::fs::write(&config, format!("{text}{more}")).unwrap();
        let mut hub = Self {
            config,
            link: format!("127.0.0.1:{link}"),
            console: format!("https://127.0.0.1:{console_port}"),
            metrics: format!("127.0.0.1:{metrics}"),
            log: root.join("hub.log"),
            child: None,
        };
        hub.spawn();
        hub
    }

    /// Starts the process and waits until its metrics endpoint answers.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(HUB)
            .arg("--config")
            .arg(&self.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("synapse-hub starts");
        self.child = Some(child);
        wait_for("the hub to serve metrics", Duration::from_secs(20), || {
            self.try_metrics()
        });
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn try_metrics(&self) -> Option<String> {
        let mut stream = TcpStream::connect(&self.metrics).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.metrics);
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
    }

    /// The value of one sample (name with labels, as printed), 0 if absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let text = self.try_metrics().expect("metrics endpoint answers");
        text.lines()
            .find_map(|line| {
                line.strip_prefix(sample)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// `synapsectl` against this hub with the given operator certificate.
    pub fn ctl(&self, pki: &Pki, who: &str) -> Command {
        let mut command = Command::new(CTL);
        command
            .args(["--hub", &self.console, "--ca"])
            .arg(pki.ca())
            .arg("--cert")
            .arg(pki.cert(who))
            .arg("--key")
            .arg(pki.key(who));
        command
    }

    /// `synapsectl agents -o json` as an operator.
    pub fn agents(&self, pki: &Pki) -> Vec<serde_json::Value> {
        let output = run_ok(self.ctl(pki, "operator").args(["agents", "-o", "json"]));
        serde_json::from_slice(&output.stdout).expect("synapsectl prints JSON")
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One agent: a `synapse-link-driver` process on its own sled store.
pub struct Agent {
    pub id: String,
    pub tier: String,
    db: PathBuf,
    batches: u64,
    interval_ms: u64,
    child: Option<Child>,
}

impl Agent {
    pub fn start(
        root: &Path,
        pki: &Pki,
        hub: &Hub,
        id: &str,
        tier: &str,
        batches: u64,
        interval_ms: u64,
    ) -> Self {
        let mut agent = Self {
            id: id.into(),
            tier: tier.into(),
            db: root.join(format!("{id}-db")),
            batches,
            interval_ms,
            child: None,
        };
        agent.spawn(pki, hub);
        agent
    }

    pub fn spawn(&mut self, pki: &Pki, hub: &Hub) {
        let child = Command::new(DRIVER)
            .args([
                "--hub",
                &hub.link,
                "--agent-id",
                &self.id,
                "--tier",
                &self.tier,
            ])
            .args(["--label", &format!("tier={}", self.tier)])
            .args(["--batches", &self.batches.to_string()])
            .args(["--interval-ms", &self.interval_ms.to_string()])
            .args(["--timeout", "90"])
            .arg("--db")
            .arg(&self.db)
            .arg("--ca")
            .arg(pki.ca())
            .arg("--cert")
            .arg(pki.cert(&self.id))
            .arg("--key")
            .arg(pki.key(&self.id))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("synapse-link-driver starts");
        self.child = Some(child);
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Waits for the driver to finish and returns its final outbox counters.
    pub fn finish(&mut self) -> serde_json::Value {
        let child = self.child.take().expect("agent is running");
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "agent {} failed: {}\n{}",
            self.id,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("driver prints JSON")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}
