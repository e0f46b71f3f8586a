//! `/auth` routes: thin handlers over `service`.

use axum::{extract::State, http::StatusCode};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AuthUser,
    dto::{AuthResponse, LoginRequest, RegisterRequest, UserResponse},
    service,
};
use crate::{
    app::AppState,
    error::{AppResult, Problem},
    extract::Json,
    rate_limit::{self, ClientIp, Rate},
};

/// The `/auth` routes; `POST /auth/login` limited to `login_rate` per client address.
pub fn router(login_rate: Option<Rate>, clients: &ClientIp) -> OpenApiRouter<AppState> {
    let login = rate_limit::limit(
        OpenApiRouter::new().routes(routes!(login)),
        login_rate,
        clients,
    );
    OpenApiRouter::new()
        .routes(routes!(register))
        .merge(login)
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
    Ok((
        StatusCode::CREATED,
        Json(service::register(&state, body).await?),
    ))
}

/// Sign in. Rate limited per client address.
#[utoipa::path(post, path = "/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = AuthResponse),
        (status = 401, description = "Unknown email or wrong password (`invalid_credentials`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address (`rate_limited`) or on this account (`account_locked`); see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn login(
    State(state): State<AppState>,
    Json(body): Json<LoginRequest>,
) -> AppResult<Json<AuthResponse>> {
    Ok(Json(service::login(&state, body).await?))
}

/// The signed-in account.
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
async fn me(State(state): State<AppState>, user: AuthUser) -> AppResult<Json<UserResponse>> {
    Ok(Json(service::me(&state, user.id).await?))
}
