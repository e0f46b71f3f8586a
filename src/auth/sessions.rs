//! Sessions: refresh tokens with rotation and reuse detection.
//!
//! A sign-in opens a family and issues its first refresh token: 32 random bytes, shown to
//! the client once and stored only as their SHA-256. `POST /auth/refresh` spends the token
//! (a conditional update: only one request can spend it) and issues the next one of the
//! family with a new access token. A token that is spent, or spent twice at once, and comes
//! back means the chain was copied: the whole family is revoked, so neither the thief nor
//! the owner can go on with it, and the owner signs in again. Logout revokes the family of
//! the token it names.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{refresh_token, user};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Authenticator, JwtKeys, dto::AuthResponse, standing};
use crate::{
    clock, db,
    domain::hex,
    error::{AppError, AppResult},
};

/// Every refresh token starts with this.
const PREFIX: &str = "rt_";

/// What sessions use.
#[derive(Clone, Copy)]
pub struct Sessions<'a> {
    pub db: &'a DatabaseConnection,
    pub jwt: &'a JwtKeys,
    /// Told when an account's sessions end.
    pub auth: &'a Authenticator,
    /// `REFRESH_TOKEN_TTL`.
    pub ttl: Duration,
}

fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn refused() -> AppError {
    AppError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
        "This refresh token is unknown, expired, spent or revoked; sign in again.",
    )
}

/// Issues a refresh token of `family` for `user`; answers the token.
async fn issue<C: ConnectionTrait>(
    db: &C,
    user: &user::Model,
    family: Uuid,
    ttl: Duration,
    now: DateTime<Utc>,
) -> AppResult<String> {
    let bytes: [u8; 32] = rand::random();
    let token = format!("{PREFIX}{}", hex(&bytes));
    let row = refresh_token::Model {
        id: Uuid::now_v7(),
        user_id: user.id,
        family_id: family,
        epoch: user.session_epoch,
        token_hash: digest(&token),
        expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
        spent_at: None,
        revoked_at: None,
        created_at: now,
    };
    refresh_token::Entity::insert(refresh_token::ActiveModel::from(row))
        .exec_without_returning(db)
        .await?;
    Ok(token)
}

/// The answer of a sign-in or a refresh: a new access token and `refresh`.
fn tokens(
    sessions: &Sessions<'_>,
    user: user::Model,
    refresh: String,
    now: DateTime<Utc>,
) -> AppResult<AuthResponse> {
    let access_token = sessions.jwt.issue(&user, now)?;
    Ok(AuthResponse {
        access_token,
        token_type: "Bearer",
        expires_in: sessions.jwt.ttl().as_secs(),
        refresh_token: refresh,
        refresh_expires_in: sessions.ttl.as_secs(),
        user: user.into(),
    })
}

/// Signs `user` in: a new family, its first refresh token, and an access token.
pub async fn open(sessions: &Sessions<'_>, user: user::Model) -> AppResult<AuthResponse> {
    open_in(sessions, sessions.db, user, clock::now()).await
}

/// [`open`] in the caller's transaction (`user` as it will be once it commits).
pub async fn open_in<C: ConnectionTrait>(
    sessions: &Sessions<'_>,
    db: &C,
    user: user::Model,
    now: DateTime<Utc>,
) -> AppResult<AuthResponse> {
    let refresh = issue(db, &user, Uuid::now_v7(), sessions.ttl, now).await?;
    tokens(sessions, user, refresh, now)
}

/// Revokes every live token of `family`.
async fn revoke<C: ConnectionTrait>(db: &C, family: Uuid, now: DateTime<Utc>) -> AppResult<()> {
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(Some(now)))
        .filter(refresh_token::Column::FamilyId.eq(family))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Exchanges a refresh token for a new access token and the next refresh token of its
/// family. A spent token coming back revokes its family; anything else that is not a live
/// token is a 401 `invalid_refresh_token` too.
#[tracing::instrument(skip_all)]
pub async fn refresh(sessions: &Sessions<'_>, token: &str) -> AppResult<AuthResponse> {
    if !token.starts_with(PREFIX) || token.len() > 200 {
        return Err(refused());
    }
    let now = clock::now();
    let txn = db::begin_write(sessions.db).await?;
    let Some(row) = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(digest(token)))
        .one(&txn)
        .await?
    else {
        return Err(refused());
    };
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(refused());
    }
    // Only one request can spend it.
    let spent = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::SpentAt, Expr::value(Some(now)))
        .filter(refresh_token::Column::Id.eq(row.id))
        .filter(refresh_token::Column::SpentAt.is_null())
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if spent.rows_affected != 1 {
        // Used before: whoever holds the family now, it is over.
        revoke(&txn, row.family_id, now).await?;
        txn.commit().await?;
        tracing::warn!(user_id = %row.user_id, family = %row.family_id, "a spent refresh token came back; its sessions are revoked");
        return Err(refused());
    }
    let Some(user) = user::Entity::find_by_id(row.user_id).one(&txn).await? else {
        return Err(refused());
    };
    if user.disabled_at.is_some() {
        return Err(refused());
    }
    if row.epoch < user.session_epoch {
        // Issued by a sign-in or refresh that raced with the end of every session: it ends
        // now, with its family.
        revoke(&txn, row.family_id, now).await?;
        txn.commit().await?;
        return Err(refused());
    }
    let next = issue(&txn, &user, row.family_id, sessions.ttl, now).await?;
    txn.commit().await?;
    tokens(sessions, user, next, now)
}

/// Ends the session of `token` if it is one of `user`'s (its whole family: every refresh
/// token the sign-in led to). Unknown tokens change nothing.
pub async fn close(db: &DatabaseConnection, user: Uuid, token: &str) -> AppResult<()> {
    let row = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(digest(token)))
        .filter(refresh_token::Column::UserId.eq(user))
        .one(db)
        .await?;
    if let Some(row) = row {
        revoke(db, row.family_id, clock::now()).await?;
    }
    Ok(())
}

/// Ends every session of `user`: every access and refresh token issued before is refused.
pub async fn close_all(sessions: &Sessions<'_>, user: Uuid) -> AppResult<()> {
    let txn = db::begin_write(sessions.db).await?;
    standing::end_all(&txn, user, clock::now()).await?;
    txn.commit().await?;
    sessions.auth.forget(user);
    Ok(())
}

/// Ends every session of `user` and opens a new one, in the caller's transaction (after it
/// wrote the account's new password). Answers the new session's tokens; call
/// [`Authenticator::forget`] after the commit.
pub async fn restart<C: ConnectionTrait>(
    sessions: &Sessions<'_>,
    db: &C,
    user: Uuid,
    now: DateTime<Utc>,
) -> AppResult<AuthResponse> {
    let account = standing::end_all(db, user, now).await?;
    open_in(sessions, db, account, now).await
}

/// Deletes refresh tokens that expired before `now - grace`; answers how many.
pub async fn prune(db: &DatabaseConnection, grace: Duration) -> AppResult<u64> {
    let cutoff = clock::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    Ok(refresh_token::Entity::delete_many()
        .filter(refresh_token::Column::ExpiresAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected)
}
