//! The Azure Functions 2021 per-invocation layout (`app,func,end_timestamp,duration`, seconds
//! since the trace start), and its conversion to per-minute counts so the same replay runs it.

use std::collections::BTreeMap;
use std::path::Path;

use super::csv_rows::CsvFile;
use super::{FunctionTrace, Trace, TraceError};

/// One invocation of the 2021 trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation2021 {
    pub app: String,
    pub function: String,
    /// Arrival in seconds since the trace start (end timestamp − duration).
    pub arrival_s: f64,
    pub duration_s: f64,
}

/// Reads a 2021 per-invocation file.
pub fn parse_azure2021(path: &Path) -> Result<Vec<Invocation2021>, TraceError> {
    parse(&CsvFile::read(path)?)
}

pub(crate) fn parse(file: &CsvFile) -> Result<Vec<Invocation2021>, TraceError> {
    let app = file.column("app")?;
    let func = file.column("func")?;
    let end = file.column("end_timestamp")?;
    let duration = file.column("duration")?;
    let mut out = Vec::new();
    for (line, row) in file.rows() {
        file.check_width(line, &row)?;
        let end_s = file.number(line, "end_timestamp", row[end])?;
        let duration_s = file.number(line, "duration", row[duration])?;
        if duration_s > end_s {
            return Err(file.bad(
                line,
                format!("duration {duration_s} s is longer than the end timestamp {end_s} s"),
            ));
        }
        out.push(Invocation2021 {
            app: row[app].to_string(),
            function: row[func].to_string(),
            arrival_s: end_s - duration_s,
            duration_s,
        });
    }
    Ok(out)
}

/// Loads a 2021 file as a per-minute [`Trace`]. The layout carries no memory, so every
/// function is given `memory_mb`; durations are each function's mean.
pub fn load_azure2021(path: &Path, memory_mb: f64) -> Result<Trace, TraceError> {
    let invocations = parse_azure2021(path)?;
    let name = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(to_trace(name, &invocations, memory_mb))
}

pub(crate) fn to_trace(name: String, invocations: &[Invocation2021], memory_mb: f64) -> Trace {
    let minutes = invocations
        .iter()
        .map(|i| (i.arrival_s / 60.0) as usize + 1)
        .max()
        .unwrap_or(0);
    let mut by_function: BTreeMap<(&str, &str), (Vec<u32>, f64)> = BTreeMap::new();
    for inv in invocations {
        let entry = by_function
            .entry((inv.app.as_str(), inv.function.as_str()))
            .or_insert_with(|| (vec![0; minutes], 0.0));
        entry.0[(inv.arrival_s / 60.0) as usize] += 1;
        entry.1 += inv.duration_s;
    }
    let functions = by_function
        .into_iter()
        .map(|((app, function), (counts, total_s))| {
            let n: u32 = counts.iter().sum();
            FunctionTrace {
                owner: String::new(),
                app: app.to_string(),
                function: function.to_string(),
                trigger: String::new(),
                counts,
                duration_ms: total_s * 1000.0 / f64::from(n.max(1)),
                memory_mb,
            }
        })
        .collect();
    Trace {
        name,
        first_minute: 0,
        minutes,
        functions,
        joined_by_app: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> CsvFile {
        CsvFile::from_text(Path::new("inv2021.csv"), text.to_string()).expect("header")
    }

    #[test]
    fn arrival_is_end_minus_duration_and_counts_fall_in_minutes() {
        let f = file("app,func,end_timestamp,duration\na,f,10.5,0.5\na,f,130,5\nb,g,61,2\n");
        let inv = parse(&f).expect("parses");
        assert_eq!(inv[0].arrival_s, 10.0);
        let t = to_trace("t".into(), &inv, 128.0);
        assert_eq!(t.minutes, 3);
        assert_eq!(t.functions[0].counts, vec![1, 0, 1]);
        assert_eq!(t.functions[0].duration_ms, 2750.0);
        assert_eq!(t.functions[1].counts, vec![1, 0, 0], "b/g arrived at 59 s");
        assert_eq!(t.functions[1].memory_mb, 128.0);
    }

    #[test]
    fn refuses_a_duration_longer_than_its_end() {
        let f = file("app,func,end_timestamp,duration\na,f,1,0.5\na,f,1,3\n");
        let err = parse(&f).unwrap_err().to_string();
        assert!(err.starts_with("inv2021.csv:3: duration"), "{err}");
    }

    #[test]
    fn refuses_a_non_numeric_timestamp() {
        let f = file("app,func,end_timestamp,duration\na,f,soon,0.5\n");
        let err = parse(&f).unwrap_err().to_string();
        assert!(err.contains("inv2021.csv:2: `end_timestamp`"), "{err}");
    }

    #[test]
    fn loads_the_shipped_head_of_the_2021_trace() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/traces/azure2021-head/AzureFunctionsInvocationTraceForTwoWeeksJan2021_head998.csv"
        ));
        let t = load_azure2021(path, 128.0).expect("the real file loads");
        assert_eq!(t.invocations(), 998);
    }
}
