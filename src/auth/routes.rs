//! `/auth` routes: thin handlers over `service`.

use axum::{extract::State, http::StatusCode};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AuthUser,
    dto::{
        AuthResponse, ChangePasswordRequest, LoginRequest, PasswordResetConfirm,
        PasswordResetRequest, RefreshRequest, RegisterRequest, UserResponse,
    },
    reset, service,
    sessions::{self, Sessions},
};
use crate::{
    error::{AppError, AppResult, Problem},
    extract::Json,
    rate_limit::ClientAddress,
    state::AppState,
};

/// The `/auth` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(me))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(change_password))
        .routes(routes!(password_reset))
        .routes(routes!(password_reset_confirm))
}

/// Create a `CLIENT` account and sign it in.
#[utoipa::path(post, path = "/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, body = AuthResponse),
        (status = 409, description = "Email taken (`email_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad email or weak password", body = Problem, content_type = "application/problem+json"),
    ))]
async fn register(
    State(state): State<AppState>,
    Json(body): Json<RegisterRequest>,
) -> AppResult<(StatusCode, Json<AuthResponse>)> {
    let session = service::register(&sessions(&state), &state.passwords, body).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// Sign in. Failed attempts are limited per account and address, per address and per
/// account; correct sign-ins never count.
#[utoipa::path(post, path = "/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = AuthResponse),
        (status = 401, description = "Unknown email or wrong password (`invalid_credentials`); `RateLimit-Remaining` says how many failures are left",
            body = Problem, content_type = "application/problem+json",
            headers(("RateLimit-Limit" = u32, description = "Failures allowed in the window"), ("RateLimit-Remaining" = u32, description = "Failures left"))),
        (status = 429, description = "Too many failed sign-ins from this address (`rate_limited`) or on this account (`account_locked`); see `Retry-After`",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until a sign-in may be tried again"), ("RateLimit-Limit" = u32), ("RateLimit-Remaining" = u32))),
    ))]
async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    Json(body): Json<LoginRequest>,
) -> AppResult<Json<AuthResponse>> {
    let session = service::login(
        &sessions(&state),
        &state.passwords,
        &state.logins,
        address,
        body,
    )
    .await?;
    Ok(Json(session))
}

/// Sessions, with what they use from the state.
fn sessions(state: &AppState) -> Sessions<'_> {
    Sessions {
        db: &state.db,
        jwt: &state.jwt,
        auth: &state.auth,
        ttl: state.config.refresh_ttl,
    }
}

/// The refresh token of a request body; 422 when it is missing or longer than any token.
fn refresh_token(body: RefreshRequest) -> AppResult<String> {
    match body.refresh_token {
        None => Err(AppError::invalid_field("refreshToken", "is required")),
        Some(token) if token.chars().count() > 200 => Err(AppError::invalid_field(
            "refreshToken",
            "must be at most 200 characters",
        )),
        Some(token) => Ok(token),
    }
}

/// Exchange a refresh token for new tokens. The token is spent; a spent token used again
/// revokes every session of its chain.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, body = AuthResponse),
        (status = 401, description = "`invalid_refresh_token`: unknown, expired, spent or revoked", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`refreshToken` missing", body = Problem, content_type = "application/problem+json"),
    ))]
async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> AppResult<Json<AuthResponse>> {
    let token = refresh_token(body)?;
    Ok(Json(sessions::refresh(&sessions(&state), &token).await?))
}

/// End this session: the refresh token (and every token its sign-in led to) no longer
/// works. The access token runs out at its expiry.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    security(("bearer" = [])),
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`refreshToken` missing", body = Problem, content_type = "application/problem+json"),
    ))]
async fn logout(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<RefreshRequest>,
) -> AppResult<StatusCode> {
    let token = refresh_token(body)?;
    sessions::close(&state.db, user.id, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// End every session of the caller: every access and refresh token issued before now is
/// refused, on every instance, from the next request on.
#[utoipa::path(post, path = "/auth/logout-all", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out everywhere"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
async fn logout_all(State(state): State<AppState>, user: AuthUser) -> AppResult<StatusCode> {
    sessions::close_all(&sessions(&state), user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the caller's password. Every other session ends; the answer is a new one. A
/// wrong current password counts as a failed sign-in.
#[utoipa::path(post, path = "/auth/change-password", tag = "auth",
    security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 200, body = AuthResponse),
        (status = 401, description = "No valid token, or a wrong current password (`invalid_credentials`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field missing, or a weak new password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed sign-ins (`rate_limited`, `account_locked`); see `Retry-After`", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until it may be tried again"))),
    ))]
async fn change_password(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    user: AuthUser,
    Json(body): Json<ChangePasswordRequest>,
) -> AppResult<Json<AuthResponse>> {
    let session = service::change_password(
        &sessions(&state),
        &state.passwords,
        &state.logins,
        address,
        user.id,
        body,
    )
    .await?;
    Ok(Json(session))
}

/// Ask for a password reset link. The answer is the same, at once, for known and unknown
/// emails; a known, enabled account is mailed a one-time link.
#[utoipa::path(post, path = "/auth/password-reset", tag = "auth",
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "Accepted: if the account exists, a link is on its way", body = Object, example = json!({})),
        (status = 422, description = "`email` missing or not an email", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this address or for this email (`rate_limited`); see `Retry-After`", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until it may be asked again"))),
    ))]
async fn password_reset(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    Json(body): Json<PasswordResetRequest>,
) -> AppResult<(StatusCode, Json<serde_json::Value>)> {
    reset::request(&state, address, body.email).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({}))))
}

/// Set a new password with the token of a reset link. Every session of the account ends;
/// the answer is a new one.
#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "auth",
    request_body = PasswordResetConfirm,
    responses(
        (status = 200, body = AuthResponse),
        (status = 400, description = "`invalid_reset_token`: unknown, used or expired", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field missing, or a weak new password", body = Problem, content_type = "application/problem+json"),
    ))]
async fn password_reset_confirm(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    Json(body): Json<PasswordResetConfirm>,
) -> AppResult<Json<AuthResponse>> {
    let session = reset::confirm(
        &sessions(&state),
        &state.passwords,
        &state.logins,
        address,
        body,
    )
    .await?;
    Ok(Json(session))
}

/// The signed-in account.
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserResponse),
    ))]
async fn me(State(state): State<AppState>, user: AuthUser) -> AppResult<Json<UserResponse>> {
    Ok(Json(service::me(&state.db, user.id).await?))
}
