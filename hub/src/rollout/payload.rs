//! The hub's check of what a rollout carries, before any agent sees it: a function spec is
//! TOML of one function named like the target, at the rollout's version; agent settings are
//! a TOML table; a model version names its file's SHA-256. Agents check the rest (a spec's
//! fields, the model file) and report what they cannot apply.

use super::{
    spec::{SpecError, Target},
    state::Desired,
};

/// Largest payload carried in one control frame, bytes.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

pub fn check(target: &Target, new: &Desired) -> Result<(), SpecError> {
    if new.version.is_empty() || !synapse_link::names::is_version(&new.version) {
        return Err(SpecError::Version);
    }
    if new.payload.len() > MAX_PAYLOAD_BYTES {
        return Err(SpecError::Payload(format!(
            "payload of {} bytes is over {MAX_PAYLOAD_BYTES}",
            new.payload.len()
        )));
    }
    match target {
        Target::Function(name) => {
            let table: toml::Table = toml::from_str(&new.payload)
                .map_err(|e| SpecError::Payload(format!("function spec: {}", e.message())))?;
            match table.get("name").and_then(|v| v.as_str()) {
                Some(n) if n == name => {}
                other => {
                    return Err(SpecError::Payload(format!(
                        "function spec names {other:?}, the rollout's target is {name:?}"
                    )));
                }
            }
            match table.get("version").and_then(|v| v.as_str()) {
                Some(v) if v == new.version => Ok(()),
                other => Err(SpecError::Payload(format!(
                    "function spec version {other:?} is not the rollout's version {:?}",
                    new.version
                ))),
            }
        }
        Target::Settings => toml::from_str::<toml::Table>(&new.payload)
            .map(|_| ())
            .map_err(|e| SpecError::Payload(format!("agent settings: {}", e.message()))),
        Target::Model => {
            if new.sha256.len() == 64 && new.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                Ok(())
            } else {
                Err(SpecError::Payload(format!(
                    "model sha256 {:?} is not 64 hex digits",
                    new.sha256
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(version: &str, payload: &str) -> Desired {
        Desired {
            version: version.into(),
            payload: payload.into(),
            sha256: String::new(),
        }
    }

    #[test]
    fn a_function_spec_must_name_the_target_and_carry_the_version() {
        let f = Target::Function("fn-a".into());
        assert!(check(&f, &desired("2", "name = \"fn-a\"\nversion = \"2\"\n")).is_ok());
        assert!(check(&f, &desired("2", "name = \"fn-b\"\nversion = \"2\"\n")).is_err());
        assert!(check(&f, &desired("2", "name = \"fn-a\"\nversion = \"3\"\n")).is_err());
        assert!(check(&f, &desired("2", "name = ")).is_err());
        assert!(check(&f, &desired("", "name = \"fn-a\"")).is_err());
    }

    #[test]
    fn a_model_version_needs_a_sha256() {
        let mut d = desired("r7", "");
        assert!(check(&Target::Model, &d).is_err());
        d.sha256 = "ab".repeat(32);
        assert!(check(&Target::Model, &d).is_ok());
    }
}
