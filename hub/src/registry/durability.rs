//! Group commit: writers ask for a ticket after their sled write, one flusher task flushes
//! the store for every ticket issued so far, and each writer waits until its ticket is on
//! disk. Acknowledgements wait for this, so the hub never acks what a crash could lose,
//! and a thousand agents cost one fsync per flush round rather than one each.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, watch};

/// Tickets for durability of writes already applied to the store.
#[derive(Clone)]
pub struct Durability {
    requested: Arc<AtomicU64>,
    wake: Arc<Notify>,
    flushed: watch::Receiver<u64>,
}

/// Durability was lost: the flusher stopped.
#[derive(Debug, thiserror::Error)]
#[error("the store flusher stopped")]
pub struct FlusherStopped;

impl Durability {
    /// Starts the flusher task for `db`; it ends when every `Durability` clone is dropped.
    pub fn start(db: sled::Db) -> Self {
        let requested = Arc::new(AtomicU64::new(0));
        let wake = Arc::new(Notify::new());
        let (flushed_tx, flushed) = watch::channel(0u64);
        let (task_requested, task_wake) = (requested.clone(), wake.clone());
        tokio::spawn(async move {
            let mut done = 0u64;
            loop {
                if task_requested.load(Ordering::Acquire) == done {
                    tokio::select! {
                        _ = task_wake.notified() => {}
                        _ = flushed_tx.closed() => return,
                    }
                }
                let target = task_requested.load(Ordering::Acquire);
                match db.flush_async().await {
                    Ok(_) => {
                        done = target;
                        if flushed_tx.send(done).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "store flush failed; acknowledgements wait");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Self {
            requested,
            wake,
            flushed,
        }
    }

    /// A ticket covering every write applied before this call.
    pub fn ticket(&self) -> u64 {
        let ticket = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        self.wake.notify_one();
        ticket
    }

    /// Waits until `ticket` is on disk.
    pub async fn wait(&self, ticket: u64) -> Result<(), FlusherStopped> {
        let mut flushed = self.flushed.clone();
        flushed
            .wait_for(|done| *done >= ticket)
            .await
            .map(|_| ())
            .map_err(|_| FlusherStopped)
    }
}
