//! Frame format of the link: a 4-byte big-endian length, then that many bytes of an encoded
//! `synapse.link.v1.Frame`. Parsing is pure ([`frame_len`], [`decode_body`], [`encode`]);
//! [`FrameReader`] and [`write_frame`] are the thin I/O shells over quinn streams.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use synapse_proto::link::v1::Frame;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Default largest frame body either side accepts: 1 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the maximum of {max} bytes")]
    Oversized { len: usize, max: usize },
    #[error("frame does not decode as synapse.link.v1.Frame: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("frame has no body")]
    Empty,
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
}

impl FrameError {
    /// The `Error.code` the hub sends for this refusal, when it is the peer's fault.
    pub fn refusal_code(&self) -> Option<&'static str> {
        match self {
            FrameError::Oversized { .. } => Some("oversized"),
            FrameError::Malformed(_) | FrameError::Empty => Some("malformed"),
            _ => None,
        }
    }
}

/// Encodes `frame` with its length prefix.
pub fn encode(frame: &Frame) -> Bytes {
    let len = frame.encoded_len();
    let mut buf = BytesMut::with_capacity(HEADER_LEN + len);
    buf.put_u32(len as u32);
    frame
        .encode(&mut buf)
        .expect("buffer was sized by encoded_len");
    buf.freeze()
}

/// Reads the body length from a header, refusing lengths over `max`.
pub fn frame_len(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(FrameError::Oversized { len, max });
    }
    Ok(len)
}

/// Decodes a frame body; a frame without a body is refused as malformed.
pub fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
    let frame = Frame::decode(body)?;
    if frame.body.is_none() {
        return Err(FrameError::Empty);
    }
    Ok(frame)
}

/// Reads frames from a QUIC receive stream.
pub struct FrameReader {
    stream: quinn::RecvStream,
    max: usize,
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn new(stream: quinn::RecvStream, max: usize) -> Self {
        Self {
            stream,
            max,
            buf: Vec::new(),
        }
    }

    /// The next frame, or `None` when the peer finished the stream between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        let mut header = [0u8; HEADER_LEN];
        match self.stream.read_exact(&mut header).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(FrameError::Truncated),
            Err(quinn::ReadExactError::ReadError(e)) => return Err(e.into()),
        }
        let len = frame_len(header, self.max)?;
        self.buf.resize(len, 0);
        match self.stream.read_exact(&mut self.buf).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(FrameError::Truncated),
            Err(quinn::ReadExactError::ReadError(e)) => return Err(e.into()),
        }
        decode_body(&self.buf).map(Some)
    }
}

/// Writes one frame on a QUIC send stream.
pub async fn write_frame(stream: &mut quinn::SendStream, frame: &Frame) -> Result<(), FrameError> {
    stream.write_all(&encode(frame)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use synapse_proto::link::v1::{FunctionInterval, TelemetryBatch, frame::Body};

    fn telemetry(sequence: u64, functions: Vec<(String, u64)>) -> Frame {
        Frame {
            body: Some(Body::Telemetry(TelemetryBatch {
                sequence,
                intervals: functions
                    .into_iter()
                    .map(|(function, invocations)| FunctionInterval {
                        function,
                        invocations,
                        ..Default::default()
                    })
                    .collect(),
            })),
        }
    }

    proptest! {
        #[test]
        fn an_encoded_frame_decodes_to_itself(
            sequence in any::<u64>(),
            functions in proptest::collection::vec(("[a-z0-9-]{0,24}", any::<u64>()), 0..20),
        ) {
            let frame = telemetry(sequence, functions);
            let bytes = encode(&frame);
            let header: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
            let len = frame_len(header, DEFAULT_MAX_FRAME_BYTES).unwrap();
            prop_assert_eq!(len, bytes.len() - HEADER_LEN);
            prop_assert_eq!(decode_body(&bytes[HEADER_LEN..]).unwrap(), frame);
        }

        #[test]
        fn lengths_over_the_maximum_are_refused(max in 0usize..1 << 20, extra in 1u32..1000) {
            let len = max as u32 + extra;
            let refused = frame_len(len.to_be_bytes(), max);
            prop_assert!(
                matches!(refused, Err(FrameError::Oversized { .. })),
                "length {} under maximum {} was accepted",
                len,
                max
            );
        }
    }

    #[test]
    fn garbage_is_refused_as_malformed() {
        let refused = decode_body(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(refused.unwrap_err().refusal_code(), Some("malformed"));
    }

    #[test]
    fn a_frame_without_body_is_refused() {
        assert!(matches!(decode_body(&[]), Err(FrameError::Empty)));
    }
}
