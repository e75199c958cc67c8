//! Tests of the exchange with an instance, against a scripted instance on loopback: what is
//! sent, and every framing of an answer.

use super::*;
use hyper::header;

/// Forwards one invocation to `/` of the instance at `addr`, with the client's `query`, as
/// the gateway's hyper path does.
async fn forward(
    addr: SocketAddr,
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
    timeout: Duration,
) -> Result<Response<Bytes>, ForwardError> {
    exchange(addr, method, "/", query, &fields_of(headers), body, timeout)
        .await?
        .into_response()
}

/// An instance that reads one request and writes `answer` in pieces; returns the address and
/// a receiver of the request it read.
async fn instance(
    answer: Vec<&'static [u8]>,
) -> (SocketAddr, tokio::sync::oneshot::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
        for piece in answer {
            s.write_all(piece).await.unwrap();
            s.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    (addr, rx)
}

async fn call(
    answer: Vec<&'static [u8]>,
    method: Method,
) -> (Result<Response<Bytes>, ForwardError>, String) {
    let (addr, request) = instance(answer).await;
    let mut headers = HeaderMap::new();
    headers.insert("x-trace", HeaderValue::from_static("abc"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    headers.insert(header::HOST, HeaderValue::from_static("gateway"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
    let body = Bytes::from_static(b"hello");
    let result = forward(
        addr,
        &method,
        Some("q=1"),
        &headers,
        &body,
        Duration::from_secs(5),
    )
    .await;
    (result, request.await.unwrap_or_default())
}

/// POSTs `body` to `/` of the instance at `addr` with no headers of the client's.
async fn post(addr: SocketAddr, body: &[u8]) -> Answer {
    exchange(
        addr,
        &Method::POST,
        "/",
        None,
        &[],
        body,
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_request_carries_the_end_to_end_headers_and_its_own_framing() {
    let (result, request) = call(
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
        Method::POST,
    )
    .await;
    assert_eq!(result.unwrap().into_body(), Bytes::from_static(b"ok"));
    let (head, body) = request.split_once("\r\n\r\n").unwrap();
    let lines: Vec<&str> = head.lines().collect();
    assert_eq!(lines[0], "POST /?q=1 HTTP/1.1");
    assert!(lines.contains(&"x-trace: abc"), "{head}");
    assert!(lines.contains(&"connection: close"), "{head}");
    assert!(lines.contains(&"content-length: 5"), "{head}");
    assert!(
        lines.iter().any(|l| l.starts_with("host: 127.0.0.1:")),
        "{head}"
    );
    // The client's own framing and hop-by-hop headers are dropped (by line: the random port
    // of the host line may contain "999").
    let dropped = |l: &&str| {
        let l = l.to_ascii_lowercase();
        l.ends_with(": keep-alive") || l == "content-length: 999" || l == "host: gateway"
    };
    assert!(!lines.iter().any(dropped), "{head}");
    assert_eq!(body, "hello");
}

#[tokio::test]
async fn a_chunked_answer_is_decoded_across_reads() {
    let (result, _) = call(
        vec![
            b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\n",
            b"5;ext=1\r\nhel",
            b"lo\r\n6\r\n world\r\n0\r\n",
            b"x-trailer: t\r\n\r\n",
        ],
        Method::POST,
    )
    .await;
    let r = result.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["x-a"], "1");
    assert!(
        !r.headers().contains_key(header::TRANSFER_ENCODING),
        "framing is the gateway's own on the way back"
    );
    assert_eq!(r.into_body(), Bytes::from_static(b"hello world"));
}

#[tokio::test]
async fn hop_by_hop_headers_of_the_answer_are_not_passed_on() {
    let (result, _) = call(
        vec![b"HTTP/1.1 200 OK\r\nconnection: close\r\nkeep-alive: timeout=5\r\nx-b: 2\r\ncontent-length: 1\r\n\r\nk"],
        Method::POST,
    )
    .await;
    let r = result.unwrap();
    let names: Vec<&str> = r.headers().keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["x-b"]);
}

#[tokio::test]
async fn a_transfer_coding_overrides_the_length() {
    let (result, _) = call(
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"],
        Method::POST,
    )
    .await;
    assert_eq!(result.unwrap().into_body(), Bytes::from_static(b"abc"));
}

#[tokio::test]
async fn an_answer_without_length_runs_to_the_end_of_the_connection() {
    let (result, _) = call(vec![b"HTTP/1.1 200 OK\r\n\r\nall ", b"of it"], Method::POST).await;
    assert_eq!(
        result.unwrap().into_body(),
        Bytes::from_static(b"all of it")
    );
}

#[tokio::test]
async fn an_interim_answer_is_skipped() {
    let (result, _) = call(
        vec![
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nyes",
        ],
        Method::POST,
    )
    .await;
    assert_eq!(result.unwrap().into_body(), Bytes::from_static(b"yes"));
}

#[tokio::test]
async fn a_head_answer_has_no_body_whatever_its_length_says() {
    let (result, _) = call(
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 42\r\n\r\n"],
        Method::HEAD,
    )
    .await;
    assert!(result.unwrap().into_body().is_empty());
}

#[tokio::test]
async fn a_cut_or_garbled_answer_is_a_broken_exchange() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n",
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
    ] {
        let (result, _) = call(vec![answer], Method::POST).await;
        assert!(
            matches!(result, Err(ForwardError::Broken(_))),
            "{:?}: {result:?}",
            String::from_utf8_lossy(answer)
        );
    }
}

#[tokio::test]
async fn a_refused_connection_is_safe_to_retry_elsewhere() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let result = forward(
        addr,
        &Method::POST,
        None,
        &HeaderMap::new(),
        &Bytes::new(),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(result, Err(ForwardError::Connect(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_silent_instance_runs_into_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move { listener.accept().await });
    let result = forward(
        addr,
        &Method::POST,
        None,
        &HeaderMap::new(),
        &Bytes::new(),
        Duration::from_millis(200),
    )
    .await;
    assert!(
        matches!(result, Err(ForwardError::Timeout(_))),
        "{result:?}"
    );
    hold.abort();
}

/// The request goes out right after `connect` on loopback, IPv6 too, and a body larger than
/// what is sent with the head follows it whole.
#[tokio::test]
async fn a_large_body_reaches_an_instance_on_ipv6_loopback() {
    let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    };
    let addr = listener.local_addr().unwrap();
    let body = Bytes::from(vec![b'x'; 3 * COALESCE + 7]);
    let expected = body.len();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = vec![0u8; 65536];
        let got = loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            request.extend_from_slice(&buf[..n]);
            if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n")
                && request.len() - at - 4 >= expected
            {
                break request.len() - at - 4;
            }
        };
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{got}",
            got.to_string().len()
        );
        s.write_all(answer.as_bytes()).await.unwrap();
    });
    let answer = post(addr, &body).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, expected.to_string());
    server.await.unwrap();
}

#[tokio::test]
async fn a_local_instance_sees_a_reset_once_its_answer_is_read() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut read = Vec::new();
        while !read.ends_with(b"\r\n\r\nhello") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            read.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        // Still open after the answer: how the connection ends shows on the next read.
        let _ = tx.send(s.read(&mut buf).await.map_err(|e| e.kind()));
    });
    let answer = post(addr, b"hello").await;
    assert_eq!((answer.status, &answer.body[..]), (200, &b"ok"[..]));
    // The connection lives as long as the answer: closed once it has been passed on.
    let mut rx = rx;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        rx.try_recv().is_err(),
        "still open while the answer is held"
    );
    drop(answer);
    // A FIN would read as Ok(0) and leave a socket in TIME_WAIT; the exchange ends with a reset.
    assert_eq!(rx.await.unwrap(), Err(std::io::ErrorKind::ConnectionReset));
}
