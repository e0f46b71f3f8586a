//! The payment worker: takes payments off the queue, runs one attempt of each through the
//! simulated provider, and moves them on with `lifecycle`'s transitions (success, retry
//! with backoff, the customer's action, giving up); the sweeper puts back what the queue
//! lost. It sees only its [`Environment`], never the HTTP state.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use entity::{PaymentMethod, PaymentStatus, order, payment};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::simulator::{self, AttemptOutcome};
use crate::{
    clock,
    config::PaymentConfig,
    db,
    error::{AppError, AppResult},
    events::{self, Actor, NewEvent},
    lifecycle,
    notifier::Notifier,
    orders::view::OrderView,
    queue::{JobQueue, RetryPolicy},
};

/// How long an idle worker waits before looking at the queue again.
const POLL: Duration = Duration::from_millis(50);
/// Most payments one task attempts together.
const BATCH: usize = 16;
/// How long shutdown waits for running attempts before leaving them to lease expiry.
const DRAIN: Duration = Duration::from_secs(20);

/// What the worker and the sweeper use, and nothing else.
#[derive(Clone)]
pub struct Environment {
    pub db: DatabaseConnection,
    pub queue: std::sync::Arc<dyn JobQueue>,
    /// The refunds' queue: refunds run on the same workers, with the same policy.
    pub refund_queue: std::sync::Arc<dyn JobQueue>,
    /// The product images' queue: uploads are processed by the same workers.
    pub image_queue: std::sync::Arc<dyn JobQueue>,
    /// Where images are read from and their renditions stored.
    pub media: crate::media::Media,
    /// The store's currency, for the products that image events carry.
    pub currency: String,
    pub notifier: Notifier,
    pub config: PaymentConfig,
}

pub(crate) fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Runs one attempt of a payment, if it is due and nobody else has it.
pub async fn process(env: &Environment, payment_id: Uuid) -> AppResult<()> {
    process_batch(env, &[payment_id]).await
}

/// Runs one attempt of each payment in `ids` that is due and nobody else has. The attempts
/// start in one transaction and the successes end in one, so a backlog costs a handful of
/// statements per batch rather than per payment; every other outcome ends on its own.
#[tracing::instrument(skip_all, fields(payments = ids.len()))]
pub async fn process_batch(env: &Environment, ids: &[Uuid]) -> AppResult<()> {
    let txn = db::begin_write(&env.db).await?;
    // Read after the write lock is held, so a long wait for it cannot make a healthy
    // attempt elsewhere look abandoned.
    let started_at = clock::now();
    let started =
        lifecycle::start_attempts(&txn, ids, to_chrono(env.config.lease), started_at).await?;
    let mut payments: HashMap<Uuid, payment::Model> = started
        .iter()
        .map(|m| (m.order.id, m.payment.clone()))
        .collect();
    let orders: Vec<order::Model> = started.into_iter().map(|m| m.order).collect();
    let attempts: Vec<OrderView> = OrderView::load_many(&txn, orders)
        .await?
        .into_iter()
        .filter_map(|view| {
            // The started row: its `updated_at` fences the outcome.
            let payment = payments.remove(&view.order.id)?;
            Some(view.with_payment(payment))
        })
        .collect();
    let mut started_events = Vec::new();
    for view in &attempts {
        if view.payment.attempts == 1 {
            started_events.push(NewEvent::order(view, Actor::WORKER));
        }
        started_events.extend(NewEvent::payment(view, Actor::WORKER));
    }
    events::record(&txn, started_events, started_at).await?;
    txn.commit().await?;
    env.notifier.events_written();
    for id in ids {
        if !attempts.iter().any(|view| view.payment.id == *id) {
            not_started(env, *id).await?;
        }
    }
    for view in &attempts {
        let span = tracing::info_span!("attempt", payment_id = %view.payment.id, order_id = %view.order.id, attempt = view.payment.attempts);
        span.in_scope(|| tracing::info!("payment attempt started"));
    }

    if !env.config.latency.is_zero() && !attempts.is_empty() {
        tokio::time::sleep(env.config.latency).await;
    }
    let mut succeeded = Vec::new();
    for view in attempts {
        let span = tracing::info_span!("attempt", payment_id = %view.payment.id, order_id = %view.order.id, attempt = view.payment.attempts);
        let payment = &view.payment;
        // Waiting for the customer's action uses up no attempt.
        let free = i32::from(view.order.payment_method == PaymentMethod::RequiresAction);
        let outcome = if payment.attempts > payment.max_attempts + free {
            // Taken over after its worker died during the last attempt: nothing left to try.
            AttemptOutcome::Transient("the last attempt was interrupted".into())
        } else {
            let attempt = u32::try_from(payment.attempts).unwrap_or(u32::MAX);
            let method = view.order.payment_method;
            simulator::attempt(method, attempt, env.config.success_rate, rand::random())
        };
        crate::metrics::payment_attempt(match &outcome {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Declined(_) => "declined",
            AttemptOutcome::Transient(_) => "transient",
            AttemptOutcome::RequiresAction => "requires_action",
        });
        match outcome {
            AttemptOutcome::Succeeded => succeeded.push(view),
            AttemptOutcome::Declined(error) => {
                async {
                    if give_up(env, &view, &error).await? {
                        ack(env, view.payment.id).await;
                    }
                    Ok::<_, AppError>(())
                }
                .instrument(span)
                .await?;
            }
            AttemptOutcome::Transient(error) => {
                transient_failure(env, &view, &error)
                    .instrument(span)
                    .await?;
            }
            AttemptOutcome::RequiresAction => await_action(env, &view).instrument(span).await?,
        }
    }
    succeed(env, succeeded, started_at).await
}

/// Ends the successful attempts that started together at `started_at`.
async fn succeed(
    env: &Environment,
    attempts: Vec<OrderView>,
    started_at: DateTime<Utc>,
) -> AppResult<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = attempts.iter().map(|v| v.payment.id).collect();
    let txn = db::begin_write(&env.db).await?;
    let now = clock::now();
    let mut ended: HashMap<Uuid, lifecycle::Moved> =
        lifecycle::succeed(&txn, &ids, started_at, now)
            .await?
            .into_iter()
            .map(|m| (m.payment.id, m))
            .collect();
    let paid: Vec<OrderView> = attempts
        .iter()
        .filter_map(|view| Some(view.moved(ended.remove(&view.payment.id)?)))
        .collect();
    let paid_events = paid
        .iter()
        .flat_map(|view| NewEvent::order_and_payment(view, Actor::WORKER))
        .collect();
    events::record(&txn, paid_events, now).await?;
    txn.commit().await?;
    env.notifier.events_written();
    futures::future::join_all(paid.iter().map(|view| {
        let span = tracing::info_span!("attempt", payment_id = %view.payment.id, order_id = %view.order.id);
        async move {
            tracing::info!("payment succeeded");
            crate::metrics::payment_finished("succeeded");
            ack(env, view.payment.id).await;
        }
        .instrument(span)
    }))
    .await;
    Ok(())
}

/// After a transient failure: a retry with backoff, or out of attempts, the payment fails
/// and its job is parked on the dead list.
async fn transient_failure(env: &Environment, view: &OrderView, error: &str) -> AppResult<()> {
    let attempt = u32::try_from(view.payment.attempts).unwrap_or(u32::MAX);
    // The payment's own limit, as clients see it, whatever this process is configured with.
    let policy = RetryPolicy {
        max_attempts: u32::try_from(view.payment.max_attempts).unwrap_or(0),
        ..env.config.retry_policy()
    };
    let payment_id = view.payment.id;
    if !policy.retries_after(attempt) {
        if give_up(env, view, error).await?
            && let Err(err) = env.queue.bury(payment_id, error).await
        {
            tracing::warn!(error = %err, "could not move a job to the dead list");
        }
        return Ok(());
    }
    let now = clock::now();
    let due = now + to_chrono(policy.delay(attempt, rand::random()));
    let txn = db::begin_write(&env.db).await?;
    let Some(waiting) = lifecycle::schedule_retry(&txn, &view.payment, due, error, now).await?
    else {
        txn.rollback().await?;
        return Ok(());
    };
    let waiting = view.with_payment(waiting);
    let retrying = NewEvent::payment(&waiting, Actor::WORKER);
    events::record(&txn, retrying.into_iter().collect(), now).await?;
    txn.commit().await?;
    env.notifier.events_written();
    tracing::info!(%error, next_attempt_at = %due, "payment will be retried");
    if let Err(err) = env.queue.retry(payment_id, due).await {
        tracing::warn!(error = %err, "could not schedule a retry; the sweeper will");
    }
    Ok(())
}

/// The attempt asked for the customer's action: the payment waits for it until
/// `PAYMENT_ACTION_TIMEOUT`, when its job comes back to expire it unless confirmed.
async fn await_action(env: &Environment, view: &OrderView) -> AppResult<()> {
    let now = clock::now();
    let expires = now + to_chrono(env.config.action_timeout);
    let txn = db::begin_write(&env.db).await?;
    let Some(waiting) = lifecycle::require_action(&txn, &view.payment, expires, now).await? else {
        txn.rollback().await?;
        return Ok(());
    };
    let waiting = view.with_payment(waiting);
    let asking = NewEvent::payment(&waiting, Actor::WORKER);
    events::record(&txn, asking.into_iter().collect(), now).await?;
    txn.commit().await?;
    env.notifier.events_written();
    tracing::info!(action_expires_at = %expires, "payment waits for the customer's action");
    if let Err(err) = env.queue.retry(view.payment.id, expires).await {
        tracing::warn!(error = %err, "could not schedule the action's expiry; the sweeper will");
    }
    Ok(())
}

/// Fails the payment of `view` for good (stock restored). `false` when this attempt no
/// longer owns the payment (another worker took it over): nothing changed.
async fn give_up(env: &Environment, view: &OrderView, error: &str) -> AppResult<bool> {
    let txn = db::begin_write(&env.db).await?;
    let now = clock::now();
    let Some(moved) = lifecycle::give_up(&txn, &view.payment, error, now).await? else {
        txn.rollback().await?;
        return Ok(false);
    };
    let failed = view.moved(moved);
    events::record(
        &txn,
        NewEvent::order_and_payment(&failed, Actor::WORKER),
        now,
    )
    .await?;
    txn.commit().await?;
    env.notifier.events_written();
    tracing::info!(%error, "payment failed; stock restored");
    crate::metrics::payment_finished("failed");
    env.notifier.catalog_changed().await;
    Ok(true)
}

/// A delivered job that could not start: still waiting (delivered early: put it back for
/// its due time), waiting for the customer (expire it when its time is up, else put it
/// back for then), running elsewhere (leave it to that worker), or ended (forget it).
#[tracing::instrument(skip_all, fields(%payment_id))]
async fn not_started(env: &Environment, payment_id: Uuid) -> AppResult<()> {
    let Some(current) = payment::Entity::find_by_id(payment_id).one(&env.db).await? else {
        ack(env, payment_id).await;
        return Ok(());
    };
    let now = clock::now();
    match current.status {
        PaymentStatus::Pending | PaymentStatus::Retrying => {
            let due = current.next_attempt_at.unwrap_or(now).max(now);
            if let Err(err) = env.queue.retry(payment_id, due).await {
                tracing::warn!(error = %err, "could not reschedule an early job; the sweeper will");
            }
        }
        PaymentStatus::RequiresAction => match current.action_expires_at {
            Some(expires) if expires > now => {
                if let Err(err) = env.queue.retry(payment_id, expires).await {
                    tracing::warn!(error = %err, "could not reschedule an action's expiry; the sweeper will");
                }
            }
            _ => expire_action(env, payment_id).await?,
        },
        PaymentStatus::Processing => {}
        PaymentStatus::Succeeded | PaymentStatus::Failed | PaymentStatus::Cancelled => {
            ack(env, payment_id).await;
        }
    }
    Ok(())
}

/// Fails a payment whose customer did not confirm in time (stock restored, once).
async fn expire_action(env: &Environment, payment_id: Uuid) -> AppResult<()> {
    let txn = db::begin_write(&env.db).await?;
    let now = clock::now();
    let expired = match lifecycle::expire_action(&txn, payment_id, now).await? {
        Some(moved) => OrderView::load(&txn, moved.order.id)
            .await?
            .map(|view| view.moved(moved)),
        None => None,
    };
    if let Some(view) = &expired {
        events::record(&txn, NewEvent::order_and_payment(view, Actor::WORKER), now).await?;
    }
    txn.commit().await?;
    if expired.is_some() {
        env.notifier.events_written();
        tracing::info!("the customer's action expired; payment failed, stock restored");
        crate::metrics::payment_finished("failed");
        env.notifier.catalog_changed().await;
    }
    ack(env, payment_id).await;
    Ok(())
}

async fn ack(env: &Environment, payment_id: Uuid) {
    if let Err(err) = env.queue.ack(payment_id).await {
        tracing::warn!(%payment_id, error = %err, "could not acknowledge a job; it will be delivered again and ignored");
    }
}

/// Works off the queue with up to `WORKER_CONCURRENCY` attempts at once until `shutdown`,
/// then lets running attempts finish (for a while; after that their leases expire and
/// the jobs return to the queue).
pub async fn run(env: Environment, shutdown: CancellationToken) {
    let worker = crate::queue::Worker {
        name: "payment",
        concurrency: env.config.worker_concurrency,
        batch: BATCH,
        lease: env.config.lease,
        poll: POLL,
        drain: DRAIN,
    };
    let queue = env.queue.clone();
    crate::queue::work(queue, worker, shutdown, move |ids| {
        let env = env.clone();
        async move {
            if let Err(err) = process_batch(&env, &ids).await {
                tracing::warn!(jobs = ids.len(), error = ?err, "payment attempts failed; their jobs return when the leases expire");
            }
        }
    })
    .await;
}

/// Puts back in the queue what it lost: expired leases, and payments that are due but
/// missing from it (Redis was down when the order was placed, or was flushed).
pub async fn sweep(env: &Environment) -> AppResult<u64> {
    let config = &env.config;
    crate::queue::sweep::<payment::Entity>(
        &env.db,
        env.queue.as_ref(),
        payment::Column::Id,
        "payments",
        |now| {
            let overdue = now - to_chrono(config.sweep_interval);
            Condition::any()
                .add(
                    Condition::all()
                        .add(
                            payment::Column::Status
                                .is_in([PaymentStatus::Pending, PaymentStatus::Retrying]),
                        )
                        .add(payment::Column::NextAttemptAt.lte(overdue)),
                )
                .add(
                    Condition::all()
                        .add(payment::Column::Status.eq(PaymentStatus::RequiresAction))
                        .add(payment::Column::ActionExpiresAt.lte(overdue)),
                )
                .add(
                    Condition::all()
                        .add(payment::Column::Status.eq(PaymentStatus::Processing))
                        .add(payment::Column::UpdatedAt.lt(now - to_chrono(config.lease))),
                )
        },
    )
    .await
}

/// Runs [`sweep`] and the refunds' sweep every `SWEEP_INTERVAL` until `shutdown`.
pub async fn run_sweeper(env: Environment, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(env.config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {
                if let Err(err) = sweep(&env).await {
                    tracing::warn!(error = ?err, "sweep failed; trying again next interval");
                }
                if let Err(err) = crate::refunds::worker::sweep(&env).await {
                    tracing::warn!(error = ?err, "refund sweep failed; trying again next interval");
                }
                if let Err(err) = crate::images::worker::sweep(&env).await {
                    tracing::warn!(error = ?err, "image sweep failed; trying again next interval");
                }
            }
        }
    }
}
