//! Refresh tokens: one row per token issued, stored as its SHA-256. Tokens of one sign-in
//! share a `family_id`; refreshing spends a token and issues the next of its family, and a
//! spent token used again revokes the whole family (the chain was stolen).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES: &str = r#"
CREATE TABLE refresh_tokens (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id UUID NOT NULL,
    token_hash VARCHAR(64) NOT NULL UNIQUE,
    expires_at TIMESTAMPTZ NOT NULL,
    spent_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX idx_refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX idx_refresh_tokens_expires ON refresh_tokens (expires_at)
"#;

const SQLITE: &str = r#"
CREATE TABLE refresh_tokens (
    id uuid_text PRIMARY KEY,
    user_id uuid_text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id uuid_text NOT NULL,
    token_hash VARCHAR(64) NOT NULL UNIQUE,
    expires_at timestamp_with_timezone_text NOT NULL,
    spent_at timestamp_with_timezone_text,
    revoked_at timestamp_with_timezone_text,
    created_at timestamp_with_timezone_text NOT NULL
);
CREATE INDEX idx_refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX idx_refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX idx_refresh_tokens_expires ON refresh_tokens (expires_at)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES, SQLITE).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::drop_tables(manager, &["refresh_tokens"]).await
    }
}
