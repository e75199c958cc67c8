//! Fuzz target: the link's frame codec (`synapse_link::codec`), over a byte stream as a peer
//! sends it — a 4-byte big-endian length, then that many bytes of a `Frame`, repeated.
//!
//! Holds for every input: no panic; a length over the maximum is refused as oversized (and a
//! length within it accepted as declared); a body that does not decode is refused as malformed;
//! a body that decodes re-encodes, with the right length prefix, to a frame that decodes to
//! the same frame, and encode(decode(x)) == x byte for byte for x = that encoding (protobuf
//! gives a message many encodings — fields repeated, unknown fields, non-minimal varints —
//! so the round trip is exact from the canonical one, the form every sender of this project
//! writes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use synapse_link::codec::{FrameError, HEADER_LEN, decode_body, encode, frame_len};
use synapse_proto::link::v1::frame::Body;

/// A smaller maximum than the link's 1 MiB, so refusals are reached as well as bodies.
const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while rest.len() >= HEADER_LEN {
        let header: [u8; HEADER_LEN] = rest[..HEADER_LEN].try_into().unwrap();
        let declared = u32::from_be_bytes(header) as usize;
        let len = match frame_len(header, MAX) {
            Ok(len) => len,
            Err(e) => {
                assert!(matches!(e, FrameError::Oversized { .. }), "{e}");
                assert!(declared > MAX);
                assert_eq!(e.refusal_code(), Some("oversized"));
                return;
            }
        };
        assert_eq!(len, declared);
        rest = &rest[HEADER_LEN..];
        if rest.len() < len {
            return; // the stream ends inside the frame: the reader says truncated
        }
        let (body, next) = rest.split_at(len);
        rest = next;
        match decode_body(body) {
            Ok(frame) => {
                assert!(frame.body.is_some());
                let bytes = encode(&frame);
                let prefix = u32::from_be_bytes(bytes[..HEADER_LEN].try_into().unwrap());
                assert_eq!(prefix as usize, bytes.len() - HEADER_LEN);
                let again = decode_body(&bytes[HEADER_LEN..]).expect("an encoded frame decodes");
                // encode(decode(x)) == x for x = encode(frame), a body as this project sends it.
                if let Some(Body::Hello(hello)) = &frame.body {
                    // A hello's labels are a map: prost writes its entries in the order of a
                    // HashMap, which differs between two maps of the same entries, so the
                    // bytes may differ and the frames compare as maps (a hello has no floats).
                    assert_eq!(again, frame);
                    if hello.labels.len() <= 1 {
                        assert_eq!(encode(&again), bytes, "encoding is not a fixed point");
                    }
                } else {
                    // Debug, not ==: a NaN in a frame is itself, bit for bit, but not equal
                    // to itself; no other frame holds a map.
                    assert_eq!(format!("{again:?}"), format!("{frame:?}"));
                    assert_eq!(encode(&again), bytes, "encoding is not a fixed point");
                }
            }
            Err(e) => assert_eq!(e.refusal_code(), Some("malformed"), "{e}"),
        }
    }
});
