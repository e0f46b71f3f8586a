//! Payment processing: one attempt at a time per payment, retries with backoff,
//! compensation when a payment gives up; the worker loop and the sweeper.
//!
//! Every transition is a conditional update of the `payments` row (`WHERE status = …`, and
//! for an attempt's outcome `AND attempts = n`), so a job delivered twice, a worker whose
//! lease expired, or a cancel racing an attempt can change nothing twice: stock is restored
//! at most once.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use entity::{order, payment};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    PaymentEvent, PaymentMethod, PaymentStatus,
    simulator::{self, AttemptOutcome},
};
use crate::{
    app::AppState,
    clock, db,
    domain::Money,
    error::{AppError, AppResult},
    orders::{OrderStatus, service as orders, service::OrderLines},
};

/// How long an idle worker waits before looking at the queue again.
const POLL: Duration = Duration::from_millis(50);
/// Most payments one task attempts together.
const BATCH: usize = 16;
/// How many payments the sweeper looks at per query.
const SWEEP_PAGE: u64 = 1000;
/// How long shutdown waits for running attempts before leaving them to lease expiry.
const DRAIN: Duration = Duration::from_secs(20);

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Runs one attempt of a payment, if it is due and nobody else has it.
pub async fn process(state: &AppState, payment_id: Uuid) -> AppResult<()> {
    process_batch(state, &[payment_id]).await
}

/// Runs one attempt of each payment in `ids` that is due and nobody else has. The attempts
/// start in one transaction and the successes end in one, so a backlog costs a handful of
/// statements per batch rather than per payment; every other outcome ends on its own.
pub async fn process_batch(state: &AppState, ids: &[Uuid]) -> AppResult<()> {
    let config = &state.config.payments;
    let txn = db::begin_write(&state.db).await?;
    // Read after the write lock is held, so a long wait for it cannot make a healthy
    // attempt elsewhere look abandoned.
    let now = clock::now();
    let started = payment::Entity::update_many()
        .col_expr(
            payment::Column::Status,
            Expr::value(PaymentStatus::Processing.as_str()),
        )
        .col_expr(
            payment::Column::Attempts,
            Expr::col(payment::Column::Attempts).add(1),
        )
        .col_expr(
            payment::Column::NextAttemptAt,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.is_in(ids.iter().copied()))
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(payment::Column::Status.is_in([
                            PaymentStatus::Pending.as_str(),
                            PaymentStatus::Retrying.as_str(),
                        ]))
                        .add(
                            Condition::any()
                                .add(payment::Column::NextAttemptAt.is_null())
                                .add(payment::Column::NextAttemptAt.lte(now)),
                        ),
                )
                // An attempt whose worker died (its lease long gone) is taken over.
                .add(
                    Condition::all()
                        .add(payment::Column::Status.eq(PaymentStatus::Processing.as_str()))
                        .add(payment::Column::UpdatedAt.lt(now - to_chrono(config.lease))),
                ),
        )
        .exec_with_returning(&txn)
        .await?;
    // The orders show PROCESSING from the first attempt on (re-stamped on later ones). A
    // cancel ends the payment in the same transaction, so every started payment's order is
    // still open.
    let orders: HashMap<Uuid, order::Model> = order::Entity::update_many()
        .col_expr(
            order::Column::Status,
            Expr::value(OrderStatus::Processing.as_str()),
        )
        .col_expr(order::Column::UpdatedAt, Expr::value(now))
        .filter(order::Column::Id.is_in(started.iter().map(|p| p.order_id)))
        .filter(order::Column::Status.is_in([
            OrderStatus::Pending.as_str(),
            OrderStatus::Processing.as_str(),
        ]))
        .exec_with_returning(&txn)
        .await?
        .into_iter()
        .map(|o| (o.id, o))
        .collect();
    txn.commit().await?;
    for id in ids {
        if !started.iter().any(|p| p.id == *id) {
            not_started(state, *id).await?;
        }
    }
    let mut lines = OrderLines::load_many(&state.db, orders.keys().copied()).await?;
    let mut attempts = Vec::with_capacity(started.len());
    for payment in started {
        match (
            orders.get(&payment.order_id).cloned(),
            lines.remove(&payment.order_id),
        ) {
            (Some(order), Some(lines)) => attempts.push((order, lines, payment)),
            _ => ack(state, payment.id).await,
        }
    }
    // Announced together: each payment's own events stay in order.
    futures::future::join_all(attempts.iter().map(|(order, lines, payment)| async move {
        if payment.attempts == 1 {
            state.events.order_status(&lines.view(order, payment)).await;
        }
        publish_payment(state, order, payment, PaymentStatus::Processing, None, None).await;
    }))
    .await;

    if !config.latency.is_zero() && !attempts.is_empty() {
        tokio::time::sleep(config.latency).await;
    }
    let mut succeeded = Vec::new();
    for (order, lines, payment) in attempts {
        let attempt = u32::try_from(payment.attempts).unwrap_or(u32::MAX);
        let method = PaymentMethod::parse(&order.payment_method).unwrap_or(PaymentMethod::DEFAULT);
        let outcome = if payment.attempts > payment.max_attempts {
            // Taken over after its worker died during the last attempt: nothing left to try.
            AttemptOutcome::Transient("the last attempt was interrupted".into())
        } else {
            simulator::attempt(method, attempt, config.success_rate, rand::random())
        };
        crate::metrics::payment_attempt(match &outcome {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Declined(_) => "declined",
            AttemptOutcome::Transient(_) => "transient",
        });
        match outcome {
            AttemptOutcome::Succeeded => succeeded.push((order, lines, payment)),
            outcome => conclude(state, (&order, &lines), &payment, outcome).await?,
        }
    }
    succeed(state, succeeded, now).await
}

/// Ends the successful attempts that started together at `started_at`: payments
/// `SUCCEEDED`, orders `COMPLETED`, in one transaction. A payment taken over meanwhile
/// (its `updated_at` moved on) is left to its new worker.
async fn succeed(
    state: &AppState,
    attempts: Vec<(order::Model, OrderLines, payment::Model)>,
    started_at: chrono::DateTime<chrono::Utc>,
) -> AppResult<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let txn = db::begin_write(&state.db).await?;
    let now = clock::now();
    let ended: HashSet<Uuid> = payment::Entity::update_many()
        .col_expr(
            payment::Column::Status,
            Expr::value(PaymentStatus::Succeeded.as_str()),
        )
        .col_expr(
            payment::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.is_in(attempts.iter().map(|(_, _, p)| p.id)))
        .filter(payment::Column::Status.eq(PaymentStatus::Processing.as_str()))
        .filter(payment::Column::UpdatedAt.eq(started_at))
        .exec_with_returning(&txn)
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect();
    order::Entity::update_many()
        .col_expr(
            order::Column::Status,
            Expr::value(OrderStatus::Completed.as_str()),
        )
        .col_expr(order::Column::UpdatedAt, Expr::value(now))
        .filter(
            order::Column::Id.is_in(
                attempts
                    .iter()
                    .filter(|(_, _, p)| ended.contains(&p.id))
                    .map(|(o, _, _)| o.id),
            ),
        )
        .filter(order::Column::Status.is_in([
            OrderStatus::Pending.as_str(),
            OrderStatus::Processing.as_str(),
        ]))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    let ended_attempts = attempts.iter().filter(|(_, _, p)| ended.contains(&p.id));
    futures::future::join_all(ended_attempts.map(|(order, lines, payment)| async move {
        crate::metrics::payment_finished("succeeded");
        announce_end(
            state,
            (order, lines),
            payment,
            PaymentStatus::Succeeded,
            None,
            now,
        )
        .await;
        ack(state, payment.id).await;
    }))
    .await;
    Ok(())
}

/// Ends one attempt that did not succeed: a decline fails the payment, a transient error
/// schedules a retry or, out of attempts, fails it and parks the job on the dead list.
async fn conclude(
    state: &AppState,
    (order, lines): (&order::Model, &OrderLines),
    payment: &payment::Model,
    outcome: AttemptOutcome,
) -> AppResult<()> {
    let config = &state.config.payments;
    let attempt = u32::try_from(payment.attempts).unwrap_or(u32::MAX);
    // The payment's own limit, as clients see it, whatever this process is configured with.
    let policy = crate::queue::RetryPolicy {
        max_attempts: u32::try_from(payment.max_attempts).unwrap_or(0),
        ..config.retry_policy()
    };
    let payment_id = payment.id;
    match outcome {
        AttemptOutcome::Succeeded => {
            if finish(state, (order, lines), payment, None).await? {
                ack(state, payment_id).await;
            }
        }
        AttemptOutcome::Declined(error) => {
            if finish(state, (order, lines), payment, Some(&error)).await? {
                ack(state, payment_id).await;
            }
        }
        AttemptOutcome::Transient(error) if policy.retries_after(attempt) => {
            let now = clock::now();
            let due = now + to_chrono(policy.delay(attempt, rand::random()));
            let waiting = payment::Entity::update_many()
                .col_expr(
                    payment::Column::Status,
                    Expr::value(PaymentStatus::Retrying.as_str()),
                )
                .col_expr(payment::Column::NextAttemptAt, Expr::value(Some(due)))
                .col_expr(payment::Column::LastError, Expr::value(Some(error.clone())))
                .col_expr(payment::Column::UpdatedAt, Expr::value(now))
                .filter(payment::Column::Id.eq(payment_id))
                .filter(payment::Column::Status.eq(PaymentStatus::Processing.as_str()))
                .filter(payment::Column::Attempts.eq(payment.attempts))
                .exec(&state.db)
                .await?
                .rows_affected
                == 1;
            if waiting {
                if let Err(err) = state.queue.retry(payment_id, due).await {
                    tracing::warn!(%payment_id, error = %err, "could not schedule a retry; the sweeper will");
                }
                publish_payment(
                    state,
                    order,
                    payment,
                    PaymentStatus::Retrying,
                    Some(due),
                    Some(&error),
                )
                .await;
            }
        }
        AttemptOutcome::Transient(error) => {
            if finish(state, (order, lines), payment, Some(&error)).await?
                && let Err(err) = state.queue.bury(payment_id, &error).await
            {
                tracing::warn!(%payment_id, error = %err, "could not move a job to the dead list");
            }
        }
    }
    Ok(())
}

/// A delivered job that could not start: still waiting (delivered early: put it back for
/// its due time), running elsewhere (leave it to that worker), or ended (forget it).
async fn not_started(state: &AppState, payment_id: Uuid) -> AppResult<()> {
    let current = payment::Entity::find_by_id(payment_id)
        .one(&state.db)
        .await?;
    match current
        .as_ref()
        .map(|p| (PaymentStatus::parse(&p.status), p.next_attempt_at))
    {
        Some((Some(PaymentStatus::Pending | PaymentStatus::Retrying), due)) => {
            let due = Ord::max(due.unwrap_or_else(clock::now), clock::now());
            if let Err(err) = state.queue.retry(payment_id, due).await {
                tracing::warn!(%payment_id, error = %err, "could not reschedule an early job; the sweeper will");
            }
        }
        Some((Some(PaymentStatus::Processing), _)) => {}
        _ => ack(state, payment_id).await,
    }
    Ok(())
}

/// Ends a payment: `SUCCEEDED` (order `COMPLETED`), or `FAILED` with `error` (order
/// `FAILED`, stock restored), all in one transaction. `false` when this attempt no longer
/// owns the payment (another worker took it over), in which case nothing changed.
async fn finish(
    state: &AppState,
    (order, lines): (&order::Model, &OrderLines),
    payment: &payment::Model,
    error: Option<&str>,
) -> AppResult<bool> {
    let (payment_status, order_status) = match error {
        None => (PaymentStatus::Succeeded, OrderStatus::Completed),
        Some(_) => (PaymentStatus::Failed, OrderStatus::Failed),
    };
    let now = clock::now();
    let txn = db::begin_write(&state.db).await?;
    let ended = payment::Entity::update_many()
        .col_expr(
            payment::Column::Status,
            Expr::value(payment_status.as_str()),
        )
        .col_expr(
            payment::Column::LastError,
            Expr::value(error.map(str::to_owned)),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.eq(payment.id))
        .filter(payment::Column::Status.eq(PaymentStatus::Processing.as_str()))
        .filter(payment::Column::Attempts.eq(payment.attempts))
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    if !ended {
        txn.rollback().await?;
        return Ok(false);
    }
    order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(order_status.as_str()))
        .col_expr(order::Column::UpdatedAt, Expr::value(now))
        .filter(order::Column::Id.eq(order.id))
        .filter(order::Column::Status.is_in([
            OrderStatus::Pending.as_str(),
            OrderStatus::Processing.as_str(),
        ]))
        .exec(&txn)
        .await?;
    if error.is_some() {
        orders::restore_stock(&txn, order.id, now).await?;
    }
    txn.commit().await?;
    crate::metrics::payment_finished(if error.is_some() {
        "failed"
    } else {
        "succeeded"
    });
    announce_end(state, (order, lines), payment, payment_status, error, now).await;
    if error.is_some() {
        // Stock came back.
        state.cache.bump().await;
    }
    Ok(true)
}

/// Publishes an ended payment and its order, as they now stand.
async fn announce_end(
    state: &AppState,
    (order, lines): (&order::Model, &OrderLines),
    payment: &payment::Model,
    payment_status: PaymentStatus,
    error: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
) {
    let order_status = if payment_status == PaymentStatus::Succeeded {
        OrderStatus::Completed
    } else {
        OrderStatus::Failed
    };
    let ended_order = order::Model {
        status: order_status.as_str().to_owned(),
        updated_at: at,
        ..order.clone()
    };
    let ended_payment = payment::Model {
        status: payment_status.as_str().to_owned(),
        last_error: error.map(str::to_owned),
        next_attempt_at: None,
        updated_at: at,
        ..payment.clone()
    };
    state
        .events
        .order_status(&lines.view(&ended_order, &ended_payment))
        .await;
    publish_payment(state, order, payment, payment_status, None, error).await;
}

async fn ack(state: &AppState, payment_id: Uuid) {
    if let Err(err) = state.queue.ack(payment_id).await {
        tracing::warn!(%payment_id, error = %err, "could not acknowledge a job; it will be delivered again and ignored");
    }
}

/// Pushes a `/payment` `status` event.
pub async fn publish_payment(
    state: &AppState,
    order: &order::Model,
    payment: &payment::Model,
    status: PaymentStatus,
    next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    error: Option<&str>,
) {
    let event = PaymentEvent {
        order_id: order.id,
        user_id: order.user_id,
        amount: Money::from_cents(order.total_cents),
        currency: order.currency.clone(),
        payment_method: order.payment_method.clone(),
        status,
        attempt: payment.attempts,
        max_attempts: payment.max_attempts,
        next_attempt_at,
        error: error.map(str::to_owned),
    };
    state.events.payment_status(&event).await;
}

/// Works off the queue with up to `WORKER_CONCURRENCY` attempts at once until `shutdown`,
/// then lets running attempts finish (for a while; after that their leases expire and
/// the jobs return to the queue).
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let config = state.config.payments.clone();
    // Each task runs a batch of attempts; `sizes` remembers how many, to keep the total
    // under WORKER_CONCURRENCY.
    let mut running = JoinSet::new();
    let mut sizes: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut in_flight = 0;
    tracing::info!(
        concurrency = config.worker_concurrency,
        "payment worker started"
    );
    loop {
        while let Some(done) = running.try_join_next_with_id() {
            let id = done.map_or_else(|err| err.id(), |(id, ())| id);
            in_flight -= sizes.remove(&id).unwrap_or(0);
        }
        let free = config.worker_concurrency.saturating_sub(in_flight);
        if free == 0 {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(done) = running.join_next_with_id() => {
                    let id = done.map_or_else(|err| err.id(), |(id, ())| id);
                    in_flight -= sizes.remove(&id).unwrap_or(0);
                    continue;
                }
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        match state.queue.reserve(free.min(BATCH), config.lease).await {
            Ok(ids) if !ids.is_empty() => {
                let state = state.clone();
                let size = ids.len();
                let task = running.spawn(async move {
                    if let Err(err) = process_batch(&state, &ids).await {
                        tracing::warn!(jobs = ids.len(), error = ?err, "payment attempts failed; their jobs return when the leases expire");
                    }
                });
                sizes.insert(task.id(), size);
                in_flight += size;
            }
            Ok(_) => tokio::select! {
                () = shutdown.cancelled() => break,
                () = state.queue.wait_for_work(POLL) => {}
            },
            Err(err) => {
                tracing::warn!(error = %err, "queue unavailable; retrying in 1s");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    if in_flight > 0 {
        tracing::info!(
            in_flight,
            "payment worker stopping: finishing running attempts"
        );
    }
    let drained = tokio::time::timeout(DRAIN, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "payment worker stopped with attempts still running; their jobs return when the leases expire"
        );
        running.abort_all();
    }
    tracing::info!("payment worker stopped");
}

/// Puts back in the queue what it lost: expired leases, and payments that are due but
/// missing from it (Redis was down when the order was placed, or was flushed).
pub async fn sweep(state: &AppState) -> AppResult<u64> {
    let config = &state.config.payments;
    if let Err(err) = state.queue.requeue_expired().await {
        return Err(AppError::unavailable(err.to_string()));
    }
    let now = clock::now();
    let overdue = now - to_chrono(config.sweep_interval);
    let lost = Condition::any()
        .add(
            Condition::all()
                .add(payment::Column::Status.is_in([
                    PaymentStatus::Pending.as_str(),
                    PaymentStatus::Retrying.as_str(),
                ]))
                .add(payment::Column::NextAttemptAt.lte(overdue)),
        )
        .add(
            Condition::all()
                .add(payment::Column::Status.eq(PaymentStatus::Processing.as_str()))
                .add(payment::Column::UpdatedAt.lt(now - to_chrono(config.lease))),
        );
    // Page through by id, so a backlog larger than a page still gets looked at whole.
    let mut after: Option<Uuid> = None;
    let mut requeued = 0;
    loop {
        let mut page = payment::Entity::find()
            .select_only()
            .column(payment::Column::Id)
            .filter(lost.clone())
            .order_by_asc(payment::Column::Id)
            .limit(SWEEP_PAGE);
        if let Some(after) = after {
            page = page.filter(payment::Column::Id.gt(after));
        }
        let ids: Vec<Uuid> = page.into_tuple().all(&state.db).await?;
        requeued += state
            .queue
            .enqueue_many(&ids, now)
            .await
            .map_err(|err| AppError::unavailable(err.to_string()))?;
        if (ids.len() as u64) < SWEEP_PAGE {
            break;
        }
        after = ids.last().copied();
    }
    if requeued > 0 {
        tracing::info!(
            requeued,
            "sweeper re-enqueued payments missing from the queue"
        );
    }
    Ok(requeued)
}

/// Runs [`sweep`] every `SWEEP_INTERVAL` until `shutdown`.
pub async fn run_sweeper(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(state.config.payments.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {
                if let Err(err) = sweep(&state).await {
                    tracing::warn!(error = ?err, "sweep failed; trying again next interval");
                }
            }
        }
    }
}
