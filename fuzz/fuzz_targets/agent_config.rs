//! Fuzz target: the agent's configuration file (`AgentConfig::parse`, agent/src/config/), the
//! TOML reading and every range check that `synapse-agent check-config` and the agent's start
//! run on it.
//!
//! Holds for every input: no panic; a refusal names the file, and a syntax error's line and
//! column lie within the text; an accepted configuration passes its checks again, and each of
//! its functions passes the per-function check (the one a rollout's function spec gets).

#![no_main]

use libfuzzer_sys::fuzz_target;
use synapse_agent::config::{AgentConfig, ConfigError, check_function};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match AgentConfig::parse(text, "fuzz.toml") {
        Ok(config) => {
            for f in &config.functions {
                check_function(f).unwrap_or_else(|e| panic!("accepted function {}: {e}", f.name));
            }
            let _ = config.agent_id();
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("fuzz.toml"), "{message}");
            if let ConfigError::Syntax { line, column, .. } = e {
                let lines = text.split('\n').count();
                assert!(line >= 1 && line <= lines, "line {line} of {lines}");
                assert!(column >= 1);
                let this = text.split('\n').nth(line - 1).unwrap_or("");
                assert!(column <= this.len() + 1, "column {column} of {:?}", this);
            }
        }
    }
});
