//! Account rules: registration, login and lookup. Knows nothing about HTTP.

use std::net::IpAddr;

use axum::http::StatusCode;
use entity::user;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set, SqlErr,
    sea_query::Expr,
};
use uuid::Uuid;

use super::{
    PasswordHasher, Role,
    dto::{AuthResponse, ChangePasswordRequest, LoginRequest, RegisterRequest, UserResponse},
    sessions::{self, Sessions},
};
use crate::{
    clock, db,
    domain::{Email, Password, check_text},
    error::{AppError, AppResult, FieldErrors},
    rate_limit::LoginGuard,
};

/// Creates a `CLIENT` account and signs it in.
#[tracing::instrument(skip_all)]
pub async fn register(
    sessions: &Sessions<'_>,
    passwords: &PasswordHasher,
    request: RegisterRequest,
) -> AppResult<AuthResponse> {
    let mut errors = FieldErrors::new();
    let email = match request.email.as_deref().map(Email::parse) {
        Some(Ok(email)) => Some(email),
        Some(Err(msg)) => {
            errors.insert("email".into(), vec![msg]);
            None
        }
        None => {
            errors.insert("email".into(), vec!["is required".into()]);
            None
        }
    };
    let password = new_password("password", request.password.as_deref(), &mut errors);
    // Control characters are refused as sent, before trimming (which would drop some).
    if let Some(Err(msg)) = request.name.as_deref().map(|n| check_text(n, false)) {
        errors.insert("name".into(), vec![msg]);
    }
    let name = request
        .name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        errors.insert("name".into(), vec!["must be at most 200 characters".into()]);
    }
    let (Some(email), Some(password)) = (email, password) else {
        return Err(AppError::validation(errors));
    };
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }

    let user = create_user(
        sessions.db,
        passwords,
        &email,
        name,
        &password,
        Role::Client,
    )
    .await?;
    sessions::open(sessions, user).await
}

/// Inserts an account; a taken email is a 409 `email_taken`.
pub async fn create_user(
    db: &DatabaseConnection,
    passwords: &PasswordHasher,
    email: &Email,
    name: Option<String>,
    password: &Password,
    role: Role,
) -> AppResult<user::Model> {
    let password_hash = passwords.hash(password).await?;
    let now = clock::now();
    let model = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(email.as_str().to_owned()),
        name: Set(name),
        password_hash: Set(password_hash),
        role: Set(role),
        session_epoch: Set(0),
        disabled_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    model.insert(db).await.map_err(|err| {
        if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            AppError::conflict("email_taken", "An account with this email already exists.")
        } else {
            err.into()
        }
    })
}

/// Signs in with email and password. Unknown emails and wrong passwords get the same
/// answer after the same amount of work; only failures count towards the login limits.
#[tracing::instrument(skip_all, fields(%address))]
pub async fn login(
    sessions: &Sessions<'_>,
    passwords: &PasswordHasher,
    guard: &LoginGuard,
    address: IpAddr,
    request: LoginRequest,
) -> AppResult<AuthResponse> {
    let mut errors = FieldErrors::new();
    if request.email.is_none() {
        errors.insert("email".into(), vec!["is required".into()]);
    }
    if request.password.is_none() {
        errors.insert("password".into(), vec!["is required".into()]);
    }
    let (Some(raw_email), Some(password)) = (request.email, request.password) else {
        return Err(AppError::validation(errors));
    };
    let email = Email::parse(&raw_email).ok();
    // Failures are counted per account, known or not, so the limits tell nothing either.
    let account = email.as_ref().map_or_else(
        || raw_email.trim().to_lowercase(),
        |e| e.as_str().to_owned(),
    );
    guard.check(&account, address).await?;
    let user = match &email {
        Some(email) => {
            user::Entity::find()
                .filter(user::Column::Email.eq(email.as_str()))
                .one(sessions.db)
                .await?
        }
        None => None,
    };
    let verified = passwords
        .verify(&password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    match user {
        // A disabled account gets the answer of a wrong password.
        Some(user) if verified && user.disabled_at.is_none() => {
            guard.succeeded(&account, address).await;
            sessions::open(sessions, user).await
        }
        _ => {
            let refusal = AppError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid email or password.",
            );
            Err(guard.failed(&account, address, refusal).await)
        }
    }
}

/// A password field of a request: 422 when missing or too weak.
pub(crate) fn new_password(
    field: &str,
    value: Option<&str>,
    errors: &mut FieldErrors,
) -> Option<Password> {
    match value.map(Password::parse) {
        Some(Ok(password)) => Some(password),
        Some(Err(msg)) => {
            errors.insert(field.into(), vec![msg]);
            None
        }
        None => {
            errors.insert(field.into(), vec!["is required".into()]);
            None
        }
    }
}

/// Changes the caller's password after checking the current one, ends every other session
/// and opens a new one. A wrong current password counts as a failed sign-in.
#[tracing::instrument(skip_all, fields(%address))]
pub async fn change_password(
    sessions: &Sessions<'_>,
    passwords: &PasswordHasher,
    guard: &LoginGuard,
    address: IpAddr,
    caller: Uuid,
    request: ChangePasswordRequest,
) -> AppResult<AuthResponse> {
    let mut errors = FieldErrors::new();
    if request.current_password.is_none() {
        errors.insert("currentPassword".into(), vec!["is required".into()]);
    }
    let password = new_password("newPassword", request.new_password.as_deref(), &mut errors);
    let (Some(current), Some(password)) = (request.current_password, password) else {
        return Err(AppError::validation(errors));
    };
    let Some(user) = user::Entity::find_by_id(caller).one(sessions.db).await? else {
        return Err(AppError::unauthorized(
            "The account of this token no longer exists.",
        ));
    };
    guard.check(&user.email, address).await?;
    if !passwords
        .verify(&current, Some(&user.password_hash))
        .await?
    {
        let refusal = AppError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "The current password is wrong.",
        );
        return Err(guard.failed(&user.email, address, refusal).await);
    }
    guard.succeeded(&user.email, address).await;
    set_password(sessions, passwords, user.id, &password).await
}

/// Writes `user`'s new password, ends every session and opens a new one.
pub async fn set_password(
    sessions: &Sessions<'_>,
    passwords: &PasswordHasher,
    user: Uuid,
    password: &Password,
) -> AppResult<AuthResponse> {
    let hash = passwords.hash(password).await?;
    let now = clock::now();
    let txn = db::begin_write(sessions.db).await?;
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(hash))
        .filter(user::Column::Id.eq(user))
        .exec(&txn)
        .await?;
    let session = sessions::restart(sessions, &txn, user, now).await?;
    txn.commit().await?;
    sessions.auth.forget(user);
    Ok(session)
}

/// The caller's account; a token whose account is gone is a 401.
pub async fn me(db: &DatabaseConnection, user_id: Uuid) -> AppResult<UserResponse> {
    user::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .map(UserResponse::from)
        .ok_or_else(|| AppError::unauthorized("The account of this token no longer exists."))
}
