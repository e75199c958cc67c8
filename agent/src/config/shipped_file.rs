//! The configuration file the packages install as `/etc/synapse/agent.toml`
//! (`packaging/agent.toml`) must never drift from the code: its values are the built-in
//! defaults, every key the agent accepts is shown in it, and its commented-out tables are the
//! defaults once switched on.
//!
//! The keys each table accepts come from the agent's own refusal of an unknown key, so a
//! field added to a config struct fails here until the file shows it.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

const SHIPPED: &str = include_str!("../../../packaging/agent.toml");

/// The keys the table under `header` (`""` for the top level, `[x]` or `[[x]]`) accepts:
/// serde refuses an unknown key with "unknown field `k`, expected one of `a`, `b`, ...".
fn accepted_keys(header: &str) -> BTreeSet<String> {
    let probe = format!("{header}\nnot_a_key = 0\n");
    let err = AgentConfig::parse(&probe, "probe").unwrap_err().to_string();
    assert!(
        err.contains("unknown field `not_a_key`"),
        "{header} did not refuse an unknown key: {err}"
    );
    err.split('`')
        .skip(3)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// The keys shown under each table header, whether set, switched off (`#key = v`) or given
/// as an example (`# key = v`).
fn shown_keys(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut shown: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut header = String::new();
    for line in text.lines() {
        let line = line.trim_start_matches(['#', ' ']);
        if line.starts_with('[') {
            header = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            shown.entry(header.clone()).or_default();
            // `[a.b.c]` implies the tables `[a.b]` and `[a]`, which are checked too.
            if !header.starts_with("[[") {
                let mut parent = header.trim_matches(['[', ']']);
                while let Some((p, _)) = parent.rsplit_once('.') {
                    shown.entry(format!("[{p}]")).or_default();
                    parent = p;
                }
            }
        } else if let Some((key, _)) = line.split_once(" = ")
            && !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            shown
                .entry(header.clone())
                .or_default()
                .insert(key.to_string());
        }
    }
    shown
}

/// The file with its switched-off settings (`#key = v`, `#[table]`) switched on.
fn switched_on(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_shipped_file_states_the_defaults() {
    let shipped = AgentConfig::parse(SHIPPED, "packaging/agent.toml").unwrap();
    assert_eq!(
        format!("{shipped:#?}"),
        format!("{:#?}", AgentConfig::default())
    );
}

#[test]
fn the_shipped_file_shows_every_key_the_agent_accepts() {
    let shown = shown_keys(SHIPPED);
    let top: BTreeSet<String> = shown
        .keys()
        .filter(|h| !h.contains('.'))
        .map(|h| h.trim_matches(['[', ']']).to_string())
        .filter(|h| !h.is_empty())
        .collect();
    assert_eq!(top, accepted_keys(""), "top-level tables");
    for (header, keys) in shown.iter().filter(|(h, _)| !h.is_empty()) {
        // `[[functions.inputs]]` needs its parent array in the probe; `[a.b]` does not.
        let probe = match header.rsplit_once('.') {
            Some((parent, _)) if header.starts_with("[[") => format!("{parent}]]\n{header}"),
            _ => header.clone(),
        };
        let nested: BTreeSet<String> = shown
            .keys()
            .filter_map(|h| h.strip_prefix(&format!("{}.", header.trim_end_matches(']'))))
            .map(|rest| rest.trim_end_matches(']'))
            // Only the direct children: `[a.b.c]` is a key of `[a.b]`, not of `[a]`.
            .filter(|rest| !rest.contains('.'))
            .map(String::from)
            .collect();
        let keys: BTreeSet<String> = keys.union(&nested).cloned().collect();
        assert_eq!(keys, accepted_keys(&probe), "keys of {header}");
    }
}

#[test]
fn the_switched_off_tables_are_the_defaults_once_switched_on() {
    let on = AgentConfig::parse(&switched_on(SHIPPED), "switched on").unwrap();
    assert_eq!(on.link, Some(crate::link::LinkConfig::default()));

    let process = AgentConfig::parse(
        "[[functions]]\nname = \"thumbnail\"\ncommand = \"/usr/local/bin/thumbnail\"\n",
        "minimal",
    )
    .unwrap();
    let onnx = AgentConfig::parse(
        "[[functions]]\nname = \"classify\"\nkind = \"onnx\"\n\
         model = \"/var/lib/synapse-agent/models/classify.onnx\"\n\
         model_sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n\
         [[functions.inputs]]\nname = \"x\"\nshape = [4]\n\
         [[functions.outputs]]\nname = \"logits\"\n",
        "minimal",
    )
    .unwrap();
    assert_eq!(on.functions.len(), 2);
    assert_eq!(
        format!("{:#?}", on.functions[0]),
        format!("{:#?}", process.functions[0])
    );
    assert_eq!(
        format!("{:#?}", on.functions[1]),
        format!("{:#?}", onnx.functions[0])
    );
    assert_eq!(on.watch.len(), 1);
}

#[test]
fn a_key_missing_from_the_file_is_noticed() {
    let without = SHIPPED.replace("#max_in_flight = 64\n", "");
    assert_ne!(shown_keys(&without)["[link]"], accepted_keys("[link]"));
    assert_eq!(shown_keys(SHIPPED)["[link]"], accepted_keys("[link]"));
}
