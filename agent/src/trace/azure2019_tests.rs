//! Tests of the Azure 2019 loader: column namings, joins and refused rows.

use std::path::Path;

use super::*;

fn csv(name: &str, text: &str) -> CsvFile {
    CsvFile::from_text(Path::new(name), text.to_string()).expect("header")
}

fn durations() -> CsvFile {
    csv(
        "durations.csv",
        "HashOwner,HashApp,HashFunction,Average,Count\no,a,f1,120,10\no,a,f3,40,30\n",
    )
}

fn memory_by_app() -> CsvFile {
    csv(
        "memory.csv",
        "HashOwner,HashApp,SampleCount,AverageAllocatedMb\no,a,5,256\n",
    )
}

#[test]
fn accepts_minute_columns_named_480_onwards() {
    let inv = csv(
        "invocations.csv",
        "HashOwner,HashApp,HashFunction,Trigger,480,481,482\no,a,f1,http,1,0,3\n",
    );
    let t = from_files("t".into(), &inv, &durations(), &memory_by_app()).expect("loads");
    assert_eq!(t.first_minute, 480);
    assert_eq!(t.minutes, 3);
    assert_eq!(t.functions[0].counts, vec![1, 0, 3]);
    assert_eq!(t.functions[0].trigger, "http");
    assert_eq!(t.invocations(), 4);
}

#[test]
fn accepts_minute_columns_named_with_minute_suffix() {
    let inv = csv(
        "invocations.csv",
        "HashOwner,HashApp,HashFunction,Trigger,1_minute,2_minute\no,a,f1,timer,2,5\n",
    );
    let t = from_files("t".into(), &inv, &durations(), &memory_by_app()).expect("loads");
    assert_eq!(t.first_minute, 1);
    assert_eq!(t.functions[0].counts, vec![2, 5]);
}

#[test]
fn joins_duration_by_function_and_falls_back_to_the_app() {
    let inv = csv(
        "invocations.csv",
        "HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f1,http,1,0\no,a,f2,http,0,1\n",
    );
    let t = from_files("t".into(), &inv, &durations(), &memory_by_app()).expect("loads");
    assert_eq!(t.functions[0].duration_ms, 120.0);
    // f2 has no row: the app's count-weighted mean of 120 ms ×10 and 40 ms ×30.
    assert_eq!(t.functions[1].duration_ms, 60.0);
    assert_eq!(t.functions[1].memory_mb, 256.0);
    assert_eq!(t.joined_by_app, 2, "memory is per app for both functions");
}

#[test]
fn refuses_a_bad_count_with_file_line_and_reason() {
    let inv = csv(
        "invocations.csv",
        "HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f1,http,1,0\no,a,f1,http,x,0\n",
    );
    let err = from_files("t".into(), &inv, &durations(), &memory_by_app()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("invocations.csv:3:"), "{msg}");
    assert!(msg.contains("not a count"), "{msg}");
}

#[test]
fn refuses_a_short_row() {
    let inv = csv(
        "invocations.csv",
        "HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f1,http,1\n",
    );
    let err = from_files("t".into(), &inv, &durations(), &memory_by_app()).unwrap_err();
    assert!(
        err.to_string().contains("invocations.csv:2: 5 fields"),
        "{err}"
    );
}

#[test]
fn refuses_gaps_in_the_minute_columns() {
    let inv = csv(
        "invocations.csv",
        "HashOwner,HashApp,HashFunction,Trigger,1,3\no,a,f1,http,1,0\n",
    );
    let err = from_files("t".into(), &inv, &durations(), &memory_by_app()).unwrap_err();
    assert!(
        err.to_string()
            .contains(":1: minute columns are not consecutive")
    );
}

#[test]
fn refuses_a_function_of_an_unknown_app() {
    let inv = csv(
        "invocations.csv",
        "HashOwner,HashApp,HashFunction,Trigger,1\no,b,f9,http,1\n",
    );
    let err = from_files("t".into(), &inv, &durations(), &memory_by_app()).unwrap_err();
    assert!(matches!(err, TraceError::Unjoined { .. }), "{err}");
}

#[test]
fn refuses_a_negative_memory() {
    let mem = csv(
        "memory.csv",
        "HashOwner,HashApp,SampleCount,AverageAllocatedMb\no,a,5,-3\n",
    );
    let inv = csv(
        "invocations.csv",
        "HashOwner,HashApp,HashFunction,Trigger,1\n",
    );
    let err = from_files("t".into(), &inv, &durations(), &mem).unwrap_err();
    assert!(err.to_string().starts_with("memory.csv:2:"), "{err}");
}
