//! Money and stock a finance team can audit.
//!
//! - `stock_movements`: the stock ledger. Every change of a product's `stock` writes one
//!   row in the same transaction, so the sum of a product's movements is its stock. The
//!   stock already on hand becomes each product's opening movement (a `correction`, with
//!   the product's own id as its id, so it sorts where the product began).
//! - `products.version`: bumped by every write of the row; the product's strong `ETag`.
//! - `refunds`, and on `orders` the money refunded (`refunded_cents`) and the money that
//!   refunds not yet failed have claimed (`refund_claimed_cents`, never above the total);
//!   on `order_items` the units that such refunds restock (`restock_claimed`, never above
//!   the quantity). The claims are taken by conditional updates when a refund is asked
//!   for, so concurrent refunds can never promise more than was paid or ordered.
//! - `orders.status` grows to hold `PARTIALLY_REFUNDED`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES: &str = r#"
ALTER TABLE orders ALTER COLUMN status TYPE VARCHAR(24);
ALTER TABLE orders ADD COLUMN refunded_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN refund_claimed_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD CONSTRAINT chk_orders_refunds CHECK (refunded_cents >= 0 AND refunded_cents <= refund_claimed_cents AND refund_claimed_cents <= total_cents);
ALTER TABLE order_items ADD COLUMN restock_claimed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE order_items ADD CONSTRAINT chk_order_items_restock CHECK (restock_claimed >= 0 AND restock_claimed <= quantity);
ALTER TABLE products ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
CREATE TABLE stock_movements (
    id UUID PRIMARY KEY,
    product_id UUID NOT NULL REFERENCES products (id),
    delta INTEGER NOT NULL,
    reason VARCHAR(16) NOT NULL,
    reference VARCHAR(200),
    order_id UUID,
    actor_kind VARCHAR(8) NOT NULL,
    actor_id UUID,
    stock_after INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_stock_movements_product ON stock_movements (product_id, id) INCLUDE (delta);
INSERT INTO stock_movements (id, product_id, delta, reason, reference, order_id, actor_kind, actor_id, stock_after, created_at)
    SELECT id, id, stock, 'correction', 'opening balance', NULL, 'system', NULL, stock, updated_at FROM products WHERE stock <> 0;
CREATE TABLE refunds (
    id UUID PRIMARY KEY,
    order_id UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    reason VARCHAR(500),
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    restock TEXT NOT NULL,
    last_error TEXT,
    next_attempt_at TIMESTAMPTZ,
    actor_id UUID,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_refunds_order ON refunds (order_id, id);
CREATE INDEX idx_refunds_due ON refunds (status, next_attempt_at)
"#;

const SQLITE: &str = r#"
ALTER TABLE orders ADD COLUMN refunded_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN refund_claimed_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE order_items ADD COLUMN restock_claimed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE products ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
CREATE TABLE stock_movements (
    id uuid_text PRIMARY KEY,
    product_id uuid_text NOT NULL REFERENCES products (id),
    delta INTEGER NOT NULL,
    reason VARCHAR(16) NOT NULL,
    reference VARCHAR(200),
    order_id uuid_text,
    actor_kind VARCHAR(8) NOT NULL,
    actor_id uuid_text,
    stock_after INTEGER NOT NULL,
    created_at timestamp_with_timezone_text NOT NULL
);
CREATE INDEX idx_stock_movements_product ON stock_movements (product_id, id, delta);
INSERT INTO stock_movements (id, product_id, delta, reason, reference, order_id, actor_kind, actor_id, stock_after, created_at)
    SELECT id, id, stock, 'correction', 'opening balance', NULL, 'system', NULL, stock, updated_at FROM products WHERE stock <> 0;
CREATE TABLE refunds (
    id uuid_text PRIMARY KEY,
    order_id uuid_text NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    reason VARCHAR(500),
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    restock TEXT NOT NULL,
    last_error TEXT,
    next_attempt_at timestamp_with_timezone_text,
    actor_id uuid_text,
    created_at timestamp_with_timezone_text NOT NULL,
    updated_at timestamp_with_timezone_text NOT NULL
);
CREATE INDEX idx_refunds_order ON refunds (order_id, id);
CREATE INDEX idx_refunds_due ON refunds (status, next_attempt_at)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES, SQLITE).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The statuses the older schema knows: a refunded order was paid.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE orders SET status = 'COMPLETED' WHERE status IN ('PARTIALLY_REFUNDED', 'REFUNDED')",
            )
            .await?;
        crate::drop_tables(manager, &["refunds", "stock_movements"]).await?;
        for (table, column) in [
            ("products", "version"),
            ("order_items", "restock_claimed"),
            ("orders", "refund_claimed_cents"),
            ("orders", "refunded_cents"),
        ] {
            if manager.get_database_backend()
                == sea_orm_migration::sea_orm::DatabaseBackend::Postgres
            {
                manager
                    .get_connection()
                    .execute_unprepared(&format!(
                        "ALTER TABLE {table} DROP COLUMN IF EXISTS {column} CASCADE"
                    ))
                    .await?;
            } else {
                manager
                    .get_connection()
                    .execute_unprepared(&format!("ALTER TABLE {table} DROP COLUMN {column}"))
                    .await?;
            }
        }
        Ok(())
    }
}
