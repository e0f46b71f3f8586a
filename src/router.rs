//! The HTTP surface: every route, the docs and the middleware stack. The only module that
//! imports the domain routers; nothing imports it back but start-up.

use std::time::Duration;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{Next, from_fn, from_fn_with_state},
    response::Response,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::{Level, Span};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    auth, categories,
    error::{method_not_allowed, panic_response, problem_response, route_not_found},
    events, health, images, metrics,
    openapi::ApiDoc,
    orders, payments, products, refunds,
    state::AppState,
    users, webhooks,
};

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Every route, the docs and the middleware stack.
pub fn router(state: AppState) -> Router {
    let api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes::router())
        .merge(products::routes::router())
        .merge(categories::routes::router())
        .merge(orders::routes::router())
        .merge(payments::routes::router())
        .merge(events::routes::router())
        .merge(webhooks::routes::router())
        .merge(refunds::routes::router())
        .merge(users::routes::router())
        .merge(images::routes::router(state.config.media.image_max_bytes));
    let api = match &state.api_limit {
        Some(limiter) => limiter.apply(api),
        None => api,
    };
    // Health, readiness and metrics are never rate limited.
    let (routes, mut spec) = api.merge(health::router()).split_for_parts();
    crate::openapi::finish(&mut spec);
    let routes = routes
        // JSON answers never need to load anything.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ));
    let app = routes
        .merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(state.config.request_timeout, deadline))
        .layer(from_fn(metrics::track))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    let app = match cors(&state.config.cors_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.with_state(state)
}

/// The span of a request: every log line inside carries its id. Only the path is
/// recorded: a query may hold a token (`/socket.io/?token=`).
fn request_span(request: &axum::http::Request<axum::body::Body>) -> Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id,
    )
}

/// Answers 503 `request_timeout` when a request takes longer than `REQUEST_TIMEOUT`.
async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            format!("The request took longer than {} s.", limit.as_secs_f64()),
            None,
            None,
        ),
    }
}

/// CORS for the configured origins (`*`: any), or none.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                HeaderName::from_static("idempotent-replayed"),
                HeaderName::from_static("ratelimit-limit"),
                HeaderName::from_static("ratelimit-remaining"),
                header::RETRY_AFTER,
                HeaderName::from_static("x-request-id"),
            ])
            .max_age(Duration::from_secs(3600)),
    )
}
