//! The gateway's HTTP/1.1 handling as clients meet it, against a real agent and a real
//! instance: plain invocations on the fast path (kept-alive, pipelined, heads split across
//! reads, `Connection: close`), the requests it hands to hyper mid-connection (chunked bodies,
//! `Expect: 100-continue`, HTTP/1.0, unknown functions, bodies over the limit), the header
//! timeout, and what is counted for each answer. Runs as root.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use common::*;

struct Fixture {
    agent: Agent,
    _dir: tempfile::TempDir,
}

/// An agent with the function `echo` (one warm instance, bodies up to 64 bytes). Each test
/// stops it with SIGTERM, which ends its instances and removes its cgroups.
fn start(name: &str, gateway_settings: &str) -> Fixture {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let subtree = format!("synapse-test-http-{name}-{}", std::process::id());
    let functions = format!(
        "[[functions]]\nname = \"echo\"\ncommand = \"{SAMPLE_FN}\"\nmin_warm = 1\nmax_request_bytes = 64\n\n\
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

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the gateway");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn invocation(body: &str, extra: &str) -> String {
    format!(
        "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// One answer off `s`: status, headers (lower-case names), body. `buf` keeps what was read
/// past it.
fn answer(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Reply> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).into_owned();
            let mut lines = head.lines();
            let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let end = at + 4 + len;
            while buf.len() < end {
                read_more(s, buf)?;
            }
            let body = String::from_utf8_lossy(&buf[at + 4..end]).into_owned();
            buf.drain(..end);
            return Some(Reply {
                status,
                headers,
                body,
            });
        }
        read_more(s, buf)?;
    }
}

/// Reads more; `None` at the end of the connection.
fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    let n = s.read(&mut chunk).expect("the gateway answers or closes");
    (n > 0).then(|| buf.extend_from_slice(&chunk[..n]))
}

/// Whether the gateway closed `s` (having sent nothing more).
fn closed(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).is_ok() && rest.is_empty()
}

fn responses(agent: &Agent, code: u16) -> f64 {
    agent
        .metric(&format!(
            "synapse_gateway_responses_total{{function=\"echo\",code=\"{code}\"}}"
        ))
        .unwrap_or(0.0)
}

#[test]
fn kept_alive_invocations_are_answered_in_order_whatever_their_reads() {
    let fx = start("fast", "");
    let mut s = connect(fx.agent.gateway);
    let mut buf = Vec::new();
    // Three pipelined in one write: each answered, in order, with the body it carried.
    let three: String = ["a", "bb", "ccc"]
        .iter()
        .map(|b| invocation(b, "X-Trace: t\r\n"))
        .collect();
    s.write_all(three.as_bytes()).unwrap();
    for len in 1..=3 {
        let r = answer(&mut s, &mut buf).expect("an answer");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["bytes"], len, "{r:?}");
        assert_eq!(r.header("x-synapse-start"), Some("warm"));
        assert!(r.header("x-synapse-instance").is_some(), "{r:?}");
        assert!(r.header("x-synapse-queue-ms").is_some(), "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("date").is_some(), "{r:?}");
        assert_eq!(r.header("connection"), None, "kept alive");
    }
    // A head and body that arrive a few bytes at a time.
    let split = invocation("0123456789", "");
    for piece in split.as_bytes().chunks(7) {
        s.write_all(piece).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = answer(&mut s, &mut buf).expect("an answer");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["bytes"], 10);
    assert_eq!(r.json()["sum"], (b'0'..=b'9').map(u64::from).sum::<u64>());
    // `Connection: close`: the answer says so and the connection ends after it.
    s.write_all(invocation("last", "Connection: close\r\n").as_bytes())
        .unwrap();
    let r = answer(&mut s, &mut buf).expect("an answer");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(buf.is_empty() && closed(&mut s));
    // Every answer counted once, every invocation recorded.
    fx.agent.wait_until("five answers counted", |a| {
        responses(a, 200) == 5.0
            && a.metric("synapse_invocations_total{function=\"echo\",start=\"warm\"}") == Some(5.0)
            && a.metric("synapse_invocation_seconds_count{function=\"echo\"}") == Some(5.0)
    });
    // An idle kept-alive connection does not hold the agent up when it stops.
    let mut idle = connect(fx.agent.gateway);
    idle.write_all(invocation("x", "").as_bytes()).unwrap();
    assert_eq!(answer(&mut idle, &mut Vec::new()).unwrap().status, 200);
    assert!(fx.agent.stop(), "the agent exited with an error");
    assert!(closed(&mut idle));
}

#[test]
fn requests_off_the_fast_path_are_answered_by_hyper_on_the_same_connection() {
    let fx = start("fallback", "");
    let mut s = connect(fx.agent.gateway);
    let mut buf = Vec::new();
    // A plain invocation, then one with a chunked body, then a plain one again: hyper takes
    // the connection over from the chunked one, with the bytes already read.
    let chunked = "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                   3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    let pipelined = format!("{}{chunked}{}", invocation("1", ""), invocation("22", ""));
    s.write_all(pipelined.as_bytes()).unwrap();
    for bytes in [1, 5, 2] {
        let r = answer(&mut s, &mut buf).expect("an answer");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["bytes"], bytes, "{r:?}");
        assert_eq!(r.header("x-synapse-start"), Some("warm"));
    }
    // The gateway's own answers, from hyper, on the same connection.
    s.write_all(
        "POST /v1/functions/nope/invoke HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi".as_bytes(),
    )
    .unwrap();
    let r = answer(&mut s, &mut buf).expect("an answer");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(
        r.json()["error"].as_str().unwrap().contains("nope"),
        "{r:?}"
    );
    s.write_all(b"GET /v1/functions HTTP/1.1\r\n\r\n").unwrap();
    let r = answer(&mut s, &mut buf).expect("an answer");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()[0]["name"], "echo");
    // A body over max_request_bytes, declared or chunked: 413, naming the limit.
    let over = "x".repeat(65);
    let r = http_post(
        fx.agent.gateway,
        "/v1/functions/echo/invoke",
        over.as_bytes(),
    );
    assert_eq!(r.status, 413, "{r:?}");
    assert!(
        r.json()["error"].as_str().unwrap().contains("64 bytes"),
        "{r:?}"
    );
    let mut c = connect(fx.agent.gateway);
    let chunks = format!(
        "POST /v1/functions/echo/invoke HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         41\r\n{over}\r\n0\r\n\r\n"
    );
    c.write_all(chunks.as_bytes()).unwrap();
    assert_eq!(answer(&mut c, &mut Vec::new()).unwrap().status, 413);
    // Expect: 100-continue and HTTP/1.0 are hyper's to speak.
    let mut c = connect(fx.agent.gateway);
    c.write_all(
        b"POST /v1/functions/echo/invoke HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    )
    .unwrap();
    let mut cbuf = Vec::new();
    assert_eq!(answer(&mut c, &mut cbuf).unwrap().status, 100);
    c.write_all(b"abc").unwrap();
    let r = answer(&mut c, &mut cbuf).unwrap();
    assert_eq!((r.status, r.json()["bytes"].as_u64()), (200, Some(3)));
    let mut c = connect(fx.agent.gateway);
    c.write_all(b"POST /v1/functions/echo/invoke HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");
    // More headers than the fast path holds: hyper passes them all on.
    let many: String = (0..40).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let mut c = connect(fx.agent.gateway);
    c.write_all(invocation("four", &many).as_bytes()).unwrap();
    let r = answer(&mut c, &mut Vec::new()).unwrap();
    assert_eq!((r.status, r.json()["bytes"].as_u64()), (200, Some(4)));
    // A malformed head: 400 from hyper.
    let mut c = connect(fx.agent.gateway);
    c.write_all(b"POST /v1/functions/echo/invoke HTTP/1.1\r\nBad Header: x\r\n\r\n")
        .unwrap();
    assert_eq!(answer(&mut c, &mut Vec::new()).unwrap().status, 400);
    // Counted as before: the invocations, and the 413s by code.
    fx.agent.wait_until("the answers counted", |a| {
        responses(a, 200) == 6.0 && responses(a, 413) == 2.0
    });
    assert!(fx.agent.stop(), "the agent exited with an error");
}

#[test]
fn a_head_that_does_not_arrive_in_time_closes_the_connection() {
    let fx = start("slow", "header_read_timeout = \"300ms\"");
    // Half a head, then silence; and a connection that never says anything.
    let mut half = connect(fx.agent.gateway);
    half.write_all(b"POST /v1/functions/echo/invoke HTTP/1.1\r\nHost:")
        .unwrap();
    let mut silent = connect(fx.agent.gateway);
    assert!(closed(&mut half), "closed without an answer");
    assert!(closed(&mut silent));
    // A kept-alive connection gets the same time for its next head.
    let mut kept = connect(fx.agent.gateway);
    kept.write_all(invocation("a", "").as_bytes()).unwrap();
    assert_eq!(answer(&mut kept, &mut Vec::new()).unwrap().status, 200);
    assert!(closed(&mut kept));
    // Clients that send in time are not affected.
    assert_eq!(fx.agent.invoke("echo", "", b"ok").status, 200);
    assert!(fx.agent.stop(), "the agent exited with an error");
}
