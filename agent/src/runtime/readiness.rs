//! Readiness from the kernel: an instance is ready when the eBPF programs see its first
//! successful `listen()`. The instance task registers its cgroup here before the process
//! starts; the telemetry collector fires the registration when the ready event arrives.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;

#[derive(Clone, Default)]
pub struct Readiness(Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>);

impl Readiness {
    /// Resolves when cgroup `cgroup_id` has a listening socket.
    pub fn expect(&self, cgroup_id: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(cgroup_id, tx);
        rx
    }

    /// Called by the collector on a ready event.
    pub fn ready(&self, cgroup_id: u64) {
        if let Some(tx) = self.lock().remove(&cgroup_id) {
            let _ = tx.send(());
        }
    }

    pub fn forget(&self, cgroup_id: u64) {
        self.lock().remove(&cgroup_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<()>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
