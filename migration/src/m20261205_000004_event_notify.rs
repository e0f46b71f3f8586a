//! On PostgreSQL, inserting events notifies the log's listeners (`NOTIFY shop_events`,
//! delivered at commit) from a statement-level trigger, so a writing transaction spends
//! no round trip of its own on it. SQLite has no listeners: nothing to do.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 2] = [
    r#"CREATE FUNCTION shop_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shop_events', '');
    RETURN NULL;
END
$$"#,
    "CREATE TRIGGER events_notify AFTER INSERT ON events \
     FOR EACH STATEMENT EXECUTE FUNCTION shop_events_notify()",
];

const DOWN: [&str; 2] = [
    "DROP TRIGGER IF EXISTS events_notify ON events",
    "DROP FUNCTION IF EXISTS shop_events_notify()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        for statement in UP {
            manager
                .get_connection()
                .execute_unprepared(statement)
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        for statement in DOWN {
            manager
                .get_connection()
                .execute_unprepared(statement)
                .await?;
        }
        Ok(())
    }
}
