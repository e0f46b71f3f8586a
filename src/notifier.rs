//! What happens after a commit: the relay is told the log grew (on PostgreSQL the
//! database tells every instance too), and the catalog cache is told that stock or
//! products changed. The transitions (`lifecycle`) never see it; their callers write the
//! events in their transaction and tell it what committed.

use std::{future::Future, sync::Arc};

use tokio::sync::Notify;

use crate::cache::Cache;

/// Tells this process's relay and the catalog cache about committed changes. Cheap to
/// clone.
#[derive(Clone)]
pub struct Notifier {
    log: Arc<Notify>,
    cache: Arc<dyn Cache>,
}

impl Notifier {
    /// `log` wakes this process's relay.
    pub fn new(log: Arc<Notify>, cache: Arc<dyn Cache>) -> Self {
        Self { log, cache }
    }

    /// Events were committed to the log: the relay reads them now rather than at its
    /// next poll.
    pub fn events_written(&self) {
        self.log.notify_one();
    }

    /// What wakes the relay of this process.
    pub fn log(&self) -> Arc<Notify> {
        self.log.clone()
    }

    /// Stock or products changed: catalog reads must not serve what was cached before.
    pub async fn catalog_changed(&self) {
        self.cache.bump().await;
    }
}

/// Runs post-commit work in a task of its own and waits for it, so a client that hangs up
/// cannot cut it short (its request future is dropped, the task goes on).
pub async fn detached<F>(work: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(output) => Some(output),
        Err(err) => {
            tracing::warn!(error = %err, "post-commit task failed");
            None
        }
    }
}
