//! The refund worker: takes refunds off their queue, runs one attempt of each through the
//! simulated provider (which fails transiently with probability `REFUND_FAILURE_RATE`), and
//! ends it or schedules a retry with the payments' backoff; the sweeper puts back what
//! the queue lost. Every move of a refund row is a conditional update naming the attempt
//! it belongs to, so a job delivered twice, or taken over after its worker died, ends the
//! refund once: the order's `refunded` grows and its restock comes back exactly once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{RefundStatus, order, refund};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::{event, restock_lines};
use crate::{
    clock, db,
    error::{AppError, AppResult},
    events::{self, Actor, NewEvent},
    inventory::Line,
    lifecycle,
    orders::view::OrderView,
    payments::worker::{Environment, to_chrono},
    queue::RetryPolicy,
};

/// How long an idle worker waits before looking at the queue again.
const POLL: Duration = Duration::from_millis(50);
/// Most refunds attempted together.
const BATCH: usize = 16;
/// Most batches running at once in a process.
const BATCHES: usize = 4;
/// How long shutdown waits for running attempts before leaving them to lease expiry.
const DRAIN: Duration = Duration::from_secs(20);

/// The guard of an attempt's outcome: the refund is still in this very attempt.
fn owns_attempt(attempt: &refund::Model) -> Condition {
    Condition::all()
        .add(refund::Column::Id.eq(attempt.id))
        .add(refund::Column::Status.eq(RefundStatus::Pending))
        .add(refund::Column::Attempts.eq(attempt.attempts))
        .add(refund::Column::NextAttemptAt.is_null())
}

/// How an attempt ended: the refund's status after it, when the next attempt is due (a
/// retry), and why it failed.
struct Outcome<'a> {
    status: RefundStatus,
    next_attempt_at: Option<DateTime<Utc>>,
    error: Option<&'a str>,
}

/// Records the outcome of `attempt` if the refund is still in that very attempt; `None`
/// (nothing written) when another worker took it over or it ended meanwhile.
async fn end_attempt<C: ConnectionTrait>(
    txn: &C,
    attempt: &refund::Model,
    outcome: Outcome<'_>,
    now: DateTime<Utc>,
) -> AppResult<Option<refund::Model>> {
    let rows = refund::Entity::update_many()
        .col_expr(refund::Column::Status, Expr::value(outcome.status))
        .col_expr(
            refund::Column::NextAttemptAt,
            Expr::value(outcome.next_attempt_at),
        )
        .col_expr(
            refund::Column::LastError,
            Expr::value(outcome.error.map(str::to_owned)),
        )
        .col_expr(refund::Column::UpdatedAt, Expr::value(now))
        .filter(owns_attempt(attempt))
        .exec_with_returning(txn)
        .await?;
    Ok(rows.into_iter().next())
}

/// Starts one attempt of each refund in `ids` that is due, or whose worker died (in an
/// attempt, untouched for longer than `lease`).
async fn start_attempts<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
    lease: chrono::Duration,
    now: DateTime<Utc>,
) -> AppResult<Vec<refund::Model>> {
    let due = Condition::any()
        .add(refund::Column::NextAttemptAt.lte(now))
        .add(
            Condition::all()
                .add(refund::Column::NextAttemptAt.is_null())
                .add(refund::Column::UpdatedAt.lt(now - lease)),
        );
    Ok(refund::Entity::update_many()
        .col_expr(
            refund::Column::Attempts,
            Expr::col(refund::Column::Attempts).add(1),
        )
        .col_expr(
            refund::Column::NextAttemptAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(refund::Column::UpdatedAt, Expr::value(now))
        .filter(refund::Column::Id.is_in(ids.iter().copied()))
        .filter(refund::Column::Status.eq(RefundStatus::Pending))
        .filter(due)
        .exec_with_returning(db)
        .await?)
}

/// Runs one attempt of each refund of `ids` that is due; the others are put back for
/// their time, left to the worker running them, or forgotten once ended.
async fn process_batch(env: &Environment, ids: &[Uuid]) -> AppResult<()> {
    // The time is read once the write lock is held, so a long wait for it cannot make a
    // healthy attempt look abandoned.
    let txn = db::begin_write(&env.db).await?;
    let now = clock::now();
    let started = start_attempts(&txn, ids, to_chrono(env.config.lease), now).await?;
    txn.commit().await?;
    for id in ids
        .iter()
        .filter(|id| !started.iter().any(|r| r.id == **id))
    {
        not_started(env, *id).await?;
    }
    if started.is_empty() {
        return Ok(());
    }
    tokio::time::sleep(env.config.latency).await;
    for attempt in started {
        let span = tracing::info_span!("refund attempt", refund_id = %attempt.id, order_id = %attempt.order_id, attempt = attempt.attempts);
        let outcome = async {
            if attempt.attempts > attempt.max_attempts {
                // Taken over after its worker died during the last attempt.
                return fail(env, &attempt, "the last attempt was interrupted").await;
            }
            if rand::random::<f64>() < env.config.refund_failure_rate {
                crate::metrics::refund_attempt("transient");
                transient_failure(
                    env,
                    &attempt,
                    "the provider did not answer in time (simulated)",
                )
                .await
            } else {
                crate::metrics::refund_attempt("succeeded");
                succeed(env, &attempt).await
            }
        }
        .instrument(span.clone())
        .await;
        // One refund's trouble leaves the others of the batch to go on; its job comes back
        // when its lease runs out.
        if let Err(err) = outcome {
            span.in_scope(|| tracing::warn!(error = ?err, "refund attempt failed; its job returns when the lease expires"));
        }
    }
    Ok(())
}

/// The money went back: the refund `SUCCEEDED`, the order's `refunded` grows and it
/// moves on, its restock lines come back; all in one transaction.
async fn succeed(env: &Environment, attempt: &refund::Model) -> AppResult<()> {
    let txn = db::begin_write(&env.db).await?;
    let now = clock::now();
    let outcome = Outcome {
        status: RefundStatus::Succeeded,
        next_attempt_at: None,
        error: None,
    };
    let Some(done) = end_attempt(&txn, attempt, outcome, now).await? else {
        txn.rollback().await?;
        return Ok(());
    };
    let lines: Vec<Line> = restock_lines(&done)?.into_iter().map(Line::from).collect();
    let order =
        lifecycle::settle_refund(&txn, done.order_id, done.amount_cents, &lines, now).await?;
    let view = OrderView::load(&txn, order.id)
        .await?
        .ok_or_else(|| AppError::not_found("order"))?;
    let events = vec![
        event(&done, order.user_id, Actor::WORKER)?,
        NewEvent::order(&view, Actor::WORKER),
    ];
    events::record(&txn, events, now).await?;
    txn.commit().await?;
    env.notifier.events_written();
    tracing::info!(amount_cents = done.amount_cents, status = ?order.status, "refund succeeded");
    crate::metrics::refund_finished("succeeded", done.amount_cents);
    if !lines.is_empty() {
        env.notifier.catalog_changed().await;
    }
    ack(env, done.id).await;
    Ok(())
}

/// After a transient failure: a retry with backoff, or out of attempts, the refund fails.
async fn transient_failure(
    env: &Environment,
    attempt: &refund::Model,
    error: &str,
) -> AppResult<()> {
    let number = u32::try_from(attempt.attempts).unwrap_or(u32::MAX);
    let policy = RetryPolicy {
        max_attempts: u32::try_from(attempt.max_attempts).unwrap_or(0),
        ..env.config.retry_policy()
    };
    if !policy.retries_after(number) {
        return fail(env, attempt, error).await;
    }
    let now = clock::now();
    let due = now + to_chrono(policy.delay(number, rand::random()));
    let txn = db::begin_write(&env.db).await?;
    let outcome = Outcome {
        status: RefundStatus::Pending,
        next_attempt_at: Some(due),
        error: Some(error),
    };
    let Some(waiting) = end_attempt(&txn, attempt, outcome, now).await? else {
        txn.rollback().await?;
        return Ok(());
    };
    let owner = owner(&txn, waiting.order_id).await?;
    events::record(&txn, vec![event(&waiting, owner, Actor::WORKER)?], now).await?;
    txn.commit().await?;
    env.notifier.events_written();
    tracing::info!(%error, next_attempt_at = %due, "refund will be retried");
    if let Err(err) = env.refund_queue.retry(waiting.id, due).await {
        tracing::warn!(error = %err, "could not schedule a refund retry; the sweeper will");
    }
    Ok(())
}

/// Out of attempts: the refund `FAILED`, and its claims on the order's money and units
/// are given back, so another refund may take them.
async fn fail(env: &Environment, attempt: &refund::Model, error: &str) -> AppResult<()> {
    let txn = db::begin_write(&env.db).await?;
    let now = clock::now();
    let outcome = Outcome {
        status: RefundStatus::Failed,
        next_attempt_at: None,
        error: Some(error),
    };
    let Some(failed) = end_attempt(&txn, attempt, outcome, now).await? else {
        txn.rollback().await?;
        return Ok(());
    };
    let lines: Vec<Line> = restock_lines(&failed)?
        .into_iter()
        .map(Line::from)
        .collect();
    lifecycle::release_refund(&txn, failed.order_id, failed.amount_cents, &lines).await?;
    let owner = owner(&txn, failed.order_id).await?;
    events::record(&txn, vec![event(&failed, owner, Actor::WORKER)?], now).await?;
    txn.commit().await?;
    env.notifier.events_written();
    tracing::warn!(%error, "refund failed; nothing was refunded");
    crate::metrics::refund_finished("failed", failed.amount_cents);
    ack(env, failed.id).await;
    Ok(())
}

/// The user who placed an order.
async fn owner<C: ConnectionTrait>(db: &C, order_id: Uuid) -> AppResult<Uuid> {
    Ok(order::Entity::find_by_id(order_id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("order"))?
        .user_id)
}

/// A delivered job that could not start: waiting for its retry (put it back for then),
/// running elsewhere (leave it to that worker), or ended or gone (forget it).
async fn not_started(env: &Environment, id: Uuid) -> AppResult<()> {
    let current = refund::Entity::find_by_id(id).one(&env.db).await?;
    match current {
        Some(row) if row.status == RefundStatus::Pending => {
            if let Some(due) = row.next_attempt_at
                && let Err(err) = env
                    .refund_queue
                    .retry(id, Ord::max(due, clock::now()))
                    .await
            {
                tracing::warn!(error = %err, "could not reschedule an early refund job; the sweeper will");
            }
        }
        _ => ack(env, id).await,
    }
    Ok(())
}

async fn ack(env: &Environment, id: Uuid) {
    if let Err(err) = env.refund_queue.ack(id).await {
        tracing::warn!(refund_id = %id, error = %err, "could not acknowledge a refund job; it will be delivered again and ignored");
    }
}

/// Works off the refund queue, up to [`BATCHES`] batches at once, until `shutdown`; then
/// lets running batches finish (for a while; after that their leases expire and the jobs
/// return to the queue).
pub async fn run(env: Environment, shutdown: CancellationToken) {
    let worker = crate::queue::Worker {
        name: "refund",
        concurrency: BATCH * BATCHES,
        batch: BATCH,
        lease: env.config.lease,
        poll: POLL,
        drain: DRAIN,
    };
    let queue = env.refund_queue.clone();
    crate::queue::work(queue, worker, shutdown, move |ids| {
        let env = env.clone();
        async move {
            if let Err(err) = process_batch(&env, &ids).await {
                tracing::warn!(jobs = ids.len(), error = ?err, "refund attempts failed; their jobs return when the leases expire");
            }
        }
    })
    .await;
}

/// Puts back in the refund queue what it lost: expired leases, and refunds that are due
/// (or whose worker died) but missing from it.
pub async fn sweep(env: &Environment) -> AppResult<u64> {
    let config = &env.config;
    crate::queue::sweep::<refund::Entity>(
        &env.db,
        env.refund_queue.as_ref(),
        refund::Column::Id,
        "refunds",
        |now| {
            Condition::all()
                .add(refund::Column::Status.eq(RefundStatus::Pending))
                .add(crate::queue::lost_jobs(
                    refund::Column::NextAttemptAt,
                    refund::Column::UpdatedAt,
                    now,
                    config.sweep_interval,
                    config.lease,
                ))
        },
    )
    .await
}
