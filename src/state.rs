//! The shared state of a process: one [`App`] behind an `Arc`, handed to every handler as
//! [`AppState`]. Extractors take only the parts they need through `FromRef`.

use std::{ops::Deref, sync::Arc};

use axum::extract::FromRef;
use sea_orm::DatabaseConnection;

use crate::{
    auth::{Authenticator, JwtKeys, PasswordHasher},
    cache::Cache,
    config::Config,
    mail::Mailer,
    notifier::Notifier,
    orders::service::Orders,
    queue::JobQueue,
    rate_limit::{ApiLimiter, ClientIp, LoginGuard, RequestLimit},
};

/// Everything the HTTP side of a process holds.
pub struct App {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub jwt: Arc<JwtKeys>,
    /// Checks access tokens against their account's standing.
    pub auth: Arc<Authenticator>,
    pub passwords: Arc<PasswordHasher>,
    /// The retry queue: Redis with `REDIS_URL`, else in this process.
    pub queue: Arc<dyn JobQueue>,
    /// The webhook delivery queue, on the same backend as `queue`.
    pub webhook_queue: Arc<dyn JobQueue>,
    /// The refunds' queue.
    pub refund_queue: Arc<dyn JobQueue>,
    /// The product images' queue.
    pub image_queue: Arc<dyn JobQueue>,
    /// Where media files live.
    pub media: crate::media::Media,
    /// Tells listeners and the catalog cache what committed.
    pub notifier: Notifier,
    /// The order rules, with what they use.
    pub orders: Orders,
    /// The catalog read cache: Redis with `REDIS_URL`, else in this process.
    pub cache: Arc<dyn Cache>,
    /// Failed logins: Redis with `REDIS_URL`, else in this process.
    pub logins: LoginGuard,
    /// Password reset requests, counted like failed logins.
    pub resets: RequestLimit,
    /// Outgoing mail.
    pub mailer: Arc<Mailer>,
    /// The events this process's relay reads, for its open `GET /events/stream`s.
    pub live_events: tokio::sync::broadcast::Sender<Arc<crate::events::Event>>,
    /// Who the client is (the peer, or behind trusted proxies the forwarded address).
    pub clients: ClientIp,
    /// The per-address limit on the API; `None` when off.
    pub api_limit: Option<ApiLimiter>,
    /// Product views counted and not yet written.
    pub views: Arc<crate::products::views::ViewCounter>,
}

/// What handlers take: the [`App`], cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl FromRef<AppState> for ClientIp {
    fn from_ref(state: &AppState) -> Self {
        state.clients.clone()
    }
}
