//! What happens after a commit: status events to listeners, and the catalog cache told
//! that stock moved. The transitions (`lifecycle`) never see it; their callers tell it
//! what committed.

use std::{future::Future, sync::Arc};

use crate::{cache::Cache, orders::view::OrderView, realtime::EventBus};

/// Tells listeners and the catalog cache about committed changes. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    events: Arc<dyn EventBus>,
    cache: Arc<dyn Cache>,
}

impl Notifier {
    pub fn new(events: Arc<dyn EventBus>, cache: Arc<dyn Cache>) -> Self {
        Self { events, cache }
    }

    /// `/orders` `status`: the order as it now stands.
    pub async fn order(&self, view: &OrderView) {
        self.events.order_status(&view.response()).await;
    }

    /// `/payment` `status`: where the payment now stands.
    pub async fn payment(&self, view: &OrderView) {
        self.events.payment_status(&view.payment_event()).await;
    }

    /// The order, then its payment: an order that ended, or was cancelled.
    pub async fn order_and_payment(&self, view: &OrderView) {
        self.order(view).await;
        self.payment(view).await;
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
