//! Tests of the answers written by hand: the head hyper would write for the same reply.

use super::*;

fn served(status: u16, fields: &str, body: &'static [u8], cold: bool) -> Reply {
    Reply::Served {
        answer: forward::Answer {
            status,
            fields: fields.as_bytes().to_vec(),
            body: Bytes::from_static(body),
            connection: None,
        },
        cold,
        instance: "echo-7".into(),
        queued_ms: 12,
    }
}

/// The head's lines without the date's value (it changes), and the body.
fn written(reply: &Reply, close: bool) -> (Vec<String>, Bytes) {
    let mut out = Vec::new();
    let body = reply.write_head(&mut out, close);
    let text = String::from_utf8(out).unwrap();
    let head = text
        .strip_suffix("\r\n\r\n")
        .expect("ends with the blank line");
    let lines = head
        .split("\r\n")
        .map(|l| {
            if l.starts_with("date: ") {
                "date: ...".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    (lines, body)
}

#[test]
fn a_served_answer_carries_the_instances_headers_and_the_invocations() {
    let reply = served(
        200,
        "content-type: text/plain\r\nx-a: 1\r\nx-synapse-start: fake\r\n",
        b"hi",
        false,
    );
    let (lines, body) = written(&reply, false);
    assert_eq!(
        lines,
        [
            "HTTP/1.1 200 OK",
            "content-type: text/plain",
            "x-a: 1",
            "x-synapse-start: warm",
            "x-synapse-instance: echo-7",
            "x-synapse-queue-ms: 12",
            "content-length: 2",
            "date: ...",
        ]
    );
    assert_eq!(body, Bytes::from_static(b"hi"));
    assert_eq!(reply.status(), 200);
}

#[test]
fn the_last_answer_of_a_connection_says_so() {
    let (lines, _) = written(&served(201, "", b"", true), true);
    assert_eq!(
        lines,
        [
            "HTTP/1.1 201 Created",
            "x-synapse-start: cold",
            "x-synapse-instance: echo-7",
            "x-synapse-queue-ms: 12",
            "connection: close",
            "content-length: 0",
            "date: ...",
        ]
    );
}

#[test]
fn answers_without_a_body_have_no_length_and_unknown_codes_no_reason() {
    let (lines, _) = written(&served(204, "", b"", false), false);
    assert!(!lines.iter().any(|l| l.starts_with("content-length")));
    let (lines, _) = written(&served(599, "", b"x", false), false);
    assert_eq!(lines[0], "HTTP/1.1 599 <none>");
}

#[test]
fn a_refusal_is_json_with_its_retry_after() {
    let reply = Reply::Refused {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "queue \"full\"".into(),
        retry_after: Some(1),
    };
    let (lines, body) = written(&reply, false);
    assert_eq!(
        lines,
        [
            "HTTP/1.1 503 Service Unavailable",
            "content-type: application/json",
            "retry-after: 1",
            "content-length: 26",
            "date: ...",
        ]
    );
    assert_eq!(body, Bytes::from_static(br#"{"error":"queue \"full\""}"#));
}

#[test]
fn both_renderings_agree() {
    for reply in [
        served(200, "x-a: 1\r\nx-b: \r\n", b"hi", false),
        Reply::Refused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "no".into(),
            retry_after: Some(3),
        },
    ] {
        let (lines, body) = written(&reply, false);
        let answer = reply.into_answer();
        let mut expected: Vec<String> = answer
            .headers()
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        expected.push(format!("content-length: {}", body.len()));
        expected.push("date: ...".into());
        assert_eq!(lines[1..], expected[..]);
        assert_eq!(
            lines[0],
            format!(
                "HTTP/1.1 {} {}",
                answer.status().as_str(),
                answer.status().canonical_reason().unwrap()
            )
        );
    }
}

#[test]
fn an_instance_name_is_written_when_http_would_take_it_as_a_header_value() {
    for b in 0..128u8 {
        let text = (b as char).to_string();
        assert_eq!(
            visible(b),
            HeaderValue::from_str(&text).is_ok(),
            "byte {b:#04x}"
        );
    }
    let mut reply = served(200, "", b"", false);
    if let Reply::Served { instance, .. } = &mut reply {
        *instance = "bad\nname".into();
    }
    let (lines, _) = written(&reply, false);
    assert!(!lines.iter().any(|l| l.starts_with("x-synapse-instance")));
}
