//! The relay: reads what the log gained and hands each event, in log order, to this
//! process's listeners (its Socket.IO clients). Every instance runs one, so each client
//! hears each of its events once, from the instance it is connected to.
//!
//! It wakes at once when the log grows (PostgreSQL `LISTEN`, or a signal from this
//! process), and polls slowly as a safety net. On PostgreSQL it reads only rows of
//! transactions older than every one still running, by `(tx, id)`: a row of a slower
//! transaction can never appear behind the cursor. SQLite commits one writer at a time, so
//! ids alone are in commit order.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use entity::event;
use sea_orm::{DatabaseBackend, DatabaseConnection, EntityTrait, Statement};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{CHANNEL, Event};
use crate::error::AppResult;

/// How often the log is read when nothing woke the relay.
const POLL: Duration = Duration::from_millis(500);
/// How soon to look again when rows wait for an older transaction to end.
const SETTLE: Duration = Duration::from_millis(5);
/// Most events read at once.
const BATCH: u64 = 500;

/// A listener of this process: it gets every event of the log once, in order.
#[async_trait]
pub trait Sink: Send + Sync {
    async fn deliver(&self, event: &Event);
}

/// Where the relay stands: the last `(tx, id)` handed on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub tx: i64,
    pub id: i64,
}

/// Reads the log after a position, in commit-safe order.
pub struct Reader {
    db: DatabaseConnection,
}

impl Reader {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    fn postgres(&self) -> bool {
        self.db.get_database_backend() == DatabaseBackend::Postgres
    }

    /// The end of what can be read now: where a relay starting now begins.
    pub async fn end(&self) -> AppResult<Position> {
        let sql = if self.postgres() {
            "SELECT * FROM events WHERE tx < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
             ORDER BY tx DESC, id DESC LIMIT 1"
        } else {
            "SELECT * FROM events ORDER BY id DESC LIMIT 1"
        };
        let last = event::Entity::find()
            .from_raw_sql(Statement::from_string(self.db.get_database_backend(), sql))
            .one(&self.db)
            .await?;
        Ok(last.map_or_else(Position::default, |row| Position {
            tx: row.tx,
            id: row.id,
        }))
    }

    /// Up to `limit` rows after `after`, in log order, and whether rows of transactions
    /// still running wait behind them.
    pub async fn after(&self, after: Position, limit: u64) -> AppResult<(Vec<event::Model>, bool)> {
        let backend = self.db.get_database_backend();
        if !self.postgres() {
            let rows = event::Entity::find()
                .from_raw_sql(Statement::from_sql_and_values(
                    backend,
                    "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?",
                    [after.id.into(), (limit as i64).into()],
                ))
                .all(&self.db)
                .await?;
            return Ok((rows, false));
        }
        let rows = event::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(
                backend,
                "SELECT * FROM events WHERE (tx, id) > ($1, $2) \
                 AND tx < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
                 ORDER BY tx, id LIMIT $3",
                [after.tx.into(), after.id.into(), (limit as i64).into()],
            ))
            .all(&self.db)
            .await?;
        let waiting = if (rows.len() as u64) < limit {
            let pending = event::Entity::find()
                .from_raw_sql(Statement::from_sql_and_values(
                    backend,
                    "SELECT * FROM events WHERE (tx, id) > ($1, $2) \
                     AND tx >= pg_snapshot_xmin(pg_current_snapshot())::text::bigint LIMIT 1",
                    [after.tx.into(), after.id.into()],
                ))
                .one(&self.db)
                .await?;
            pending.is_some()
        } else {
            false
        };
        Ok((rows, waiting))
    }
}

/// Hands the log on to `sinks` until `stop`, starting after `start` (the log's end when
/// the process became ready, so every event committed since reaches its listeners).
/// `wake` is signalled by this process after it commits events.
pub async fn run(
    db: DatabaseConnection,
    start: Position,
    wake: Arc<Notify>,
    sinks: Vec<Arc<dyn Sink>>,
    stop: CancellationToken,
) {
    let reader = Reader::new(db.clone());
    let mut position = start;
    let listener = listen(&db).await;
    let notified = Arc::new(Notify::new());
    let forwarding = listener.map(|mut listener| {
        let notified = notified.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(_) => notified.notify_one(),
                    Err(err) => {
                        tracing::warn!(error = %err, "event relay: LISTEN connection lost; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        // The listener reconnects on the next recv; wake once to catch up.
                        notified.notify_one();
                    }
                }
            }
        })
    });
    tracing::info!(?position, "event relay started");
    let mut delay = Duration::ZERO;
    loop {
        if !delay.is_zero() {
            tokio::select! {
                () = stop.cancelled() => break,
                () = wake.notified() => {}
                () = notified.notified() => {}
                () = tokio::time::sleep(delay) => {}
            }
        }
        match reader.after(position, BATCH).await {
            Ok((rows, waiting)) => {
                let full = rows.len() as u64 == BATCH;
                // How old the oldest event handed on now was: the log's lag behind its writers.
                let lag = rows
                    .iter()
                    .map(|row| row.created_at)
                    .min()
                    .map_or(0.0, |oldest| {
                        (crate::clock::now() - oldest)
                            .num_microseconds()
                            .unwrap_or(0) as f64
                            / 1e6
                    });
                if !rows.is_empty() || !waiting {
                    metrics::gauge!("event_log_lag_seconds").set(lag.max(0.0));
                }
                for row in rows {
                    position = Position {
                        tx: row.tx,
                        id: row.id,
                    };
                    match Event::try_from(row) {
                        Ok(event) => {
                            for sink in &sinks {
                                sink.deliver(&event).await;
                            }
                        }
                        Err(err) => {
                            tracing::error!(error = ?err, "event relay: unreadable event skipped")
                        }
                    }
                }
                delay = if full {
                    Duration::ZERO
                } else if waiting {
                    SETTLE
                } else {
                    POLL
                };
            }
            Err(err) => {
                tracing::warn!(error = ?err, "event relay: cannot read the log; retrying");
                delay = Duration::from_secs(1);
            }
        }
        if stop.is_cancelled() {
            break;
        }
    }
    if let Some(forwarding) = forwarding {
        forwarding.abort();
    }
}

/// A `LISTEN` on the log's channel (PostgreSQL only).
async fn listen(db: &DatabaseConnection) -> Option<sea_orm::sqlx::postgres::PgListener> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return None;
    }
    let pool = db.get_postgres_connection_pool();
    match sea_orm::sqlx::postgres::PgListener::connect_with(pool).await {
        Ok(mut listener) => match listener.listen(CHANNEL).await {
            Ok(()) => Some(listener),
            Err(err) => {
                tracing::warn!(error = %err, "event relay: LISTEN failed; polling instead");
                None
            }
        },
        Err(err) => {
            tracing::warn!(error = %err, "event relay: no LISTEN connection; polling instead");
            None
        }
    }
}
