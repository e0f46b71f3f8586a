//! Product images: one row per upload, processed by the workers into WebP renditions.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES: &str = r#"
CREATE TABLE product_images (
    id UUID PRIMARY KEY,
    product_id UUID NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    status VARCHAR(16) NOT NULL CHECK (status IN ('PROCESSING', 'READY', 'FAILED')),
    alt VARCHAR(300),
    position INTEGER NOT NULL,
    width INTEGER,
    height INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_product_images_product ON product_images (product_id, position, id);
CREATE INDEX idx_product_images_processing ON product_images (next_attempt_at) WHERE status = 'PROCESSING'
"#;

const SQLITE: &str = r#"
CREATE TABLE product_images (
    id uuid_text PRIMARY KEY,
    product_id uuid_text NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    status VARCHAR(16) NOT NULL CHECK (status IN ('PROCESSING', 'READY', 'FAILED')),
    alt VARCHAR(300),
    position INTEGER NOT NULL,
    width INTEGER,
    height INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at timestamp_with_timezone_text,
    error TEXT,
    created_at timestamp_with_timezone_text NOT NULL,
    updated_at timestamp_with_timezone_text NOT NULL
);
CREATE INDEX idx_product_images_product ON product_images (product_id, position, id);
CREATE INDEX idx_product_images_processing ON product_images (next_attempt_at) WHERE status = 'PROCESSING'
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES, SQLITE).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::drop_tables(manager, &["product_images"]).await
    }
}
