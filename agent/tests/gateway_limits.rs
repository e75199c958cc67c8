//! The gateway against clients that hold, stall or abuse connections, with a real agent and a
//! real instance: new clients are served while thousands of idle connections are held, past
//! `max_connections` new ones are refused and counted, a body that stalls or trickles is
//! answered 408 on either path, memory follows the bytes received rather than the lengths
//! declared, and no client's behaviour — gone mid-body or mid-answer, slow, or sending what
//! the instance cannot read — retires or holds the instance. Runs as root.

mod common;

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use common::*;

struct Fixture {
    agent: Agent,
    _dir: tempfile::TempDir,
}

/// An agent with the function `echo` (one warm instance, at most one, bodies up to 16 MiB,
/// `work_ms` of work per invocation) and `gateway_settings`.
fn start(name: &str, gateway_settings: &str, work_ms: u32) -> Fixture {
    require_root();
    raise_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let subtree = format!("synapse-test-limits-{name}-{}", std::process::id());
    let functions = format!(
        "[[functions]]\nname = \"echo\"\ncommand = \"{SAMPLE_FN}\"\nargs = [\"--work-ms\", \"{work_ms}\"]\n\
         min_warm = 1\nmax_instances = 1\nqueue_timeout = \"5s\"\nmax_request_bytes = 16777216\n\n\
         [policy]\nname = \"fixed-keepalive\"\n"
    );
    let agent = Agent::start_with_gateway(
        dir.path(),
        free_ports(1),
        &subtree,
        "test",
        "edge",
        gateway_settings,
        &functions,
    );
    agent.wait_until("a warm instance", |a| {
        a.metric("synapse_warm_instances{function=\"echo\"}") == Some(1.0)
    });
    Fixture { agent, _dir: dir }
}

/// This process holds thousands of sockets: its soft limit on open files goes to the hard one.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the gateway");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Everything the gateway sends until it closes `s`: its answer, or nothing.
fn until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the gateway neither answered nor closed: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the gateway answered or closed `s` already, looked at without waiting.
fn heard_from(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let heard = match s.peek(&mut [0u8; 1]) {
        Ok(_) => true,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    heard
}

fn pid_of(r: &Reply) -> u64 {
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["pid"].as_u64().expect("the instance's pid")
}

fn counted(agent: &Agent, name: &str) -> f64 {
    agent.metric(name).unwrap_or(0.0)
}

#[test]
fn new_clients_are_served_while_thousands_of_idle_connections_are_held() {
    const IDLE: usize = 2000;
    const NEW: usize = 100;
    // Idle connections are closed by the header timeout: every new client must be served
    // before that closes any of them, while all of them are held.
    let fx = start("idle", "threads = 2\nheader_read_timeout = \"8s\"", 0);
    let began = Instant::now();
    let idle: Vec<TcpStream> = (0..IDLE).map(|_| connect(fx.agent.gateway)).collect();
    let mut slowest = Duration::ZERO;
    let mut served = 0;
    for _ in 0..NEW {
        let sent = Instant::now();
        if fx.agent.invoke("echo", "", b"x").status == 200 {
            served += 1;
        }
        slowest = slowest.max(sent.elapsed());
    }
    let all = began.elapsed();
    let dropped = idle.iter().filter(|s| heard_from(s)).count();
    println!(
        "{IDLE} idle connections opened and {NEW} new clients served in {all:?}; slowest new client {slowest:?}"
    );
    assert_eq!(served, NEW, "every new client served");
    assert_eq!(
        dropped, 0,
        "the new clients were served while every idle connection was held (none reached its header timeout)"
    );
    fx.agent.wait_until("the idle connections counted", |a| {
        a.metric("synapse_gateway_connections_open") == Some(IDLE as f64)
    });
    drop(idle);
    assert!(fx.agent.stop(), "the agent exited with an error");
}

#[test]
fn past_max_connections_new_connections_are_refused_and_counted() {
    let fx = start("cap", "threads = 2\nmax_connections = 20", 0);
    let mut held: Vec<TcpStream> = (0..20).map(|_| connect(fx.agent.gateway)).collect();
    fx.agent.wait_until("20 connections held", |a| {
        a.metric("synapse_gateway_connections_open") == Some(20.0)
    });
    for _ in 0..3 {
        let mut extra = connect(fx.agent.gateway);
        // Nothing sent yet: the refusal is read whole before the close.
        let said = until_closed(&mut extra);
        assert!(said.starts_with("HTTP/1.1 503 "), "refused: {said}");
        assert!(said.contains("max_connections"), "{said}");
    }
    assert_eq!(
        counted(&fx.agent, "synapse_gateway_connections_refused_total"),
        3.0
    );
    assert_eq!(
        fx.agent.metric("synapse_gateway_connections_open"),
        Some(20.0)
    );
    // One leaves: there is room for a client again.
    held.pop();
    fx.agent.wait_until("19 connections held", |a| {
        a.metric("synapse_gateway_connections_open") == Some(19.0)
    });
    assert_eq!(fx.agent.invoke("echo", "", b"ok").status, 200);
    drop(held);
    assert!(fx.agent.stop(), "the agent exited with an error");
}

/// Sends `head` and `start` of a body that then stalls: the gateway answers 408 and closes.
fn stalls(port: u16, head: &str, start: &[u8]) -> String {
    let mut s = connect(port);
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(start).unwrap();
    until_closed(&mut s)
}

#[test]
fn a_stalled_or_trickling_body_is_answered_408_and_closed() {
    let fx = start(
        "stall",
        "body_idle_timeout = \"200ms\"\nbody_min_rate = 200\nbody_rate_grace = \"500ms\"",
        0,
    );
    let port = fx.agent.gateway;
    let before = pid_of(&fx.agent.invoke("echo", "", b"x"));
    // The fast path: a declared length, part of the body, then nothing.
    let fast = "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n";
    let said = stalls(port, fast, b"abc");
    assert!(said.starts_with("HTTP/1.1 408 "), "{said}");
    assert!(said.contains("connection: close"), "{said}");
    // hyper's path: a chunked body cut off in a chunk.
    let chunked =
        "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let said = stalls(port, chunked, b"5\r\nab");
    assert!(said.starts_with("HTTP/1.1 408 "), "{said}");
    assert!(said.contains("connection: close"), "{said}");
    // A body trickling at 20 bytes/s, under the minimum of 200, each byte within the idle
    // timeout: 408 once the grace period has passed.
    for head in [fast.replace("10", "1000"), chunked.to_string() + "3e8\r\n"] {
        let mut s = connect(port);
        s.write_all(head.as_bytes()).unwrap();
        let mut sent = 0;
        while !heard_from(&s) && sent < 500 && s.write_all(b"z").is_ok() {
            sent += 1;
            // The client's own pace (not a wait for the gateway).
            std::thread::sleep(Duration::from_millis(50));
        }
        let said = until_closed(&mut s);
        assert!(
            said.starts_with("HTTP/1.1 408 "),
            "after {sent} bytes: {said}"
        );
    }
    fx.agent.wait_until("the 408s counted", |a| {
        counted(
            a,
            "synapse_gateway_responses_total{function=\"echo\",code=\"408\"}",
        ) == 4.0
    });
    // The instance was never involved.
    assert_eq!(pid_of(&fx.agent.invoke("echo", "", b"x")), before);
    assert!(fx.agent.stop(), "the agent exited with an error");
}

/// `key:` of /proc/PID/status, in kB.
fn status_kb(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

#[test]
fn memory_follows_the_bytes_received_not_the_lengths_declared() {
    const CONNECTIONS: usize = 500;
    const DECLARED: usize = 10 << 20;
    // One thread: its connections are served in the order they came, so once a later
    // invocation is answered every one before it has read its head and first bytes.
    let fx = start("memory", "threads = 1", 0);
    let pid = fx.agent.child.id();
    assert_eq!(fx.agent.invoke("echo", "", b"warm").status, 200);
    let (rss, data) = (status_kb(pid, "VmRSS:"), status_kb(pid, "VmData:"));
    let head = format!(
        "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: {DECLARED}\r\n\r\n0123456789"
    );
    let held: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut s = connect(fx.agent.gateway);
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    assert_eq!(fx.agent.invoke("echo", "", b"after").status, 200);
    let rss_growth = status_kb(pid, "VmRSS:").saturating_sub(rss);
    let data_growth = status_kb(pid, "VmData:").saturating_sub(data);
    println!(
        "{CONNECTIONS} connections declaring {} MiB each: RSS +{} MiB, VmData +{} MiB",
        DECLARED >> 20,
        rss_growth >> 10,
        data_growth >> 10
    );
    // Reserving the declared lengths would take 5,000 MiB of address space.
    assert!(rss_growth < 50 << 10, "RSS grew {rss_growth} kB");
    assert!(data_growth < 500 << 10, "VmData grew {data_growth} kB");
    fx.agent.wait_until("the connections held", |a| {
        a.metric("synapse_gateway_connections_open") == Some(CONNECTIONS as f64)
    });
    drop(held);
    assert!(fx.agent.stop(), "the agent exited with an error");
}

#[test]
fn no_client_retires_or_holds_the_instance() {
    let fx = start("abuse", "body_idle_timeout = \"200ms\"", 300);
    let port = fx.agent.gateway;
    let pid = pid_of(&fx.agent.invoke("echo", "", b"x"));
    let invoke = "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: x\r\n";
    let chunked = format!("{invoke}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    let plain = format!("{invoke}Content-Length: 3\r\n\r\nabc");
    // Gone in the middle of a body, on either path.
    for cut in [
        format!("{invoke}Content-Length: 50\r\n\r\nabc"),
        format!("{invoke}Transfer-Encoding: chunked\r\n\r\n32\r\nabc"),
    ] {
        connect(port).write_all(cut.as_bytes()).unwrap();
    }
    // Gone while the instance works on the invocation, on either path: the client's socket
    // is closed once the gateway has taken the request to the instance (or, should the
    // instance be that quick, once it has answered).
    for whole in [&plain, &chunked] {
        let before = counted(&fx.agent, INVOKED);
        let mut s = connect(port);
        s.write_all(whole.as_bytes()).unwrap();
        fx.agent
            .wait_until("the invocation leased the instance", |a| {
                in_flight(a) == 1 || counted(a, INVOKED) > before
            });
        drop(s);
    }
    // A header the instance cannot read (not UTF-8): it closes the connection without an
    // answer. That invocation fails (502, after one more try), the instance stays.
    let mut s = connect(port);
    s.write_all(format!("{invoke}X-Junk: ").as_bytes()).unwrap();
    s.write_all(b"\xff\r\nConnection: close\r\nContent-Length: 1\r\n\r\na")
        .unwrap();
    let said = until_closed(&mut s);
    assert!(said.starts_with("HTTP/1.1 502 "), "{said}");
    // A body that stalls (408), and a head that never ends.
    let said = stalls(port, &format!("{invoke}Content-Length: 9\r\n\r\n"), b"a");
    assert!(said.starts_with("HTTP/1.1 408 "), "{said}");
    connect(port).write_all(invoke.as_bytes()).unwrap();
    // The instance finishes what it was given and is free again, and the same process goes on
    // serving: nothing retired it or left it counted busy.
    fx.agent
        .wait_until("the instance free again", |a| in_flight(a) == 0);
    for _ in 0..5 {
        assert_eq!(pid_of(&fx.agent.invoke("echo", "", b"again")), pid);
    }
    let ended: f64 = fx
        .agent
        .get("/metrics")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("synapse_instance_ends_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(ended, 0.0, "no instance ended");
    assert!(fx.agent.stop(), "the agent exited with an error");
}

const INVOKED: &str = "synapse_invocations_total{function=\"echo\",start=\"warm\"}";

/// Invocations in flight on the instances of `echo`, from the gateway's listing.
fn in_flight(agent: &Agent) -> u64 {
    let listing = http_get(agent.gateway, "/v1/functions").unwrap_or_default();
    let functions: serde_json::Value = serde_json::from_str(&listing).unwrap_or_default();
    functions[0]["instances"].as_array().map_or(0, |i| {
        i.iter().filter_map(|i| i["in_flight"].as_u64()).sum()
    })
}
