//! Recorded invocation traces: the Azure Functions 2019 per-minute layout and the 2021
//! per-invocation layout, both turned into one in-memory shape, [`Trace`], that the replay runs.
//!
//! A bad row is refused with the file, the line and the reason ([`TraceError`]).

mod azure2019;
mod azure2021;
mod csv_rows;

pub use azure2019::load_azure2019;
pub use azure2021::{Invocation2021, load_azure2021, parse_azure2021};

use std::path::PathBuf;

/// One function of a trace: its per-minute invocation counts and its average cost.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionTrace {
    /// Owner hash (empty when the layout has none).
    pub owner: String,
    /// Application hash.
    pub app: String,
    /// Function hash.
    pub function: String,
    /// Trigger kind (`http`, `timer`, …; empty when unknown).
    pub trigger: String,
    /// Invocations that started in each minute of the trace window.
    pub counts: Vec<u32>,
    /// Average execution time in milliseconds.
    pub duration_ms: f64,
    /// Average allocated memory in MB.
    pub memory_mb: f64,
}

impl FunctionTrace {
    /// Total invocations of the function over the whole window.
    pub fn invocations(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }
}

/// A whole trace: every function over the same window of minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Human name of the trace (its directory or file name).
    pub name: String,
    /// Minute of the day of the first column (480 for a trace that starts at 08:00).
    pub first_minute: u32,
    /// Number of minutes in the window.
    pub minutes: usize,
    /// The functions, in file order.
    pub functions: Vec<FunctionTrace>,
    /// Functions whose duration or memory came from their app rather than their own row.
    pub joined_by_app: usize,
}

impl Trace {
    /// Total invocations of all functions.
    pub fn invocations(&self) -> u64 {
        self.functions.iter().map(FunctionTrace::invocations).sum()
    }

    /// Every `of`-th function, starting at the `index`-th (0-based): `0/2` and `1/2` are two
    /// disjoint halves spread over the whole file.
    pub fn part(mut self, index: usize, of: usize) -> Self {
        let of = of.max(1);
        self.functions = std::mem::take(&mut self.functions)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % of == index)
            .map(|(_, f)| f)
            .collect();
        self
    }

    /// Minutes `from..to` of the window as a trace of their own (clamped to the window).
    pub fn minutes_range(mut self, from: usize, to: usize) -> Self {
        let to = to.min(self.minutes);
        let from = from.min(to);
        for f in &mut self.functions {
            f.counts = f.counts[from..to].to_vec();
        }
        self.first_minute = (self.first_minute + from as u32) % 1440;
        self.minutes = to - from;
        self
    }
}

/// Why a trace could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A row (or the header, line 1) is malformed.
    #[error("{file}:{line}: {reason}")]
    BadRow {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    /// A file the layout needs is missing from the trace directory.
    #[error("{dir}: no file matching `{pattern}` (expected the Azure 2019 layout)")]
    MissingFile { dir: PathBuf, pattern: &'static str },
    /// A function has neither its own nor its app's duration or memory record.
    #[error(
        "{file}: function {function} (app {app}) has no {what} record, neither its own nor its app's"
    )]
    Unjoined {
        file: PathBuf,
        function: String,
        app: String,
        what: &'static str,
    },
}
