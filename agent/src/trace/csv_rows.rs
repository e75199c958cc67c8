//! A tiny reader of the trace CSV files: comma-separated fields without quoting (the Azure
//! traces hold hashes and numbers only), every row numbered so errors can name their line.

use std::path::{Path, PathBuf};

use super::TraceError;

/// A CSV file split into a header and numbered rows.
pub(crate) struct CsvFile {
    pub path: PathBuf,
    pub header: Vec<String>,
    text: String,
}

impl CsvFile {
    /// Reads the whole file; line 1 is the header.
    pub fn read(path: &Path) -> Result<Self, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        Self::from_text(path, text)
    }

    /// Splits text already in memory (used by tests and by [`CsvFile::read`]).
    pub fn from_text(path: &Path, text: String) -> Result<Self, TraceError> {
        let first = text.lines().next().unwrap_or("");
        if first.trim().is_empty() {
            return Err(TraceError::BadRow {
                file: path.to_path_buf(),
                line: 1,
                reason: "empty file: expected a header row".into(),
            });
        }
        let header = split(first).map(str::to_string).collect();
        Ok(Self {
            path: path.to_path_buf(),
            header,
            text,
        })
    }

    /// The position of a header column, or a `BadRow` on line 1 naming it.
    pub fn column(&self, name: &str) -> Result<usize, TraceError> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| self.bad(1, format!("header has no `{name}` column")))
    }

    /// Every non-empty data row with its 1-based line number.
    pub fn rows(&self) -> impl Iterator<Item = (usize, Vec<&str>)> {
        self.text
            .lines()
            .enumerate()
            .skip(1)
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, split(l).collect()))
    }

    /// A `BadRow` error for this file.
    pub fn bad(&self, line: usize, reason: impl Into<String>) -> TraceError {
        TraceError::BadRow {
            file: self.path.clone(),
            line,
            reason: reason.into(),
        }
    }

    /// Checks that a row has as many fields as the header.
    pub fn check_width(&self, line: usize, row: &[&str]) -> Result<(), TraceError> {
        if row.len() == self.header.len() {
            Ok(())
        } else {
            Err(self.bad(
                line,
                format!("{} fields, the header has {}", row.len(), self.header.len()),
            ))
        }
    }

    /// Parses a finite, non-negative number in `field` (named for the message).
    pub fn number(&self, line: usize, field: &str, value: &str) -> Result<f64, TraceError> {
        match value.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(self.bad(
                line,
                format!("`{field}` = {value:?} is not a non-negative number"),
            )),
        }
    }
}

fn split(line: &str) -> impl Iterator<Item = &str> {
    line.trim_end_matches('\r').split(',').map(str::trim)
}
