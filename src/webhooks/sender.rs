//! The sender: takes deliveries off the webhook queue and `POST`s each event, signed, to
//! its endpoint. A 2xx within `WEBHOOK_TIMEOUT` succeeds; a timeout, a connection error,
//! 408, 429 or 5xx is retried with exponential backoff and full jitter until
//! `WEBHOOK_MAX_ATTEMPTS`; anything else fails at once. The `webhook_deliveries` row is
//! the truth: a job lost or delivered twice is harmless, and the sweeper puts back what
//! the queue lost.
//!
//! One slow or dead endpoint never holds up the others: each delivery runs in its own
//! task with a bounded time; an endpoint gets at most [`PER_ENDPOINT`] sends at once, and
//! at most [`PER_ENDPOINT_TASKS`] of a process's [`CONCURRENCY`] tasks (sending or waiting
//! for a send slot); its further deliveries go back to the queue for a second.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::{DeliveryStatus, event, webhook_delivery, webhook_endpoint};
use hmac::{Hmac, Mac};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr,
};
use sha2::Sha256;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::guard::{self, GuardedResolver, Refused};
use crate::{clock, config::WebhookConfig, error::AppResult, events::Event, queue::JobQueue};

/// Deliveries in flight per process.
pub const CONCURRENCY: usize = 256;
/// Sends to one endpoint at once, per process.
pub const PER_ENDPOINT: usize = 16;
/// Tasks one endpoint may hold, per process, sending or waiting for a send slot.
pub const PER_ENDPOINT_TASKS: usize = 64;
/// How long a task waits for a send slot before its job goes back to the queue.
const SLOT_WAIT: Duration = Duration::from_secs(2);
/// Most deliveries taken off the queue at once.
const BATCH: usize = 64;
/// How long an idle sender waits before looking at the queue again.
const POLL: Duration = Duration::from_millis(50);
/// How much of an endpoint's answer is read (and kept in `lastError` when it failed).
const ANSWER_LIMIT: usize = 1024;
/// How long shutdown waits for running deliveries.
const DRAIN: Duration = Duration::from_secs(15);

pub use crate::domain::hex;

/// `Shop-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex(&mac.finalize().into_bytes()))
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered(u16),
    /// Worth another try: a timeout, a connection error, 408, 429 or 5xx.
    Retry(Option<u16>, String),
    /// Not worth another try.
    Fail(Option<u16>, String),
}

/// Installs the process's TLS crypto provider (ring) once; the HTTP client needs it.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Sends deliveries; shared by the tasks of one process.
pub struct Sender {
    db: DatabaseConnection,
    queue: Arc<dyn JobQueue>,
    config: WebhookConfig,
    client: reqwest::Client,
    /// Deliveries in flight per endpoint.
    lanes: Mutex<HashMap<Uuid, Lane>>,
}

impl Sender {
    pub fn new(
        db: DatabaseConnection,
        queue: Arc<dyn JobQueue>,
        config: WebhookConfig,
    ) -> anyhow::Result<Self> {
        install_crypto();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .dns_resolver(GuardedResolver {
                allow_private: config.allow_private,
            })
            .user_agent(concat!("shop-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            db,
            queue,
            config,
            client,
            lanes: Mutex::new(HashMap::new()),
        })
    }

    /// How long a job is held: the longest attempt, with room to record its outcome.
    fn lease(&self) -> Duration {
        self.config.timeout * 2 + Duration::from_secs(10)
    }

    /// Enters `endpoint`'s lane, unless it already holds [`PER_ENDPOINT_TASKS`] tasks.
    fn enter(self: &Arc<Self>, endpoint: Uuid) -> Option<(Ticket, Arc<Semaphore>)> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(endpoint).or_insert_with(|| Lane {
            slots: Arc::new(Semaphore::new(PER_ENDPOINT)),
            tasks: 0,
        });
        if lane.tasks >= PER_ENDPOINT_TASKS {
            return None;
        }
        lane.tasks += 1;
        Some((
            Ticket {
                sender: self.clone(),
                endpoint,
            },
            lane.slots.clone(),
        ))
    }

    /// `POST`s `body` (the event) to the endpoint, signed with its current secret.
    pub async fn send(
        &self,
        endpoint: &webhook_endpoint::Model,
        event: &Event,
        body: String,
    ) -> Outcome {
        let url = match guard::parse(&endpoint.url) {
            Ok(url) => url,
            Err(refused) => return Outcome::Fail(None, refused.to_string()),
        };
        match guard::check(&url, self.config.allow_private).await {
            Ok(()) => {}
            // A name that stops resolving may come back.
            Err(refused @ Refused::Unresolved(_)) => {
                return Outcome::Retry(None, refused.to_string());
            }
            Err(refused) => return Outcome::Fail(None, refused.to_string()),
        }
        let signed = signature(&endpoint.secret, clock::now().timestamp(), &body);
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Shop-Event-Id", &event.id)
            .header("Shop-Event-Type", &event.kind)
            .header("Shop-Signature", signed)
            .body(body)
            .send()
            .await;
        let mut answer = match sent {
            Ok(answer) => answer,
            Err(err) if err.is_timeout() => {
                return Outcome::Retry(
                    None,
                    format!(
                        "no answer within {}",
                        humantime::format_duration(self.config.timeout)
                    ),
                );
            }
            Err(err) => return Outcome::Retry(None, describe(&err.without_url())),
        };
        let status = answer.status().as_u16();
        // A little of the answer, for the delivery log; never more than ANSWER_LIMIT.
        let mut read = Vec::new();
        while read.len() < ANSWER_LIMIT {
            match answer.chunk().await {
                Ok(Some(chunk)) => read.extend_from_slice(&chunk),
                _ => break,
            }
        }
        read.truncate(ANSWER_LIMIT);
        let text = String::from_utf8_lossy(&read).trim().to_owned();
        let error = if text.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {text}")
        };
        match status {
            200..=299 => Outcome::Delivered(status),
            408 | 429 | 500..=599 => Outcome::Retry(Some(status), error),
            300..=399 => Outcome::Fail(
                Some(status),
                format!("HTTP {status}: redirects are not followed"),
            ),
            _ => Outcome::Fail(Some(status), error),
        }
    }

    /// Loads the deliveries of a reserved batch with their endpoints and events (two
    /// queries for the batch); answers those due now. The others are dealt with here:
    /// ended or gone (acknowledged) and early (put back for their time).
    pub async fn load(&self, ids: &[Uuid]) -> AppResult<Vec<Due>> {
        let rows = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::Id.is_in(ids.iter().copied()))
            .find_also_related(webhook_endpoint::Entity)
            .all(&self.db)
            .await?;
        let event_ids: Vec<i64> = rows.iter().map(|(d, _)| d.event_id).collect();
        let events: HashMap<i64, event::Model> = event::Entity::find()
            .filter(event::Column::Id.is_in(event_ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| (row.id, row))
            .collect();
        let now = clock::now();
        let mut due = Vec::new();
        let mut found = std::collections::HashSet::new();
        for (delivery, endpoint) in rows {
            found.insert(delivery.id);
            let Some(endpoint) = endpoint else {
                self.ack(delivery.id).await;
                continue;
            };
            if !matches!(
                delivery.status,
                DeliveryStatus::Pending | DeliveryStatus::Retrying
            ) {
                self.ack(delivery.id).await;
                continue;
            }
            if let Some(at) = delivery.next_attempt_at.filter(|at| *at > now) {
                self.later(delivery.id, at).await;
                continue;
            }
            // Several deliveries of one batch may carry the same event.
            let event = events.get(&delivery.event_id).cloned();
            due.push(Due {
                delivery,
                endpoint,
                event,
            });
        }
        for id in ids.iter().filter(|id| !found.contains(id)) {
            // Its endpoint was deleted, and the delivery with it.
            self.ack(*id).await;
        }
        Ok(due)
    }

    /// One attempt of a loaded delivery; records the outcome and tells the queue.
    #[tracing::instrument(skip_all, fields(delivery_id = %due.delivery.id))]
    pub async fn attempt(self: &Arc<Self>, due: Due) -> AppResult<()> {
        let Due {
            delivery,
            endpoint,
            event,
        } = due;
        // The endpoint's turn; when it is this busy, try again in a second, using up no
        // attempt.
        let busy = clock::now() + chrono::Duration::seconds(1);
        let Some((_ticket, slots)) = self.enter(endpoint.id) else {
            self.later(delivery.id, busy).await;
            return Ok(());
        };
        let Ok(Ok(_slot)) = tokio::time::timeout(SLOT_WAIT, slots.acquire_owned()).await else {
            self.later(delivery.id, busy).await;
            return Ok(());
        };
        let outcome = match (endpoint.enabled, event) {
            (false, _) => Outcome::Fail(None, "the endpoint is disabled".into()),
            (true, None) => Outcome::Fail(
                None,
                "the event is older than EVENT_RETENTION and no longer in the log".into(),
            ),
            (true, Some(row)) => {
                let event = Event::try_from(row)?;
                let body = serde_json::to_string(&event)
                    .map_err(|e| crate::error::AppError::Internal(e.into()))?;
                self.send(&endpoint, &event, body).await
            }
        };
        self.record(&delivery, outcome).await
    }

    /// Writes the outcome of `delivery`'s next attempt (unless another worker already
    /// did) and schedules what follows.
    async fn record(&self, delivery: &webhook_delivery::Model, outcome: Outcome) -> AppResult<()> {
        let attempts = delivery.attempts + 1;
        let now = clock::now();
        let policy = self.config.retry_policy();
        let attempt = u32::try_from(attempts).unwrap_or(u32::MAX);
        let (status, code, error, due) = match outcome {
            Outcome::Delivered(code) => (DeliveryStatus::Succeeded, Some(code), None, None),
            Outcome::Retry(code, error) if policy.retries_after(attempt) => {
                let delay = policy.delay(attempt, rand::random());
                let due = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                (DeliveryStatus::Retrying, code, Some(error), Some(due))
            }
            Outcome::Retry(code, error) | Outcome::Fail(code, error) => {
                (DeliveryStatus::Failed, code, Some(error), None)
            }
        };
        let written = webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::Status, Expr::value(status))
            .col_expr(webhook_delivery::Column::Attempts, Expr::value(attempts))
            .col_expr(
                webhook_delivery::Column::LastStatusCode,
                Expr::value(code.map(i32::from)),
            )
            .col_expr(
                webhook_delivery::Column::LastError,
                Expr::value(error.clone()),
            )
            .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(due))
            .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(now))
            .filter(webhook_delivery::Column::Id.eq(delivery.id))
            .filter(webhook_delivery::Column::Attempts.eq(delivery.attempts))
            .filter(
                webhook_delivery::Column::Status
                    .is_in([DeliveryStatus::Pending, DeliveryStatus::Retrying]),
            )
            .exec(&self.db)
            .await?;
        if written.rows_affected == 0 {
            // Another worker recorded this attempt (this one's lease ran out).
            return Ok(());
        }
        let outcome = match status {
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Retrying => "retrying",
            _ => "failed",
        };
        metrics::counter!("webhook_deliveries_total", "outcome" => outcome).increment(1);
        match due {
            Some(due) => {
                tracing::info!(endpoint_id = %delivery.endpoint_id, attempt, status_code = ?code, error = ?error, next_attempt_at = %due, "webhook delivery will be retried");
                self.later(delivery.id, due).await;
            }
            None => {
                tracing::info!(endpoint_id = %delivery.endpoint_id, attempt, status_code = ?code, error = ?error, outcome, "webhook delivery ended");
                self.ack(delivery.id).await;
            }
        }
        Ok(())
    }

    async fn ack(&self, id: Uuid) {
        if let Err(err) = self.queue.ack(id).await {
            tracing::warn!(delivery_id = %id, error = %err, "could not acknowledge a webhook job; it will be delivered again and ignored");
        }
    }

    async fn later(&self, id: Uuid, due: DateTime<Utc>) {
        if let Err(err) = self.queue.retry(id, due).await {
            tracing::warn!(delivery_id = %id, error = %err, "could not schedule a webhook delivery; the sweeper will");
        }
    }
}

/// A delivery due now, with what sending it needs.
pub struct Due {
    pub delivery: webhook_delivery::Model,
    pub endpoint: webhook_endpoint::Model,
    /// `None` when the event is past `EVENT_RETENTION`.
    pub event: Option<event::Model>,
}

/// One endpoint's share of a process: its send slots, and how many tasks it holds.
struct Lane {
    slots: Arc<Semaphore>,
    tasks: usize,
}

/// A task in an endpoint's lane; leaves it when dropped.
struct Ticket {
    sender: Arc<Sender>,
    endpoint: Uuid,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut lanes = self.sender.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lane) = lanes.get_mut(&self.endpoint) {
            lane.tasks -= 1;
            if lane.tasks == 0 {
                lanes.remove(&self.endpoint);
            }
        }
    }
}

/// An error and its causes, one after another (without the URL, which may carry
/// credentials).
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Works off the webhook queue, up to [`CONCURRENCY`] deliveries at once, until `stop`;
/// then lets running deliveries finish for a while.
pub async fn run(sender: Arc<Sender>, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut running = JoinSet::new();
    loop {
        while running.try_join_next().is_some() {}
        let free = permits.available_permits();
        if free == 0 {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = running.join_next() => continue,
            }
        }
        if stop.is_cancelled() {
            break;
        }
        match sender.queue.reserve(free.min(BATCH), sender.lease()).await {
            Ok(ids) if !ids.is_empty() => {
                let batch = match sender.load(&ids).await {
                    Ok(batch) => batch,
                    Err(err) => {
                        tracing::warn!(jobs = ids.len(), error = ?err, "webhook deliveries could not be loaded; their jobs return when the leases expire");
                        continue;
                    }
                };
                for due in batch {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let sender = sender.clone();
                    running.spawn(async move {
                        let id = due.delivery.id;
                        if let Err(err) = sender.attempt(due).await {
                            tracing::warn!(delivery_id = %id, error = ?err, "webhook delivery failed to run; its job returns when the lease expires");
                        }
                        drop(permit);
                    });
                }
            }
            Ok(_) => tokio::select! {
                () = stop.cancelled() => break,
                () = sender.queue.wait_for_work(POLL) => {}
            },
            Err(err) => {
                tracing::warn!(error = %err, "webhook queue unavailable; retrying in 1s");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    crate::queue::drain(&mut running, DRAIN).await;
}

/// Puts back in the queue what it lost: expired leases, and deliveries due for a while
/// but missing from it (Redis was away when they were created or retried).
pub async fn sweep(sender: &Sender, overdue_after: Duration) -> AppResult<u64> {
    crate::queue::sweep::<webhook_delivery::Entity>(
        &sender.db,
        sender.queue.as_ref(),
        webhook_delivery::Column::Id,
        "webhook deliveries",
        |now| {
            let overdue =
                now - chrono::Duration::from_std(overdue_after).unwrap_or(chrono::Duration::MAX);
            Condition::all()
                .add(
                    webhook_delivery::Column::Status
                        .is_in([DeliveryStatus::Pending, DeliveryStatus::Retrying]),
                )
                .add(webhook_delivery::Column::NextAttemptAt.lte(overdue))
        },
    )
    .await
}

/// Runs [`sweep`] every `interval` until `stop`.
pub async fn run_sweeper(sender: Arc<Sender>, interval: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                if let Err(err) = sweep(&sender, interval).await {
                    tracing::warn!(error = ?err, "webhook sweep failed; trying again next interval");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(b"whsec_test",
        // b'1700000000.{"id":"1"}', hashlib.sha256).hexdigest().
        assert_eq!(
            signature("whsec_test", 1_700_000_000, r#"{"id":"1"}"#),
            "t=1700000000,v1=11bf4466ea17c3df3fd743af0b435368e16b7a05eb8eced85e8c4670767bdec5"
        );
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
    }
}
