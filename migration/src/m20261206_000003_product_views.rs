//! `products.views`: how often each product was read (written in batches, see
//! `products::views`), indexed for `orderBy=views`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SCRIPT: &str = r#"
ALTER TABLE products ADD COLUMN views BIGINT NOT NULL DEFAULT 0;
CREATE INDEX idx_products_views ON products (views, id)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, SCRIPT, SCRIPT).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS idx_products_views")
            .await?;
        db.execute_unprepared("ALTER TABLE products DROP COLUMN views")
            .await?;
        Ok(())
    }
}
