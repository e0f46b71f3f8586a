//! The read cache of the catalog: `GET /products` pages and `GET /products/{id}` as served
//! to the public, in Redis when configured (shared by every instance) or in this process.
//!
//! Entries are keyed under a catalog version. Every write that changes what they show
//! (product writes, and stock moved by orders, cancellations and failed payments) bumps
//! the version after it commits, so the next read misses and recomputes: a read that
//! follows a write never sees what was there before it. Entries of old versions simply
//! expire (`CACHE_TTL`). If the cache's backend is down, reads go to the database.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use async_trait::async_trait;
use fred::{
    clients::Pool,
    interfaces::{ClientLike, KeysInterface},
    types::{Expiration, scripts::Script},
};

/// A string cache with one version counter for the catalog.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The catalog's version; `None` when the cache cannot be used now.
    async fn version(&self) -> Option<u64>;
    /// Invalidates every entry of the catalog.
    async fn bump(&self);
    async fn get(&self, key: &str) -> Option<String>;
    async fn set(&self, key: &str, value: &str);
}

/// The cache in this process.
pub struct MemoryCache {
    version: AtomicU64,
    entries: moka::sync::Cache<String, String>,
}

impl MemoryCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            version: AtomicU64::new(0),
            entries: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
        }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn version(&self) -> Option<u64> {
        Some(self.version.load(Ordering::Acquire))
    }

    async fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    async fn get(&self, key: &str) -> Option<String> {
        self.entries.get(key)
    }

    async fn set(&self, key: &str, value: &str) {
        self.entries.insert(key.to_owned(), value.to_owned());
    }
}

/// The cache in Redis, shared by every instance, with a copy of the entries it has seen in
/// this process. Entries are immutable (their key holds the catalog version), so the copy
/// is never stale: a hit costs one small round trip, for the version.
pub struct RedisCache {
    pool: Pool,
    prefix: String,
    version_key: String,
    ttl: Duration,
    local: moka::sync::Cache<String, String>,
    version_script: Script,
    bump_script: Script,
    /// Set while Redis is away or after a write could not bump the version: the next
    /// version read that reaches Redis bumps first, so nothing cached before a write made
    /// during the outage is served after it.
    owes_bump: AtomicBool,
}

// A missing version (a fresh or flushed Redis) starts at the current time in ms, never at
// a number used before, so entries copied locally under an old version are never served.
const READ_VERSION: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'NX')
  v = redis.call('GET', KEYS[1])
end
return tonumber(v)
"#;

const BUMP_VERSION: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('INCR', KEYS[1])
"#;

impl RedisCache {
    pub fn new(pool: Pool, prefix: &str, ttl: Duration) -> Self {
        Self {
            pool,
            prefix: format!("{prefix}:cache:"),
            version_key: format!("{prefix}:cache:catalog-version"),
            ttl,
            local: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            version_script: Script::from_lua(READ_VERSION),
            bump_script: Script::from_lua(BUMP_VERSION),
            owes_bump: AtomicBool::new(false),
        }
    }

    /// A client that is connected now; `None` while Redis is away (the pool reconnects in
    /// the background), so no caller waits for a command to time out.
    fn connected(&self) -> Option<&fred::clients::Client> {
        let client = self.pool.next();
        client.is_connected().then_some(client)
    }

    async fn run_bump(&self, client: &fred::clients::Client) -> bool {
        let now = chrono::Utc::now().timestamp_millis().to_string();
        let bumped: Result<i64, _> = self
            .bump_script
            .evalsha_with_reload(client, vec![self.version_key.clone()], vec![now])
            .await;
        if let Err(err) = &bumped {
            tracing::warn!(error = %err, "could not invalidate the catalog cache; it will be once Redis answers");
            self.owes_bump.store(true, Ordering::Release);
        }
        bumped.is_ok()
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn version(&self) -> Option<u64> {
        let Some(client) = self.connected() else {
            // Writes may happen meanwhile without a bump: owe one.
            self.owes_bump.store(true, Ordering::Release);
            return None;
        };
        if self.owes_bump.swap(false, Ordering::AcqRel) && !self.run_bump(client).await {
            return None;
        }
        let now = chrono::Utc::now().timestamp_millis().to_string();
        let read: Result<u64, _> = self
            .version_script
            .evalsha_with_reload(client, vec![self.version_key.clone()], vec![now])
            .await;
        match read {
            Ok(version) => Some(version),
            Err(err) => {
                tracing::debug!(error = %err, "cache unavailable; reading through");
                None
            }
        }
    }

    async fn bump(&self) {
        match self.connected() {
            Some(client) => {
                self.run_bump(client).await;
            }
            None => self.owes_bump.store(true, Ordering::Release),
        }
    }

    async fn get(&self, key: &str) -> Option<String> {
        if let Some(hit) = self.local.get(key) {
            return Some(hit);
        }
        let shared = self
            .connected()?
            .get::<Option<String>, _>(format!("{}{key}", self.prefix))
            .await
            .ok()
            .flatten()?;
        self.local.insert(key.to_owned(), shared.clone());
        Some(shared)
    }

    async fn set(&self, key: &str, value: &str) {
        self.local.insert(key.to_owned(), value.to_owned());
        let expiry = Expiration::PX(self.ttl.as_millis() as i64);
        let Some(client) = self.connected() else {
            return;
        };
        let _: Result<(), _> = client
            .set(
                format!("{}{key}", self.prefix),
                value,
                Some(expiry),
                None,
                false,
            )
            .await;
    }
}
