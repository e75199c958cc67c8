//! Fuzz target: the gateway's fast-path reading of a request head
//! (`synapse_agent::gateway::parse_head`, agent/src/gateway/request.rs), over the bytes a
//! client sends at the start of a connection.
//!
//! Holds for every input: no panic; a partial head is one shorter than the 64 KiB the fast
//! path waits for; an invocation's head ends within the bytes given, names a function and
//! query found in its request line, keeps its body length to what its one `Content-Length`
//! says, and reads the same from its own head bytes alone, while every shorter prefix of the
//! head is still partial (bytes arriving one at a time are served the same way).

#![no_main]

use libfuzzer_sys::fuzz_target;
use synapse_agent::gateway::{FastPathHead, parse_head};

const MAX_HEAD: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let head = parse_head(data);
    match &head {
        FastPathHead::Partial => assert!(data.len() < MAX_HEAD),
        FastPathHead::Other => {}
        FastPathHead::Invoke {
            name,
            query,
            headers,
            head_len,
            body_len,
            close: _,
        } => {
            let head_len = *head_len;
            assert!(head_len <= data.len() && head_len > 0);
            let bytes = &data[..head_len];
            // A head ends with an empty line; httparse, and so hyper, takes a bare LF for CRLF
            // at the end of any line.
            assert!(bytes.ends_with(b"\n\r\n") || bytes.ends_with(b"\n\n"));
            // Empty lines before the request line are skipped (RFC 9112, 2.2).
            let start = bytes
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap();
            let request = &bytes[start..];
            assert!(request.starts_with(b"POST /v1/functions/"));
            let line_end = request.iter().position(|&b| b == b'\n').unwrap();
            let line = std::str::from_utf8(&request[..line_end]).expect("request line is ASCII");
            let target = format!(
                "/v1/functions/{name}/invoke{}",
                query.as_ref().map(|q| format!("?{q}")).unwrap_or_default()
            );
            assert!(
                line.trim_end_matches('\r') == format!("POST {target} HTTP/1.1"),
                "{line:?} vs {target:?}"
            );
            assert!(*headers <= 32);
            let lengths: Vec<usize> = content_lengths(request);
            assert!(lengths.len() <= 1);
            assert_eq!(*body_len, lengths.first().copied().unwrap_or(0));
            // The head alone reads the same; a byte short of it, it is not complete yet.
            assert_eq!(parse_head(bytes), head);
            assert_eq!(parse_head(&bytes[..head_len - 1]), FastPathHead::Partial);
        }
    }
    // Prefixes of a complete head or of garbage never read as an invocation with more bytes
    // than they hold.
    for cut in [data.len() / 2, data.len().saturating_sub(1)] {
        if let FastPathHead::Invoke { head_len, .. } = parse_head(&data[..cut]) {
            assert!(head_len <= cut);
        }
    }
});

/// The values of the `Content-Length` lines of a head, read line by line apart from the parser.
fn content_lengths(head: &[u8]) -> Vec<usize> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at(colon);
            if !name.eq_ignore_ascii_case(b"content-length") {
                return None;
            }
            let value = std::str::from_utf8(&value[1..]).ok()?;
            value.trim_matches([' ', '\t']).parse().ok()
        })
        .collect()
}
