//! The hub's certificate revocation list: a text file (`[console] revoked`) naming one
//! certificate per line, by serial number (hex) or by SHA-256 fingerprint of its DER form,
//! `#` starting a comment. The console refuses calls and the link refuses agents from a
//! certificate the list names.
//!
//! The file is re-read when it changes (its size, mtime, ctime or inode), polled every
//! [`POLL`], with no restart or signal. It never fails open:
//! - at start (and `synapse-hub --check`) a missing file or a bad line stops the hub;
//! - later, a bad line is logged as `FILE:LINE: reason`, and the list in force stays in force
//!   with the valid entries of the new file added (a typo never lets a newly revoked
//!   certificate in, and never revokes nothing); only a file without errors replaces the list;
//! - a file that disappears or cannot be read is logged and the list in force stays. Write an
//!   empty file to revoke nothing.

use std::{
    collections::HashSet,
    fmt,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use sha2::{Digest, Sha256};
use synapse_link::identity::{IdentityError, serial_hex};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the hub looks at the file.
pub const POLL: Duration = Duration::from_millis(500);
/// Largest revocation file read (a larger one is an error, and the list in force stays).
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Longest serial number in hex digits (RFC 5280: at most 20 octets).
const MAX_SERIAL_DIGITS: usize = 40;

/// What a revocation list can name of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRef {
    /// Lowercase hex without leading zeros.
    pub serial: String,
    /// Lowercase hex SHA-256 of the DER certificate.
    pub sha256: String,
}

impl CertRef {
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        Ok(Self {
            serial: serial_hex(der)?,
            sha256: Sha256::digest(der)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        })
    }
}

/// One bad line of a revocation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// Why the revocation file could not be used at start.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("revocation list {path}: {message}")]
    Read { path: String, message: String },
    #[error("revocation list {}", .lines.iter().map(|e| format!("{path}:{}: {}", e.line, e.message)).collect::<Vec<_>>().join("; "))]
    Lines { path: String, lines: Vec<LineError> },
}

/// The certificates a list names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokedSet {
    serials: HashSet<String>,
    fingerprints: HashSet<String>,
}

impl RevokedSet {
    pub fn len(&self) -> usize {
        self.serials.len() + self.fingerprints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How the list names `cert`, if it does.
    pub fn names(&self, cert: &CertRef) -> Option<String> {
        if self.serials.contains(&cert.serial) {
            Some(format!("serial {}", cert.serial))
        } else if self.fingerprints.contains(&cert.sha256) {
            Some(format!("sha256 {}", cert.sha256))
        } else {
            None
        }
    }

    fn extend(&mut self, other: &RevokedSet) {
        self.serials.extend(other.serials.iter().cloned());
        self.fingerprints.extend(other.fingerprints.iter().cloned());
    }
}

fn is_hex(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_hexdigit())
}

fn entry(token: &str) -> Result<(bool, String), String> {
    let lower = token.to_ascii_lowercase();
    let (kind, digits) = match lower.split_once(':') {
        Some(("sha256", rest)) => (Some(true), rest.replace(':', "")),
        Some(("serial", rest)) => (Some(false), rest.replace(':', "")),
        _ => (None, lower.replace(':', "")),
    };
    if !is_hex(&digits) {
        return Err(format!(
            "{token:?} is not a hex serial or SHA-256 fingerprint"
        ));
    }
    let fingerprint = match kind {
        Some(kind) => kind,
        None if digits.len() == 64 => true,
        None if digits.len() <= MAX_SERIAL_DIGITS => false,
        None => {
            return Err(format!(
                "{} hex digits are neither a serial (at most {MAX_SERIAL_DIGITS}) nor a \
                 SHA-256 fingerprint (64)",
                digits.len()
            ));
        }
    };
    if fingerprint && digits.len() != 64 {
        return Err(format!(
            "a SHA-256 fingerprint has 64 hex digits, not {}",
            digits.len()
        ));
    }
    if !fingerprint && digits.len() > MAX_SERIAL_DIGITS {
        return Err(format!(
            "a serial has at most {MAX_SERIAL_DIGITS} hex digits"
        ));
    }
    let value = if fingerprint {
        digits
    } else {
        let trimmed = digits.trim_start_matches('0');
        if trimmed.is_empty() { "0" } else { trimmed }.to_owned()
    };
    Ok((fingerprint, value))
}

/// Reads a list: the entries of its valid lines, and its bad lines.
pub fn parse(text: &str) -> (RevokedSet, Vec<LineError>) {
    let mut set = RevokedSet::default();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut tokens = line.split_whitespace();
        let token = tokens.next().unwrap_or_default();
        let parsed = if tokens.next().is_some() {
            Err("one serial or fingerprint per line (a comment starts with '#')".to_owned())
        } else {
            entry(token)
        };
        match parsed {
            Ok((true, value)) => {
                set.fingerprints.insert(value);
            }
            Ok((false, value)) => {
                set.serials.insert(value);
            }
            Err(message) => errors.push(LineError {
                line: index + 1,
                message,
            }),
        }
    }
    (set, errors)
}

/// What identifies a version of the file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    inode: (u64, u64),
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        inode: (m.dev(), m.ino()),
    })
}

fn read(path: &Path) -> Result<String, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_FILE_BYTES {
        return Err(format!("{len} bytes is over the limit of {MAX_FILE_BYTES}"));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

struct Inner {
    path: Option<PathBuf>,
    current: RwLock<Arc<RevokedSet>>,
    /// The version last looked at; `None` after a failed look (so that it is logged once).
    seen: Mutex<Option<Stamp>>,
    changed: watch::Sender<u64>,
}

/// The revocation list in force, shared by the console and the link.
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<Inner>,
}

impl fmt::Debug for Revocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocations")
            .field("path", &self.inner.path)
            .field("entries", &self.current().len())
            .finish()
    }
}

impl Revocations {
    fn with(path: Option<PathBuf>, set: RevokedSet, seen: Option<Stamp>) -> Self {
        Self {
            inner: Arc::new(Inner {
                path,
                current: RwLock::new(Arc::new(set)),
                seen: Mutex::new(seen),
                changed: watch::channel(0).0,
            }),
        }
    }

    /// No list: nothing is revoked.
    pub fn none() -> Self {
        Self::with(None, RevokedSet::default(), None)
    }

    /// Reads the list at `path`, strictly: a missing file or a bad line is an error.
    pub fn load(path: &Path) -> Result<Self, RevocationError> {
        let read_error = |message: String| RevocationError::Read {
            path: path.display().to_string(),
            message,
        };
        let seen = stamp(path).map_err(|e| read_error(e.to_string()))?;
        let text = read(path).map_err(read_error)?;
        let (set, lines) = parse(&text);
        if !lines.is_empty() {
            return Err(RevocationError::Lines {
                path: path.display().to_string(),
                lines,
            });
        }
        Ok(Self::with(Some(path.to_owned()), set, Some(seen)))
    }

    /// The configured list, or none.
    pub fn from_config(path: Option<&Path>) -> Result<Self, RevocationError> {
        path.map_or_else(|| Ok(Self::none()), Self::load)
    }

    pub fn current(&self) -> Arc<RevokedSet> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `Some(how the list names it)` when the DER certificate is revoked. A certificate that
    /// does not parse is refused as well.
    pub fn revoked(&self, der: &[u8]) -> Option<String> {
        match CertRef::from_der(der) {
            Ok(cert) => self.current().names(&cert),
            Err(e) => Some(format!("unreadable certificate ({e})")),
        }
    }

    /// Changes each time the list in force changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    fn replace(&self, set: RevokedSet) {
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        self.inner
            .changed
            .send_modify(|generation| *generation += 1);
    }

    /// Re-reads the file if it changed; returns whether the list in force changed.
    pub fn reload_if_changed(&self) -> bool {
        let Some(path) = &self.inner.path else {
            return false;
        };
        let mut seen = self.inner.seen.lock().unwrap_or_else(|p| p.into_inner());
        let in_force = self.current();
        let now = match stamp(path) {
            Ok(now) => now,
            Err(e) => {
                if seen.take().is_some() {
                    tracing::error!(
                        "revocation list {}: {e}; the {} entries in force stay in force",
                        path.display(),
                        in_force.len()
                    );
                }
                return false;
            }
        };
        if *seen == Some(now) {
            return false;
        }
        *seen = Some(now);
        let text = match read(path) {
            Ok(text) => text,
            Err(e) => {
                *seen = None;
                tracing::error!(
                    "revocation list {}: {e}; the {} entries in force stay in force",
                    path.display(),
                    in_force.len()
                );
                return false;
            }
        };
        let (set, errors) = parse(&text);
        if errors.is_empty() {
            tracing::info!(
                "revocation list {} re-read: {} entries",
                path.display(),
                set.len()
            );
            let changed = *in_force != set;
            self.replace(set);
            return changed;
        }
        for e in &errors {
            tracing::error!("{}:{}: {}", path.display(), e.line, e.message);
        }
        let mut merged = (*in_force).clone();
        merged.extend(&set);
        tracing::error!(
            "revocation list {}: {} bad lines; the {} entries in force stay in force, with the \
             file's {} valid entries added",
            path.display(),
            errors.len(),
            in_force.len(),
            set.len()
        );
        let changed = merged != *in_force;
        if changed {
            self.replace(merged);
        }
        changed
    }

    /// Polls the file every [`POLL`] until `shutdown`.
    pub async fn watch(self, shutdown: CancellationToken) {
        if self.inner.path.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
        }
    }
}

#[cfg(test)]
#[path = "revocation_tests.rs"]
mod tests;
