//! Host resources, read with sysinfo: CPU busy share, memory, load.

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use super::record::HostSample;

pub struct HostProbe {
    system: System,
}

impl Default for HostProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl HostProbe {
    pub fn new() -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        Self { system }
    }

    /// Reads the host now; CPU usage is the average since the previous call.
    pub fn sample(&mut self, unix_ms: i64) -> HostSample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let cpus = self.system.cpus().len() as u32;
        HostSample {
            unix_ms,
            cpus,
            cpu_usage: f64::from(self.system.global_cpu_usage()) / 100.0,
            memory_total_bytes: self.system.total_memory(),
            memory_used_bytes: self.system.used_memory(),
            load1: System::load_average().one,
        }
    }
}
