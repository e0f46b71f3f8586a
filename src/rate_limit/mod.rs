//! Rate limits: per client address (tower_governor) on the whole API, and on sign-in a
//! [`LoginGuard`] (in `login`) that counts only failed logins (per account and address,
//! per address, per account), kept in Redis when configured so guesses cannot be spread
//! over instances or addresses, while people who sign in correctly are never refused.
//!
//! The client address is the peer's, unless the peer is a trusted proxy
//! (`TRUSTED_PROXIES`): then it is the right-most `X-Forwarded-For` entry that is not one.
//! Refusals are problem+json 429 with `Retry-After`; answers carry `RateLimit-Limit` and
//! `RateLimit-Remaining`.

mod login;

pub use login::{
    FailureCounter, LoginBudget, LoginGuard, LoginPolicy, MemoryFailureCounter,
    RedisFailureCounter, RequestLimit,
};

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{
    body::Body,
    extract::{ConnectInfo, FromRef, FromRequestParts},
    http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, request::Parts},
};
use governor::middleware::StateInformationMiddleware;
use ipnet::IpNet;
use tower_governor::{
    GovernorError, GovernorLayer,
    governor::{GovernorConfig, GovernorConfigBuilder},
    key_extractor::KeyExtractor,
};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{AppError, internal_error_response, problem_response};

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

/// The client's address, as [`ClientIp`] resolves it.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress(pub IpAddr);

impl<S> FromRequestParts<S> for ClientAddress
where
    S: Send + Sync,
    ClientIp: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!(
                    "served without the peer address (ConnectInfo)"
                ))
            })?;
        Ok(Self(
            ClientIp::from_ref(state).resolve(peer, &parts.headers),
        ))
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

/// The per-address limit on the whole API, built once per process and shared by every
/// router built from it.
#[derive(Clone)]
pub struct ApiLimiter {
    config: Arc<GovernorConfig<ClientIp, StateInformationMiddleware>>,
}

impl ApiLimiter {
    /// `None` when `rate` is `None` (no limit).
    pub fn new(rate: Option<Rate>, clients: &ClientIp) -> Option<Self> {
        let rate = rate?;
        let config = GovernorConfigBuilder::default()
            .key_extractor(clients.clone())
            .period(rate.interval)
            .burst_size(rate.burst.max(1))
            .use_headers()
            .finish()?;
        Some(Self {
            config: Arc::new(config),
        })
    }

    /// Limits every route of `router`.
    pub fn apply<S: Clone + Send + Sync + 'static>(
        &self,
        router: OpenApiRouter<S>,
    ) -> OpenApiRouter<S> {
        let layer = GovernorLayer::new(self.config.clone()).error_handler(too_many_requests);
        router
            .layer(layer)
            .layer(axum::middleware::map_response(standard_headers))
    }

    /// Forgets addresses that have been quiet, every minute until `stop`, so the table
    /// does not grow for ever.
    pub async fn prune_until(self, stop: tokio_util::sync::CancellationToken) {
        let limiter = self.config.limiter().clone();
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            }
        }
    }
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
        GovernorError::UnableToExtractKey => {
            tracing::error!(
                "rate limit: the client address is unknown (served without ConnectInfo)"
            );
            internal_error_response()
        }
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
}
