//! Categories: a tree (`parent_id`, siblings ordered by `position`) with unique slugs, and
//! the categories of each product. A category with children cannot be deleted (the
//! service answers 409); deleting one takes it off its products (cascade). `version` is
//! the category's strong `ETag`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES: &str = r#"
CREATE TABLE categories (
    id UUID PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    slug VARCHAR(100) NOT NULL UNIQUE,
    parent_id UUID REFERENCES categories (id),
    position INTEGER NOT NULL,
    version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_categories_parent ON categories (parent_id, position);
CREATE TABLE product_categories (
    product_id UUID NOT NULL REFERENCES products (id),
    category_id UUID NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    PRIMARY KEY (product_id, category_id)
);
CREATE INDEX idx_product_categories_category ON product_categories (category_id, product_id)
"#;

const SQLITE: &str = r#"
CREATE TABLE categories (
    id uuid_text PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    slug VARCHAR(100) NOT NULL UNIQUE,
    parent_id uuid_text REFERENCES categories (id),
    position INTEGER NOT NULL,
    version BIGINT NOT NULL,
    created_at timestamp_with_timezone_text NOT NULL,
    updated_at timestamp_with_timezone_text NOT NULL
);
CREATE INDEX idx_categories_parent ON categories (parent_id, position);
CREATE TABLE product_categories (
    product_id uuid_text NOT NULL REFERENCES products (id),
    category_id uuid_text NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    PRIMARY KEY (product_id, category_id)
);
CREATE INDEX idx_product_categories_category ON product_categories (category_id, product_id)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES, SQLITE).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::drop_tables(manager, &["product_categories", "categories"]).await
    }
}
