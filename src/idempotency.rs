//! `Idempotency-Key` with Stripe's semantics, scoped to the user.
//!
//! A key is claimed before the work starts (so a concurrent repeat sees it and gets a 409),
//! and completed with the answer inside the work's own transaction (so the answer is stored
//! if and only if the work committed). When the work is refused (a 4xx, such as short
//! stock), that answer is stored too and replayed; when it fails on our side (5xx) the claim
//! is released so the client can retry. A claim abandoned by a crashed process can be taken
//! over after [`LOCK_TIMEOUT`]; every claim carries a [`Ticket`] (its lock time) that the
//! later writes are fenced on, so a request whose claim was taken over can store nothing.

use std::time::Duration;

use entity::idempotency_key as key_row;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    TryInsertResult, sea_query::Expr,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    clock,
    error::{AppError, AppResult},
};

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// How long a claim without an answer blocks repeats before another request may take over.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// A validated key and the fingerprint of the request it came with.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    pub user_id: Uuid,
    pub key: String,
    pub request_hash: String,
}

impl IdempotencyKey {
    /// Validates the header value and fingerprints the request (its JSON, canonicalised:
    /// whitespace and key order do not matter).
    pub fn new(user_id: Uuid, raw: &str, request: &serde_json::Value) -> AppResult<Self> {
        if raw.is_empty() || raw.len() > MAX_KEY_LEN || raw.chars().any(char::is_control) {
            return Err(AppError::bad_request(
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} printable characters."),
            ));
        }
        let canonical = serde_json::to_vec(request).unwrap_or_default();
        let request_hash = format!("{:x}", Sha256::digest(&canonical));
        Ok(Self {
            user_id,
            key: raw.to_owned(),
            request_hash,
        })
    }
}

/// The request's `Idempotency-Key`, if it has one, for a request fingerprinted by `request`.
pub fn from_headers(
    headers: &axum::http::HeaderMap,
    user_id: Uuid,
    request: &serde_json::Value,
) -> AppResult<Option<IdempotencyKey>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let raw = value.to_str().map_err(|_| {
        AppError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be printable text.",
        )
    })?;
    IdempotencyKey::new(user_id, raw, request).map(Some)
}

/// The answer to a repeated request: the first one's status and body, marked
/// `Idempotent-Replayed: true`.
pub fn replay_response(status: u16, body: String) -> axum::response::Response {
    use axum::{
        http::{HeaderValue, StatusCode, header},
        response::IntoResponse,
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Proof of holding a claim: its lock time, which later writes must still match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(chrono::DateTime<chrono::Utc>);

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Claim {
    /// The key is ours: do the work, then [`complete`] it in the work's transaction.
    Acquired(Ticket),
    /// The key was used before with this request: answer what it answered.
    Replay { status: u16, body: String },
}

/// Claims `key`, or tells how a previous use of it ended.
///
/// 409 `idempotency_key_in_use` while another request with the key is running; 422
/// `idempotency_key_reused` when the key came with a different request.
pub async fn claim(
    db: &DatabaseConnection,
    key: &IdempotencyKey,
    ttl: Duration,
) -> AppResult<Claim> {
    // A few rounds: a row can vanish (released, expired) between our insert and our read.
    for _ in 0..3 {
        let now = clock::now();
        let inserted = key_row::Entity::insert(key_row::ActiveModel {
            user_id: Set(key.user_id),
            key: Set(key.key.clone()),
            request_hash: Set(key.request_hash.clone()),
            response_status: Set(None),
            response_body: Set(None),
            created_at: Set(now),
            locked_at: Set(now),
        })
        .on_conflict_do_nothing_on([key_row::Column::UserId, key_row::Column::Key])
        .exec_without_returning(db)
        .await?;
        if matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
            return Ok(Claim::Acquired(Ticket(now)));
        }

        let Some(existing) = key_row::Entity::find_by_id((key.user_id, key.key.clone()))
            .one(db)
            .await?
        else {
            continue;
        };
        if existing.created_at + ttl < now {
            // Expired: forget it and claim afresh.
            key_row::Entity::delete_many()
                .filter(this_row(key))
                .filter(key_row::Column::CreatedAt.eq(existing.created_at))
                .exec(db)
                .await?;
            continue;
        }
        if existing.request_hash != key.request_hash {
            return Err(AppError::unprocessable(
                "idempotency_key_reused",
                "This Idempotency-Key was already used with a different request.",
            ));
        }
        if let (Some(status), Some(body)) = (existing.response_status, existing.response_body) {
            return Ok(Claim::Replay {
                status: u16::try_from(status).unwrap_or(200),
                body,
            });
        }
        if existing.locked_at + LOCK_TIMEOUT < now {
            // The request that claimed it died; take the claim over if nobody beat us to it.
            let taken = key_row::Entity::update_many()
                .col_expr(key_row::Column::LockedAt, Expr::value(now))
                .filter(this_row(key))
                .filter(key_row::Column::LockedAt.eq(existing.locked_at))
                .filter(key_row::Column::ResponseStatus.is_null())
                .exec(db)
                .await?;
            if taken.rows_affected == 1 {
                return Ok(Claim::Acquired(Ticket(now)));
            }
        }
        return Err(in_use());
    }
    Err(in_use())
}

/// Stores the answer; call inside the transaction of the work. Fails with 409 when the
/// claim was taken over meanwhile: the caller must then roll the work back.
pub async fn complete<C: ConnectionTrait>(
    txn: &C,
    key: &IdempotencyKey,
    ticket: Ticket,
    status: u16,
    body: &str,
) -> AppResult<()> {
    let stored = key_row::Entity::update_many()
        .col_expr(
            key_row::Column::ResponseStatus,
            Expr::value(i32::from(status)),
        )
        .col_expr(key_row::Column::ResponseBody, Expr::value(body.to_owned()))
        .filter(this_row(key))
        .filter(key_row::Column::LockedAt.eq(ticket.0))
        .filter(key_row::Column::ResponseStatus.is_null())
        .exec(txn)
        .await?;
    if stored.rows_affected == 1 {
        Ok(())
    } else {
        Err(in_use())
    }
}

/// Settles a claim whose work did not happen: a refusal (4xx) is stored to be replayed;
/// anything else gives the key back so the client can retry with it.
pub async fn settle_failure(
    db: &DatabaseConnection,
    key: &IdempotencyKey,
    ticket: Ticket,
    error: &AppError,
) {
    let result = match error.problem() {
        Some(problem) if (400..500).contains(&problem.status) => {
            let body = serde_json::to_string(&problem).unwrap_or_default();
            complete(db, key, ticket, problem.status, &body)
                .await
                .map(drop)
        }
        _ => key_row::Entity::delete_many()
            .filter(this_row(key))
            .filter(key_row::Column::LockedAt.eq(ticket.0))
            .filter(key_row::Column::ResponseStatus.is_null())
            .exec(db)
            .await
            .map(drop)
            .map_err(AppError::from),
    };
    if let Err(err) = result {
        tracing::warn!(error = ?err, "could not settle an idempotency key; it frees itself after the lock timeout");
    }
}

fn in_use() -> AppError {
    AppError::conflict(
        "idempotency_key_in_use",
        "A request with this Idempotency-Key is still being processed; retry later.",
    )
}

/// Deletes keys older than `ttl`; run periodically.
pub async fn purge_expired(db: &DatabaseConnection, ttl: Duration) -> AppResult<u64> {
    let cutoff = clock::now() - ttl;
    let result = key_row::Entity::delete_many()
        .filter(key_row::Column::CreatedAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

fn this_row(key: &IdempotencyKey) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(key_row::Column::UserId.eq(key.user_id))
        .add(key_row::Column::Key.eq(key.key.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fingerprint_ignores_formatting_and_key_order() {
        let user = Uuid::now_v7();
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str("{ \"b\": [1, 2],\n \"a\": 1 }").unwrap();
        let c = json!({"a": 1, "b": [2, 1]});
        let hash = |v| IdempotencyKey::new(user, "k", v).unwrap().request_hash;
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&c));
    }

    #[test]
    fn rejects_empty_long_or_control_keys() {
        let user = Uuid::now_v7();
        let body = json!({});
        assert!(IdempotencyKey::new(user, "", &body).is_err());
        assert!(IdempotencyKey::new(user, &"k".repeat(256), &body).is_err());
        assert!(IdempotencyKey::new(user, "a\nb", &body).is_err());
        assert!(IdempotencyKey::new(user, &"k".repeat(255), &body).is_ok());
    }
}
