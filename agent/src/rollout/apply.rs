//! Applying a function version or a settings version: check everything, warm each new pool
//! beside the running one, swap, persist. A failure leaves the running pool in place and says
//! why.

use std::time::Duration;

use synapse_proto::link::v1::DesiredVersion;
use tokio::sync::watch;

use super::{
    Applied, Rollouts,
    settings::{Settings, bounds_differ, effective},
};
use crate::config::{FunctionSpec, check_function};

/// Longest wait for the new pool's first ready instance, whatever its `ready_timeout`.
const MAX_WARM_WAIT: Duration = Duration::from_secs(30);
const WARM_POLL: Duration = Duration::from_millis(50);

/// The spec a rollout carries for `target` at `version`, checked: it must parse as one
/// function, name `target`, carry `version`, and pass the configuration file's checks. The
/// empty version is the function as configured.
pub fn checked_spec(
    target: &str,
    version: &str,
    payload: &str,
    configured: &std::collections::BTreeMap<String, FunctionSpec>,
) -> Result<FunctionSpec, String> {
    if !configured.contains_key(target) {
        return Err(match target {
            "model" | "settings" => {
                format!("{target}: this agent does not apply {target} versions live")
            }
            _ => format!("function {target} is not configured on this agent"),
        });
    }
    if version.is_empty() {
        return Ok(configured[target].clone());
    }
    let spec: FunctionSpec =
        toml::from_str(payload).map_err(|e| format!("function spec: {}", e.message()))?;
    if spec.name != target {
        return Err(format!("the spec names {:?}, not {target:?}", spec.name));
    }
    if spec.version != version {
        return Err(format!(
            "the spec's version is {:?}, not {version:?}",
            spec.version
        ));
    }
    check_function(&spec)?;
    if let Some(command) = &spec.command
        && command.is_absolute()
        && !command.is_file()
    {
        return Err(format!("command {} does not exist", command.display()));
    }
    Ok(spec)
}

/// Applies `desired` to its function: the new pool warms beside the running one, then takes
/// every new invocation; the old pool drains and retires.
pub async fn function_version(
    rollouts: &mut Rollouts,
    desired: &DesiredVersion,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let target = desired.target.as_str();
    let base = checked_spec(
        target,
        &desired.version,
        &desired.payload,
        &rollouts.configured,
    )?;
    let spec = effective(&base, rollouts.settings.pools.get(target));
    check_function(&spec)?;
    swap_in(rollouts, spec, &desired.version, stop).await?;
    rollouts.bases.insert(target.to_owned(), base);
    keep(rollouts, desired);
    Ok(())
}

/// Applies a settings version: every function it or the settings in force touch gets its
/// pool bounds, each pool replaced as a function version would be. Everything is checked
/// before the first pool changes.
pub async fn settings_version(
    rollouts: &mut Rollouts,
    desired: &DesiredVersion,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let next = if desired.version.is_empty() {
        Settings::default()
    } else {
        Settings::parse(&desired.payload, &rollouts.bases)?
    };
    let touched: Vec<String> = rollouts
        .settings
        .pools
        .keys()
        .chain(next.pools.keys())
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for name in touched {
        let Some(base) = rollouts.bases.get(&name) else {
            continue;
        };
        let spec = effective(base, next.pools.get(&name));
        let running = rollouts.runtime.function(&name).map(|f| f.spec.clone());
        if running.is_none_or(|r| bounds_differ(&r, &spec)) {
            swap_in(rollouts, spec, &desired.version, stop).await?;
        }
    }
    rollouts.settings = next;
    keep(rollouts, desired);
    Ok(())
}

/// Warms a pool for `spec` beside the running one, then swaps it in.
async fn swap_in(
    rollouts: &mut Rollouts,
    spec: FunctionSpec,
    version: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let name = spec.name.clone();
    let want = spec.min_warm.min(1);
    let wait = spec.ready_timeout.min(MAX_WARM_WAIT);
    let next = rollouts
        .runtime
        .prepare(spec)
        .ok_or_else(|| format!("function {name} is not running on this agent"))?;
    rollouts.managers.spawn(next.clone().manage());
    let deadline = tokio::time::Instant::now() + wait;
    while next.ready() < want {
        if tokio::time::Instant::now() >= deadline || *stop.borrow() {
            next.retire_pool();
            let why = next
                .last_failure()
                .map(|f| format!(": {f}"))
                .unwrap_or_default();
            return Err(format!(
                "{name}: no instance of version {version} became ready within {wait:?}{why}"
            ));
        }
        tokio::time::sleep(WARM_POLL).await;
    }
    rollouts.runtime.swap(next);
    Ok(())
}

/// Persists what was applied, so a restarted agent runs it again.
fn keep(rollouts: &Rollouts, desired: &DesiredVersion) {
    let target = desired.target.as_bytes();
    let kept = if desired.version.is_empty() {
        rollouts.applied.remove(target).map(|_| ())
    } else {
        let applied = Applied {
            version: desired.version.clone(),
            payload: desired.payload.clone(),
        };
        match serde_json::to_vec(&applied) {
            Ok(value) => rollouts.applied.insert(target, value).map(|_| ()),
            Err(e) => {
                tracing::error!(target = %desired.target, "cannot encode the applied version: {e}");
                return;
            }
        }
    };
    // What runs is applied already; a version not kept is lost only by a restart.
    if let Err(e) = kept.and_then(|()| rollouts.applied.flush().map(|_| ())) {
        tracing::error!(target = %desired.target, "applied, but not kept for a restart: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured() -> std::collections::BTreeMap<String, FunctionSpec> {
        let text = "[[functions]]\nname = \"fn-a\"\ncommand = \"/bin/true\"\n";
        crate::config::AgentConfig::parse(text, "a.toml")
            .unwrap()
            .functions
            .into_iter()
            .map(|f| (f.name.clone(), f))
            .collect()
    }

    #[test]
    fn a_good_spec_of_a_configured_function_is_taken() {
        let payload = "name = \"fn-a\"\nversion = \"2\"\ncommand = \"/bin/true\"\nmin_warm = 1\n";
        let spec = checked_spec("fn-a", "2", payload, &configured()).unwrap();
        assert_eq!((spec.version.as_str(), spec.min_warm), ("2", 1));
        let own = checked_spec("fn-a", "", "", &configured()).unwrap();
        assert_eq!(
            own.version, "1",
            "the empty version is the configured function"
        );
    }

    #[test]
    fn every_bad_spec_says_why() {
        let c = configured();
        let why = |target: &str, version: &str, payload: &str| {
            checked_spec(target, version, payload, &c).unwrap_err()
        };
        assert!(why("fn-b", "2", "").contains("not configured"));
        assert!(why("fn-a", "2", "name = ").contains("function spec"));
        assert!(
            why(
                "fn-a",
                "2",
                "name = \"fn-a\"\nversion = \"2\"\ncomand = \"/x\"\n"
            )
            .contains("unknown field")
        );
        assert!(
            why(
                "fn-a",
                "2",
                "name = \"fn-a\"\nversion = \"3\"\ncommand = \"/bin/true\"\n"
            )
            .contains("not \"2\"")
        );
        assert!(
            why(
                "fn-a",
                "2",
                "name = \"fn-a\"\nversion = \"2\"\ncommand = \"/bin/true\"\nmin_warm = 9\n"
            )
            .contains("max_instances")
        );
        assert!(
            why(
                "fn-a",
                "2",
                "name = \"fn-a\"\nversion = \"2\"\ncommand = \"/nonexistent/fn\"\n"
            )
            .contains("does not exist")
        );
    }
}
