//! Start-up and shutdown: connects the backends (the database, and Redis when configured),
//! builds the state, binds the port, serves until told to stop, then drains.
//!
//! `main` and the integration tests start the same [`Application`], so tests exercise
//! exactly what runs in production.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use backon::{ExponentialBuilder, Retryable};
use secrecy::ExposeSecret;
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{self, Authenticator, JwtKeys, PasswordHasher},
    cache::{Cache, MemoryCache, RedisCache},
    config::Config,
    db,
    events::{self, relay},
    idempotency,
    mail::Mailer,
    metrics,
    notifier::Notifier,
    orders::service::Orders,
    payments::worker,
    queue::{JobQueue, MemoryQueue, RedisQueue},
    rate_limit::{
        ApiLimiter, ClientIp, FailureCounter, LoginGuard, MemoryFailureCounter,
        RedisFailureCounter, RequestLimit,
    },
    realtime::Realtime,
    redis_client, router, seed,
    state::{App, AppState},
    webhooks::{dispatch, sender},
};

/// How long start-up keeps trying to reach the database or Redis before giving up.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Retries `connect` with backoff (up to a second between tries) for about [`PATIENCE`],
/// saying each time that `what` is not reachable yet; the last error is returned.
pub async fn patiently<T, E, F, Fut>(what: &str, connect: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(1))
        .with_total_delay(Some(PATIENCE))
        .without_max_times();
    connect
        .retry(backoff)
        .notify(|err: &E, wait: Duration| {
            tracing::warn!(error = %err, retry_in = ?wait, "{what} is not reachable yet; retrying");
        })
        .await
}

/// What lives in Redis with `REDIS_URL`, else in this process.
pub struct Backends {
    pub queue: Arc<dyn JobQueue>,
    pub webhook_queue: Arc<dyn JobQueue>,
    pub refund_queue: Arc<dyn JobQueue>,
    pub image_queue: Arc<dyn JobQueue>,
    pub cache: Arc<dyn Cache>,
    pub failures: Arc<dyn FailureCounter>,
}

impl Backends {
    /// Connects to Redis when configured (waiting for it a while), else builds the
    /// in-process versions.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let prefix = &config.redis_key_prefix;
        Ok(match &config.redis_url {
            Some(url) => {
                let pool = redis_client::connect(url, config.redis_pool_size).await?;
                Self {
                    queue: Arc::new(RedisQueue::new(pool.clone(), prefix, "payments")),
                    webhook_queue: Arc::new(RedisQueue::new(pool.clone(), prefix, "webhooks")),
                    refund_queue: Arc::new(RedisQueue::new(pool.clone(), prefix, "refunds")),
                    image_queue: Arc::new(RedisQueue::new(pool.clone(), prefix, "images")),
                    cache: Arc::new(RedisCache::new(pool.clone(), prefix, config.cache_ttl)),
                    failures: Arc::new(RedisFailureCounter::new(pool, prefix)),
                }
            }
            None => Self {
                queue: Arc::new(MemoryQueue::new()),
                webhook_queue: Arc::new(MemoryQueue::new()),
                refund_queue: Arc::new(MemoryQueue::new()),
                image_queue: Arc::new(MemoryQueue::new()),
                cache: Arc::new(MemoryCache::new(config.cache_ttl)),
                failures: Arc::new(MemoryFailureCounter::default()),
            },
        })
    }
}

/// Connects everything a process needs and builds its state; the Socket.IO server is
/// returned apart, for HTTP processes to serve.
pub async fn build_state(config: Config) -> anyhow::Result<(AppState, Realtime)> {
    // Install the metrics recorder before anything records.
    metrics::handle();
    let db = db::connect(&config).await?;
    let secret = auth::jwt_secret(&config)?;
    let jwt = Arc::new(JwtKeys::new(
        secret.expose_secret().as_bytes(),
        config.jwt_ttl,
    ));
    let cost = config.bcrypt_cost;
    let passwords = tokio::task::spawn_blocking(move || PasswordHasher::new(cost))
        .await
        .context("password hasher set-up failed")??;
    let backends = Backends::connect(&config).await?;
    let live_events = tokio::sync::broadcast::channel(1024).0;
    let auth = Arc::new(Authenticator::new(jwt.clone(), db.clone()));
    let realtime = Realtime::new(auth.clone(), db.clone(), live_events.clone());
    let clients = ClientIp::new(config.trusted_proxies.clone());
    let api_limit = ApiLimiter::new(config.api_rate, &clients);
    let config = Arc::new(config);
    let notifier = Notifier::new(Arc::new(Notify::new()), backends.cache.clone());
    let app = App {
        orders: Orders {
            db: db.clone(),
            queue: backends.queue.clone(),
            notifier: notifier.clone(),
            config: config.clone(),
        },
        notifier,
        resets: RequestLimit::new(
            "password-reset",
            config.mail.reset_per_address,
            config.mail.reset_per_email,
            Duration::from_secs(3600),
            backends.failures.clone(),
        ),
        logins: LoginGuard::new(config.login, backends.failures),
        mailer: Arc::new(Mailer::new(&config.mail)?),
        queue: backends.queue,
        webhook_queue: backends.webhook_queue,
        refund_queue: backends.refund_queue,
        image_queue: backends.image_queue,
        media: crate::media::Media::new(&config.media)?,
        cache: backends.cache,
        jwt,
        auth,
        passwords: Arc::new(passwords),
        api_limit,
        views: Arc::default(),
        live_events,
        clients,
        db,
        config,
    };
    Ok((AppState(Arc::new(app)), realtime))
}

/// A bound, ready-to-run HTTP server (with payment workers unless `WORKERS=0`).
pub struct Application {
    listener: TcpListener,
    state: AppState,
    realtime: Realtime,
    /// Where the relay starts: the log's end before the port was bound.
    log_end: relay::Position,
}

impl Application {
    /// Prepares everything and binds the port (`PORT=0` picks a free one). An empty
    /// embedded database is seeded first, so a newcomer can try the API at once.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let (state, realtime) = build_state(config).await?;
        if !state.config.database.is_postgres() {
            seed::first_run(&state.db, &state.passwords, &state.config, &state.media).await?;
        }
        // Read before serving: every event committed once this instance is reachable is
        // after it, so none slips past the relay while it starts.
        let log_end = relay::Reader::new(state.db.clone()).end().await?;
        let addr = SocketAddr::new(state.config.host, state.config.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (HOST, PORT)"))?;
        Ok(Self {
            listener,
            state,
            realtime,
            log_end,
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

    /// Serves until `shutdown` resolves, then stops accepting, drains in-flight requests
    /// and lets running payment attempts finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let housekeeping = tokio::spawn(purge_idempotency_keys(self.state.clone(), stop.clone()));
        let sessions = tokio::spawn(self.state.auth.clone().listen(stop.clone()));
        let sockets = tokio::spawn(self.realtime.guard_sessions(stop.clone()));
        let views = tokio::spawn(crate::products::views::run(
            self.state.views.clone(),
            self.state.db.clone(),
            stop.clone(),
        ));
        let pruning = self
            .state
            .api_limit
            .clone()
            .map(|limiter| tokio::spawn(limiter.prune_until(stop.clone())));
        let mut sinks: Vec<Arc<dyn relay::Sink>> = vec![
            self.realtime.sink.clone(),
            Arc::new(events::stream::LiveSink::new(
                self.state.live_events.clone(),
            )),
        ];
        let workers = if self.state.config.payments.workers {
            let wake = Arc::new(Notify::new());
            sinks.push(Arc::new(dispatch::Wake(wake.clone())));
            let payments = spawn_workers(worker::Environment::from(&self.state), &stop);
            let webhooks = spawn_webhooks(&self.state, wake, &stop)?;
            Some(async move {
                tokio::join!(payments, webhooks);
            })
        } else {
            None
        };
        let relay = tokio::spawn(relay::run(
            self.state.db.clone(),
            self.log_end,
            self.state.notifier.log(),
            sinks,
            stop.clone(),
        ));
        tracing::info!(address = %self.listener.local_addr()?, "shop is listening");
        let app = self.realtime.serve(router::router(self.state));
        let served = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        stop.cancel();
        let _ = housekeeping.await;
        let _ = sessions.await;
        let _ = sockets.await;
        let _ = views.await;
        if let Some(pruning) = pruning {
            let _ = pruning.await;
        }
        if let Some(workers) = workers {
            workers.await;
        }
        let _ = relay.await;
        served.context("the HTTP server failed")
    }
}

/// The worker's share of a process's state: what payments need, never the HTTP state.
impl From<&AppState> for worker::Environment {
    fn from(state: &AppState) -> Self {
        Self {
            db: state.db.clone(),
            queue: state.queue.clone(),
            refund_queue: state.refund_queue.clone(),
            image_queue: state.image_queue.clone(),
            media: state.media.clone(),
            currency: state.config.currency.clone(),
            notifier: state.notifier.clone(),
            config: state.config.payments.clone(),
        }
    }
}

/// Starts the payment worker, the refund worker and the sweeper; the returned future ends
/// when all have stopped after `stop` is cancelled.
pub fn spawn_workers(
    env: worker::Environment,
    stop: &CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let worker = tokio::spawn(worker::run(env.clone(), stop.clone()));
    let refunds = tokio::spawn(crate::refunds::worker::run(env.clone(), stop.clone()));
    let images = tokio::spawn(crate::images::worker::run(env.clone(), stop.clone()));
    let sweeper = tokio::spawn(worker::run_sweeper(env, stop.clone()));
    async move {
        let _ = tokio::join!(worker, refunds, images, sweeper);
    }
}

/// Starts what turns the log into webhook deliveries and sends them: the dispatcher (woken
/// by `wake`), the sender and its sweeper. The returned future ends when all have stopped
/// after `stop` is cancelled.
pub fn spawn_webhooks(
    state: &AppState,
    wake: Arc<Notify>,
    stop: &CancellationToken,
) -> anyhow::Result<impl Future<Output = ()> + use<>> {
    let sender = Arc::new(
        sender::Sender::new(
            state.db.clone(),
            state.webhook_queue.clone(),
            state.config.webhooks.clone(),
        )
        .context("cannot build the webhook HTTP client")?,
    );
    let dispatcher = tokio::spawn(dispatch::run(
        state.db.clone(),
        state.webhook_queue.clone(),
        wake,
        stop.clone(),
    ));
    let sweeper = tokio::spawn(sender::run_sweeper(
        sender.clone(),
        state.config.payments.sweep_interval,
        stop.clone(),
    ));
    let sending = tokio::spawn(sender::run(sender, stop.clone()));
    Ok(async move {
        let _ = tokio::join!(dispatcher, sweeper, sending);
    })
}

/// Deletes expired idempotency keys, and events and ended webhook deliveries past
/// `EVENT_RETENTION`, once an hour until `stop`.
async fn purge_idempotency_keys(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        match idempotency::purge_expired(&state.db, state.config.idempotency_ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "purged expired idempotency keys"),
            Err(err) => tracing::warn!(error = ?err, "could not purge idempotency keys"),
        }
        match events::prune(&state.db, state.config.event_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned events older than EVENT_RETENTION"),
            Err(err) => tracing::warn!(error = ?err, "could not prune the event log"),
        }
        // Expired refresh tokens are kept a day, so a late reuse is still told apart.
        match crate::auth::sessions::prune(&state.db, Duration::from_secs(86_400)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned expired refresh tokens"),
            Err(err) => tracing::warn!(error = ?err, "could not prune refresh tokens"),
        }
        match crate::auth::reset::prune(&state.db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned used and expired password resets"),
            Err(err) => tracing::warn!(error = ?err, "could not prune password resets"),
        }
        match crate::webhooks::prune(&state.db, state.config.event_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                "pruned ended webhook deliveries older than EVENT_RETENTION"
            ),
            Err(err) => tracing::warn!(error = ?err, "could not prune the delivery log"),
        }
    }
}
