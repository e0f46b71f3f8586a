//! The Redis connection pool (fred) shared by the queue and readiness checks.

use std::time::Duration;

use anyhow::Context;
use fred::{
    clients::Pool,
    prelude::{Builder, ClientLike, Config as RedisConfig, ReconnectPolicy},
};

/// Connects a pool of `size` connections, waiting up to 30 s for Redis to come up.
/// Commands time out after two seconds, so callers see a failure instead of waiting while
/// Redis is down; the pool reconnects on its own.
pub async fn connect(url: &str, size: usize) -> anyhow::Result<Pool> {
    crate::startup::patiently("Redis", || connect_once(url, size))
        .await
        .context(format!(
            "Redis was not reachable for {}s (REDIS_URL)",
            crate::startup::PATIENCE.as_secs()
        ))
}

/// One connection attempt of [`connect`].
pub async fn connect_once(url: &str, size: usize) -> anyhow::Result<Pool> {
    let config = RedisConfig::from_url(url).context("REDIS_URL is not a valid Redis URL")?;
    let pool = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
            c.max_command_attempts = 2;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = Duration::from_secs(2);
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .build_pool(size)
        .context("cannot build the Redis pool")?;
    pool.init().await.context("cannot connect to Redis")?;
    Ok(pool)
}
