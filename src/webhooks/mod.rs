//! Webhooks: admins register endpoints; every event of the log that an endpoint wants
//! becomes a delivery row ([`dispatch`]), sent by [`sender`] as a signed `POST` and
//! retried on the webhook queue with backoff and full jitter.
//!
//! The rules of the `/webhooks` routes live here: validating endpoints (the SSRF
//! [`guard`] included), the secret shown once, the delivery log and redelivery.

pub mod dispatch;
pub mod guard;
pub mod routes;
pub mod sender;

use chrono::{DateTime, Utc};
use entity::{DeliveryStatus, event, webhook_delivery, webhook_endpoint};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    clock,
    config::WebhookConfig,
    error::{AppError, AppResult, FieldErrors},
    extract::present,
    pagination::{NewestFirstQuery, cursor_limit, cursor_rows, optional_uuid},
    queue::JobQueue,
};

/// The event families an endpoint can ask for.
const FAMILIES: [&str; 4] = ["order", "payment", "refund", "product"];
/// Every event type of the contract.
pub const TYPES: [&str; 20] = [
    "order.created",
    "order.processing",
    "order.completed",
    "order.failed",
    "order.cancelled",
    "order.refunded",
    "order.partially_refunded",
    "payment.processing",
    "payment.retrying",
    "payment.requires_action",
    "payment.succeeded",
    "payment.failed",
    "payment.cancelled",
    "refund.pending",
    "refund.succeeded",
    "refund.failed",
    "product.created",
    "product.updated",
    "product.deleted",
    "product.image_ready",
];
/// The most patterns one endpoint may list.
const MAX_PATTERNS: usize = 50;
/// The longest description.
const MAX_DESCRIPTION: usize = 500;

/// Whether an endpoint listening for `patterns` wants an event of type `kind`: a pattern
/// is a type, a family prefix (`order.*`) or `*` for everything.
pub fn wants(patterns: &[String], kind: &str) -> bool {
    patterns
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => kind.starts_with(prefix),
            None => pattern == kind,
        })
}

/// What the `/webhooks` rules use.
#[derive(Clone, Copy)]
pub struct Webhooks<'a> {
    pub db: &'a DatabaseConnection,
    pub queue: &'a dyn JobQueue,
    pub config: &'a WebhookConfig,
}

/// An endpoint as admins see it (never with its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub id: Uuid,
    #[schema(example = "https://hooks.example.com/shop")]
    pub url: String,
    /// Event types, family prefixes (`order.*`) or `*`.
    #[schema(example = json!(["order.*", "payment.failed"]))]
    pub events: Vec<String>,
    pub description: Option<String>,
    /// A disabled endpoint gets no new deliveries.
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new endpoint, with the secret that signs its deliveries: shown only here.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// Verifies `Shop-Signature`. Shown only once: keep it.
    #[schema(example = "whsec_3f2a...")]
    pub secret: String,
}

/// A new secret (`POST /webhooks/{id}/rotate-secret`); the old one signs nothing more.
#[derive(Debug, Serialize, ToSchema)]
pub struct Secret {
    pub secret: String,
}

impl TryFrom<webhook_endpoint::Model> for Endpoint {
    type Error = AppError;

    fn try_from(row: webhook_endpoint::Model) -> AppResult<Self> {
        Ok(Self {
            events: patterns(&row)?,
            id: row.id,
            url: row.url,
            description: row.description,
            enabled: row.enabled,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// The stored patterns of an endpoint.
pub fn patterns(row: &webhook_endpoint::Model) -> AppResult<Vec<String>> {
    serde_json::from_str(&row.events).map_err(|e| AppError::Internal(e.into()))
}

/// `POST /webhooks`; the handler reads it as a [`EndpointChanges`] so that each missing
/// field is named in a 422.
#[derive(ToSchema)]
#[allow(dead_code)] // describes a request body
pub struct NewEndpoint {
    /// An http(s) URL; unless `WEBHOOK_ALLOW_PRIVATE=true` its host must not resolve to a
    /// loopback, private or link-local address.
    #[schema(
        max_length = 2048,
        pattern = "^https?://",
        example = "https://hooks.example.com/shop"
    )]
    url: String,
    /// 1 to 50 event types (`order.completed`), family prefixes (`order.*`) or `*`.
    #[schema(schema_with = patterns_schema)]
    events: Vec<String>,
    /// Up to 500 characters, no control characters but tabs and line breaks.
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    description: Option<String>,
    /// Default true.
    enabled: Option<bool>,
}

/// `PATCH /webhooks/{id}`: the fields to change.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct EndpointChanges {
    #[schema(max_length = 2048, pattern = "^https?://")]
    pub url: Option<String>,
    /// 1 to 50 event types, family prefixes (`order.*`) or `*`.
    #[schema(schema_with = patterns_schema)]
    pub events: Option<Vec<String>>,
    /// Up to 500 characters, no control characters but tabs and line breaks; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 500, pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$")]
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// The schema of an endpoint's `events`: 1 to 50 of the types, family prefixes and `*`.
fn patterns_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let mut values: Vec<String> = vec!["*".into()];
    values.extend(FAMILIES.iter().map(|f| format!("{f}.*")));
    values.extend(TYPES.iter().map(|t| (*t).to_owned()));
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(values)),
        )
        .min_items(Some(1))
        .max_items(Some(MAX_PATTERNS))
        .examples([serde_json::json!(["order.*", "payment.failed"])])
        .build()
}

/// A delivery of one event to one endpoint.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    /// The event's `id` (the `Shop-Event-Id` header).
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// The HTTP status of the last answer, if one came.
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    /// When the next attempt is due (`PENDING`, `RETRYING`).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<webhook_delivery::Model> for Delivery {
    fn from(row: webhook_delivery::Model) -> Self {
        Self {
            id: row.id,
            endpoint_id: row.endpoint_id,
            event_id: row.event_cursor,
            event_type: row.event_type,
            status: row.status,
            attempts: row.attempts,
            last_status_code: row.last_status_code,
            last_error: row.last_error,
            next_attempt_at: row.next_attempt_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A page of an endpoint's deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    pub has_more: bool,
    /// Pass as `after` for the next page.
    pub next_cursor: Option<String>,
}

/// New delivery `id` of event `event` (a row of the log) to `endpoint`, due `now`; a
/// redelivery names the delivery it repeats.
fn new_delivery(
    id: Uuid,
    endpoint: Uuid,
    event: &event::Model,
    redelivery_of: Option<Uuid>,
    now: DateTime<Utc>,
) -> webhook_delivery::ActiveModel {
    webhook_delivery::ActiveModel {
        id: Set(id),
        endpoint_id: Set(endpoint),
        event_id: Set(event.id),
        event_cursor: Set(crate::events::Event::cursor(event.tx, event.id)),
        event_type: Set(event.kind.clone()),
        redelivery_of: Set(redelivery_of),
        status: Set(DeliveryStatus::Pending),
        attempts: Set(0),
        last_status_code: Set(None),
        last_error: Set(None),
        next_attempt_at: Set(Some(now)),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// A new signing secret: `whsec_` and 32 random bytes in hex.
fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", sender::hex(&bytes))
}

/// Checks a URL (and where it resolves), recording what is wrong under `url`.
async fn check_url(raw: &str, config: &WebhookConfig, errors: &mut FieldErrors) -> String {
    match guard::parse(raw) {
        Ok(url) => {
            if let Err(refused) = guard::check(&url, config.allow_private).await {
                errors.insert("url".into(), vec![refused.to_string()]);
            }
            url.to_string()
        }
        Err(refused) => {
            errors.insert("url".into(), vec![refused.to_string()]);
            String::new()
        }
    }
}

/// Checks the patterns, recording what is wrong under `events`; answers them deduplicated.
fn check_patterns(patterns: &[String], errors: &mut FieldErrors) -> Vec<String> {
    let valid = |p: &str| {
        p == "*"
            || TYPES.contains(&p)
            || p.strip_suffix(".*")
                .is_some_and(|family| FAMILIES.contains(&family))
    };
    if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
        // Said once, whatever the list holds: a huge list costs nothing more to refuse.
        errors.insert(
            "events".into(),
            vec![format!("must list 1 to {MAX_PATTERNS} event types")],
        );
        return Vec::new();
    }
    let mut messages = Vec::new();
    for p in patterns.iter().filter(|p| !valid(p)) {
        messages.push(format!(
            "{p:?} is not an event type, a prefix such as order.* or *"
        ));
    }
    if !messages.is_empty() {
        errors.insert("events".into(), messages);
    }
    let mut unique: Vec<String> = Vec::new();
    for p in patterns {
        if !unique.contains(p) {
            unique.push(p.clone());
        }
    }
    unique
}

fn check_description(description: Option<&str>, errors: &mut FieldErrors) -> Option<String> {
    let description = description.map(str::trim).filter(|d| !d.is_empty())?;
    if description.chars().count() > MAX_DESCRIPTION
        || description
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        errors.insert(
            "description".into(),
            vec![format!(
                "must be at most {MAX_DESCRIPTION} characters, without control characters"
            )],
        );
    }
    Some(description.to_owned())
}

/// Registers an endpoint; answers it with its secret.
pub async fn create(hooks: Webhooks<'_>, body: EndpointChanges) -> AppResult<CreatedEndpoint> {
    let mut errors = FieldErrors::new();
    let url = match body.url.as_deref() {
        Some(raw) => check_url(raw, hooks.config, &mut errors).await,
        None => {
            errors.insert("url".into(), vec!["is required".into()]);
            String::new()
        }
    };
    let events = match body.events.as_deref() {
        Some(patterns) => check_patterns(patterns, &mut errors),
        None => {
            errors.insert("events".into(), vec!["is required".into()]);
            Vec::new()
        }
    };
    let description = check_description(body.description.flatten().as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    let now = clock::now();
    let secret = new_secret();
    let row = webhook_endpoint::ActiveModel {
        id: Set(Uuid::now_v7()),
        url: Set(url),
        events: Set(serde_json::to_string(&events).map_err(|e| AppError::Internal(e.into()))?),
        description: Set(description),
        enabled: Set(body.enabled.unwrap_or(true)),
        secret: Set(secret.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(hooks.db)
    .await?;
    tracing::info!(endpoint_id = %row.id, url = %row.url, "webhook endpoint registered");
    Ok(CreatedEndpoint {
        endpoint: row.try_into()?,
        secret,
    })
}

async fn find(db: &DatabaseConnection, id: Uuid) -> AppResult<webhook_endpoint::Model> {
    webhook_endpoint::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("webhook endpoint"))
}

/// Every endpoint, oldest first.
pub async fn list(db: &DatabaseConnection) -> AppResult<Vec<Endpoint>> {
    webhook_endpoint::Entity::find()
        .order_by_asc(webhook_endpoint::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(Endpoint::try_from)
        .collect()
}

pub async fn get(db: &DatabaseConnection, id: Uuid) -> AppResult<Endpoint> {
    find(db, id).await?.try_into()
}

/// Changes an endpoint's URL, patterns, description or state.
pub async fn update(
    hooks: Webhooks<'_>,
    id: Uuid,
    changes: EndpointChanges,
) -> AppResult<Endpoint> {
    let current = find(hooks.db, id).await?;
    let mut errors = FieldErrors::new();
    let mut row: webhook_endpoint::ActiveModel = current.into();
    if let Some(raw) = changes.url.as_deref() {
        row.url = Set(check_url(raw, hooks.config, &mut errors).await);
    }
    if let Some(patterns) = changes.events.as_deref() {
        let events = check_patterns(patterns, &mut errors);
        row.events = Set(serde_json::to_string(&events).map_err(|e| AppError::Internal(e.into()))?);
    }
    if let Some(description) = changes.description {
        row.description = Set(check_description(description.as_deref(), &mut errors));
    }
    if let Some(enabled) = changes.enabled {
        row.enabled = Set(enabled);
    }
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    row.updated_at = Set(clock::now());
    let row = row.update(hooks.db).await?;
    tracing::info!(endpoint_id = %row.id, enabled = row.enabled, "webhook endpoint changed");
    row.try_into()
}

/// Removes an endpoint and its delivery log; queued deliveries are dropped.
pub async fn delete(db: &DatabaseConnection, id: Uuid) -> AppResult<()> {
    let deleted = webhook_endpoint::Entity::delete_by_id(id).exec(db).await?;
    if deleted.rows_affected == 0 {
        return Err(AppError::not_found("webhook endpoint"));
    }
    tracing::info!(endpoint_id = %id, "webhook endpoint deleted");
    Ok(())
}

/// Replaces an endpoint's secret; answers the new one (shown only here).
pub async fn rotate_secret(db: &DatabaseConnection, id: Uuid) -> AppResult<Secret> {
    let mut row: webhook_endpoint::ActiveModel = find(db, id).await?.into();
    let secret = new_secret();
    row.secret = Set(secret.clone());
    row.updated_at = Set(clock::now());
    row.update(db).await?;
    tracing::info!(endpoint_id = %id, "webhook secret rotated");
    Ok(Secret { secret })
}

/// A page of an endpoint's deliveries, newest first.
pub async fn deliveries(
    db: &DatabaseConnection,
    id: Uuid,
    query: NewestFirstQuery,
) -> AppResult<DeliveryPage> {
    let mut errors = FieldErrors::new();
    let after = optional_uuid(
        query.after.as_deref(),
        "after",
        "must be a delivery id",
        &mut errors,
    );
    let limit = cursor_limit(query.limit.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    find(db, id).await?;
    let mut select =
        webhook_delivery::Entity::find().filter(webhook_delivery::Column::EndpointId.eq(id));
    if let Some(after) = after {
        select = select.filter(webhook_delivery::Column::Id.lt(after));
    }
    let rows = select
        .order_by_desc(webhook_delivery::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let into = |row| Ok(Delivery::from(row));
    let page = cursor_rows(rows, limit, query.after, into, |d| d.id.to_string())?;
    Ok(DeliveryPage {
        items: page.items,
        has_more: page.has_more,
        next_cursor: page.next_cursor,
    })
}

/// A new delivery of the same event to the same endpoint, sent at once.
pub async fn redeliver(hooks: Webhooks<'_>, id: Uuid, delivery_id: Uuid) -> AppResult<Delivery> {
    let original = webhook_delivery::Entity::find_by_id(delivery_id)
        .filter(webhook_delivery::Column::EndpointId.eq(id))
        .one(hooks.db)
        .await?
        .ok_or_else(|| AppError::not_found("webhook delivery"))?;
    let Some(event) = event::Entity::find_by_id(original.event_id)
        .one(hooks.db)
        .await?
    else {
        return Err(AppError::conflict(
            "event_expired",
            "The event is older than EVENT_RETENTION and no longer in the log.",
        ));
    };
    let now = clock::now();
    let row = new_delivery(Uuid::now_v7(), id, &event, Some(original.id), now)
        .insert(hooks.db)
        .await?;
    if let Err(err) = hooks.queue.enqueue(row.id, now).await {
        tracing::warn!(error = %err, delivery_id = %row.id, "could not queue a redelivery; the sweeper will");
    }
    tracing::info!(endpoint_id = %id, delivery_id = %row.id, redelivery_of = %delivery_id, "webhook redelivery queued");
    Ok(row.into())
}

/// Deletes ended deliveries (succeeded or failed) older than `retention`, the events'
/// own retention: past it there is nothing left to redeliver. Answers how many.
pub async fn prune(db: &DatabaseConnection, retention: std::time::Duration) -> AppResult<u64> {
    let cutoff =
        clock::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    Ok(webhook_delivery::Entity::delete_many()
        .filter(
            webhook_delivery::Column::Status
                .is_in([DeliveryStatus::Succeeded, DeliveryStatus::Failed]),
        )
        .filter(webhook_delivery::Column::UpdatedAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_types_prefixes_and_everything() {
        let p = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(wants(&p(&["order.*"]), "order.created"));
        assert!(!wants(&p(&["order.*"]), "payment.failed"));
        assert!(wants(
            &p(&["payment.failed", "product.*"]),
            "payment.failed"
        ));
        assert!(!wants(&p(&["payment.failed"]), "payment.failed_x"));
        assert!(wants(&p(&["*"]), "refund.pending"));
        assert!(!wants(&p(&[]), "order.created"));
    }

    #[test]
    fn pattern_checks_name_each_bad_one_and_dedupe() {
        let mut errors = FieldErrors::new();
        let kept = check_patterns(
            &["order.*".into(), "order.*".into(), "payment.failed".into()],
            &mut errors,
        );
        assert!(errors.is_empty());
        assert_eq!(kept, ["order.*", "payment.failed"]);
        check_patterns(&["orders.*".into(), "order.shipped".into()], &mut errors);
        assert_eq!(errors["events"].len(), 2, "{errors:?}");
        let mut errors = FieldErrors::new();
        check_patterns(&[], &mut errors);
        assert!(errors.contains_key("events"));
        // A list over the limit is refused in one message, however long it is.
        let mut errors = FieldErrors::new();
        let huge: Vec<String> = (0..200_000).map(|n| format!("bad.{n}")).collect();
        assert!(check_patterns(&huge, &mut errors).is_empty());
        assert_eq!(errors["events"].len(), 1);
    }
}
