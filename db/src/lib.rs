//! The one way SynapseStream opens an on-disk sled database (the agent's store and outbox, the
//! hub's registry, models, rounds, plans and rollouts, and every test that reopens one).
//!
//! sled takes an exclusive lock on its file. A database that was just dropped can still hold
//! that lock for a moment, while sled's own threads (the background flusher, the I/O pool)
//! let go of their handles, and a restarting daemon can meet its predecessor's lock while
//! that process exits. So opening waits for the lock, within a bound, and past the bound says
//! which path is locked instead of failing at once with sled's bare `WouldBlock`.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

pub use sled::Db;

/// How long [`open`] waits for a lock held by someone else.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "the store at {} is locked by another process, still after {:.1} s \
         (is another agent or hub running with this directory?)",
        path.display(),
        waited.as_secs_f64()
    )]
    Locked { path: PathBuf, waited: Duration },
    #[error("cannot open the store at {}: {source}", path.display())]
    Sled {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
}

/// How to open a database.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// sled's background flusher: `None` (the default) leaves every durability point to the
    /// owner's explicit `flush`, and keeps no thread that could hold the lock after a drop.
    pub background_flush: Option<Duration>,
    /// The longest wait for a lock held by another handle or process.
    pub lock_wait: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            background_flush: None,
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }
}

impl OpenOptions {
    /// Opens (or creates) the database at `path`, waiting up to `lock_wait` for its lock.
    pub fn open(&self, path: &Path) -> Result<Db, OpenError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            let config = sled::Config::new()
                .path(path)
                .flush_every_ms(self.background_flush.map(|d| d.as_millis().max(1) as u64));
            match config.open() {
                Ok(db) => return Ok(db),
                Err(sled::Error::Io(e)) if is_lock_held(&e) => {
                    let waited = started.elapsed();
                    if waited >= self.lock_wait {
                        return Err(OpenError::Locked {
                            path: path.to_path_buf(),
                            waited,
                        });
                    }
                    // Retry soon at first (a dropped handle lets go within milliseconds),
                    // then less often (another process may be shutting down).
                    thread::sleep(pause.min(self.lock_wait - waited));
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(source) => {
                    return Err(OpenError::Sled {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        }
    }
}

/// Opens (or creates) the database at `path` with the default options: no background
/// flusher, up to [`DEFAULT_LOCK_WAIT`] for the lock.
pub fn open(path: &Path) -> Result<Db, OpenError> {
    OpenOptions::default().open(path)
}

/// sled reports a lock held elsewhere as an I/O error of kind `WouldBlock` ("could not
/// acquire lock on ...").
fn is_lock_held(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_reopens_right_after_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        for round in 0..20u32 {
            let db = open(&path).unwrap();
            let tree = db.open_tree("t").unwrap();
            tree.insert(round.to_be_bytes(), &[1]).unwrap();
            // A handle that lives on in another thread a moment after the owner's drop, as
            // sled's own threads do.
            let late = tree.clone();
            let holder = thread::spawn(move || {
                thread::sleep(Duration::from_millis(3));
                drop(late);
            });
            db.flush().unwrap();
            drop(tree);
            drop(db);
            let again = open(&path).unwrap();
            assert_eq!(again.open_tree("t").unwrap().len(), round as usize + 1);
            drop(again);
            holder.join().unwrap();
        }
    }

    #[test]
    fn a_store_held_open_is_refused_with_its_path_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let _held = open(&path).unwrap();
        let options = OpenOptions {
            lock_wait: Duration::from_millis(50),
            ..OpenOptions::default()
        };
        let err = options.open(&path).unwrap_err();
        assert!(matches!(err, OpenError::Locked { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("locked by another process"), "{message}");
    }

    #[test]
    fn a_store_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::fs::write(&path, b"not a directory").unwrap();
        let err = open(&path).unwrap_err();
        assert!(matches!(err, OpenError::Sled { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }
}
