//! Fuzz target: the hub's configuration file (`HubConfig::parse`, hub/src/config.rs), the TOML
//! reading and the checks that `synapse-hub --check` and the hub's start run on it (rollouts,
//! placement ranges).
//!
//! Holds for every input: no panic; a refusal names the file, with a line and column within
//! the text when it is a syntax error; an accepted configuration passes its checks again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use synapse_hub::config::{ConfigError, HubConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match HubConfig::parse(text, "fuzz.toml") {
        Ok(config) => {
            config
                .rollouts
                .validate()
                .expect("accepted rollouts pass again");
            config
                .placement
                .check()
                .expect("accepted placement passes again");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("fuzz.toml"), "{message}");
            if let ConfigError::Invalid { line, column, .. } = e {
                let lines = text.split('\n').count();
                assert!(line >= 1 && line <= lines, "line {line} of {lines}");
                let this = text.split('\n').nth(line - 1).unwrap_or("");
                assert!(column >= 1 && column <= this.len() + 1, "column {column}");
            }
        }
    }
});
