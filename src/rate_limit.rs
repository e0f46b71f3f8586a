//! Rate limits: per client address (tower_governor) on the whole API and, tighter, on
//! `POST /auth/login`; and per account, a lockout after repeated failed logins, kept in
//! Redis when configured so guesses cannot be spread over instances or addresses.
//!
//! The client address is the peer's, unless the peer is a trusted proxy
//! (`TRUSTED_PROXIES`): then it is the right-most `X-Forwarded-For` entry that is not one.
//! Refusals are problem+json 429 with `Retry-After`; answers carry `RateLimit-Limit` and
//! `RateLimit-Remaining`.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode},
};
use fred::{clients::Pool, interfaces::KeysInterface, types::scripts::Script};
use ipnet::IpNet;
use tower_governor::{
    GovernorError, GovernorLayer, governor::GovernorConfigBuilder, key_extractor::KeyExtractor,
};
use utoipa_axum::router::OpenApiRouter;

use crate::error::problem_response;

/// A request rate: `per_period` requests replenished over `period`, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// One request is replenished every `interval`.
    pub interval: Duration,
    pub burst: u32,
}

/// Who the client is: the peer address, or behind trusted proxies the forwarded one.
#[derive(Clone, Debug)]
pub struct ClientIp {
    trusted: Arc<[IpNet]>,
}

impl ClientIp {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self {
            trusted: trusted.into(),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request whose peer is `peer`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !self.is_trusted(*ip))
            .unwrap_or(peer)
    }
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<Self::Key, GovernorError> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or(GovernorError::UnableToExtractKey)?;
        Ok(self.resolve(peer, req.headers()))
    }
}

/// Limits every route of `router` to `rate` per client address. `None` leaves it unlimited.
pub fn limit<S: Clone + Send + Sync + 'static>(
    router: OpenApiRouter<S>,
    rate: Option<Rate>,
    clients: &ClientIp,
) -> OpenApiRouter<S> {
    let Some(rate) = rate else {
        return router;
    };
    let Some(config) = GovernorConfigBuilder::default()
        .key_extractor(clients.clone())
        .period(rate.interval)
        .burst_size(rate.burst.max(1))
        .use_headers()
        .finish()
    else {
        return router;
    };
    let config = Arc::new(config);
    // Forget addresses that have been quiet, so the table does not grow for ever.
    let limiter = config.limiter().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    });
    let layer = GovernorLayer::new(config).error_handler(too_many_requests);
    router
        .layer(layer)
        .layer(axum::middleware::map_response(standard_headers))
}

fn too_many_requests(error: GovernorError) -> Response<Body> {
    match error {
        GovernorError::TooManyRequests { wait_time, headers } => {
            let wait = wait_time.max(1);
            let mut response = problem_response(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("Too many requests; retry in {wait} s."),
                None,
                Some(wait),
            );
            if let Some(headers) = headers {
                copy_limit_headers(&headers, response.headers_mut());
            }
            response
                .headers_mut()
                .insert(RATELIMIT_REMAINING, HeaderValue::from(0));
            response
        }
        GovernorError::UnableToExtractKey => problem_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "An unexpected error occurred.".to_owned(),
            None,
            None,
        ),
        GovernorError::Other { code, msg, .. } => problem_response(
            code,
            "rate_limited",
            msg.unwrap_or_else(|| "Request refused.".to_owned()),
            None,
            None,
        ),
    }
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");

fn copy_limit_headers(from: &HeaderMap, to: &mut HeaderMap) {
    if let Some(v) = from.get("x-ratelimit-limit") {
        to.insert(RATELIMIT_LIMIT, v.clone());
    }
    if let Some(v) = from.get("x-ratelimit-remaining") {
        to.insert(RATELIMIT_REMAINING, v.clone());
    }
}

/// Renames governor's `x-ratelimit-*` headers to the IETF `RateLimit-*` names.
async fn standard_headers(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    let limit = headers.remove("x-ratelimit-limit");
    let remaining = headers.remove("x-ratelimit-remaining");
    headers.remove("x-ratelimit-after");
    headers.remove("x-ratelimit-whitelisted");
    // With nested limits the innermost (tightest) answers first and is kept.
    if let Some(v) = limit {
        headers.entry(RATELIMIT_LIMIT).or_insert(v);
    }
    if let Some(v) = remaining {
        headers.entry(RATELIMIT_REMAINING).or_insert(v);
    }
    response
}

/// Failed-login accounting per account.
#[async_trait]
pub trait LoginAttempts: Send + Sync {
    /// How long the account stays locked, if it is.
    async fn locked_for(&self, account: &str) -> Option<Duration>;
    /// Counts a failure; returns the lock duration when this failure locked the account.
    async fn failed(&self, account: &str) -> Option<Duration>;
    /// A successful login clears the count.
    async fn succeeded(&self, account: &str);
}

/// The lockout policy: `threshold` failures within `window` lock the account for `window`.
#[derive(Clone, Copy, Debug)]
pub struct Lockout {
    pub threshold: u32,
    pub window: Duration,
}

/// Failed logins counted in this process (the embedded default).
pub struct MemoryLoginAttempts {
    policy: Lockout,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl MemoryLoginAttempts {
    pub fn new(policy: Lockout) -> Self {
        Self {
            policy,
            failures: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl LoginAttempts for MemoryLoginAttempts {
    async fn locked_for(&self, account: &str) -> Option<Duration> {
        let failures = self.lock();
        let (count, since) = failures.get(account)?;
        let left = self.policy.window.checked_sub(since.elapsed())?;
        (*count >= self.policy.threshold).then_some(left)
    }

    async fn failed(&self, account: &str) -> Option<Duration> {
        let mut failures = self.lock();
        let now = Instant::now();
        failures.retain(|_, (_, since)| since.elapsed() < self.policy.window);
        let entry = failures.entry(account.to_owned()).or_insert((0, now));
        entry.0 += 1;
        if entry.0 == self.policy.threshold {
            // The lock lasts the whole window from here.
            entry.1 = now;
        }
        (entry.0 >= self.policy.threshold)
            .then(|| self.policy.window.saturating_sub(entry.1.elapsed()))
    }

    async fn succeeded(&self, account: &str) {
        self.lock().remove(account);
    }
}

// The window opens with the first failure; reaching the threshold re-arms it, so a lock
// always lasts the whole window.
const COUNT_FAILURE: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 or n == tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"#;

/// Failed logins counted in Redis, shared by every instance.
pub struct RedisLoginAttempts {
    pool: Pool,
    prefix: String,
    policy: Lockout,
    script: Script,
}

impl RedisLoginAttempts {
    pub fn new(pool: Pool, prefix: &str, policy: Lockout) -> Self {
        Self {
            pool,
            prefix: format!("{prefix}:login-failures:"),
            policy,
            script: Script::from_lua(COUNT_FAILURE),
        }
    }

    fn key(&self, account: &str) -> String {
        format!("{}{account}", self.prefix)
    }
}

#[async_trait]
impl LoginAttempts for RedisLoginAttempts {
    async fn locked_for(&self, account: &str) -> Option<Duration> {
        let client = self.pool.next();
        let key = self.key(account);
        let count: Option<u32> = client.get(&key).await.ok()?;
        if count? < self.policy.threshold {
            return None;
        }
        let ttl: i64 = client.pttl(&key).await.ok()?;
        (ttl > 0).then(|| Duration::from_millis(ttl as u64))
    }

    async fn failed(&self, account: &str) -> Option<Duration> {
        let window = self.policy.window.as_millis().to_string();
        let result: Result<(u32, i64), _> = self
            .script
            .evalsha_with_reload(
                self.pool.next(),
                vec![self.key(account)],
                vec![window, self.policy.threshold.to_string()],
            )
            .await;
        match result {
            Ok((count, ttl)) if count >= self.policy.threshold && ttl > 0 => {
                Some(Duration::from_millis(ttl as u64))
            }
            Ok(_) => None,
            Err(err) => {
                // Fail open: a Redis outage must not lock everyone out; the per-address
                // limit still applies.
                tracing::warn!(error = %err, "could not count a failed login");
                None
            }
        }
    }

    async fn succeeded(&self, account: &str) {
        let _: Result<i64, _> = self.pool.next().del(self.key(account)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_pick_their_address() {
        let clients = ClientIp::new(vec![]);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        assert_eq!(clients.resolve(ip("9.9.9.9"), &headers), ip("9.9.9.9"));
    }

    #[test]
    fn trusted_proxies_pass_on_the_client_address() {
        let clients = ClientIp::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ]);
        let mut headers = HeaderMap::new();
        // A spoofed left-most entry is ignored: the right-most untrusted one counts.
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 5.5.5.5, 10.1.2.3"),
        );
        assert_eq!(clients.resolve(ip("127.0.0.1"), &headers), ip("5.5.5.5"));
        assert_eq!(
            clients.resolve(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
    }

    #[tokio::test]
    async fn memory_lockout_locks_after_the_threshold_and_resets_on_success() {
        let attempts = MemoryLoginAttempts::new(Lockout {
            threshold: 3,
            window: Duration::from_secs(60),
        });
        assert_eq!(attempts.failed("a@x.io").await, None);
        assert_eq!(attempts.failed("a@x.io").await, None);
        assert!(attempts.locked_for("a@x.io").await.is_none());
        assert!(attempts.failed("a@x.io").await.is_some());
        assert!(attempts.locked_for("a@x.io").await.is_some());
        assert!(attempts.locked_for("b@x.io").await.is_none());
        attempts.succeeded("a@x.io").await;
        assert!(attempts.locked_for("a@x.io").await.is_none());
    }
}
