//! The Azure Functions 2019 layout: a per-minute invocation file joined with a durations file
//! and a memory file. Minute columns may be named `480..959`, `1..1440` or `1_minute..1440_minute`;
//! durations and memory are joined by function and fall back to the function's app (the full
//! 2019 trace publishes memory per app only).

use std::collections::HashMap;
use std::path::Path;

use super::csv_rows::CsvFile;
use super::{FunctionTrace, Trace, TraceError};

/// Loads the trace in `dir`: one file whose name starts with `invocations`, one containing
/// `durations` and one containing `memory` (all `.csv`).
pub fn load_azure2019(dir: &Path) -> Result<Trace, TraceError> {
    let invocations = CsvFile::read(&find(dir, "invocations")?)?;
    let durations = CsvFile::read(&find(dir, "durations")?)?;
    let memory = CsvFile::read(&find(dir, "memory")?)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    from_files(name, &invocations, &durations, &memory)
}

fn find(dir: &Path, pattern: &'static str) -> Result<std::path::PathBuf, TraceError> {
    let entries = std::fs::read_dir(dir).map_err(|source| TraceError::Io {
        file: dir.to_path_buf(),
        source,
    })?;
    let mut found: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().to_lowercase());
            n.is_some_and(|n| n.contains(pattern) && n.ends_with(".csv"))
        })
        .collect();
    found.sort();
    found.into_iter().next().ok_or(TraceError::MissingFile {
        dir: dir.to_path_buf(),
        pattern,
    })
}

/// Joins the three parsed files into a [`Trace`].
pub(crate) fn from_files(
    name: String,
    invocations: &CsvFile,
    durations: &CsvFile,
    memory: &CsvFile,
) -> Result<Trace, TraceError> {
    let (first_minute, minute_cols) = minute_columns(invocations)?;
    let owner = invocations.column("HashOwner")?;
    let app = invocations.column("HashApp")?;
    let function = invocations.column("HashFunction")?;
    let trigger = invocations.column("Trigger").ok();
    let duration_of = Joined::new(durations, "Average", "Count")?;
    let memory_of = Joined::new(memory, "AverageAllocatedMb", "SampleCount")?;

    let mut functions = Vec::new();
    let mut joined_by_app = 0;
    for (line, row) in invocations.rows() {
        invocations.check_width(line, &row)?;
        let counts = minute_cols
            .iter()
            .map(|&c| {
                row[c].parse::<u32>().map_err(|_| {
                    invocations.bad(
                        line,
                        format!(
                            "minute `{}` = {:?} is not a count",
                            invocations.header[c], row[c]
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key = Key::new(row[owner], row[app], row[function]);
        let (duration_ms, d_by_app) = duration_of.get(&key, "duration")?;
        let (memory_mb, m_by_app) = memory_of.get(&key, "memory")?;
        joined_by_app += usize::from(d_by_app || m_by_app);
        functions.push(FunctionTrace {
            owner: key.owner,
            app: key.app,
            function: key.function,
            trigger: trigger.map(|t| row[t].to_string()).unwrap_or_default(),
            counts,
            duration_ms,
            memory_mb,
        });
    }
    Ok(Trace {
        name,
        first_minute,
        minutes: minute_cols.len(),
        functions,
        joined_by_app,
    })
}

/// Finds the consecutive minute columns of the header and the minute of the first one.
fn minute_columns(file: &CsvFile) -> Result<(u32, Vec<usize>), TraceError> {
    let mut cols: Vec<(u32, usize)> = file
        .header
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let digits = h.strip_suffix("_minute").unwrap_or(h);
            digits.parse::<u32>().ok().map(|m| (m, i))
        })
        .collect();
    if cols.is_empty() {
        return Err(file.bad(1, "no minute columns (`480`, `1` or `1_minute` …)"));
    }
    cols.sort();
    for pair in cols.windows(2) {
        if pair[1].0 != pair[0].0 + 1 {
            return Err(file.bad(
                1,
                format!(
                    "minute columns are not consecutive: {} is followed by {}",
                    pair[0].0, pair[1].0
                ),
            ));
        }
    }
    Ok((cols[0].0, cols.into_iter().map(|(_, i)| i).collect()))
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    owner: String,
    app: String,
    function: String,
}

impl Key {
    fn new(owner: &str, app: &str, function: &str) -> Self {
        Self {
            owner: owner.into(),
            app: app.into(),
            function: function.into(),
        }
    }
}

/// A value column indexed by function and, as a fallback, by app (sample-weighted mean).
struct Joined<'a> {
    file: &'a CsvFile,
    by_function: HashMap<Key, f64>,
    by_app: HashMap<(String, String), f64>,
}

impl<'a> Joined<'a> {
    fn new(file: &'a CsvFile, value: &str, weight: &str) -> Result<Self, TraceError> {
        let owner = file.column("HashOwner")?;
        let app = file.column("HashApp")?;
        let function = file.column("HashFunction").ok();
        let value_col = file.column(value)?;
        let weight_col = file.column(weight).ok();
        let mut by_function = HashMap::new();
        let mut sums: HashMap<(String, String), (f64, f64)> = HashMap::new();
        for (line, row) in file.rows() {
            file.check_width(line, &row)?;
            let v = file.number(line, value, row[value_col])?;
            let w = match weight_col {
                Some(c) => file.number(line, weight, row[c])?.max(1.0),
                None => 1.0,
            };
            let app_key = (row[owner].to_string(), row[app].to_string());
            let s = sums.entry(app_key).or_insert((0.0, 0.0));
            s.0 += v * w;
            s.1 += w;
            if let Some(f) = function {
                by_function.insert(Key::new(row[owner], row[app], row[f]), v);
            }
        }
        let by_app = sums.into_iter().map(|(k, (s, w))| (k, s / w)).collect();
        Ok(Self {
            file,
            by_function,
            by_app,
        })
    }

    /// The function's value, or its app's; the flag says whether the app's was used.
    fn get(&self, key: &Key, what: &'static str) -> Result<(f64, bool), TraceError> {
        if let Some(&v) = self.by_function.get(key) {
            return Ok((v, false));
        }
        let app = (key.owner.clone(), key.app.clone());
        self.by_app
            .get(&app)
            .map(|&v| (v, true))
            .ok_or_else(|| TraceError::Unjoined {
                file: self.file.path.clone(),
                function: key.function.clone(),
                app: key.app.clone(),
                what,
            })
    }
}

#[cfg(test)]
#[path = "azure2019_tests.rs"]
mod tests;
