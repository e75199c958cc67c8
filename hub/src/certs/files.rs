//! Writing certificate material: keys with mode 0600 from the moment they exist, certificates
//! world-readable, and nothing overwritten.

use std::{fs::OpenOptions, io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use super::CertError;

pub(super) fn refuse_existing(path: &Path) -> Result<(), CertError> {
    if path.exists() {
        return Err(CertError::Exists {
            path: path.display().to_string(),
        });
    }
    Ok(())
}

pub(super) fn read_text(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let write_error = |source| CertError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CertError::Exists {
                    path: path.display().to_string(),
                }
            } else {
                write_error(e)
            }
        })?;
    file.write_all(bytes).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

/// Writes a new private key file, readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    write_new(path, bytes, 0o600)
}

pub(super) fn write_public(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    if path.exists() {
        std::fs::remove_file(path).map_err(|source| CertError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    write_new(path, bytes, 0o644)
}
