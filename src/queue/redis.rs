//! The Redis queue. Keys, under a configurable prefix and one hash tag (so a cluster keeps
//! them in one slot):
//!
//! - `ready`: list of due job ids (pushed left, popped right);
//! - `delayed`: sorted set, score = due time (ms);
//! - `processing`: sorted set of leased ids, score = lease deadline (ms);
//! - `queued`: set of every id in the three above, which makes enqueue idempotent;
//! - `dead`: list of ids that gave up (newest left), with `dead:info` (hash id → JSON).
//!
//! Every move between them is one Lua script, so it is atomic.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fred::{
    clients::Pool,
    interfaces::{ClientLike, HashesInterface, ListInterface, SortedSetsInterface},
    types::scripts::Script,
};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{DeadJob, JobQueue, QueueCounts, QueueError, millis};
use crate::clock;

const ENQUEUE_MANY: &str = r#"
local added = 0
for i = 3, #ARGV do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    added = added + 1
    if tonumber(ARGV[1]) <= tonumber(ARGV[2]) then
      redis.call('LPUSH', KEYS[2], ARGV[i])
    else
      redis.call('ZADD', KEYS[3], ARGV[1], ARGV[i])
    end
  end
end
return added
"#;

const RESERVE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('LPUSH', KEYS[1], id)
end
local ids = redis.call('RPOP', KEYS[1], ARGV[3])
if not ids then return {} end
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[3], ARGV[2], id)
end
return ids
"#;

const ACK: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"#;

const RETRY: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"#;

const BURY: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('LREM', KEYS[3], 0, ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
return 1
"#;

const REQUEUE_EXPIRED: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('RPUSH', KEYS[2], id)
end
return #ids
"#;

const REMOVE_DEAD: &str = r#"
local n = redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return n
"#;

struct Keys {
    ready: String,
    delayed: String,
    processing: String,
    queued: String,
    dead: String,
    dead_info: String,
}

struct Scripts {
    enqueue_many: Script,
    reserve: Script,
    ack: Script,
    retry: Script,
    bury: Script,
    requeue_expired: Script,
    remove_dead: Script,
}

/// A [`JobQueue`] in Redis.
pub struct RedisQueue {
    pool: Pool,
    keys: Keys,
    scripts: Arc<Scripts>,
    work: Notify,
}

fn fail(err: fred::error::Error) -> QueueError {
    QueueError(err.to_string())
}

impl RedisQueue {
    /// A queue named `name` under `prefix` (e.g. `shop` → keys `{shop:name}:ready`, ...).
    pub fn new(pool: Pool, prefix: &str, name: &str) -> Self {
        let tag = format!("{{{prefix}:{name}}}");
        Self {
            pool,
            keys: Keys {
                ready: format!("{tag}:ready"),
                delayed: format!("{tag}:delayed"),
                processing: format!("{tag}:processing"),
                queued: format!("{tag}:queued"),
                dead: format!("{tag}:dead"),
                dead_info: format!("{tag}:dead:info"),
            },
            scripts: Arc::new(Scripts {
                enqueue_many: Script::from_lua(ENQUEUE_MANY),
                reserve: Script::from_lua(RESERVE),
                ack: Script::from_lua(ACK),
                retry: Script::from_lua(RETRY),
                bury: Script::from_lua(BURY),
                requeue_expired: Script::from_lua(REQUEUE_EXPIRED),
                remove_dead: Script::from_lua(REMOVE_DEAD),
            }),
            work: Notify::new(),
        }
    }

    async fn run<R: fred::types::FromValue>(
        &self,
        script: &Script,
        keys: Vec<&str>,
        args: Vec<String>,
    ) -> Result<R, QueueError> {
        // While Redis is away (the pool reconnects in the background), fail at once rather
        // than wait for the command timeout: callers leave the job to the sweeper.
        let client = self.pool.next();
        if !client.is_connected() {
            return Err(QueueError("Redis is not connected".into()));
        }
        let keys: Vec<String> = keys.into_iter().map(str::to_owned).collect();
        script
            .evalsha_with_reload(client, keys, args)
            .await
            .map_err(fail)
    }
}

#[async_trait]
impl JobQueue for RedisQueue {
    async fn enqueue(&self, id: Uuid, due: DateTime<Utc>) -> Result<bool, QueueError> {
        Ok(self.enqueue_many(&[id], due).await? == 1)
    }

    async fn enqueue_many(&self, ids: &[Uuid], due: DateTime<Utc>) -> Result<u64, QueueError> {
        let k = &self.keys;
        let mut added = 0;
        for chunk in ids.chunks(500) {
            let mut args = vec![millis(due).to_string(), millis(clock::now()).to_string()];
            args.extend(chunk.iter().map(Uuid::to_string));
            let n: i64 = self
                .run(
                    &self.scripts.enqueue_many,
                    vec![&k.queued, &k.ready, &k.delayed],
                    args,
                )
                .await?;
            added += n.max(0) as u64;
        }
        if added > 0 {
            self.work.notify_one();
        }
        Ok(added)
    }

    async fn reserve(&self, max: usize, lease: Duration) -> Result<Vec<Uuid>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let k = &self.keys;
        let now = millis(clock::now());
        let ids: Vec<String> = self
            .run(
                &self.scripts.reserve,
                vec![&k.ready, &k.delayed, &k.processing],
                vec![
                    now.to_string(),
                    (now + lease.as_millis() as i64).to_string(),
                    max.to_string(),
                ],
            )
            .await?;
        Ok(ids
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect())
    }

    async fn ack(&self, id: Uuid) -> Result<(), QueueError> {
        let k = &self.keys;
        self.run::<i64>(
            &self.scripts.ack,
            vec![&k.processing, &k.queued, &k.delayed],
            vec![id.to_string()],
        )
        .await
        .map(drop)
    }

    async fn retry(&self, id: Uuid, due: DateTime<Utc>) -> Result<(), QueueError> {
        let k = &self.keys;
        self.run::<i64>(
            &self.scripts.retry,
            vec![&k.processing, &k.delayed, &k.queued],
            vec![id.to_string(), millis(due).to_string()],
        )
        .await?;
        self.work.notify_one();
        Ok(())
    }

    async fn bury(&self, id: Uuid, error: &str) -> Result<(), QueueError> {
        let k = &self.keys;
        let info = serde_json::to_string(&DeadJob {
            id,
            error: error.to_owned(),
            failed_at: clock::now(),
        })
        .map_err(|e| QueueError(e.to_string()))?;
        self.run::<i64>(
            &self.scripts.bury,
            vec![&k.processing, &k.queued, &k.dead, &k.dead_info, &k.delayed],
            vec![id.to_string(), info],
        )
        .await
        .map(drop)
    }

    async fn requeue_expired(&self) -> Result<u64, QueueError> {
        let k = &self.keys;
        let mut total = 0;
        // The script moves at most 1000 at a time.
        loop {
            let moved: i64 = self
                .run(
                    &self.scripts.requeue_expired,
                    vec![&k.processing, &k.ready],
                    vec![millis(clock::now()).to_string()],
                )
                .await?;
            total += moved.max(0) as u64;
            if moved < 1000 {
                break;
            }
        }
        if total > 0 {
            self.work.notify_one();
        }
        Ok(total)
    }

    async fn remove_dead(&self, id: Uuid) -> Result<bool, QueueError> {
        let k = &self.keys;
        let removed: i64 = self
            .run(
                &self.scripts.remove_dead,
                vec![&k.dead, &k.dead_info],
                vec![id.to_string()],
            )
            .await?;
        Ok(removed > 0)
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let client = self.pool.next();
        let k = &self.keys;
        let (ready, delayed, processing, dead) = tokio::try_join!(
            client.llen::<u64, _>(&k.ready),
            client.zcard::<u64, _>(&k.delayed),
            client.zcard::<u64, _>(&k.processing),
            client.llen::<u64, _>(&k.dead),
        )
        .map_err(fail)?;
        Ok(QueueCounts {
            ready,
            delayed,
            processing,
            dead,
        })
    }

    async fn dead_job(&self, id: Uuid) -> Result<Option<DeadJob>, QueueError> {
        // `bury` writes the details hash with the list entry, and `remove_dead` deletes
        // both: the hash answers for the list in one lookup.
        let info: Option<String> = self
            .pool
            .next()
            .hget(&self.keys.dead_info, id.to_string())
            .await
            .map_err(fail)?;
        Ok(info.map(|json| {
            serde_json::from_str(&json).unwrap_or_else(|_| DeadJob {
                id,
                error: String::new(),
                failed_at: clock::now(),
            })
        }))
    }

    async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.pool.next();
        let ids: Vec<String> = client
            .lrange(&self.keys.dead, 0, limit as i64 - 1)
            .await
            .map_err(fail)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let infos: Vec<Option<String>> = client
            .hmget(&self.keys.dead_info, ids.clone())
            .await
            .map_err(fail)?;
        Ok(ids
            .iter()
            .zip(infos)
            .filter_map(|(id, info)| {
                info.and_then(|json| serde_json::from_str(&json).ok())
                    .or_else(|| {
                        Some(DeadJob {
                            id: Uuid::parse_str(id).ok()?,
                            error: String::new(),
                            failed_at: clock::now(),
                        })
                    })
            })
            .collect())
    }

    async fn wait_for_work(&self, poll: Duration) {
        // Other processes' enqueues are seen at the next poll; this process's at once: they
        // `notify_one`, which leaves a permit when nobody waits yet, so an enqueue between a
        // worker's empty `reserve` and this wait still wakes it.
        let _ = tokio::time::timeout(poll, self.work.notified()).await;
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.pool
            .next()
            .ping::<String>(None)
            .await
            .map(drop)
            .map_err(fail)
    }
}
