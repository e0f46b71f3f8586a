//! An account's whole life: a session epoch that ends every access token issued before it
//! grew (logout-all, a new password, disabling), a disabled flag, and one-time password
//! reset tokens stored as their SHA-256. On PostgreSQL a change of an account's epoch,
//! role or disabled flag notifies every instance (`NOTIFY shop_sessions`, at commit), so
//! each forgets what it cached of that account.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES: &str = r#"
ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;
CREATE INDEX idx_users_created ON users (created_at, id);
CREATE TABLE password_resets (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash VARCHAR(64) NOT NULL UNIQUE,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_password_resets_user ON password_resets (user_id);
CREATE INDEX idx_password_resets_expires ON password_resets (expires_at)
"#;

const SQLITE: &str = r#"
ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled_at timestamp_with_timezone_text;
CREATE INDEX idx_users_created ON users (created_at, id);
CREATE TABLE password_resets (
    id uuid_text PRIMARY KEY,
    user_id uuid_text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash VARCHAR(64) NOT NULL UNIQUE,
    expires_at timestamp_with_timezone_text NOT NULL,
    used_at timestamp_with_timezone_text,
    created_at timestamp_with_timezone_text NOT NULL
);
CREATE INDEX idx_password_resets_user ON password_resets (user_id);
CREATE INDEX idx_password_resets_expires ON password_resets (expires_at)
"#;

/// PostgreSQL only, one statement each (the function body holds `;`).
const NOTIFY_UP: [&str; 2] = [
    r#"CREATE FUNCTION shop_sessions_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shop_sessions', NEW.id::text);
    RETURN NULL;
END
$$"#,
    "CREATE TRIGGER users_sessions_notify AFTER UPDATE ON users FOR EACH ROW \
     WHEN (OLD.session_epoch IS DISTINCT FROM NEW.session_epoch \
        OR OLD.disabled_at IS DISTINCT FROM NEW.disabled_at \
        OR OLD.role IS DISTINCT FROM NEW.role) \
     EXECUTE FUNCTION shop_sessions_notify()",
];

const NOTIFY_DOWN: [&str; 2] = [
    "DROP TRIGGER IF EXISTS users_sessions_notify ON users",
    "DROP FUNCTION IF EXISTS shop_sessions_notify()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES, SQLITE).await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            for statement in NOTIFY_UP {
                manager
                    .get_connection()
                    .execute_unprepared(statement)
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            for statement in NOTIFY_DOWN {
                manager
                    .get_connection()
                    .execute_unprepared(statement)
                    .await?;
            }
        }
        crate::drop_tables(manager, &["password_resets"]).await?;
        crate::run_script(
            manager,
            "DROP INDEX IF EXISTS idx_users_created; \
             ALTER TABLE users DROP COLUMN disabled_at; \
             ALTER TABLE users DROP COLUMN session_epoch",
            "DROP INDEX IF EXISTS idx_users_created; \
             ALTER TABLE users DROP COLUMN disabled_at; \
             ALTER TABLE users DROP COLUMN session_epoch",
        )
        .await
    }
}
