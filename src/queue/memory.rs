//! The in-process queue for the embedded default: the same semantics as the Redis queue,
//! held in memory (the database still holds every payment, and the sweeper re-enqueues
//! due ones after a restart).

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{DeadJob, JobQueue, QueueCounts, QueueError, millis};
use crate::clock;

#[derive(Default)]
struct State {
    ready: VecDeque<Uuid>,
    delayed: BTreeSet<(i64, Uuid)>,
    delayed_at: HashMap<Uuid, i64>,
    /// Lease deadline (ms) per leased job.
    processing: HashMap<Uuid, i64>,
    /// Every job that is ready, delayed or leased.
    queued: HashSet<Uuid>,
    /// Newest first.
    dead: VecDeque<DeadJob>,
}

/// A [`JobQueue`] in this process's memory.
#[derive(Default)]
pub struct MemoryQueue {
    state: Mutex<State>,
    work: Notify,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the sets half-updated in a way that
        // matters more than losing the queue, which the sweeper rebuilds.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Takes a job out of every live place (leased, delayed); ready copies are skipped later.
fn forget(s: &mut State, id: Uuid) {
    s.processing.remove(&id);
    if let Some(due) = s.delayed_at.remove(&id) {
        s.delayed.remove(&(due, id));
    }
    s.queued.remove(&id);
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, id: Uuid, due: DateTime<Utc>) -> Result<bool, QueueError> {
        let mut s = self.lock();
        if !s.queued.insert(id) {
            return Ok(false);
        }
        let due = millis(due);
        if due <= millis(clock::now()) {
            s.ready.push_front(id);
        } else {
            s.delayed.insert((due, id));
            s.delayed_at.insert(id, due);
        }
        drop(s);
        self.work.notify_waiters();
        Ok(true)
    }

    async fn enqueue_many(&self, ids: &[Uuid], due: DateTime<Utc>) -> Result<u64, QueueError> {
        let mut added = 0;
        for id in ids {
            added += u64::from(self.enqueue(*id, due).await?);
        }
        Ok(added)
    }

    async fn reserve(&self, max: usize, lease: Duration) -> Result<Vec<Uuid>, QueueError> {
        let now = millis(clock::now());
        let deadline = now + lease.as_millis() as i64;
        let mut s = self.lock();
        while let Some(&(due, id)) = s.delayed.first() {
            if due > now {
                break;
            }
            s.delayed.pop_first();
            s.delayed_at.remove(&id);
            s.ready.push_front(id);
        }
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(id) = s.ready.pop_back() else { break };
            s.processing.insert(id, deadline);
            taken.push(id);
        }
        Ok(taken)
    }

    async fn ack(&self, id: Uuid) -> Result<(), QueueError> {
        let mut s = self.lock();
        forget(&mut s, id);
        Ok(())
    }

    async fn retry(&self, id: Uuid, due: DateTime<Utc>) -> Result<(), QueueError> {
        let mut s = self.lock();
        s.processing.remove(&id);
        if let Some(old) = s.delayed_at.remove(&id) {
            s.delayed.remove(&(old, id));
        }
        let due = millis(due);
        s.delayed.insert((due, id));
        s.delayed_at.insert(id, due);
        s.queued.insert(id);
        drop(s);
        self.work.notify_waiters();
        Ok(())
    }

    async fn bury(&self, id: Uuid, error: &str) -> Result<(), QueueError> {
        let mut s = self.lock();
        forget(&mut s, id);
        s.dead.retain(|job| job.id != id);
        s.dead.push_front(DeadJob {
            id,
            error: error.to_owned(),
            failed_at: clock::now(),
        });
        Ok(())
    }

    async fn requeue_expired(&self) -> Result<u64, QueueError> {
        let now = millis(clock::now());
        let mut s = self.lock();
        let expired: Vec<Uuid> = s
            .processing
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            s.processing.remove(id);
            s.ready.push_back(*id);
        }
        drop(s);
        if !expired.is_empty() {
            self.work.notify_waiters();
        }
        Ok(expired.len() as u64)
    }

    async fn remove_dead(&self, id: Uuid) -> Result<bool, QueueError> {
        let mut s = self.lock();
        let before = s.dead.len();
        s.dead.retain(|job| job.id != id);
        Ok(s.dead.len() != before)
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let s = self.lock();
        Ok(QueueCounts {
            ready: s.ready.len() as u64,
            delayed: s.delayed.len() as u64,
            processing: s.processing.len() as u64,
            dead: s.dead.len() as u64,
        })
    }

    async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        Ok(self.lock().dead.iter().take(limit).cloned().collect())
    }

    async fn dead_job(&self, id: Uuid) -> Result<Option<DeadJob>, QueueError> {
        Ok(self.lock().dead.iter().find(|job| job.id == id).cloned())
    }

    async fn wait_for_work(&self, poll: Duration) {
        // Registered before looking, so an enqueue between the look and the wait still wakes us.
        let notified = self.work.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next_due = {
            let s = self.lock();
            if !s.ready.is_empty() {
                return;
            }
            s.delayed.first().map(|(due, _)| *due)
        };
        let mut wait = poll;
        if let Some(due) = next_due {
            let until = Duration::from_millis((due - millis(clock::now())).max(0) as u64);
            wait = wait.min(until);
        }
        let _ = tokio::time::timeout(wait, notified).await;
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
