//! The one loop that works a queue off: leases batches of jobs while fewer than
//! `concurrency` are running, hands each batch to its handler in a task of its own, waits
//! for work (or the backend) when there is none, and at shutdown lets running batches
//! finish for a while (after that their leases run out and the jobs return to the queue).
//! Payments, refunds and images each run one with their own handler.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::JobQueue;

/// How a queue is worked off.
#[derive(Clone, Copy, Debug)]
pub struct Worker {
    /// For the logs: `payment`, `refund`, `image`.
    pub name: &'static str,
    /// Most jobs running at once in this process.
    pub concurrency: usize,
    /// Most jobs handed to one handler call.
    pub batch: usize,
    /// How long a leased job is this worker's.
    pub lease: Duration,
    /// How long an idle worker waits before looking at the queue again (when nothing is
    /// enqueued in this process meanwhile).
    pub poll: Duration,
    /// How long shutdown waits for running batches.
    pub drain: Duration,
}

/// Works `queue` off with `handle` until `shutdown`. The handler reports its own failures
/// (a job it does not finish returns to the queue when its lease runs out).
pub async fn work<F, Fut>(
    queue: Arc<dyn JobQueue>,
    worker: Worker,
    shutdown: CancellationToken,
    handle: F,
) where
    F: Fn(Vec<Uuid>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = worker.name;
    // Each task runs a batch; `sizes` remembers how many jobs, to keep the total under
    // `concurrency`.
    let mut running = JoinSet::new();
    let mut sizes: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut in_flight = 0;
    tracing::info!(concurrency = worker.concurrency, "{name} worker started");
    loop {
        while let Some(done) = running.try_join_next_with_id() {
            let id = done.map_or_else(|err| err.id(), |(id, ())| id);
            in_flight -= sizes.remove(&id).unwrap_or(0);
        }
        let free = worker.concurrency.saturating_sub(in_flight);
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
        match queue.reserve(free.min(worker.batch), worker.lease).await {
            Ok(ids) if !ids.is_empty() => {
                let size = ids.len();
                let task = running.spawn(handle(ids));
                sizes.insert(task.id(), size);
                in_flight += size;
            }
            Ok(_) => tokio::select! {
                () = shutdown.cancelled() => break,
                () = queue.wait_for_work(worker.poll) => {}
            },
            Err(err) => {
                tracing::warn!(error = %err, "{name} queue unavailable; retrying in 1s");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    if in_flight > 0 {
        tracing::info!(in_flight, "{name} worker stopping: finishing running jobs");
    }
    if !super::drain(&mut running, worker.drain).await {
        tracing::warn!(
            "{name} worker stopped with jobs still running; their jobs return when the leases expire"
        );
    }
    tracing::info!("{name} worker stopped");
}
