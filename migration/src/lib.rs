//! Database migrations for the shop schema, portable between PostgreSQL and SQLite.
//!
//! The service runs them at start; `cargo run -p migration -- up|down|status|fresh` runs
//! them by hand against `DATABASE_URL`.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_create_schema;
mod m20261205_000001_payment_action;
mod m20261205_000002_event_log;
mod m20261205_000003_webhooks;
mod m20261205_000004_event_notify;
mod m20261206_000001_money_and_stock;
mod m20261206_000002_categories;
mod m20261206_000003_product_views;
mod m20261206_000004_refresh_tokens;
mod m20261206_000005_accounts;
mod m20261206_000006_product_images;
mod m20261206_000007_refresh_token_epoch;

/// Every migration of the shop, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_schema::Migration),
            Box::new(m20261205_000001_payment_action::Migration),
            Box::new(m20261205_000002_event_log::Migration),
            Box::new(m20261205_000003_webhooks::Migration),
            Box::new(m20261205_000004_event_notify::Migration),
            Box::new(m20261206_000001_money_and_stock::Migration),
            Box::new(m20261206_000002_categories::Migration),
            Box::new(m20261206_000003_product_views::Migration),
            Box::new(m20261206_000004_refresh_tokens::Migration),
            Box::new(m20261206_000005_accounts::Migration),
            Box::new(m20261206_000006_product_images::Migration),
            Box::new(m20261206_000007_refresh_token_epoch::Migration),
        ]
    }
}

/// Drops `tables` (those that exist), in order.
pub(crate) async fn drop_tables(manager: &SchemaManager<'_>, tables: &[&str]) -> Result<(), DbErr> {
    for table in tables {
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new(*table))
                    .if_exists()
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}

/// Runs the script written for the connected backend: `;`-separated statements (none may
/// hold a `;` of its own), one at a time.
pub(crate) async fn run_script(
    manager: &SchemaManager<'_>,
    postgres: &str,
    sqlite: &str,
) -> Result<(), DbErr> {
    let script = match manager.get_database_backend() {
        sea_orm_migration::sea_orm::DatabaseBackend::Postgres => postgres,
        _ => sqlite,
    };
    let db = manager.get_connection();
    for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}
