//! The dispatcher: turns the event log into webhook deliveries. It keeps its place in the
//! log in the database (`webhook_dispatch`), so events written while no process ran are
//! still delivered, and advances it with a compare-and-set in the transaction that
//! inserts the deliveries: with any number of processes, each event becomes exactly one
//! delivery per endpoint that wants it.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use entity::{event, webhook_delivery, webhook_endpoint};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, QueryFilter,
    Statement,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    clock, db,
    error::AppResult,
    events::{
        Event,
        relay::{Position, Reader, Sink},
    },
    queue::JobQueue,
};

/// How often the log is read when nothing woke the dispatcher.
const POLL: Duration = Duration::from_secs(1);
/// How soon to look again when rows wait for an older transaction to end.
const SETTLE: Duration = Duration::from_millis(5);
/// Most events turned into deliveries per transaction.
const BATCH: u64 = 500;
/// Most delivery rows per insert statement.
const INSERT_CHUNK: usize = 1000;

/// What a round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Events read from the log (and passed, delivered to an endpoint or not).
    pub events: usize,
    /// Deliveries created.
    pub deliveries: usize,
    /// Whether rows of transactions still running wait behind what was read.
    pub waiting: bool,
}

#[derive(FromQueryResult)]
struct Place {
    tx: i64,
    id: i64,
}

async fn place(db: &DatabaseConnection) -> AppResult<Position> {
    let row = Place::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT tx, id FROM webhook_dispatch WHERE name = 'webhooks'",
    ))
    .one(db)
    .await?;
    Ok(row.map_or_else(Position::default, |p| Position { tx: p.tx, id: p.id }))
}

/// Reads what the log gained since the dispatcher's place and creates the deliveries,
/// then queues them. Another process advancing the same place first makes this round a
/// no-op.
pub async fn round(db: &DatabaseConnection, queue: &dyn JobQueue) -> AppResult<Round> {
    let from = place(db).await?;
    let (rows, waiting) = Reader::new(db.clone()).after(from, BATCH).await?;
    let Some(last) = rows.last() else {
        return Ok(Round {
            waiting,
            ..Round::default()
        });
    };
    let to = Position {
        tx: last.tx,
        id: last.id,
    };
    let endpoints: Vec<(webhook_endpoint::Model, Vec<String>)> = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|row| super::patterns(&row).ok().map(|p| (row, p)))
        .collect();
    let now = clock::now();
    let (ids, deliveries): (Vec<Uuid>, Vec<webhook_delivery::ActiveModel>) = rows
        .iter()
        .flat_map(|row: &event::Model| {
            endpoints
                .iter()
                // An endpoint hears what happened from its creation on.
                .filter(|(endpoint, patterns)| {
                    endpoint.created_at <= row.created_at && super::wants(patterns, &row.kind)
                })
                .map(move |(endpoint, _)| {
                    let id = Uuid::now_v7();
                    (id, super::new_delivery(id, endpoint.id, row, None, now))
                })
        })
        .unzip();
    let txn = db::begin_write(db).await?;
    let moved = txn
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
                "UPDATE webhook_dispatch SET tx = $1, id = $2 WHERE name = 'webhooks' AND tx = $3 AND id = $4"
            } else {
                "UPDATE webhook_dispatch SET tx = ?, id = ? WHERE name = 'webhooks' AND tx = ? AND id = ?"
            },
            [to.tx.into(), to.id.into(), from.tx.into(), from.id.into()],
        ))
        .await?;
    if moved.rows_affected() != 1 {
        // Another dispatcher took these events.
        txn.rollback().await?;
        return Ok(Round::default());
    }
    let count = deliveries.len();
    let mut deliveries = deliveries.into_iter().peekable();
    while deliveries.peek().is_some() {
        let chunk: Vec<_> = deliveries.by_ref().take(INSERT_CHUNK).collect();
        webhook_delivery::Entity::insert_many(chunk)
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    if !ids.is_empty()
        && let Err(err) = queue.enqueue_many(&ids, now).await
    {
        tracing::warn!(error = %err, deliveries = ids.len(), "could not queue webhook deliveries; the sweeper will");
    }
    Ok(Round {
        events: rows.len(),
        deliveries: count,
        waiting,
    })
}

/// A relay listener that wakes the dispatcher when the log grows.
pub struct Wake(pub Arc<Notify>);

#[async_trait]
impl Sink for Wake {
    async fn deliver(&self, _event: &Event) {
        self.0.notify_one();
    }
}

/// Runs rounds until `stop`: at once when `wake` is signalled or a round was full, soon
/// when rows wait for an older transaction, else every second.
pub async fn run(
    db: DatabaseConnection,
    queue: Arc<dyn JobQueue>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut delay = Duration::ZERO;
    loop {
        if !delay.is_zero() {
            tokio::select! {
                () = stop.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(delay) => {}
            }
        }
        delay = match round(&db, queue.as_ref()).await {
            Ok(done) if done.events as u64 == BATCH => Duration::ZERO,
            Ok(done) if done.waiting => SETTLE,
            Ok(_) => POLL,
            Err(err) => {
                tracing::warn!(error = ?err, "webhook dispatcher: cannot read the log; retrying");
                POLL
            }
        };
        if stop.is_cancelled() {
            break;
        }
    }
}
