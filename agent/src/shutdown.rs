//! One shutdown signal for the whole agent: a `watch` channel that turns true once. Every task
//! gets a receiver and waits on [`stopped`] in its `select!`; nothing polls a flag.

use tokio::sync::watch;

/// Resolves when the agent is stopping (or the sender is gone, which means the same).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
