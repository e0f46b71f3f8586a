//! Failed sign-ins, counted three ways (per account and address, per address, per
//! account) in Redis when configured, else in this process. Only failures count.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use axum::http::StatusCode;
use fred::{clients::Pool, interfaces::KeysInterface, types::scripts::Script};

use crate::error::AppError;

/// How many failed logins are allowed within `window`, counted three ways: per account from
/// one address, per address across accounts, and per account across addresses. Only
/// failures count, so a person who signs in correctly is never refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginPolicy {
    /// Failures on one account from one address (`LOGIN_MAX_FAILURES`).
    pub per_account_and_address: u32,
    /// Failures from one address, whatever the account (`LOGIN_MAX_FAILURES_PER_ADDRESS`):
    /// higher, since an office shares one address.
    pub per_address: u32,
    /// Failures on one account, whatever the address (`LOGIN_LOCKOUT_THRESHOLD`): the
    /// account is locked.
    pub per_account: u32,
    /// How long failures are counted (from the first) and a limit holds (from the failure
    /// that reached it).
    pub window: Duration,
}

/// Where failed logins are counted: Redis when configured (shared by every instance), or
/// this process. Each key counts failures within a window that opens with the first.
#[async_trait]
pub trait FailureCounter: Send + Sync {
    /// The count and time left of each key (0 and zero when absent). `None` when the
    /// backend is down: limits then fail open.
    async fn read(&self, keys: &[String]) -> Option<Vec<(u32, Duration)>>;
    /// Counts one failure on each key; a key reaching `threshold` (its own, same order)
    /// is re-armed for the whole window. Answers as [`read`](Self::read).
    async fn add(
        &self,
        keys: &[String],
        thresholds: &[u32],
        window: Duration,
    ) -> Option<Vec<(u32, Duration)>>;
    /// Forgets these keys.
    async fn clear(&self, keys: &[String]);
}

/// Applies a [`LoginPolicy`] with a [`FailureCounter`].
pub struct LoginGuard {
    policy: LoginPolicy,
    counter: Arc<dyn FailureCounter>,
}

/// What a login attempt may still do: the tightest of the three limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginBudget {
    pub limit: u32,
    pub remaining: u32,
}

impl LoginGuard {
    pub fn new(policy: LoginPolicy, counter: Arc<dyn FailureCounter>) -> Self {
        Self { policy, counter }
    }

    fn keys(account: &str, address: IpAddr) -> [String; 3] {
        [
            format!("account-address:{account}|{address}"),
            format!("address:{address}"),
            format!("account:{account}"),
        ]
    }

    fn thresholds(&self) -> [u32; 3] {
        [
            self.policy.per_account_and_address,
            self.policy.per_address,
            self.policy.per_account,
        ]
    }

    /// 429 when any limit is reached (before the password is even looked at).
    pub async fn check(&self, account: &str, address: IpAddr) -> Result<LoginBudget, AppError> {
        let counts = self.counter.read(&Self::keys(account, address)).await;
        self.judge(counts)
    }

    /// Counts a failed login; the answer is the 401 to give, or 429 when this failure
    /// reached a limit.
    pub async fn failed(&self, account: &str, address: IpAddr, refusal: AppError) -> AppError {
        let counts = self
            .counter
            .add(
                &Self::keys(account, address),
                &self.thresholds(),
                self.policy.window,
            )
            .await;
        match self.judge(counts) {
            Ok(budget) => refusal.with_quota(budget.limit, budget.remaining),
            Err(limited) => limited,
        }
    }

    /// A correct login clears this account's failures (not the address's: a valid account
    /// must not become a way to reset guesses against others).
    pub async fn succeeded(&self, account: &str, address: IpAddr) {
        let [pair, _, account] = Self::keys(account, address);
        self.counter.clear(&[pair, account]).await;
    }

    fn judge(&self, counts: Option<Vec<(u32, Duration)>>) -> Result<LoginBudget, AppError> {
        let thresholds = self.thresholds();
        let Some(counts) = counts else {
            // Fail open: an outage of the counter must not lock everyone out.
            return Ok(LoginBudget {
                limit: thresholds[0],
                remaining: thresholds[0],
            });
        };
        let over = counts
            .iter()
            .zip(thresholds)
            .enumerate()
            .filter(|(_, ((count, left), threshold))| *count >= *threshold && !left.is_zero())
            .max_by_key(|(_, ((_, left), _))| *left);
        if let Some((which, ((_, left), threshold))) = over {
            let seconds = left.as_secs().max(1);
            let (code, detail) = if which == 2 {
                (
                    "account_locked",
                    format!("Too many failed sign-ins for this account; try again in {seconds} s."),
                )
            } else {
                (
                    "rate_limited",
                    format!(
                        "Too many failed sign-ins from this address; try again in {seconds} s."
                    ),
                )
            };
            return Err(AppError::new(StatusCode::TOO_MANY_REQUESTS, code, detail)
                .with_retry_after(seconds)
                .with_quota(threshold, 0));
        }
        let (count, threshold) = counts
            .iter()
            .zip(thresholds)
            .map(|((count, _), threshold)| (*count, threshold))
            .min_by_key(|(count, threshold)| threshold.saturating_sub(*count))
            .unwrap_or((0, thresholds[0]));
        Ok(LoginBudget {
            limit: threshold,
            remaining: threshold.saturating_sub(count),
        })
    }
}

/// Requests limited whether they succeed or not (asking for a password reset mail): each
/// one counts, per address and per account, within `window`. Shares the login counters'
/// storage under keys of its own.
pub struct RequestLimit {
    name: &'static str,
    per_address: u32,
    per_account: u32,
    window: Duration,
    counter: Arc<dyn FailureCounter>,
}

impl RequestLimit {
    pub fn new(
        name: &'static str,
        per_address: u32,
        per_account: u32,
        window: Duration,
        counter: Arc<dyn FailureCounter>,
    ) -> Self {
        Self {
            name,
            per_address,
            per_account,
            window,
            counter,
        }
    }

    /// Counts one request; 429 `rate_limited` (with `Retry-After`) when a limit was already
    /// reached, and then it does not count.
    pub async fn count(&self, account: &str, address: IpAddr) -> Result<(), AppError> {
        let keys = [
            format!("{}-address:{address}", self.name),
            format!("{}-account:{account}", self.name),
        ];
        let thresholds = [self.per_address, self.per_account];
        // Fails open, like the login limits.
        if let Some(counts) = self.counter.read(&keys).await {
            let over = counts
                .iter()
                .zip(thresholds)
                .filter(|((count, left), threshold)| *count >= *threshold && !left.is_zero())
                .map(|((_, left), _)| *left)
                .max();
            if let Some(left) = over {
                let seconds = left.as_secs().max(1);
                return Err(AppError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("Too many requests like this one; try again in {seconds} s."),
                )
                .with_retry_after(seconds));
            }
        }
        self.counter.add(&keys, &thresholds, self.window).await;
        Ok(())
    }
}

/// Failed logins counted in this process (the embedded default).
#[derive(Default)]
pub struct MemoryFailureCounter {
    failures: Mutex<HashMap<String, (u32, Instant, Duration)>>,
}

impl MemoryFailureCounter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant, Duration)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn time_left(since: Instant, window: Duration) -> Duration {
    window.saturating_sub(since.elapsed())
}

#[async_trait]
impl FailureCounter for MemoryFailureCounter {
    async fn read(&self, keys: &[String]) -> Option<Vec<(u32, Duration)>> {
        let failures = self.lock();
        Some(
            keys.iter()
                .map(|key| match failures.get(key) {
                    Some((count, since, window)) if !time_left(*since, *window).is_zero() => {
                        (*count, time_left(*since, *window))
                    }
                    _ => (0, Duration::ZERO),
                })
                .collect(),
        )
    }

    async fn add(
        &self,
        keys: &[String],
        thresholds: &[u32],
        window: Duration,
    ) -> Option<Vec<(u32, Duration)>> {
        let mut failures = self.lock();
        failures.retain(|_, (_, since, window)| !time_left(*since, *window).is_zero());
        let now = Instant::now();
        Some(
            keys.iter()
                .zip(thresholds)
                .map(|(key, threshold)| {
                    let entry = failures.entry(key.clone()).or_insert((0, now, window));
                    entry.0 += 1;
                    if entry.0 == *threshold {
                        entry.1 = now;
                    }
                    (entry.0, time_left(entry.1, entry.2))
                })
                .collect(),
        )
    }

    async fn clear(&self, keys: &[String]) {
        let mut failures = self.lock();
        for key in keys {
            failures.remove(key);
        }
    }
}

// ARGV: window ms, then one threshold per key. The window opens with the first failure;
// reaching the threshold re-arms it, so a limit always holds for the whole window.
const ADD_FAILURES: &str = r#"
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 or n == tonumber(ARGV[i + 1]) then redis.call('PEXPIRE', key, ARGV[1]) end
  table.insert(out, n)
  table.insert(out, redis.call('PTTL', key))
end
return out
"#;

const READ_FAILURES: &str = r#"
local out = {}
for _, key in ipairs(KEYS) do
  table.insert(out, tonumber(redis.call('GET', key) or '0'))
  table.insert(out, redis.call('PTTL', key))
end
return out
"#;

/// Failed logins counted in Redis, shared by every instance.
pub struct RedisFailureCounter {
    pool: Pool,
    prefix: String,
    add: Script,
    read: Script,
}

impl RedisFailureCounter {
    pub fn new(pool: Pool, prefix: &str) -> Self {
        Self {
            pool,
            prefix: format!("{prefix}:login-failures:"),
            add: Script::from_lua(ADD_FAILURES),
            read: Script::from_lua(READ_FAILURES),
        }
    }

    fn keys(&self, keys: &[String]) -> Vec<String> {
        keys.iter().map(|k| format!("{}{k}", self.prefix)).collect()
    }
}

/// Pairs of (count, ttl ms) as the scripts answer them.
fn pairs(flat: Vec<i64>) -> Vec<(u32, Duration)> {
    flat.chunks(2)
        .map(|pair| {
            let count = u32::try_from(pair[0]).unwrap_or(0);
            let ttl = pair.get(1).copied().unwrap_or(-1);
            let left = u64::try_from(ttl).map_or(Duration::ZERO, Duration::from_millis);
            (count, left)
        })
        .collect()
}

#[async_trait]
impl FailureCounter for RedisFailureCounter {
    async fn read(&self, keys: &[String]) -> Option<Vec<(u32, Duration)>> {
        let result: Result<Vec<i64>, _> = self
            .read
            .evalsha_with_reload(self.pool.next(), self.keys(keys), Vec::<String>::new())
            .await;
        match result {
            Ok(flat) => Some(pairs(flat)),
            Err(err) => {
                tracing::warn!(error = %err, "could not read failed logins");
                None
            }
        }
    }

    async fn add(
        &self,
        keys: &[String],
        thresholds: &[u32],
        window: Duration,
    ) -> Option<Vec<(u32, Duration)>> {
        let mut args = vec![window.as_millis().to_string()];
        args.extend(thresholds.iter().map(u32::to_string));
        let result: Result<Vec<i64>, _> = self
            .add
            .evalsha_with_reload(self.pool.next(), self.keys(keys), args)
            .await;
        match result {
            Ok(flat) => Some(pairs(flat)),
            Err(err) => {
                tracing::warn!(error = %err, "could not count a failed login");
                None
            }
        }
    }

    async fn clear(&self, keys: &[String]) {
        let _: Result<i64, _> = self.pool.next().del(self.keys(keys)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn guard() -> LoginGuard {
        LoginGuard::new(
            LoginPolicy {
                per_account_and_address: 2,
                per_address: 3,
                per_account: 4,
                window: Duration::from_secs(60),
            },
            Arc::new(MemoryFailureCounter::default()),
        )
    }

    fn refusal() -> AppError {
        AppError::unauthorized("no")
    }

    fn code(err: &AppError) -> &'static str {
        match err {
            AppError::Problem { code, .. } => code,
            AppError::Internal(_) => "internal",
        }
    }

    #[tokio::test]
    async fn only_failures_count_and_each_limit_holds_on_its_own() {
        let g = guard();
        let (home, office) = (ip("1.1.1.1"), ip("2.2.2.2"));
        // Successes cost nothing.
        for _ in 0..100 {
            assert!(g.check("a", home).await.is_ok());
            g.succeeded("a", home).await;
        }
        // Per account and address: the second failure reaches the limit.
        assert_eq!(code(&g.failed("a", home, refusal()).await), "unauthorized");
        assert_eq!(code(&g.failed("a", home, refusal()).await), "rate_limited");
        assert_eq!(code(&g.check("a", home).await.unwrap_err()), "rate_limited");
        // Another account from the same address is still welcome.
        assert!(g.check("b", home).await.is_ok());
        // Per address across accounts: the third failure from `home` reaches it.
        assert_eq!(code(&g.failed("b", home, refusal()).await), "rate_limited");
        assert_eq!(code(&g.check("c", home).await.unwrap_err()), "rate_limited");
        // Per account across addresses: `a` has 2; two more from elsewhere lock it.
        assert_eq!(
            code(&g.failed("a", office, refusal()).await),
            "unauthorized"
        );
        assert_eq!(
            code(&g.failed("a", ip("3.3.3.3"), refusal()).await),
            "account_locked"
        );
        assert_eq!(
            code(&g.check("a", ip("4.4.4.4")).await.unwrap_err()),
            "account_locked"
        );
        assert!(g.check("d", office).await.is_ok());
    }
}
