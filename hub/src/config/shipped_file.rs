//! The packages install `hub.example.toml` as `/etc/synapse/hub.toml`. Its values are pinned
//! to the defaults of `config.rs`; here every key the hub accepts must be in it, so a new field fails
//! until the file shows it. The accepted keys come from the hub's own refusal of an unknown one.

use std::collections::BTreeSet;

use super::HubConfig;

const SHIPPED: &str = include_str!("../../hub.example.toml");

/// serde refuses an unknown key with "unknown field `k`, expected one of `a`, `b`, ...".
fn accepted_keys(header: &str) -> BTreeSet<String> {
    let probe = format!("{header}\nnot_a_key = 0\n");
    let err = HubConfig::parse(&probe, "probe").unwrap_err().to_string();
    assert!(err.contains("unknown field `not_a_key`"), "{header}: {err}");
    err.split('`')
        .skip(3)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// Keys shown commented out (`# key = value`) under `header`: settings without a default
/// value, such as a file to read.
fn commented_keys(header: &str) -> BTreeSet<String> {
    let mut current = String::new();
    let mut keys = BTreeSet::new();
    for line in SHIPPED.lines() {
        if line.starts_with('[') {
            current = line.trim().to_owned();
        } else if let Some((key, _)) = line
            .strip_prefix("# ")
            .and_then(|rest| rest.split_once(" = "))
            && current == header
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            keys.insert(key.to_owned());
        }
    }
    keys
}

/// Checks the keys of `table` (at `path`, e.g. `rollouts.gates`) and of its sub-tables.
fn check_keys(path: &str, table: &toml::Table) {
    let header = if path.is_empty() {
        String::new()
    } else {
        format!("[{path}]")
    };
    let accepted = accepted_keys(&header);
    let keys: BTreeSet<String> = table
        .keys()
        .cloned()
        .chain(
            commented_keys(&header)
                .into_iter()
                .filter(|k| accepted.contains(k)),
        )
        .collect();
    assert_eq!(keys, accepted, "keys of {header}");
    for (name, value) in table {
        if let toml::Value::Table(inner) = value {
            let inner_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            check_keys(&inner_path, inner);
        }
    }
}

#[test]
fn the_shipped_file_shows_every_key_the_hub_accepts() {
    check_keys("", &SHIPPED.parse().unwrap());
}
