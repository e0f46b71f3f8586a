//! Password reset by email.
//!
//! Asking for a reset answers the same way, at once, whatever the email: the lookup, the
//! token and the mail happen in a task of their own, so neither the answer nor its timing
//! tells whether an account exists. A known, enabled account is sent a link holding a
//! token of 32 random bytes; only its SHA-256 is stored, with an expiry
//! (`PASSWORD_RESET_TTL`). Confirming spends it (a conditional update: once), sets the
//! new password, spends every other reset of the account, ends every session and opens a
//! new one.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use entity::{password_reset, user};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    PasswordHasher,
    dto::{AuthResponse, PasswordResetConfirm},
    service,
    sessions::{self, Sessions},
};
use crate::{
    clock, db,
    domain::{Email, hex},
    error::{AppError, AppResult, FieldErrors},
    rate_limit::LoginGuard,
    state::AppState,
};

/// Every reset token starts with this.
const PREFIX: &str = "pr_";

fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn invalid() -> AppError {
    AppError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "invalid_reset_token",
        "This password reset link is unknown, used or expired; ask for a new one.",
    )
}

/// Asks for a reset link for `email`: 422 when it is missing or not an email, 429 past the
/// limits (counted for any email, known or not); otherwise the link is sent in the
/// background, if the account exists and is enabled.
pub async fn request(state: &AppState, address: IpAddr, email: Option<String>) -> AppResult<()> {
    let email = match email.as_deref().map(Email::parse) {
        Some(Ok(email)) => email,
        Some(Err(msg)) => return Err(AppError::invalid_field("email", &msg)),
        None => return Err(AppError::invalid_field("email", "is required")),
    };
    state.resets.count(email.as_str(), address).await?;
    let state = state.clone();
    tokio::spawn(async move {
        let outcome = match send_link(&state, &email).await {
            Ok(true) => "sent",
            Ok(false) => "no_account",
            Err(err) => {
                tracing::error!(error = ?err, "could not send a password reset mail");
                "failed"
            }
        };
        metrics::counter!("password_reset_mails_total", "outcome" => outcome).increment(1);
    });
    Ok(())
}

/// Stores a new reset token for the account of `email` and mails its link; `false` when
/// there is no enabled account with that email.
async fn send_link(state: &AppState, email: &Email) -> anyhow::Result<bool> {
    let Some(account) = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .filter(user::Column::DisabledAt.is_null())
        .one(&state.db)
        .await?
    else {
        return Ok(false);
    };
    let now = clock::now();
    let ttl = state.config.mail.reset_ttl;
    let bytes: [u8; 32] = rand::random();
    let token = format!("{PREFIX}{}", hex(&bytes));
    let row = password_reset::Model {
        id: Uuid::now_v7(),
        user_id: account.id,
        token_hash: digest(&token),
        expires_at: now + chrono::Duration::from_std(ttl)?,
        used_at: None,
        created_at: now,
    };
    password_reset::Entity::insert(password_reset::ActiveModel::from(row))
        .exec_without_returning(&state.db)
        .await?;
    let link = format!(
        "{}/reset-password?token={token}",
        state.config.mail.public_url
    );
    let minutes = ttl.as_secs().div_ceil(60);
    let body = format!(
        "Someone asked to reset the password of your shop account ({email}).\r\n\
         \r\n\
         Choose a new password here (the link works once, for {minutes} minutes):\r\n\
         \r\n\
         {link}\r\n\
         \r\n\
         If it was not you, ignore this mail: your password stays as it is.\r\n",
        email = account.email,
    );
    let to = lettre::message::Mailbox::new(account.name.clone(), account.email.parse()?);
    state
        .mailer
        .send(to, "Reset your shop password", body)
        .await?;
    Ok(true)
}

/// Sets a new password with a reset token: 400 `invalid_reset_token` when the token is
/// unknown, used, expired or its account disabled; 422 for a weak password. Ends every
/// session of the account and answers a new one; the account's failed sign-ins are
/// forgotten.
#[tracing::instrument(skip_all)]
pub async fn confirm(
    sessions: &Sessions<'_>,
    passwords: &PasswordHasher,
    guard: &LoginGuard,
    address: IpAddr,
    request: PasswordResetConfirm,
) -> AppResult<AuthResponse> {
    let mut errors = FieldErrors::new();
    match request.token.as_deref() {
        None => {
            errors.insert("token".into(), vec!["is required".into()]);
        }
        Some(token) if token.chars().count() > 200 => {
            errors.insert(
                "token".into(),
                vec!["must be at most 200 characters".into()],
            );
        }
        Some(_) => {}
    }
    let password =
        service::new_password("newPassword", request.new_password.as_deref(), &mut errors);
    let (Some(token), Some(password), true) = (request.token, password, errors.is_empty()) else {
        return Err(AppError::validation(errors));
    };
    if !token.starts_with(PREFIX) {
        return Err(invalid());
    }
    let hash = digest(&token);
    let now = clock::now();
    let Some(reset) = live(sessions.db, &hash, now).await? else {
        return Err(invalid());
    };
    let new_hash = passwords.hash(&password).await?;
    let txn = db::begin_write(sessions.db).await?;
    // Only one request can spend it.
    let spent = password_reset::Entity::update_many()
        .col_expr(password_reset::Column::UsedAt, Expr::value(Some(now)))
        .filter(password_reset::Column::Id.eq(reset.id))
        .filter(password_reset::Column::UsedAt.is_null())
        .filter(password_reset::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await?;
    let changed = user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(new_hash))
        .filter(user::Column::Id.eq(reset.user_id))
        .filter(user::Column::DisabledAt.is_null())
        .exec(&txn)
        .await?;
    if spent.rows_affected != 1 || changed.rows_affected != 1 {
        return Err(invalid());
    }
    // Ending the sessions spends the account's other links too.
    let session = sessions::restart(sessions, &txn, reset.user_id, now).await?;
    txn.commit().await?;
    sessions.auth.forget(reset.user_id);
    guard.succeeded(&session.user.email, address).await;
    tracing::info!(user_id = %reset.user_id, "password reset");
    Ok(session)
}

/// The unused, unexpired reset of `hash`.
async fn live(
    db: &DatabaseConnection,
    hash: &str,
    now: DateTime<Utc>,
) -> AppResult<Option<password_reset::Model>> {
    Ok(password_reset::Entity::find()
        .filter(password_reset::Column::TokenHash.eq(hash))
        .filter(password_reset::Column::UsedAt.is_null())
        .filter(password_reset::Column::ExpiresAt.gt(now))
        .one(db)
        .await?)
}

/// Deletes resets that expired more than a day ago (used ones expire too); answers how
/// many.
pub async fn prune(db: &DatabaseConnection) -> AppResult<u64> {
    let cutoff = clock::now() - chrono::Duration::days(1);
    Ok(password_reset::Entity::delete_many()
        .filter(password_reset::Column::ExpiresAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected)
}
