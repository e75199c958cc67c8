//! An instance's limits in its cgroups: memory (`memory.max`), processes (`pids.max`) and CPU
//! time (`cpu.max`), each written in cgroup v2 when v2 offers the controller, else in the
//! controller's v1 hierarchy (`memory.limit_in_bytes`, `pids.max`, `cpu.cfs_quota_us` with
//! `cpu.cfs_period_us`), in a folder of the same path there.
//!
//! A memory limit the host cannot apply refuses the instance (its function counts on it).
//! A host without the pids or cpu controller (in neither hierarchy, or v2 refusing to enable
//! it) runs the instances without that limit: the agent warns once and goes on.

use std::{
    fs,
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context as _, Result, bail};
use tracing::warn;

use super::{CgroupLayout, InstanceCgroup, write_file};

/// Period of the CPU quota, µs (the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;

/// What an instance's cgroups limit; `None` leaves the kernel's default (no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_mb: Option<u64>,
    pub pids_max: Option<u64>,
    /// CPU time per [`CPU_PERIOD_US`], µs.
    pub cpu_quota_us: Option<u64>,
}

static PIDS_MISSING: AtomicBool = AtomicBool::new(false);
static CPU_MISSING: AtomicBool = AtomicBool::new(false);

/// Where a controller's files of one instance are.
enum Place {
    V2,
    V1(PathBuf),
    /// Nowhere: warned about once.
    Missing,
}

impl CgroupLayout {
    /// Writes `limits` into the cgroups of `cg` (v2 already made), making its v1 folders.
    pub(super) fn apply_limits(
        &self,
        cg: &mut InstanceCgroup,
        function: &str,
        instance: &str,
        limits: &Limits,
    ) -> Result<()> {
        if let Some(mb) = limits.memory_mb {
            let bytes = mb.saturating_mul(1 << 20).to_string();
            match self.place("memory", function, instance, None)? {
                Place::V2 => {
                    write_file(&cg.v2.join("memory.max"), &bytes)?;
                    write_file(&cg.v2.join("memory.swap.max"), "0").ok();
                }
                Place::V1(dir) => {
                    cg.v1_memory = Some(dir.clone());
                    write_file(&dir.join("memory.limit_in_bytes"), &bytes)?;
                    // With swap accounting, the limit covers swap too (else the kernel may
                    // swap instead of enforcing it).
                    write_file(&dir.join("memory.memsw.limit_in_bytes"), &bytes).ok();
                }
                Place::Missing => bail!(
                    "function {function}: memory_mb is set but this host has no memory controller"
                ),
            }
        }
        if let Some(max) = limits.pids_max {
            match self.place("pids", function, instance, Some(&PIDS_MISSING))? {
                Place::V2 => write_file(&cg.v2.join("pids.max"), &max.to_string())?,
                Place::V1(dir) => {
                    cg.v1_pids = Some(dir.clone());
                    write_file(&dir.join("pids.max"), &max.to_string())?;
                }
                Place::Missing => {}
            }
        }
        if let Some(quota) = limits.cpu_quota_us {
            match self.place("cpu", function, instance, Some(&CPU_MISSING))? {
                Place::V2 => {
                    write_file(&cg.v2.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?
                }
                Place::V1(dir) => {
                    cg.v1_cpu = Some(dir.clone());
                    write_file(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write_file(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
                Place::Missing => {}
            }
        }
        Ok(())
    }

    /// Where `controller`'s files of the instance are: v2 (the controller enabled down to the
    /// instance), or its v1 folder (made here). `missing` is the warn-once flag of a
    /// controller that may be absent; without it, absence is [`Place::Missing`] unwarned.
    fn place(
        &self,
        controller: &str,
        function: &str,
        instance: &str,
        missing: Option<&AtomicBool>,
    ) -> Result<Place> {
        let (in_v2, v1) = match controller {
            "memory" => (self.v2_memory, &self.v1_memory),
            "pids" => (self.v2_pids, &self.v1_pids),
            _ => (self.v2_cpu, &self.v1_cpu),
        };
        let why = if in_v2 {
            match self.enable_v2(controller, function) {
                Ok(()) => return Ok(Place::V2),
                Err(e) if missing.is_some() => format!("{e:#}"),
                Err(e) => return Err(e),
            }
        } else if let Some(mount) = v1 {
            let dir = mount.join(&self.subtree).join(function).join(instance);
            fs::create_dir_all(&dir)
                .with_context(|| format!("creating cgroup {}", dir.display()))?;
            return Ok(Place::V1(dir));
        } else {
            "neither cgroup v2 nor a v1 hierarchy offers it".to_string()
        };
        if let Some(flag) = missing
            && !flag.swap(true, Ordering::Relaxed)
        {
            warn!(
                controller,
                "no {controller} controller for function instances ({why}): they run without \
                 their {} limit",
                if controller == "pids" {
                    "pids_max"
                } else {
                    "cpu"
                }
            );
        }
        Ok(Place::Missing)
    }

    /// Enables `controller` in `cgroup.subtree_control` from the agent's parent cgroup down
    /// to the function's folder, so that its instance cgroups have the controller's files.
    fn enable_v2(&self, controller: &str, function: &str) -> Result<()> {
        let enable = format!("+{controller}");
        let mut dir = self.v2.join(&self.v2_parent);
        for part in [self.subtree.as_str(), function] {
            write_file(&dir.join("cgroup.subtree_control"), &enable)?;
            dir = dir.join(part);
        }
        write_file(&dir.join("cgroup.subtree_control"), &enable)
    }
}
