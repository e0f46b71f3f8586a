//! The application: shared state, router and middleware, start-up and graceful shutdown.
//!
//! `main` and the integration tests start the same [`Application`], so tests exercise
//! exactly what runs in production.

use std::{future::Future, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{Next, from_fn, from_fn_with_state},
    response::Response,
};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use tokio::net::TcpListener;
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

use tokio_util::sync::CancellationToken;

use crate::{
    auth::{self, JwtKeys, PasswordHasher},
    cache::{Cache, MemoryCache, RedisCache},
    config::{Config, DatabaseConfig, Secret},
    db,
    error::{method_not_allowed, panic_response, problem_response, route_not_found},
    health, idempotency, metrics,
    openapi::ApiDoc,
    orders,
    payments::{self, worker},
    products,
    queue::{JobQueue, MemoryQueue, RedisQueue},
    rate_limit::{self, ClientIp, LoginAttempts, MemoryLoginAttempts, RedisLoginAttempts},
    realtime::{EventBus, Realtime},
    redis_client, seed,
};

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What every handler, worker and service can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub jwt: Arc<JwtKeys>,
    pub passwords: Arc<PasswordHasher>,
    /// The payment queue: Redis with `REDIS_URL`, else in this process.
    pub queue: Arc<dyn JobQueue>,
    /// Where status changes are published (Socket.IO).
    pub events: Arc<dyn EventBus>,
    /// The catalog read cache: Redis with `REDIS_URL`, else in this process.
    pub cache: Arc<dyn Cache>,
    /// Failed logins per account: Redis with `REDIS_URL`, else in this process.
    pub logins: Arc<dyn LoginAttempts>,
}

impl AppState {
    /// Connects to the database (migrating it) and, when configured, Redis; prepares the
    /// keys, the queue and the Socket.IO server (returned apart, for HTTP processes to serve).
    pub async fn new(config: Config) -> anyhow::Result<(Self, Realtime)> {
        // Install the metrics recorder before anything records.
        metrics::handle();
        let db = db::connect(&config).await?;
        let secret = jwt_secret(&config)?;
        let jwt = Arc::new(JwtKeys::new(secret.expose().as_bytes(), config.jwt_ttl));
        let cost = config.bcrypt_cost;
        let passwords = tokio::task::spawn_blocking(move || PasswordHasher::new(cost))
            .await
            .context("password hasher set-up failed")??;
        let prefix = &config.redis_key_prefix;
        let Backends {
            queue,
            cache,
            logins,
            realtime,
        } = match &config.redis_url {
            Some(url) => {
                let pool = redis_client::connect(url, config.redis_pool_size).await?;
                let realtime = Realtime::redis(jwt.clone(), url, prefix)
                    .await
                    .context("cannot start the Socket.IO Redis adapter")?;
                Backends {
                    queue: Arc::new(RedisQueue::new(pool.clone(), prefix, "payments")),
                    cache: Arc::new(RedisCache::new(pool.clone(), prefix, config.cache_ttl)),
                    logins: Arc::new(RedisLoginAttempts::new(pool, prefix, config.lockout)),
                    realtime,
                }
            }
            None => Backends {
                queue: Arc::new(MemoryQueue::new()),
                cache: Arc::new(MemoryCache::new(config.cache_ttl)),
                logins: Arc::new(MemoryLoginAttempts::new(config.lockout)),
                realtime: Realtime::local(jwt.clone()),
            },
        };
        let state = Self {
            db,
            config: Arc::new(config),
            jwt,
            passwords: Arc::new(passwords),
            queue,
            events: realtime.events.clone(),
            cache,
            logins,
        };
        Ok((state, realtime))
    }
}

/// What lives in Redis with `REDIS_URL`, else in this process.
struct Backends {
    queue: Arc<dyn JobQueue>,
    cache: Arc<dyn Cache>,
    logins: Arc<dyn LoginAttempts>,
    realtime: Realtime,
}

/// A bound, ready-to-run HTTP server (with payment workers unless `WORKERS=0`).
pub struct Application {
    listener: TcpListener,
    state: AppState,
    realtime: Realtime,
}

impl Application {
    /// Prepares everything and binds the port (`PORT=0` picks a free one).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let (state, realtime) = AppState::new(config).await?;
        seed_first_run(&state).await?;
        let addr = SocketAddr::new(state.config.host, state.config.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (HOST, PORT)"))?;
        Ok(Self {
            listener,
            state,
            realtime,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let janitor = tokio::spawn(purge_idempotency_keys(self.state.clone()));
        let stop_workers = CancellationToken::new();
        let workers = self
            .state
            .config
            .payments
            .workers
            .then(|| spawn_workers(&self.state, &stop_workers));
        tracing::info!(address = %self.listener.local_addr()?, "shop is listening");
        let app = self.realtime.serve(router(self.state));
        let served = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        janitor.abort();
        stop_workers.cancel();
        if let Some(workers) = workers {
            workers.await;
        }
        served.context("the HTTP server failed")
    }
}

/// Starts the payment worker and the sweeper; the returned future ends when both have
/// stopped after `stop` is cancelled.
pub fn spawn_workers(
    state: &AppState,
    stop: &CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let worker = tokio::spawn(worker::run(state.clone(), stop.clone()));
    let sweeper = tokio::spawn(worker::run_sweeper(state.clone(), stop.clone()));
    async move {
        let _ = tokio::join!(worker, sweeper);
    }
}

/// Every route, the docs and the middleware stack.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let clients = ClientIp::new(config.trusted_proxies.clone());
    let api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes::router(config.login_rate, &clients))
        .merge(products::routes::router())
        .merge(orders::routes::router())
        .merge(payments::routes::router());
    // Health, readiness and metrics are never rate limited.
    let (routes, spec) = rate_limit::limit(api, config.api_rate, &clients)
        .merge(health::router())
        .split_for_parts();
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
        .layer(from_fn_with_state(config.request_timeout, deadline))
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
    let app = match cors(&config.cors_origins) {
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

/// The configured secret, or on the embedded default one kept next to the database
/// (generated on first start), so tokens survive restarts.
fn jwt_secret(config: &Config) -> anyhow::Result<Secret> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.clone());
    }
    let DatabaseConfig::Sqlite { path } = &config.database else {
        anyhow::bail!("JWT_SECRET is required with PostgreSQL");
    };
    let file = path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("jwt_secret");
    if let Ok(existing) = std::fs::read_to_string(&file)
        && existing.trim().len() >= 32
    {
        return Ok(Secret::new(existing.trim()));
    }
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&file, &secret).with_context(|| {
        format!(
            "cannot write the generated JWT secret to {}",
            file.display()
        )
    })?;
    tracing::warn!(
        file = %file.display(),
        "JWT_SECRET is not set: generated one and saved it next to the database; set JWT_SECRET in production"
    );
    Ok(Secret::new(secret))
}

fn write_private(file: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(file)?.write_all(contents.as_bytes())
}

/// On an empty embedded database, seeds the admin and a catalog so a newcomer can try the
/// API at once.
async fn seed_first_run(state: &AppState) -> anyhow::Result<()> {
    if state.config.database.is_postgres()
        || entity::user::Entity::find().count(&state.db).await? > 0
    {
        return Ok(());
    }
    let config = &state.config;
    let report = seed::run(
        state,
        &config.admin_email,
        config.admin_password.expose(),
        u64::from(config.seed_products),
    )
    .await?;
    if config.admin_password.expose() == crate::config::DEFAULT_ADMIN_PASSWORD {
        // The documented default, so nothing secret: show it so a newcomer can sign in.
        tracing::info!(
            admin_email = %config.admin_email,
            admin_password = crate::config::DEFAULT_ADMIN_PASSWORD,
            products = report.products_created,
            "empty database: seeded an admin account and a catalog; set ADMIN_PASSWORD for anything but a trial"
        );
    } else {
        tracing::info!(
            admin_email = %config.admin_email,
            products = report.products_created,
            "empty database: seeded an admin account (password from ADMIN_PASSWORD) and a catalog"
        );
    }
    Ok(())
}

/// Deletes expired idempotency keys once an hour.
async fn purge_idempotency_keys(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match idempotency::purge_expired(&state.db, state.config.idempotency_ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "purged expired idempotency keys"),
            Err(err) => tracing::warn!(error = ?err, "could not purge idempotency keys"),
        }
    }
}
