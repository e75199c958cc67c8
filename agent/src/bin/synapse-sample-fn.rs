//! `synapse-sample-fn`: a small HTTP/1.1 function for demos, tests and benchmarks.
//!
//! It behaves like a real function instance: it initialises for `--init-ms` (loading code,
//! warming caches) before it listens, then answers each request after `--work-ms` of work.
//! It listens on `SYNAPSE_LISTEN` (set by the agent) or `--listen`, serves one request per
//! connection, and can leave by itself after `--idle-exit-ms` without requests (scale to
//! zero) or after `--max-requests`, or crash on purpose on a request to `/crash`.

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
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        listen: std::env::var("SYNAPSE_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into()),
        init: Duration::ZERO,
        work: Duration::ZERO,
        idle_exit: None,
        max_requests: None,
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
            "--help" | "-h" => {
                println!(
                    "usage: synapse-sample-fn [--listen ADDR] [--init-ms N] [--work-ms N] \
                     [--idle-exit-ms N] [--max-requests N]"
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
    let served = Arc::new(AtomicU64::new(0));
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
        let handle = thread::spawn(move || serve(stream, work));
        if last {
            let _ = handle.join();
            std::process::exit(0);
        }
    }
}

fn serve(stream: TcpStream, work: Duration) {
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
    if request_line.split_whitespace().nth(1) == Some("/crash") {
        std::process::abort();
    }
    thread::sleep(work);
    let reply = format!(
        "{{\"pid\":{},\"bytes\":{}}}\n",
        std::process::id(),
        body.len()
    );
    let _ = write!(
        &stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.len(),
        reply
    );
}
