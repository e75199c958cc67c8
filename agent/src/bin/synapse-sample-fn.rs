//! `synapse-sample-fn`: a small HTTP/1.1 function for demos, tests and benchmarks.
//!
//! It behaves like a real function instance: it initialises for `--init-ms` (loading code,
//! warming caches) before it listens, then answers each request after `--work-ms` of work.
//! It listens on `SYNAPSE_LISTEN` (set by the agent) or `--listen`, serves one request per
//! connection, and can leave by itself after `--idle-exit-ms` without requests (scale to
//! zero) or after `--max-requests`. For tests it can misbehave on purpose: a request whose
//! query has `crash` aborts the process, `alloc_mb=N` allocates and touches N MiB, and
//! `--crash-once-file F` aborts on the first request of the first instance (the one that
//! creates F). `--fail-rate R` (0..=1) answers that share of requests with 500, spread
//! evenly over the requests (R = 1 fails every one), like a broken build of a function.
//! To probe its own isolation it can, on request, try what a hostile function would:
//! `read=PATH` reads a file (the answer's `read` is `ok` or the errno), `fd=N` names what its
//! descriptor N is (`fd`: the link's target, or null), and `fork=N` starts up to N child
//! processes that wait forever, stopping at the first fork the kernel refuses (`forked`, and
//! `fork_errno`, 0 when all N started).
//!
//! Each answer is JSON with the process id, the body's size and byte sum, the requests in
//! flight, and `ready_within_s`: an upper bound, from the process's own clocks, on the time
//! from its creation to the return of its `listen()` (what the agent measures in the kernel
//! as exec → listen), so tests can check that measurement without a guessed tolerance.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

struct Options {
    listen: String,
    init: Duration,
    work: Duration,
    idle_exit: Option<Duration>,
    max_requests: Option<u64>,
    crash_once_file: Option<String>,
    fail_rate: f64,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        listen: std::env::var("SYNAPSE_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into()),
        init: Duration::ZERO,
        work: Duration::ZERO,
        idle_exit: None,
        max_requests: None,
        crash_once_file: None,
        fail_rate: 0.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let ms = |v: String| -> Result<Duration, String> {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--listen" => o.listen = value()?,
            "--init-ms" => o.init = ms(value()?)?,
            "--work-ms" => o.work = ms(value()?)?,
            "--idle-exit-ms" => o.idle_exit = Some(ms(value()?)?),
            "--max-requests" => {
                o.max_requests = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--max-requests: {e}"))?,
                )
            }
            "--crash-once-file" => o.crash_once_file = Some(value()?),
            "--fail-rate" => {
                let rate: f64 = value()?.parse().map_err(|e| format!("--fail-rate: {e}"))?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(format!("--fail-rate {rate} is not between 0 and 1"));
                }
                o.fail_rate = rate;
            }
            "--help" | "-h" => {
                println!(
                    "usage: synapse-sample-fn [--listen ADDR] [--init-ms N] [--work-ms N] \
                     [--idle-exit-ms N] [--max-requests N] [--fail-rate R]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("synapse-sample-fn: {e}");
            std::process::exit(2);
        }
    };
    thread::sleep(o.init);
    let listener = match TcpListener::bind(&o.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("synapse-sample-fn: cannot listen on {}: {e}", o.listen);
            std::process::exit(1);
        }
    };
    let ready_within_s = since_process_creation().map_or(-1.0, |d| d.as_secs_f64());
    let served = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicU64::new(0));
    let crash_first = o.crash_once_file.as_ref().is_some_and(|f| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(f)
            .is_ok()
    });
    let started = Instant::now();
    let last_request_ms = Arc::new(AtomicU64::new(0));
    if let Some(idle) = o.idle_exit {
        let last = last_request_ms.clone();
        thread::spawn(move || {
            loop {
                thread::sleep(Duration::from_millis(50));
                let since = started.elapsed().as_millis() as u64 - last.load(Ordering::Relaxed);
                if since >= idle.as_millis() as u64 {
                    std::process::exit(0);
                }
            }
        });
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        last_request_ms.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let n = served.fetch_add(1, Ordering::Relaxed) + 1;
        let work = o.work;
        let last = o.max_requests.is_some_and(|m| n >= m);
        if crash_first {
            std::process::abort();
        }
        let in_flight = in_flight.clone();
        // Request n fails when the running count of failures owed, n × rate, steps up.
        let fails = (n as f64 * o.fail_rate).floor() > ((n - 1) as f64 * o.fail_rate).floor();
        let handle = thread::spawn(move || serve(stream, work, fails, ready_within_s, &in_flight));
        if last {
            let _ = handle.join();
            std::process::exit(0);
        }
    }
}

/// One request. `in_flight` counts the requests being worked on; it drops before the answer
/// is written, so a client that sends its next request on an answer never sees it high.
fn serve(
    stream: TcpStream,
    work: Duration,
    fails: bool,
    ready_within_s: f64,
    in_flight: &AtomicU64,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    content_length = v.trim().parse().unwrap_or(0);
                }
            }
        }
    }
    let mut body = vec![0u8; content_length.min(1 << 20)];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut probes = String::new();
    for pair in query.split('&') {
        probe(pair, &mut probes);
        if pair == "crash" || pair.starts_with("crash=") {
            std::process::abort();
        }
        if let Some(mb) = pair
            .strip_prefix("alloc_mb=")
            .and_then(|v| v.parse::<usize>().ok())
        {
            let mut hog = vec![0u8; mb << 20];
            for page in hog.chunks_mut(4096) {
                page[0] = 1;
            }
            std::hint::black_box(&hog);
        }
    }
    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    thread::sleep(work);
    in_flight.fetch_sub(1, Ordering::SeqCst);
    let reply = format!(
        "{{\"pid\":{},\"bytes\":{},\"in_flight\":{},\"sum\":{},\"ready_within_s\":{ready_within_s}{probes}}}\n",
        std::process::id(),
        body.len(),
        now,
        body.iter().map(|&b| u64::from(b)).sum::<u64>()
    );
    let status = if fails {
        "500 Internal Server Error"
    } else {
        "200 OK"
    };
    let _ = write!(
        &stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.len(),
        reply
    );
}

/// The isolation probes of one query pair (see the module's comment), appended to the answer
/// as JSON members.
fn probe(pair: &str, out: &mut String) {
    if let Some(path) = pair.strip_prefix("read=") {
        let result = match std::fs::read(path) {
            Ok(_) => "\"ok\"".to_string(),
            Err(e) => e.raw_os_error().unwrap_or(-1).to_string(),
        };
        out.push_str(&format!(",\"read\":{result}"));
    }
    if let Some(fd) = pair.strip_prefix("fd=").and_then(|v| v.parse::<u32>().ok()) {
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .ok()
            .map(|t| t.to_string_lossy().into_owned());
        out.push_str(&format!(",\"fd\":{}", serde_json::json!(target)));
    }
    if let Some(n) = pair
        .strip_prefix("fork=")
        .and_then(|v| v.parse::<u32>().ok())
    {
        let (mut forked, mut errno) = (0, 0);
        while forked < n {
            // SAFETY: the child only calls pause(2), async-signal-safe, until it is killed.
            match unsafe { libc::fork() } {
                0 => loop {
                    // SAFETY: as above.
                    unsafe { libc::pause() };
                },
                -1 => {
                    errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(-1);
                    break;
                }
                _ => forked += 1,
            }
        }
        out.push_str(&format!(",\"forked\":{forked},\"fork_errno\":{errno}"));
    }
}

/// Time since this process was created (its fork, which comes before its exec), on the boot
/// clock: `/proc/self/stat`'s start time counts clock ticks on it, rounded down, so the
/// result is never less than the true span. `None` where either clock cannot be read.
fn since_process_creation() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3; the start
    // time is field 22.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let start_ticks: u64 = after.split(' ').nth(22 - 3)?.parse().ok()?;
    // SAFETY: sysconf and clock_gettime only write into the timespec we pass.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if hz <= 0 || unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } != 0 {
        return None;
    }
    let now_ns = now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128;
    let start_ns = u128::from(start_ticks) * 1_000_000_000 / hz as u128;
    Some(Duration::from_nanos(now_ns.checked_sub(start_ns)? as u64))
}
