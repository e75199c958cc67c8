//! End-to-end tests of `synapse-agent replay` through its library entry points: the same seed
//! gives the same numbers, the JSON document has the documented schema, and our policy and
//! the baselines all run over a small trace in the Azure 2019 layout.

use std::path::Path;

use synapse_agent::replay::{self, ReplayArgs, ReplayFiles, Window};

/// A function of the test trace: name, trigger and its count in each minute.
type FunctionRow = (&'static str, &'static str, fn(usize) -> u32);

/// Writes a three-function trace: an hourly timer, a busy queue and an occasional http call.
fn write_trace(dir: &Path) {
    let minutes = 240;
    let mut inv = String::from("HashOwner,HashApp,HashFunction,Trigger");
    for m in 0..minutes {
        inv.push_str(&format!(",{}", 480 + m));
    }
    inv.push('\n');
    let rows: [FunctionRow; 3] = [
        ("t", "timer", |m| u32::from(m % 60 == 3)),
        ("q", "queue", |m| 20 + (m % 7) as u32 * 5),
        ("h", "http", |m| u32::from(m % 37 == 5 || m % 53 == 0)),
    ];
    for (name, trigger, count) in &rows {
        inv.push_str(&format!("o,a{name},{name},{trigger}"));
        for m in 0..minutes {
            inv.push_str(&format!(",{}", count(m)));
        }
        inv.push('\n');
    }
    std::fs::write(dir.join("invocations.csv"), inv).expect("write");
    std::fs::write(
        dir.join("durations.csv"),
        "HashOwner,HashApp,HashFunction,Average,Count\no,at,t,800,4\no,aq,q,1500,100\no,ah,h,50,10\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("memory.csv"),
        "HashOwner,HashApp,HashFunction,SampleCount,AverageAllocatedMb\no,at,t,1,100\no,aq,q,1,200\no,ah,h,1,150\n",
    )
    .expect("write");
}

fn args(dir: &Path, seeds: Vec<u64>, json: &Path) -> ReplayArgs {
    ReplayArgs {
        trace: dir.to_path_buf(),
        policies: vec!["forecast".into(), "forecast(forecaster=arima)".into()],
        sweep: vec![30.0, 300.0],
        seeds,
        files: Box::new(ReplayFiles {
            json: Some(json.to_path_buf()),
            plot: Some(json.with_extension("svg")),
            ..ReplayFiles::default()
        }),
        window: Window::Whole,
        memory_mb: 128.0,
        functions: None,
        minutes: None,
    }
}

fn policies(json: &Path) -> Vec<serde_json::Value> {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).expect("json written")).expect("json");
    doc["policies"].as_array().expect("policies").clone()
}

#[test]
fn the_same_seed_gives_the_same_numbers_and_the_json_has_the_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trace(dir.path());
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    replay::run(args(dir.path(), vec![7], &a)).expect("first replay");
    replay::run(args(dir.path(), vec![7], &b)).expect("second replay");
    assert_eq!(policies(&a), policies(&b));

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&a).expect("json")).expect("json");
    assert_eq!(doc["seeds"], serde_json::json!([7]));
    assert!(doc["trace"].is_string());
    let first = &policies(&a)[0];
    let mut keys: Vec<&str> = first
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "mean_app_cold_start_pct",
            "name",
            "overall_cold_start_pct",
            "p50_app_cold_start_pct",
            "p75_app_cold_start_pct",
            "wasted_memory_mb_s",
            "wasted_memory_vs_fixed10_pct",
        ]
    );
    assert_eq!(first["name"], "fixed-keepalive(10m)");
    assert_eq!(first["wasted_memory_vs_fixed10_pct"], 100.0);
    let svg = std::fs::read_to_string(a.with_extension("svg")).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.contains("forecast(cost_threshold=30)"));
}

#[test]
fn another_seed_places_the_arrivals_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trace(dir.path());
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    replay::run(args(dir.path(), vec![1], &a)).expect("seed 1");
    replay::run(args(dir.path(), vec![2], &b)).expect("seed 2");
    let waste = |p: &[serde_json::Value]| -> Vec<f64> {
        p.iter()
            .map(|v| v["wasted_memory_mb_s"].as_f64().expect("number"))
            .collect()
    };
    assert_ne!(waste(&policies(&a)), waste(&policies(&b)));
}

#[test]
fn a_dearer_cold_start_buys_fewer_cold_starts_with_more_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trace(dir.path());
    let a = dir.path().join("a.json");
    replay::run(args(dir.path(), vec![1, 2], &a)).expect("replay");
    let p = policies(&a);
    let by_name = |n: &str| {
        p.iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("{n} missing"))
            .clone()
    };
    let (cheap, dear) = (
        by_name("forecast(cost_threshold=30)"),
        by_name("forecast(cost_threshold=300)"),
    );
    assert!(dear["wasted_memory_mb_s"].as_f64() >= cheap["wasted_memory_mb_s"].as_f64());
    assert!(dear["overall_cold_start_pct"].as_f64() <= cheap["overall_cold_start_pct"].as_f64());
}

#[test]
fn a_bad_trace_is_refused_with_its_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trace(dir.path());
    std::fs::write(
        dir.path().join("invocations.csv"),
        "HashOwner,HashApp,HashFunction,Trigger,1,2\no,at,t,timer,1,-1\n",
    )
    .expect("write");
    let err = replay::run(args(dir.path(), vec![1], &dir.path().join("x.json"))).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("invocations.csv:2:"), "{text}");
}

#[test]
fn a_part_of_the_functions_and_of_the_minutes_is_replayed_as_a_trace_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trace(dir.path());
    let trace = replay::load_trace(dir.path(), 128.0).expect("loads");
    let halves = [trace.clone().part(0, 2), trace.clone().part(1, 2)];
    let names: Vec<Vec<&str>> = halves
        .iter()
        .map(|t| t.functions.iter().map(|f| f.function.as_str()).collect())
        .collect();
    assert_eq!(
        names,
        [vec!["t", "h"], vec!["q"]],
        "disjoint, every other function"
    );

    let later = trace.clone().minutes_range(60, 120);
    assert_eq!((later.minutes, later.first_minute), (60, 540));
    assert_eq!(
        later.functions[0].counts,
        trace.functions[0].counts[60..120]
    );

    let json = dir.path().join("part.json");
    let mut a = args(dir.path(), vec![1], &json);
    a.functions = Some(replay::FunctionPart::EveryNth { index: 1, of: 2 });
    a.minutes = Some((0, 120));
    replay::run(a).expect("replays the part");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("json");
    assert!(
        doc["trace"]
            .as_str()
            .is_some_and(|t| t.contains("functions 1/2") && t.contains("minutes 0..120")),
        "{}",
        doc["trace"]
    );
}
