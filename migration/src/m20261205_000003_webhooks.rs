//! Webhooks: the endpoints admins register, one delivery row per event and matching
//! endpoint (plus redeliveries), and the dispatcher's place in the event log.
//!
//! `webhook_dispatch` holds one row: the last `(tx, id)` of the log turned into
//! deliveries. A dispatcher advances it with a compare-and-set in the same transaction
//! that inserts the deliveries, so with any number of processes each event becomes one
//! delivery per endpoint; the partial unique index is the backstop.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES: &str = r#"
CREATE TABLE webhook_endpoints (
    id UUID PRIMARY KEY,
    url VARCHAR(2048) NOT NULL,
    events TEXT NOT NULL,
    description VARCHAR(500),
    enabled BOOLEAN NOT NULL,
    secret VARCHAR(128) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE webhook_deliveries (
    id UUID PRIMARY KEY,
    endpoint_id UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id BIGINT NOT NULL,
    event_cursor VARCHAR(41) NOT NULL,
    event_type VARCHAR(48) NOT NULL,
    redelivery_of UUID,
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error TEXT,
    next_attempt_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX idx_webhook_deliveries_once ON webhook_deliveries (endpoint_id, event_id) WHERE redelivery_of IS NULL;
CREATE INDEX idx_webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE TABLE webhook_dispatch (
    name VARCHAR(32) PRIMARY KEY,
    tx BIGINT NOT NULL,
    id BIGINT NOT NULL
);
INSERT INTO webhook_dispatch (name, tx, id) SELECT 'webhooks', COALESCE(MAX(tx), 0), COALESCE(MAX(id), 0) FROM events
"#;

const SQLITE: &str = r#"
CREATE TABLE webhook_endpoints (
    id uuid_text PRIMARY KEY,
    url VARCHAR(2048) NOT NULL,
    events TEXT NOT NULL,
    description VARCHAR(500),
    enabled BOOLEAN NOT NULL,
    secret VARCHAR(128) NOT NULL,
    created_at timestamp_with_timezone_text NOT NULL,
    updated_at timestamp_with_timezone_text NOT NULL
);
CREATE TABLE webhook_deliveries (
    id uuid_text PRIMARY KEY,
    endpoint_id uuid_text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id BIGINT NOT NULL,
    event_cursor VARCHAR(41) NOT NULL,
    event_type VARCHAR(48) NOT NULL,
    redelivery_of uuid_text,
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error TEXT,
    next_attempt_at timestamp_with_timezone_text,
    created_at timestamp_with_timezone_text NOT NULL,
    updated_at timestamp_with_timezone_text NOT NULL
);
CREATE UNIQUE INDEX idx_webhook_deliveries_once ON webhook_deliveries (endpoint_id, event_id) WHERE redelivery_of IS NULL;
CREATE INDEX idx_webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE TABLE webhook_dispatch (
    name VARCHAR(32) PRIMARY KEY,
    tx BIGINT NOT NULL,
    id BIGINT NOT NULL
);
INSERT INTO webhook_dispatch (name, tx, id) SELECT 'webhooks', COALESCE(MAX(tx), 0), COALESCE(MAX(id), 0) FROM events
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES, SQLITE).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::drop_tables(
            manager,
            &[
                "webhook_dispatch",
                "webhook_deliveries",
                "webhook_endpoints",
            ],
        )
        .await
    }
}
