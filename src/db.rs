//! Connecting to the database (SQLite file or PostgreSQL), migrating it, and opening
//! write transactions that behave the same on both.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    AccessMode, ConnectOptions, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    DbErr, IsolationLevel, SqliteTransactionMode, TransactionOptions, TransactionTrait,
    sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::config::{Config, DatabaseConfig};

/// Connects (retrying for a while, so the service can start before its database) and
/// brings the schema up to date.
pub async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    let db = match &config.database {
        DatabaseConfig::Sqlite { path } => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("cannot create the data directory {}", dir.display())
                })?;
            }
            // WAL lets readers run beside the writer; writers queue on the busy timeout.
            let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(config.database_max_connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
            sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
        }
        DatabaseConfig::Postgres { url } => {
            let mut options = ConnectOptions::new(url.clone());
            options
                .max_connections(config.database_max_connections)
                .min_connections(1)
                .connect_timeout(Duration::from_secs(5))
                .acquire_timeout(Duration::from_secs(10))
                .sqlx_logging(false);
            crate::startup::patiently("PostgreSQL", || Database::connect(options.clone()))
                .await
                .context(format!(
                    "PostgreSQL was not reachable for {}s (DATABASE_URL)",
                    crate::startup::PATIENCE.as_secs()
                ))?
        }
    };
    Migrator::up(&db, None)
        .await
        .context("database migration failed")?;
    Ok(db)
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`), so concurrent writers queue instead of failing on a lock upgrade.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        isolation_level: None,
        access_mode: None,
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
    })
    .await
}

/// Begins a read-only transaction whose reads all see one snapshot (PostgreSQL
/// `REPEATABLE READ`; on SQLite a deferred transaction reads one snapshot in WAL mode), so
/// a view assembled from several queries never mixes states.
pub async fn begin_read(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.begin_with_config(
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        )
        .await
    } else {
        db.begin().await
    }
}

/// A cheap round trip, for readiness checks.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.ping().await
}

/// `lower(column) LIKE '%text%'`: `text` (lower-cased by the caller) matched literally, its
/// `%`, `_` and `\` escaped.
pub fn lower_contains(column: sea_orm::sea_query::Expr, text: &str) -> sea_orm::sea_query::Expr {
    use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
    let pattern = format!("%{}%", escape_like(text));
    Expr::expr(Func::lower(column)).like(LikeExpr::new(pattern).escape('\\'))
}

/// Escapes `%`, `_` and `\` so user text matches literally inside a LIKE pattern.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_match_literally() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(escape_like("plain"), "plain");
    }
}
