//! Gateway benchmark (a bench binary that prints figures; run as root, nginx installed):
//! `cargo bench -p synapse-agent --bench gateway`.
//!
//! One real instance (`synapse-sample-fn`, started by the agent's warm pool) is called three
//! ways at concurrency 1, 16 and 64 with a new connection per request: directly, through the
//! agent's gateway, and through nginx as a reverse proxy to the same instance. It prints
//! p50/p99 latency and requests/s of each path, the latency the gateway and nginx add
//! (their percentile minus the direct one), and the ratio of the two. Then cold against warm
//! invocation latency for a function with 300 ms of initialisation.

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
const PHASE: Duration = Duration::from_secs(4);

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
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out))
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

struct Figures {
    p50_us: f64,
    p99_us: f64,
    rps: f64,
    errors: usize,
}

fn load(port: u16, method: &'static str, path: &'static str, concurrency: usize) -> Figures {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0usize));
    let start = Instant::now();
    let handles: Vec<_> = (0..concurrency)
        .map(|_| {
            let (latencies, errors) = (latencies.clone(), errors.clone());
            thread::spawn(move || {
                let mut mine = Vec::new();
                let mut bad = 0;
                while start.elapsed() < PHASE {
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
        errors: *errors.lock().unwrap(),
    }
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
    let instance_port = Arc::new(Mutex::new(0u16));
    {
        let p = instance_port.clone();
        wait_for("the warm instance", move || {
            let Some((_, text)) = request(gateway, "GET", "/v1/functions") else {
                return false;
            };
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let addr = v[0]["instances"][0]["addr"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let ready = v[0]["instances"][0]["state"] == "ready";
            if let (true, Some(port)) =
                (ready, addr.rsplit(':').next().and_then(|p| p.parse().ok()))
            {
                *p.lock().unwrap() = port;
                return true;
            }
            false
        });
    }
    let direct = *instance_port.lock().unwrap();
    let nginx_port = free_port();
    let _nginx = nginx_bin.map(|bin| {
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 4096; }}\nhttp {{\n access_log off;\n client_body_temp_path {d};\n\
                 proxy_temp_path {d};\n server {{\n  listen 127.0.0.1:{nginx_port};\n  location / {{ proxy_pass http://127.0.0.1:{direct}; }}\n }}\n}}\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new(bin).args(["-c"]).arg(&conf).stderr(Stdio::null()).spawn().unwrap();
        wait_for("nginx", || TcpStream::connect(("127.0.0.1", nginx_port)).is_ok());
        Guard(child)
    });

    println!(
        "SynapseStream gateway benchmark ({} CPUs, {PHASE:?} per row, new connection per request)",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>4} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>8} {:>8} {:>8} | {:>11} {:>11} {:>7}",
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
        "gw +p99 us",
        "ngx +p99 us",
        "ratio"
    );
    for c in [1, 16, 64] {
        let d = load(direct, "POST", "/", c);
        let g = load(gateway, "POST", "/v1/functions/echo/invoke", c);
        let n = _nginx.as_ref().map(|_| load(nginx_port, "POST", "/", c));
        let (np50, np99, nrps) = n.as_ref().map_or((f64::NAN, f64::NAN, f64::NAN), |n| {
            (n.p50_us, n.p99_us, n.rps)
        });
        let gw_added = g.p99_us - d.p99_us;
        let ngx_added = np99 - d.p99_us;
        println!(
            "{c:>4} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} | {:>8.0} {:>8.0} {:>8.0} | {:>11.0} {:>11.0} {:>7.2}",
            d.p50_us,
            d.p99_us,
            g.p50_us,
            g.p99_us,
            np50,
            np99,
            d.rps,
            g.rps,
            nrps,
            gw_added,
            ngx_added,
            gw_added / ngx_added
        );
        let errors = d.errors + g.errors + n.map_or(0, |n| n.errors);
        if errors > 0 {
            println!("     ({errors} failed requests in this row)");
        }
    }
    if nginx_bin.is_none() {
        println!("nginx not found: install Debian's nginx for the comparison");
    }
    // Cold against warm, 300 ms of initialisation; keep-alive 1 s, so after 2.5 s it is cold again.
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(2500));
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
