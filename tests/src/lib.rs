//! Helpers shared by the cross-crate integration tests: network namespaces joined by veth
//! pairs ([`netns`]), and a fleet of real `synapse-hub` and `synapse-agent` processes in them
//! with the readers that compare what each side counted ([`fleet`]).

pub mod fleet;
pub mod netns;

use std::time::{Duration, Instant};

/// Polls `probe` every 100 ms until it returns `Some`, for at most `limit` (a bound on
/// waiting, never a timing assertion); the panic says what was awaited.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "gave up waiting {limit:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A test's directory (configurations, stores, logs), removed when dropped unless
/// `SYNAPSE_KEEP_TEST_DIR` is set, in which case its path is printed for a post-mortem.
pub struct Workdir(Option<tempfile::TempDir>);

impl Workdir {
    pub fn new(dir: tempfile::TempDir) -> Self {
        Self(Some(dir))
    }

    pub fn path(&self) -> &std::path::Path {
        self.0.as_ref().expect("the directory exists").path()
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if std::env::var_os("SYNAPSE_KEEP_TEST_DIR").is_some()
            && let Some(dir) = self.0.take()
        {
            eprintln!("test directory kept: {}", dir.keep().display());
        }
    }
}
