//! `/auth` routes: thin handlers over `service`.

use axum::{extract::State, http::StatusCode};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AuthUser,
    dto::{AuthResponse, LoginRequest, RegisterRequest, UserResponse},
    service,
};
use crate::{
    error::{AppResult, Problem},
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
    let session = service::register(&state.db, &state.passwords, &state.jwt, body).await?;
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
        &state.db,
        &state.passwords,
        &state.jwt,
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
