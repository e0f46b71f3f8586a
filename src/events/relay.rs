//! The relay: reads what the log gained and hands each event, in log order, to this
//! process's listeners (its Socket.IO clients). Every instance runs one, so each client
//! hears each of its events once, from the instance it is connected to.
//!
//! It wakes at once when the log grows (PostgreSQL `LISTEN`, or a signal from this
//! process), and polls slowly as a safety net. On PostgreSQL it reads only rows of
//! transactions older than every one still running, by `(tx, id)`: a row of a slower
//! transaction can never appear behind the cursor. SQLite commits one writer at a time, so
//! ids alone are in commit order.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use entity::event;
use sea_orm::{DatabaseBackend, DatabaseConnection, EntityTrait, FromQueryResult, Statement};
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
/// How long events may wait behind an older transaction before the relay says which one.
const HELD_WARNING: Duration = Duration::from_secs(5);
/// How often it says so again while they still wait.
const HELD_REPEAT: Duration = Duration::from_secs(30);

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
    // Since when new events have waited behind an older, still running transaction, and
    // when that was last reported.
    let mut held_since: Option<Instant> = None;
    let mut reported: Option<Instant> = None;
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
                if waiting && rows.is_empty() {
                    let since = *held_since.get_or_insert_with(Instant::now);
                    metrics::gauge!("event_log_held_seconds").set(since.elapsed().as_secs_f64());
                    if since.elapsed() >= HELD_WARNING
                        && reported.is_none_or(|at| at.elapsed() >= HELD_REPEAT)
                    {
                        reported = Some(Instant::now());
                        report_holder(&db, since.elapsed()).await;
                    }
                } else if held_since.take().is_some() {
                    metrics::gauge!("event_log_held_seconds").set(0.0);
                    reported = None;
                }
                let now = crate::clock::now();
                for row in rows {
                    position = Position {
                        tx: row.tx,
                        id: row.id,
                    };
                    // From the change (its transaction's clock) to this relay handing it on.
                    let delay = (now - row.created_at).num_microseconds().unwrap_or(0);
                    metrics::histogram!("event_relay_delay_seconds")
                        .record((delay.max(0) as f64) / 1e6);
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
                    // Held for long, look less often: a stuck transaction costs a few reads
                    // a second, not two hundred.
                    match held_since.map(|since| since.elapsed()) {
                        Some(held) if held > Duration::from_secs(10) => Duration::from_millis(250),
                        Some(held) if held > Duration::from_secs(1) => Duration::from_millis(50),
                        _ => SETTLE,
                    }
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

/// The oldest transaction of the PostgreSQL cluster that has written something (or the
/// oldest prepared one): what holds back every later event.
#[derive(FromQueryResult)]
struct Holder {
    pid: Option<i32>,
    database: Option<String>,
    user_name: Option<String>,
    state: Option<String>,
    seconds: Option<f64>,
}

/// Says which transaction has held new events back for `held` (never its query, which
/// may carry data).
async fn report_holder(db: &DatabaseConnection, held: Duration) {
    let backend = db.get_database_backend();
    let running = Holder::find_by_statement(Statement::from_string(
        backend,
        "SELECT pid, datname::text AS database, usename::text AS user_name, state, \
         EXTRACT(EPOCH FROM now() - xact_start)::float8 AS seconds \
         FROM pg_stat_activity WHERE backend_xid IS NOT NULL \
         ORDER BY xact_start LIMIT 1",
    ))
    .one(db)
    .await;
    let prepared = Holder::find_by_statement(Statement::from_string(
        backend,
        "SELECT NULL::int AS pid, database::text AS database, owner::text AS user_name, \
         'prepared' AS state, EXTRACT(EPOCH FROM now() - prepared)::float8 AS seconds \
         FROM pg_prepared_xacts ORDER BY prepared LIMIT 1",
    ))
    .one(db)
    .await;
    let holder = [running, prepared]
        .into_iter()
        .filter_map(|found| found.ok().flatten())
        .max_by(|a, b| {
            a.seconds
                .unwrap_or(0.0)
                .total_cmp(&b.seconds.unwrap_or(0.0))
        });
    let holder = holder.unwrap_or(Holder {
        pid: None,
        database: None,
        user_name: None,
        state: None,
        seconds: None,
    });
    tracing::warn!(
        held_for = ?held,
        pid = holder.pid,
        database = holder.database,
        user = holder.user_name,
        state = holder.state,
        transaction_seconds = holder.seconds,
        "event relay: new events wait for an older transaction to end (in any database of \
         this PostgreSQL cluster); listeners hear nothing new until it does"
    );
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
