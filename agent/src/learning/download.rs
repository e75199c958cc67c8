//! Receiving an offered model version in chunks and checking it before it may enter service:
//! every chunk present, the announced size, the announced SHA-256 — then the caller loads it
//! with tract ([`crate::forecast::neural::ServingModel::load`]). Pure state, no I/O.

use synapse_proto::link::v1::{ModelChunk, ModelOffer};

use crate::forecast::neural::serving::sha256_hex;

/// The largest model file an agent accepts (the forecaster's is a few KiB).
pub const MAX_MODEL_BYTES: u64 = 16 << 20;

/// Why an offered version was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DownloadError {
    #[error(
        "offer of {size} bytes in {chunks} chunks is not plausible (limit {MAX_MODEL_BYTES} bytes)"
    )]
    Implausible { size: u64, chunks: u32 },
    #[error("chunk {index} is out of range (the offer has {chunks})")]
    ChunkOutOfRange { index: u32, chunks: u32 },
    #[error("the file is {got} bytes, the offer announced {expected}")]
    Size { expected: u64, got: u64 },
    #[error("SHA-256 mismatch: offered {expected}, received {got}")]
    HashMismatch { expected: String, got: String },
}

/// One version being received.
#[derive(Debug)]
pub struct Download {
    pub offer: ModelOffer,
    chunks: Vec<Option<Vec<u8>>>,
    received_bytes: u64,
}

impl Download {
    pub fn start(offer: ModelOffer) -> Result<Self, DownloadError> {
        if offer.size_bytes > MAX_MODEL_BYTES
            || offer.chunks == 0
            || u64::from(offer.chunks) > offer.size_bytes.max(1)
        {
            return Err(DownloadError::Implausible {
                size: offer.size_bytes,
                chunks: offer.chunks,
            });
        }
        Ok(Self {
            chunks: vec![None; offer.chunks as usize],
            offer,
            received_bytes: 0,
        })
    }

    /// Takes one chunk; returns the verified file once the last one is in.
    pub fn chunk(&mut self, chunk: ModelChunk) -> Result<Option<Vec<u8>>, DownloadError> {
        let chunks = self.offer.chunks;
        let slot =
            self.chunks
                .get_mut(chunk.index as usize)
                .ok_or(DownloadError::ChunkOutOfRange {
                    index: chunk.index,
                    chunks,
                })?;
        if slot.is_none() {
            self.received_bytes += chunk.data.len() as u64;
            *slot = Some(chunk.data);
        }
        if self.received_bytes > self.offer.size_bytes {
            return Err(DownloadError::Size {
                expected: self.offer.size_bytes,
                got: self.received_bytes,
            });
        }
        if self.chunks.iter().any(Option::is_none) {
            return Ok(None);
        }
        let file: Vec<u8> = self.chunks.iter().flatten().flatten().copied().collect();
        if file.len() as u64 != self.offer.size_bytes {
            return Err(DownloadError::Size {
                expected: self.offer.size_bytes,
                got: file.len() as u64,
            });
        }
        let got = sha256_hex(&file);
        if !got.eq_ignore_ascii_case(&self.offer.sha256) {
            return Err(DownloadError::HashMismatch {
                expected: self.offer.sha256.clone(),
                got,
            });
        }
        Ok(Some(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(file: &[u8], chunks: u32) -> ModelOffer {
        ModelOffer {
            version: 2,
            sha256: sha256_hex(file),
            size_bytes: file.len() as u64,
            chunks,
            parent: 1,
            round: 1,
        }
    }

    fn chunk(index: u32, data: &[u8]) -> ModelChunk {
        ModelChunk {
            version: 2,
            index,
            data: data.to_vec(),
        }
    }

    #[test]
    fn chunks_in_any_order_give_back_the_file() {
        let file = b"0123456789";
        let mut d = Download::start(offer(file, 3)).unwrap();
        assert_eq!(d.chunk(chunk(2, b"89")).unwrap(), None);
        assert_eq!(d.chunk(chunk(0, b"0123")).unwrap(), None);
        assert_eq!(d.chunk(chunk(1, b"4567")).unwrap(), Some(file.to_vec()));
    }

    #[test]
    fn a_flipped_byte_is_a_hash_mismatch() {
        let file = b"0123456789";
        let mut d = Download::start(offer(file, 2)).unwrap();
        d.chunk(chunk(0, b"01234")).unwrap();
        let err = d.chunk(chunk(1, b"5678X")).unwrap_err();
        assert!(matches!(err, DownloadError::HashMismatch { .. }), "{err}");
    }

    #[test]
    fn implausible_offers_and_stray_chunks_are_refused() {
        let mut huge = offer(b"x", 1);
        huge.size_bytes = MAX_MODEL_BYTES + 1;
        assert!(Download::start(huge).is_err());
        assert!(Download::start(offer(b"x", 0)).is_err());
        let mut d = Download::start(offer(b"abc", 1)).unwrap();
        assert_eq!(
            d.chunk(chunk(5, b"abc")).unwrap_err(),
            DownloadError::ChunkOutOfRange {
                index: 5,
                chunks: 1
            }
        );
        let mut d = Download::start(offer(b"abc", 1)).unwrap();
        assert!(matches!(
            d.chunk(chunk(0, b"abcdef")).unwrap_err(),
            DownloadError::Size { .. }
        ));
    }
}
