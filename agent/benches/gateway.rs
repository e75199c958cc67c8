//! Gateway benchmark (a bench binary that prints figures; run as root, nginx installed):
//! `cargo bench -p synapse-agent --bench gateway`.
//!
//! One real instance (`synapse-sample-fn`, started by the agent's warm pool) is called three
//! ways at concurrency 1, 16 and 64 by the same client (one thread per concurrent caller, a
//! new client connection per request): directly, through the agent's gateway, and through
//! nginx as a reverse proxy to the same instance, configured as an operator would next to this
//! agent: as many worker processes as the gateway has threads (one per CPU), a new upstream
//! connection per request like the gateway (nginx's default `proxy_pass`), no access log (the
//! gateway writes none either). Besides latency and requests/s it prints the CPU time the
//! gateway and nginx spend per request (user + system, from `/proc`): on a machine whose CPUs
//! are shared by client, proxy and instance, that is what requests/s follow.
//!
//! The machine is shared and noisy, so every (concurrency, path) cell is measured in several
//! rounds — within a round the direct call first, then the gateway and nginx one right after
//! the other, in alternating order — and the medians over rounds are printed: p50/p99 latency
//! and requests/s of each path, the latency the gateway and nginx add over the direct call
//! (their percentile minus the direct one of the same round), and the gateway's figures over
//! nginx's as ratios ("g/n": added p50, added p99 when both are above 0, requests/s). The
//! verdicts compare the gateway with nginx round by round, where both ran under the same
//! conditions: "p99 ok" when the median over rounds of (gateway p99 − nginx p99), printed as
//! "gw-ngx p99", is at most 0 — the gateway's added p99 is then at most nginx's, the direct
//! call being the same — with the rounds where the gateway's p99 was the lower one counted
//! beside it; "r/s ok" likewise for requests/s. nginx is also measured twice per round, and
//! "A/A p99" is the median of the absolute differences between the p99 of its two runs in a
//! round (an A/A comparison): a difference between the gateway and nginx smaller than that is
//! within what this machine can tell apart. Then cold against warm invocation latency for a
//! function with 300 ms of initialisation.
//!
//! Environment: `GATEWAY_BENCH_ROUNDS` (default 8), `GATEWAY_BENCH_PHASE_MS` (per cell and
//! round, default 2000). `SYNAPSE_BENCH_SMOKE=1` runs a short version that prints the same
//! tables: 1 round of 300 ms per cell at concurrency 1 and 16, one cold invocation (the
//! variables above still apply); it asserts nothing about timings.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

const AGENT: &str = env!("CARGO_BIN_EXE_synapse-agent");
const SAMPLE_FN: &str = env!("CARGO_BIN_EXE_synapse-sample-fn");

/// Short runs that still print every table (`SYNAPSE_BENCH_SMOKE=1`).
fn smoke() -> bool {
    std::env::var("SYNAPSE_BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: plain syscall on our child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One request on a new connection; returns the status code.
fn request(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = s.set_nodelay(true);
    // In one write, as HTTP clients send a small request: `write!` on the socket would send
    // each formatted piece as a segment of its own.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"
    );
    s.write_all(request.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out))
}

/// Polls `cond` until it holds; panics after a minute.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The instances of `function` in the gateway's listing (`GET /v1/functions`): state and
/// address of each; `None` when the gateway does not answer.
fn instances(gateway: u16, function: &str) -> Option<Vec<(String, String)>> {
    let (_, text) = request(gateway, "GET", "/v1/functions")?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let pools: serde_json::Value = serde_json::from_str(body).ok()?;
    let pool = pools.as_array()?.iter().find(|p| p["name"] == function)?;
    Some(
        pool["instances"]
            .as_array()?
            .iter()
            .map(|i| {
                (
                    i["state"].as_str().unwrap_or("").to_string(),
                    i["addr"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
    )
}

/// One figure of a measurement.
type Stat = fn(&Figures) -> f64;

struct Figures {
    p50_us: f64,
    p99_us: f64,
    rps: f64,
    /// CPU time of the proxy's processes per answered request: user, system.
    proxy_cpu_us: (f64, f64),
    errors: usize,
}

/// User and system CPU time of `pids` so far, in clock ticks (from `/proc/PID/stat`).
fn cpu_ticks(pids: &[u32]) -> (u64, u64) {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command name: state is the 3rd field, utime the 14th.
            let after = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            Some((
                f.get(11)?.parse::<u64>().ok()?,
                f.get(12)?.parse::<u64>().ok()?,
            ))
        })
        .fold((0, 0), |(u, s), (du, ds)| (u + du, s + ds))
}

fn latencies_len(l: &Mutex<Vec<f64>>) -> usize {
    l.lock().unwrap().len().max(1)
}

/// `pid` and its children (nginx's master and workers).
fn with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            pids.push(child);
        }
    }
    pids
}

fn load(
    port: u16,
    method: &'static str,
    path: &'static str,
    concurrency: usize,
    phase: Duration,
    proxy: &[u32],
) -> Figures {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0usize));
    let cpu_before = cpu_ticks(proxy);
    let start = Instant::now();
    let handles: Vec<_> = (0..concurrency)
        .map(|_| {
            let (latencies, errors) = (latencies.clone(), errors.clone());
            thread::spawn(move || {
                let mut mine = Vec::new();
                let mut bad = 0;
                while start.elapsed() < phase {
                    let t = Instant::now();
                    match request(port, method, path) {
                        Some((200, _)) => mine.push(t.elapsed().as_secs_f64() * 1e6),
                        _ => bad += 1,
                    }
                }
                latencies.lock().unwrap().extend(mine);
                *errors.lock().unwrap() += bad;
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    // SAFETY: plain libc call.
    let tick_s = 1.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_after = cpu_ticks(proxy);
    let per_request_us =
        |ticks: u64| ticks as f64 * tick_s * 1e6 / latencies_len(&latencies) as f64;
    let proxy_cpu_us = (
        per_request_us(cpu_after.0 - cpu_before.0),
        per_request_us(cpu_after.1 - cpu_before.1),
    );
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Figures {
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        rps: l.len() as f64 / elapsed,
        proxy_cpu_us,
        errors: *errors.lock().unwrap(),
    }
}

/// Median of the finite values; NaN when there are none.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the gateway benchmark starts the agent (eBPF): run it as root");
        std::process::exit(1);
    }
    let nginx_bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let dir = tempfile::tempdir().unwrap();
    let (metrics, gateway) = (free_port(), free_port());
    let config = format!(
        r#"[agent]
state_dir = "{state}"
[metrics]
listen = "127.0.0.1:{metrics}"
[gateway]
listen = "127.0.0.1:{gateway}"
[cgroup]
subtree = "synapse-bench-gateway"
[policy]
name = "fixed-keepalive"
[[functions]]
name = "echo"
command = "{SAMPLE_FN}"
min_warm = 1
max_instances = 1
concurrency = 256
queue_limit = 1024
[[functions]]
name = "slow-init"
command = "{SAMPLE_FN}"
args = ["--init-ms", "300"]
keep_alive = "1s"
"#,
        state = dir.path().join("state").display()
    );
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let _agent = Guard(
        Command::new(AGENT)
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The instance's own address, from the gateway's listing.
    let mut instance_port = None;
    wait_for("the warm instance", || {
        instance_port = instances(gateway, "echo")
            .unwrap_or_default()
            .into_iter()
            .filter(|(state, _)| state == "ready")
            .find_map(|(_, addr)| addr.rsplit(':').next()?.parse::<u16>().ok());
        instance_port.is_some()
    });
    let direct = instance_port.expect("a ready instance");
    let nginx_port = free_port();
    let _nginx = nginx_bin.map(|bin| {
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nworker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 4096; }}\nhttp {{\n access_log off;\n client_body_temp_path {d};\n\
                 proxy_temp_path {d};\n server {{\n  listen 127.0.0.1:{nginx_port};\n  location / {{ proxy_pass http://127.0.0.1:{direct}; }}\n }}\n}}\n",
                d = dir.path().display(),
                workers = thread::available_parallelism().map_or(1, |n| n.get()),
            ),
        )
        .unwrap();
        let child = Command::new(bin).args(["-c"]).arg(&conf).stderr(Stdio::null()).spawn().unwrap();
        wait_for("nginx", || TcpStream::connect(("127.0.0.1", nginx_port)).is_ok());
        Guard(child)
    });

    let smoke = smoke();
    let rounds = setting("GATEWAY_BENCH_ROUNDS", if smoke { 1 } else { 8 }).max(1) as usize;
    let phase = Duration::from_millis(setting(
        "GATEWAY_BENCH_PHASE_MS",
        if smoke { 300 } else { 2000 },
    ));
    let concurrencies: &[usize] = if smoke { &[1, 16] } else { &[1, 16, 64] };
    let colds = if smoke { 1 } else { 3 };
    println!(
        "SynapseStream gateway benchmark ({} CPUs, load average {}, {rounds} rounds of {phase:?} per cell, \
         new client connection per request; medians over rounds; latencies in us; cpu: the proxy's CPU us per request)",
        thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!(
        "{:>4} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7} | {:>7} {:>7} {:>7} {:>7} | {:>8} {:>8} {:>8} | {:>9} {:>9} {:>9} {:>9} | {:>15} {:>15}",
        "conc",
        "dir p50",
        "dir p99",
        "gw p50",
        "gw p99",
        "ngx p50",
        "ngx p99",
        "dir r/s",
        "gw r/s",
        "ngx r/s",
        "gw +p50",
        "ngx +p50",
        "gw +p99",
        "ngx +p99",
        "+p50 g/n",
        "+p99 g/n",
        "r/s g/n",
        "gw-ngx p99",
        "p99 ok",
        "r/s ok",
        "A/A p99",
        "gw cpu usr+sys",
        "ngx cpu usr+sys"
    );
    // The fourth is nginx once more: nginx against itself shows how far two runs of the same
    // proxy differ on this machine, the resolution of the comparison.
    let paths: [(u16, &'static str); 4] = [
        (direct, "/"),
        (gateway, "/v1/functions/echo/invoke"),
        (nginx_port, "/"),
        (nginx_port, "/"),
    ];
    let with_nginx = _nginx.is_some();
    let nginx_pids = _nginx
        .as_ref()
        .map_or_else(Vec::new, |n| with_children(n.0.id()));
    let proxies: [Vec<u32>; 4] = [
        Vec::new(),
        vec![_agent.0.id()],
        nginx_pids.clone(),
        nginx_pids,
    ];
    for &c in concurrencies {
        // rows[path] holds one Figures per round.
        let mut rows: [Vec<Figures>; 4] = Default::default();
        let mut errors = 0;
        for round in 0..rounds {
            // The gateway and nginx always next to each other, and nginx next to itself.
            let order = if round % 2 == 0 {
                [0, 1, 2, 3]
            } else {
                [0, 3, 2, 1]
            };
            for p in order {
                if p >= 2 && !with_nginx {
                    continue;
                }
                let f = load(paths[p].0, "POST", paths[p].1, c, phase, &proxies[p]);
                errors += f.errors;
                rows[p].push(f);
            }
        }
        let med = |p: usize, get: Stat| median(rows[p].iter().map(get));
        let added = |p: usize, get: Stat| {
            median(rows[p].iter().zip(&rows[0]).map(|(x, d)| get(x) - get(d)))
        };
        let p50: Stat = |f| f.p50_us;
        let p99: Stat = |f| f.p99_us;
        let rps: Stat = |f| f.rps;
        // The gateway against nginx, round by round: the median difference and the rounds
        // where the gateway did at least as well.
        let paired = |a: usize, b: usize, get: Stat| -> Vec<f64> {
            rows[a]
                .iter()
                .zip(&rows[b])
                .map(|(x, y)| get(x) - get(y))
                .collect()
        };
        let versus = |get: Stat, better: fn(f64) -> bool| {
            let diffs = paired(1, 2, get);
            let wins = diffs.iter().filter(|d| better(**d)).count();
            (better(median(diffs.iter().copied())), wins, diffs.len())
        };
        // The gateway's figure over nginx's; only between two positive figures (an added
        // latency below 0 means the proxied path beat the direct one in that cell).
        let ratio = |gw: f64, ngx: f64| {
            if gw > 0.0 && ngx > 0.0 {
                format!("{:.2}", gw / ngx)
            } else {
                "-".to_string()
            }
        };
        let verdict = |(ok, wins, n): (bool, usize, usize)| {
            if !with_nginx {
                "-".to_string()
            } else {
                format!("{} {wins}/{n}", if ok { "yes" } else { "NO" })
            }
        };
        println!(
            "{c:>4} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} | {:>7.0} {:>7.0} {:>7.0} | {:>7.0} {:>7.0} {:>7.0} {:>7.0} | {:>8} {:>8} {:>8} | {:>9.0} {:>9} {:>9} {:>9.0} | {:>15} {:>15}",
            med(0, p50),
            med(0, p99),
            med(1, p50),
            med(1, p99),
            med(2, p50),
            med(2, p99),
            med(0, rps),
            med(1, rps),
            med(2, rps),
            added(1, p50),
            added(2, p50),
            added(1, p99),
            added(2, p99),
            ratio(added(1, p50), added(2, p50)),
            ratio(added(1, p99), added(2, p99)),
            ratio(med(1, rps), med(2, rps)),
            median(paired(1, 2, p99).into_iter()),
            verdict(versus(p99, |d| d <= 0.0)),
            verdict(versus(rps, |d| d >= 0.0)),
            median(paired(2, 3, p99).into_iter().map(f64::abs)),
            format!(
                "{:.0}+{:.0}",
                med(1, |f| f.proxy_cpu_us.0),
                med(1, |f| f.proxy_cpu_us.1)
            ),
            format!(
                "{:.0}+{:.0}",
                med(2, |f| f.proxy_cpu_us.0),
                med(2, |f| f.proxy_cpu_us.1)
            ),
        );
        if errors > 0 {
            println!("     ({errors} failed requests in this row)");
        }
    }
    println!("load average at the end: {}", load_average());
    if nginx_bin.is_none() {
        println!("nginx not found: install Debian's nginx for the comparison");
    }
    // Cold against warm, 300 ms of initialisation; keep-alive 1 s: once its pool has retired
    // the idle instance, the next invocation is cold again.
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..colds {
        wait_for("the slow-init instance to retire", || {
            instances(gateway, "slow-init").is_some_and(|i| i.is_empty())
        });
        let t = Instant::now();
        let (s, text) = request(gateway, "POST", "/v1/functions/slow-init/invoke").expect("answer");
        assert_eq!(s, 200);
        assert!(
            text.contains("x-synapse-start: cold"),
            "expected a cold start"
        );
        cold.push(t.elapsed().as_secs_f64() * 1e3);
        for _ in 0..10 {
            let t = Instant::now();
            let _ = request(gateway, "POST", "/v1/functions/slow-init/invoke");
            warm.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    warm.sort_by(f64::total_cmp);
    println!(
        "300 ms-init function: cold invocation {:.1} ms (mean of {}), warm p50 {:.2} ms",
        cold.iter().sum::<f64>() / cold.len() as f64,
        cold.len(),
        warm[warm.len() / 2]
    );
}
