//! Refresh tokens remember the session epoch they were issued in, so one issued by a
//! sign-in or refresh that raced with the end of every session (logout-all, a new
//! password, disabling) is refused. Tokens already issued take their account's epoch.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE refresh_tokens ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
UPDATE refresh_tokens SET epoch = (SELECT session_epoch FROM users WHERE users.id = refresh_tokens.user_id)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, UP, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let down = "ALTER TABLE refresh_tokens DROP COLUMN epoch";
        crate::run_script(manager, down, down).await
    }
}
