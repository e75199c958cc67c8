//! Telemetry benchmark (a bench binary that prints figures; run as root):
//! `cargo bench -p synapse-agent --bench telemetry`.
//!
//! Starts a real `synapse-agent` with two functions, each this same binary held warm by its
//! pool (`min_warm = 1`, fixed keep-alive): `accept` in `--accept-server` mode (accept a
//! connection, close it) and `churn`, which first starts a burst of short processes one after
//! the other (exec + exit events through the ring buffer) and only then listens, so that its
//! one instance runs its burst once. The accept instance's address comes from the gateway's
//! `GET /v1/functions`; connections go to it directly at 1k/s and 10k/s and as fast as the
//! machine allows, counted by the agent in `synapse_kernel_accepts_total`. For each phase it
//! prints: events/s, events counted by the agent vs. made, ring buffer losses, agent CPU (% of
//! one core), agent RSS, and per-event BPF run time from the kernel's statistics.
//!
//! With `SYNAPSE_BENCH_SMOKE=1` it runs a short version (a burst of 50 processes, 1 s phases)
//! that prints the same tables; it asserts nothing about timings.

use std::{
    io::Read as _,
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

const AGENT: &str = env!("CARGO_BIN_EXE_synapse-agent");

/// Short runs that still print every table (`SYNAPSE_BENCH_SMOKE=1`).
fn smoke() -> bool {
    std::env::var("SYNAPSE_BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn main() {
    // Any other argument (`--bench` from `cargo bench`, filters) is ignored.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--accept-server") {
        return accept_server();
    }
    if let Some(i) = args.iter().position(|a| a == "--churn") {
        let n = args.get(i + 1).and_then(|n| n.parse().ok());
        return churn(n.expect("--churn N"));
    }
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the telemetry benchmark loads eBPF programs: run it as root");
        std::process::exit(1);
    }
    run();
}

/// The measured function: listens on the address the agent gives it (`SYNAPSE_LISTEN`),
/// accepts connections and closes them at once.
fn accept_server() {
    let addr = std::env::var("SYNAPSE_LISTEN").expect("SYNAPSE_LISTEN");
    let listener = TcpListener::bind(addr).expect("bind");
    for stream in listener.incoming() {
        drop(stream);
    }
}

/// The churn function: starts `n` short processes one after the other, then listens like the
/// accept function, so that the agent holds this instance as ready (its `ready_timeout` is
/// longer than the burst) and never starts another one that would run the burst again.
fn churn(n: u64) {
    for _ in 0..n {
        let _ = Command::new("/bin/true").status();
    }
    accept_server();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The agent's metrics page.
fn scrape(port: u16) -> String {
    use std::io::Write as _;
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// The body of `GET path` on `127.0.0.1:port`, when it answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Write as _;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// The port of a ready instance of `function`, from the gateway's listing of its pools.
fn ready_instance_port(gateway: u16, function: &str) -> Option<u16> {
    let body = http_get(gateway, "/v1/functions")?;
    let pools: serde_json::Value = serde_json::from_str(&body).ok()?;
    let pool = pools.as_array()?.iter().find(|p| p["name"] == function)?;
    pool["instances"]
        .as_array()?
        .iter()
        .filter(|i| i["state"] == "ready")
        .find_map(|i| i["addr"].as_str()?.rsplit(':').next()?.parse().ok())
}

/// Sum of the lines of one metric with exactly these labels.
fn metric(port: u16, name: &str) -> f64 {
    scrape(port)
        .lines()
        .filter_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

/// Sum over programs of a per-program metric.
fn program_metric(port: u16, name: &str) -> f64 {
    scrape(port)
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct ProcSample {
    cpu_ticks: u64,
    rss_kb: u64,
}

fn proc_sample(pid: u32) -> ProcSample {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let cpu_ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0);
    ProcSample { cpu_ticks, rss_kb }
}

/// One connection: connect, wait for the server's close, close without TIME_WAIT.
fn one_connection(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut b = [0u8; 1];
    let _ = s.read(&mut b);
    set_linger_zero(&s);
    true
}

/// Closing with a zero linger sends a reset and leaves no TIME_WAIT socket behind, so the
/// client never runs out of ephemeral ports.
fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd as _;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd and a pointer to a linger struct of the given size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// Drives `rate` connections/s (0 = as fast as possible) for `phase`; returns how many
/// succeeded.
fn drive(port: u16, rate: u64, phase: Duration) -> u64 {
    let threads = 4u64;
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let done = done.clone();
            thread::spawn(move || {
                let per_thread = rate as f64 / threads as f64;
                let mut sent = 0u64;
                while start.elapsed() < phase {
                    if rate > 0 {
                        let due = (start.elapsed().as_secs_f64() * per_thread) as u64;
                        if sent >= due {
                            thread::sleep(Duration::from_micros(200));
                            continue;
                        }
                    }
                    if one_connection(port) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    sent += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    done.load(Ordering::Relaxed)
}

/// Polls `cond` until it holds; panics after a minute or when the agent has exited.
fn wait_for(agent: &mut Agent, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        if let Ok(Some(status)) = agent.0.try_wait() {
            panic!("the agent exited ({status}) while waiting for {what}");
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: plain syscall on our child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn run() {
    let smoke = smoke();
    let me = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let gateway = free_port();
    let churn_n: u64 = if smoke { 50 } else { 5_000 };
    let phase = Duration::from_secs(if smoke { 1 } else { 10 });
    // Both functions hold one instance whatever happens (fixed keep-alive, min_warm 1 and
    // max_instances 1); the churn instance listens only after its burst, so it gets the
    // whole burst's time (and more) to become ready.
    let config = format!(
        r#"[agent]
state_dir = "{state}"
[telemetry]
interval = "1s"
[metrics]
listen = "127.0.0.1:{metrics}"
[gateway]
listen = "127.0.0.1:{gateway}"
[cgroup]
subtree = "synapse-bench"
[policy]
name = "fixed-keepalive"
[[functions]]
name = "accept"
command = "{me}"
args = ["--accept-server"]
min_warm = 1
max_instances = 1
[[functions]]
name = "churn"
command = "{me}"
args = ["--churn", "{churn_n}"]
min_warm = 1
max_instances = 1
ready_timeout = "1h"
"#,
        state = dir.path().join("state").display(),
        me = me.display(),
    );
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let mut agent = Agent(
        Command::new(AGENT)
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id();
    let mut port = None;
    wait_for(&mut agent, "the accept function's instance", || {
        port = ready_instance_port(gateway, "accept");
        port.is_some()
    });
    let port = port.expect("a ready instance");
    // The churn function's burst: exec and exit events through the ring buffer.
    let t0 = Instant::now();
    wait_for(&mut agent, "the churn to finish", || {
        metric(metrics, "synapse_ebpf_events_total{kind=\"exit\"}") >= churn_n as f64
            || metric(metrics, "synapse_ebpf_events_lost_total") > 0.0
    });
    let churn_secs = t0.elapsed().as_secs_f64();
    let execs = metric(metrics, "synapse_ebpf_events_total{kind=\"exec\"}");
    let exits = metric(metrics, "synapse_ebpf_events_total{kind=\"exit\"}");
    println!(
        "SynapseStream telemetry benchmark ({} CPUs{})",
        thread::available_parallelism().map_or(0, |n| n.get()),
        if smoke { ", smoke run" } else { "" }
    );
    println!(
        "lifecycle burst: {churn_n} processes in {churn_secs:.1} s -> {:.0} ring-buffer events/s; \
         exec events {execs} (expected {}: the two instances and the burst), exit events {exits} (expected {churn_n}), lost {}",
        (execs + exits) / churn_secs,
        churn_n + 2,
        metric(metrics, "synapse_ebpf_events_lost_total")
    );
    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>6} {:>10} {:>8} {:>12}",
        "phase", "target/s", "made/s", "counted", "lost", "agent CPU", "RSS MB", "BPF ns/event"
    );
    // Connections made straight to the instance: the kernel's accept count is the figure.
    let accepts = "synapse_kernel_accepts_total{function=\"accept\"}";
    for (name, rate) in [("1k/s", 1_000), ("10k/s", 10_000), ("max", 0)] {
        let before = metric(metrics, accepts);
        let runs0 = program_metric(metrics, "synapse_ebpf_program_runs");
        let time0 = program_metric(metrics, "synapse_ebpf_program_run_seconds");
        let p0 = proc_sample(pid);
        let t = Instant::now();
        let made = drive(port, rate, phase);
        let elapsed = t.elapsed().as_secs_f64();
        let p1 = proc_sample(pid);
        // Every connection made was accepted before `drive` returned (each waits for the
        // server's close), so the count is final once it reaches `made`.
        wait_for(&mut agent, "the counters", || {
            metric(metrics, accepts) - before >= made as f64
        });
        let counted = metric(metrics, accepts) - before;
        let runs = program_metric(metrics, "synapse_ebpf_program_runs") - runs0;
        let time = program_metric(metrics, "synapse_ebpf_program_run_seconds") - time0;
        let cpu = (p1.cpu_ticks - p0.cpu_ticks) as f64 / 100.0 / elapsed * 100.0;
        println!(
            "{:>10} {:>10} {:>10.0} {:>10} {:>6} {:>9.2}% {:>8.1} {:>12}",
            name,
            if rate == 0 {
                "-".to_string()
            } else {
                rate.to_string()
            },
            made as f64 / elapsed,
            format!("{counted}/{made}"),
            metric(metrics, "synapse_ebpf_events_lost_total"),
            cpu,
            p1.rss_kb as f64 / 1024.0,
            if runs > 0.0 {
                format!("{:.0}", time / runs * 1e9)
            } else {
                "n/a".into()
            }
        );
    }
    let execs_after = metric(metrics, "synapse_ebpf_events_total{kind=\"exec\"}");
    if execs_after != execs {
        println!(
            "note: {} more exec events during the phases (an instance was restarted)",
            execs_after - execs
        );
    }
}
