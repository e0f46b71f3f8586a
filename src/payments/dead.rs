//! Dead payments: those that ran out of attempts and were parked on the queue's dead
//! list. An admin may give one a fresh set of attempts.

use uuid::Uuid;

use super::worker::Environment;
use crate::{
    clock, db,
    error::{AppError, AppResult},
    events::Actor,
    lifecycle,
    notifier::detached,
    orders::{dto::OrderResponse, view::OrderView},
};

/// Revives a dead payment: its order's stock is reserved again (409 when it is gone), the
/// payment and the order go back to `PENDING`, and the job leaves the dead list for the
/// ready queue.
#[tracing::instrument(skip_all, fields(%payment_id))]
pub async fn retry(env: &Environment, actor: Actor, payment_id: Uuid) -> AppResult<OrderResponse> {
    let dead = env
        .queue
        .dead_job(payment_id)
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "dead job lookup: queue unavailable");
            AppError::unavailable("The payment queue is unavailable; try again shortly.")
        })?
        .ok_or_else(|| AppError::not_found("dead job"))?;
    let txn = db::begin_write(&env.db).await?;
    let moved = match lifecycle::revive(&txn, payment_id, actor, clock::now()).await? {
        Ok(moved) => moved,
        Err(problem) => {
            txn.rollback().await?;
            return Err(problem);
        }
    };
    txn.commit().await?;
    tracing::info!(last_error = %dead.error, "dead payment revived");
    let view = OrderView::load(&env.db, moved.order.id)
        .await?
        .ok_or_else(|| AppError::not_found("order"))?;
    let env = env.clone();
    detached(async move {
        // Back to PENDING: no event type names that; the next attempt is heard.
        env.notifier.catalog_changed().await;
        let removed = env.queue.remove_dead(payment_id).await;
        let queued = env.queue.enqueue(payment_id, clock::now()).await;
        if let Err(err) = removed.and(queued.map(drop)) {
            tracing::warn!(error = %err, "revived payment not queued; the sweeper will");
        }
        view.response()
    })
    .await
    .ok_or_else(|| AppError::Internal(anyhow::anyhow!("revive follow-up failed")))
}
