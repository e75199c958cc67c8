//! Telemetry benchmark (a bench binary that prints figures; run as root):
//! `cargo bench -p synapse-agent --bench telemetry`.
//!
//! Starts a real `synapse-agent` whose function is this same binary in `--accept-server`
//! mode (accept a connection, close it), then drives connections at 1k/s and 10k/s and as fast
//! as two cores allow, and a burst of short processes (exec + exit events through the ring
//! buffer). For each phase it prints: events/s, events counted by the agent vs. made, ring
//! buffer losses, agent CPU (% of one core), agent RSS, and per-event BPF run time from the
//! kernel's statistics.

use std::{
    io::Read as _,
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

const AGENT: &str = env!("CARGO_BIN_EXE_synapse-agent");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--accept-server") {
        return accept_server();
    }
    if let Some(i) = args.iter().position(|a| a == "--churn") {
        return churn(args[i + 1].parse().expect("--churn N"));
    }
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the telemetry benchmark loads eBPF programs: run it as root");
        std::process::exit(1);
    }
    run();
}

/// The measured function: accepts connections and closes them at once.
fn accept_server() {
    let addr = std::env::var("SYNAPSE_LISTEN").expect("SYNAPSE_LISTEN");
    let listener = TcpListener::bind(addr).expect("bind");
    for stream in listener.incoming() {
        drop(stream);
    }
}

/// The churn function: starts `n` short processes one after the other, then idles.
fn churn(n: u64) {
    for _ in 0..n {
        let _ = Command::new("/bin/true").status();
    }
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
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

/// Drives `rate` connections/s (0 = as fast as possible) for `secs`; returns how many succeeded.
fn drive(port: u16, rate: u64, secs: u64) -> u64 {
    let threads = 4u64;
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let done = done.clone();
            thread::spawn(move || {
                let per_thread = rate as f64 / threads as f64;
                let mut sent = 0u64;
                while start.elapsed() < Duration::from_secs(secs) {
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

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(100));
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
    let me = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let port = free_port();
    let churn_n = 5_000;
    let config = format!(
        r#"[agent]
state_dir = "{state}"
[telemetry]
interval = "1s"
[metrics]
listen = "127.0.0.1:{metrics}"
[cgroup]
subtree = "synapse-bench"
[[functions]]
name = "accept"
command = "{me}"
args = ["--accept-server"]
port = {port}
[[functions]]
name = "churn"
command = "{me}"
args = ["--churn", "{churn_n}"]
restart = "never"
"#,
        state = dir.path().join("state").display(),
        me = me.display(),
    );
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let agent = Agent(
        Command::new(AGENT)
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id();
    wait_for("the accept function", || {
        Path::new(&format!("/proc/{pid}")).exists()
            && TcpStream::connect(("127.0.0.1", metrics)).is_ok()
            && metric(metrics, "synapse_cold_starts_total{function=\"accept\"}") >= 1.0
    });
    // The churn function runs first: exec and exit events through the ring buffer.
    let t0 = Instant::now();
    wait_for("the churn to finish", || {
        metric(metrics, "synapse_ebpf_events_total{kind=\"exit\"}") >= churn_n as f64
            || metric(metrics, "synapse_ebpf_events_lost_total") > 0.0
    });
    let churn_secs = t0.elapsed().as_secs_f64();
    let execs = metric(metrics, "synapse_ebpf_events_total{kind=\"exec\"}");
    let exits = metric(metrics, "synapse_ebpf_events_total{kind=\"exit\"}");
    println!(
        "SynapseStream telemetry benchmark ({} CPUs)",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "lifecycle burst: {churn_n} processes in {churn_secs:.1} s -> {:.0} ring-buffer events/s; \
         exec events {execs} (expected {}: the two functions and the burst), exit events {exits} (expected {churn_n}), lost {}",
        (execs + exits) / churn_secs,
        churn_n + 2,
        metric(metrics, "synapse_ebpf_events_lost_total")
    );
    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>6} {:>10} {:>8} {:>12}",
        "phase", "target/s", "made/s", "counted", "lost", "agent CPU", "RSS MB", "BPF ns/event"
    );
    let secs = 10;
    for (name, rate) in [("1k/s", 1_000), ("10k/s", 10_000), ("max", 0)] {
        let before = metric(metrics, "synapse_invocations_total{function=\"accept\"}");
        let runs0 = program_metric(metrics, "synapse_ebpf_program_runs");
        let time0 = program_metric(metrics, "synapse_ebpf_program_run_seconds");
        let p0 = proc_sample(pid);
        let t = Instant::now();
        let made = drive(port, rate, secs);
        let elapsed = t.elapsed().as_secs_f64();
        let p1 = proc_sample(pid);
        wait_for("the counters", || {
            metric(metrics, "synapse_invocations_total{function=\"accept\"}") - before
                >= made as f64
        });
        thread::sleep(Duration::from_millis(1500));
        let counted = metric(metrics, "synapse_invocations_total{function=\"accept\"}") - before;
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
}
