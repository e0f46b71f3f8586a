//! The payment retry queue. It carries only payment ids: the `payments` row stays the
//! source of truth, so a job lost or delivered twice is harmless (see `payments::worker`).
//!
//! Two implementations of one [`JobQueue`] trait: [`RedisQueue`] (ready list, delayed
//! sorted set, leased processing set, dead list; every move an atomic Lua script) for
//! production, and [`MemoryQueue`] with the same semantics for the embedded default.

mod memory;
mod policy;
mod redis;
mod work;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub use memory::MemoryQueue;
pub use policy::RetryPolicy;
pub use redis::RedisQueue;
pub use work::{Worker, work};

/// A failure of the queue's backend (Redis unreachable, a script error).
#[derive(Debug, thiserror::Error)]
#[error("queue unavailable: {0}")]
pub struct QueueError(pub String);

/// How many jobs are where.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct QueueCounts {
    /// Due now, waiting for a worker.
    pub ready: u64,
    /// Waiting for their retry time.
    pub delayed: u64,
    /// Leased by a worker.
    pub processing: u64,
    /// Gave up; kept for inspection and manual retry.
    pub dead: u64,
}

/// A job that gave up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadJob {
    /// The payment id.
    pub id: Uuid,
    /// The last error.
    pub error: String,
    pub failed_at: DateTime<Utc>,
}

/// A queue of job ids with delayed retries, leases and a dead list.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Schedules `id` to run at `due` (at once when `due` has passed). A job that is
    /// already ready, delayed or leased is left as it is, so enqueueing twice is harmless.
    async fn enqueue(&self, id: Uuid, due: DateTime<Utc>) -> Result<bool, QueueError>;

    /// [`enqueue`](Self::enqueue) for many jobs at once; returns how many were added.
    async fn enqueue_many(&self, ids: &[Uuid], due: DateTime<Utc>) -> Result<u64, QueueError>;

    /// Leases up to `max` ready jobs until `lease` from now, first moving due delayed jobs
    /// to ready.
    async fn reserve(&self, max: usize, lease: Duration) -> Result<Vec<Uuid>, QueueError>;

    /// The job is done: forget it.
    async fn ack(&self, id: Uuid) -> Result<(), QueueError>;

    /// The job failed transiently: run it again at `due`.
    async fn retry(&self, id: Uuid, due: DateTime<Utc>) -> Result<(), QueueError>;

    /// The job gave up: park it on the dead list with `error`.
    async fn bury(&self, id: Uuid, error: &str) -> Result<(), QueueError>;

    /// Puts jobs whose lease ran out (their worker died) back on the ready list.
    async fn requeue_expired(&self) -> Result<u64, QueueError>;

    /// Takes a job off the dead list; `false` when it was not there.
    async fn remove_dead(&self, id: Uuid) -> Result<bool, QueueError>;

    async fn counts(&self) -> Result<QueueCounts, QueueError>;

    /// The newest dead jobs, at most `limit`.
    async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError>;

    /// One dead job, looked up by id (not by scanning the list).
    async fn dead_job(&self, id: Uuid) -> Result<Option<DeadJob>, QueueError>;

    /// Waits until work may be ready: something was enqueued in this process, or `poll`
    /// has passed.
    async fn wait_for_work(&self, poll: Duration);

    /// Checks the backend answers.
    async fn ping(&self) -> Result<(), QueueError>;
}

/// A due time in whole milliseconds, rounded up, so a job never becomes ready before the
/// (microsecond) time the database holds for it.
pub(crate) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros().div_euclid(1000) + i64::from(at.timestamp_micros().rem_euclid(1000) != 0)
}

/// Lets the tasks still `running` at shutdown finish, for at most `within`; aborts those
/// that have not by then (their jobs return to the queue when their leases run out).
/// `false` when some had to be aborted.
pub async fn drain(running: &mut tokio::task::JoinSet<()>, within: Duration) -> bool {
    let drained = tokio::time::timeout(within, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        running.abort_all();
    }
    drained.is_ok()
}

/// How many ids a sweep reads per query.
const SWEEP_PAGE: u64 = 1000;

/// The rows whose job a queue may have lost (Redis was away or flushed): due for longer
/// than a sweep interval, or in an attempt that has been silent for longer than a lease
/// (its worker died). For the rows still waiting for their work.
pub fn lost_jobs<C: sea_orm::ColumnTrait>(
    next_attempt_at: C,
    updated_at: C,
    now: DateTime<Utc>,
    sweep_interval: Duration,
    lease: Duration,
) -> sea_orm::Condition {
    let ago = |d: Duration| now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    sea_orm::Condition::any()
        .add(next_attempt_at.lte(ago(sweep_interval)))
        .add(
            sea_orm::Condition::all()
                .add(next_attempt_at.is_null())
                .add(updated_at.lt(ago(lease))),
        )
}

/// What every sweeper does: returns jobs whose lease ran out to the queue, then enqueues,
/// due now, the id of every row of `E` that `lost` (given the time) matches: the jobs the
/// queue lost (Redis was away or flushed). Pages by `id`, so a backlog larger than a page
/// is looked at whole; logs and answers how many came back. `what` names them in the log.
pub async fn sweep<E>(
    db: &sea_orm::DatabaseConnection,
    queue: &dyn JobQueue,
    id: E::Column,
    what: &str,
    lost: impl FnOnce(DateTime<Utc>) -> sea_orm::Condition,
) -> crate::error::AppResult<u64>
where
    E: sea_orm::EntityTrait,
{
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};

    let unavailable = |err: QueueError| crate::error::AppError::unavailable(err.to_string());
    queue.requeue_expired().await.map_err(unavailable)?;
    let now = crate::clock::now();
    let lost = lost(now);
    let mut after: Option<Uuid> = None;
    let mut added = 0;
    loop {
        let mut page = E::find()
            .select_only()
            .column(id)
            .filter(lost.clone())
            .order_by_asc(id)
            .limit(SWEEP_PAGE);
        if let Some(after) = after {
            page = page.filter(id.gt(after));
        }
        let ids: Vec<Uuid> = page.into_tuple().all(db).await?;
        added += queue.enqueue_many(&ids, now).await.map_err(unavailable)?;
        if (ids.len() as u64) < SWEEP_PAGE {
            break;
        }
        after = ids.last().copied();
    }
    if added > 0 {
        tracing::info!(
            requeued = added,
            "sweeper re-enqueued {what} missing from the queue"
        );
    }
    Ok(added)
}
