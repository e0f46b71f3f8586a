//! The event log: every order, payment and catalog change is written here in the same
//! transaction as the change. On PostgreSQL each row also records the writing
//! transaction's id (`tx`), so readers can take rows in commit-safe order: only rows of
//! transactions older than every one still running, by `(tx, id)`. SQLite has one writer
//! at a time, so ids alone commit in order (`tx` stays 0).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES: &str = r#"
CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    type VARCHAR(48) NOT NULL,
    order_id UUID,
    user_id UUID,
    actor_kind VARCHAR(8) NOT NULL,
    actor_id UUID,
    data TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_events_tx_id ON events (tx, id);
CREATE INDEX idx_events_order_id ON events (order_id, id);
CREATE INDEX idx_events_created_at ON events (created_at);
"#;

const SQLITE: &str = r#"
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tx BIGINT NOT NULL DEFAULT 0,
    type VARCHAR(48) NOT NULL,
    order_id uuid_text,
    user_id uuid_text,
    actor_kind VARCHAR(8) NOT NULL,
    actor_id uuid_text,
    data TEXT NOT NULL,
    created_at timestamp_with_timezone_text NOT NULL
);
CREATE INDEX idx_events_tx_id ON events (tx, id);
CREATE INDEX idx_events_order_id ON events (order_id, id);
CREATE INDEX idx_events_created_at ON events (created_at);
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES, SQLITE).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new("events"))
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
