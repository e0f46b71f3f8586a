//! One typed configuration, read from the environment (and `.env`) and validated at start.
//!
//! Every bad value is reported at once, each with the variable's name, so a misconfigured
//! deployment fails with one clear message instead of a panic later.

use std::{fmt, net::IpAddr, path::PathBuf, time::Duration};

/// Where the data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// The embedded default: a SQLite file, created when missing.
    Sqlite { path: PathBuf },
    /// A PostgreSQL server (`postgres://` or `postgresql://`).
    Postgres { url: String },
}

impl DatabaseConfig {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }
}

/// A secret that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The whole configuration of a `shop` process.
#[derive(Clone, Debug)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub database: DatabaseConfig,
    pub database_max_connections: u32,
    pub redis_url: Option<String>,
    /// `None` on the embedded default when `JWT_SECRET` is unset: one is generated and
    /// kept next to the database.
    pub jwt_secret: Option<Secret>,
    pub jwt_ttl: Duration,
    pub bcrypt_cost: u32,
    pub currency: String,
    pub admin_email: String,
    pub admin_password: Secret,
    pub seed_products: u32,
    pub idempotency_ttl: Duration,
    pub payments: PaymentConfig,
    pub redis_key_prefix: String,
    pub redis_pool_size: usize,
    pub log_format: LogFormat,
    /// The per-address limit on the whole API; `None` when off.
    pub api_rate: Option<crate::rate_limit::Rate>,
    /// The per-address limit on `POST /auth/login`; `None` when off.
    pub login_rate: Option<crate::rate_limit::Rate>,
    /// Proxies allowed to say who the client is in `X-Forwarded-For`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub lockout: crate::rate_limit::Lockout,
    /// How long a cached catalog read may be served.
    pub cache_ttl: Duration,
    /// Origins allowed by CORS (`*` for any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// The longest a request may take before it is answered 503.
    pub request_timeout: Duration,
}

impl PaymentConfig {
    /// The backoff and attempt limits, shared by every queue backend.
    pub fn retry_policy(&self) -> crate::queue::RetryPolicy {
        crate::queue::RetryPolicy {
            base: self.backoff_base,
            max_delay: self.backoff_max,
            max_attempts: u32::from(self.max_attempts),
        }
    }
}

/// How payments are simulated, retried and worked off.
#[derive(Clone, Debug, PartialEq)]
pub struct PaymentConfig {
    /// Attempts a payment gets before it gives up.
    pub max_attempts: u8,
    /// Probability that a `pm_random` attempt succeeds.
    pub success_rate: f64,
    /// How long each simulated attempt takes.
    pub latency: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Whether `shop serve` also runs payment workers.
    pub workers: bool,
    /// Payments processed at once per process.
    pub worker_concurrency: usize,
    /// How long a worker holds a job before it counts as dead and the job returns.
    pub lease: Duration,
    /// How often the sweeper looks for due payments missing from the queue.
    pub sweep_interval: Duration,
}

/// The default admin account, documented in the README; change it in production.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@shop.local";
/// The default admin password, documented in the README; change it in production.
pub const DEFAULT_ADMIN_PASSWORD: &str = "Admin123!";

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// All the problems found in the environment, one line each.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Reads the process environment, after loading `.env` if there is one.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a configuration from any variable source (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut errors = Vec::new();
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let mut parse = |name: &str, default: &str, check: &dyn Fn(&str) -> Result<(), String>| {
            let raw = var(name).unwrap_or_else(|| default.to_owned());
            match check(&raw) {
                Ok(()) => Some(raw),
                Err(msg) => {
                    errors.push(format!("{name}={raw:?}: {msg}"));
                    None
                }
            }
        };
        let number = |range: std::ops::RangeInclusive<u64>| {
            move |raw: &str| match raw.parse::<u64>() {
                Ok(n) if range.contains(&n) => Ok(()),
                _ => Err(format!(
                    "expected a whole number from {} to {}",
                    range.start(),
                    range.end()
                )),
            }
        };

        let host = parse("HOST", "0.0.0.0", &|raw| {
            raw.parse::<IpAddr>()
                .map(|_| ())
                .map_err(|_| "expected an IP address such as 0.0.0.0 or 127.0.0.1".into())
        });
        let port = parse("PORT", "3000", &number(0..=65535));
        let database_max_connections = parse("DATABASE_MAX_CONNECTIONS", "10", &number(1..=1000));
        let within = |max: Duration| {
            move |raw: &str| match parse_duration(raw)? {
                d if d <= max => Ok(()),
                _ => Err(format!("must be at most {}s", max.as_secs())),
            }
        };
        let jwt_ttl = parse("JWT_EXPIRES_IN", "1h", &within(30 * DAY));
        let bcrypt_cost = parse("BCRYPT_COST", "12", &number(4..=31));
        let seed_products = parse("SEED_PRODUCTS", "50", &number(0..=100_000));
        let idempotency_ttl = parse("IDEMPOTENCY_TTL", "24h", &|raw| {
            let d = parse_duration(raw)?;
            if d < DAY || d > 30 * DAY {
                return Err("must be from 24h to 30d".into());
            }
            Ok(())
        });
        let payment_max_attempts = parse("PAYMENT_MAX_ATTEMPTS", "5", &number(1..=20));
        let success_rate = parse(
            "PAYMENT_SUCCESS_RATE",
            "0.8",
            &|raw| match raw.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
                _ => Err("expected a probability from 0 to 1, such as 0.8".into()),
            },
        );
        let latency_ms = parse("PAYMENT_LATENCY_MS", "500", &number(0..=600_000));
        let backoff_base_ms = parse("PAYMENT_BACKOFF_BASE_MS", "1000", &number(1..=3_600_000));
        let backoff_max_ms = parse("PAYMENT_BACKOFF_MAX_MS", "30000", &number(1..=86_400_000));
        let workers = parse("WORKERS", "1", &|raw| match raw {
            "0" | "1" | "true" | "false" => Ok(()),
            _ => Err("expected 1 (run payment workers in this process) or 0".into()),
        });
        let worker_concurrency = parse("WORKER_CONCURRENCY", "16", &number(1..=1024));
        let lease = parse("QUEUE_LEASE", "30s", &within(HOUR));
        let sweep_interval = parse("SWEEP_INTERVAL", "5s", &within(HOUR));
        let redis_key_prefix = parse("REDIS_KEY_PREFIX", "shop", &|raw| {
            if raw.len() <= 64
                && raw
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c))
            {
                Ok(())
            } else {
                Err("expected up to 64 letters, digits, '-', '_', ':' or '.'".into())
            }
        });
        let redis_pool_size = parse("REDIS_POOL_SIZE", "8", &number(1..=256));
        let rate_per_second = parse("RATE_LIMIT_PER_SECOND", "100", &number(0..=1_000_000));
        let rate_burst = parse("RATE_LIMIT_BURST", "200", &number(1..=1_000_000));
        let login_per_minute = parse("LOGIN_RATE_LIMIT_PER_MINUTE", "5", &number(0..=1_000_000));
        let login_burst = parse("LOGIN_RATE_LIMIT_BURST", "5", &number(1..=1_000_000));
        let trusted_proxies = parse("TRUSTED_PROXIES", "", &|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .try_for_each(|p| parse_net(p).map(drop))
        });
        let lockout_threshold = parse("LOGIN_LOCKOUT_THRESHOLD", "10", &number(1..=1000));
        let lockout_window = parse("LOGIN_LOCKOUT_WINDOW", "15m", &within(DAY));
        let cache_ttl = parse("CACHE_TTL", "10s", &within(HOUR));
        let cors_origins = parse("CORS_ORIGINS", "", &|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .try_for_each(|o| {
                    if o == "*" || o.starts_with("http://") || o.starts_with("https://") {
                        Ok(())
                    } else {
                        Err(format!(
                            "{o:?} is not an origin such as https://shop.example"
                        ))
                    }
                })
        });
        let request_timeout = parse("REQUEST_TIMEOUT", "30s", &within(HOUR));
        let currency = parse("CURRENCY", "USD", &|raw| {
            if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(())
            } else {
                Err("expected a three-letter ISO 4217 code such as USD".into())
            }
        });
        let log_format = parse("LOG_FORMAT", "pretty", &|raw| match raw {
            "pretty" | "json" => Ok(()),
            _ => Err("expected pretty or json".into()),
        });
        let admin_email = parse("ADMIN_EMAIL", DEFAULT_ADMIN_EMAIL, &|raw| {
            crate::domain::Email::parse(raw).map(|_| ())
        });
        let admin_password = parse("ADMIN_PASSWORD", DEFAULT_ADMIN_PASSWORD, &|raw| {
            crate::domain::Password::parse(raw).map(|_| ())
        });
        let redis_url = parse("REDIS_URL", "", &|raw| {
            if raw.is_empty() || raw.starts_with("redis://") || raw.starts_with("rediss://") {
                Ok(())
            } else {
                Err("expected a redis:// or rediss:// URL".into())
            }
        })
        .filter(|url| !url.is_empty());

        let database = match var("DATABASE_URL") {
            None => Some(DatabaseConfig::Sqlite {
                path: PathBuf::from("data/shop.db"),
            }),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Some(DatabaseConfig::Postgres { url })
            }
            Some(url) if url.starts_with("sqlite:") => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:")
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if path.is_empty() || path == ":memory:" {
                    errors.push(
                        "DATABASE_URL: a SQLite database must be a file, such as sqlite://data/shop.db"
                            .into(),
                    );
                    None
                } else {
                    Some(DatabaseConfig::Sqlite {
                        path: PathBuf::from(path),
                    })
                }
            }
            Some(_) => {
                errors.push(
                    "DATABASE_URL: expected postgres://user:pass@host/db or sqlite://path/to/file.db"
                        .into(),
                );
                None
            }
        };

        let jwt_secret = var("JWT_SECRET").map(Secret::new);
        match (&jwt_secret, &database) {
            (Some(secret), _) if secret.expose().len() < 32 => {
                errors.push("JWT_SECRET: must be at least 32 bytes long".into())
            }
            (None, Some(DatabaseConfig::Postgres { .. })) => errors.push(
                "JWT_SECRET: required with PostgreSQL (at least 32 bytes, e.g. `openssl rand -hex 32`)"
                    .into(),
            ),
            _ => {}
        }

        if let (Some(latency), Some(lease)) = (&latency_ms, &lease) {
            let latency = Duration::from_millis(latency.parse().unwrap_or_default());
            if parse_duration(lease).is_ok_and(|lease| lease <= latency * 2) {
                errors.push(format!(
                    "QUEUE_LEASE={lease:?}: must be more than twice PAYMENT_LATENCY_MS, or healthy attempts would be taken over"
                ));
            }
        }
        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        // Every value below passed its check above.
        let num = |v: Option<String>| v.and_then(|v| v.parse::<u64>().ok()).unwrap_or_default();
        Ok(Self {
            host: host
                .and_then(|h| h.parse().ok())
                .unwrap_or([0, 0, 0, 0].into()),
            port: num(port) as u16,
            database: database.unwrap_or(DatabaseConfig::Sqlite {
                path: PathBuf::from("data/shop.db"),
            }),
            database_max_connections: num(database_max_connections) as u32,
            redis_url,
            jwt_secret,
            jwt_ttl: jwt_ttl
                .and_then(|v| parse_duration(&v).ok())
                .unwrap_or_default(),
            bcrypt_cost: num(bcrypt_cost) as u32,
            currency: currency.unwrap_or_default(),
            admin_email: admin_email.unwrap_or_default().to_lowercase(),
            admin_password: Secret::new(admin_password.unwrap_or_default()),
            seed_products: num(seed_products) as u32,
            idempotency_ttl: idempotency_ttl
                .and_then(|v| parse_duration(&v).ok())
                .unwrap_or_default(),
            payments: PaymentConfig {
                max_attempts: num(payment_max_attempts) as u8,
                success_rate: success_rate.and_then(|r| r.parse().ok()).unwrap_or(0.8),
                latency: Duration::from_millis(num(latency_ms)),
                backoff_base: Duration::from_millis(num(backoff_base_ms)),
                backoff_max: Duration::from_millis(num(backoff_max_ms)),
                workers: matches!(workers.as_deref(), Some("1" | "true")),
                worker_concurrency: num(worker_concurrency) as usize,
                lease: lease
                    .and_then(|v| parse_duration(&v).ok())
                    .unwrap_or_default(),
                sweep_interval: sweep_interval
                    .and_then(|v| parse_duration(&v).ok())
                    .unwrap_or_default(),
            },
            api_rate: rate(
                num(rate_per_second),
                Duration::from_secs(1),
                num(rate_burst),
            ),
            login_rate: rate(
                num(login_per_minute),
                Duration::from_secs(60),
                num(login_burst),
            ),
            trusted_proxies: trusted_proxies
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .filter_map(|p| parse_net(p).ok())
                .collect(),
            lockout: crate::rate_limit::Lockout {
                threshold: num(lockout_threshold) as u32,
                window: lockout_window
                    .and_then(|v| parse_duration(&v).ok())
                    .unwrap_or_default(),
            },
            cache_ttl: cache_ttl
                .and_then(|v| parse_duration(&v).ok())
                .unwrap_or_default(),
            cors_origins: cors_origins
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect(),
            request_timeout: request_timeout
                .and_then(|v| parse_duration(&v).ok())
                .unwrap_or_default(),
            redis_key_prefix: redis_key_prefix.unwrap_or_default(),
            redis_pool_size: num(redis_pool_size) as usize,
            log_format: if log_format.as_deref() == Some("json") {
                LogFormat::Json
            } else {
                LogFormat::Pretty
            },
        })
    }
}

/// `per` requests per `period`, `burst` at once; `None` when `per` is 0 (off).
fn rate(per: u64, period: Duration, burst: u64) -> Option<crate::rate_limit::Rate> {
    (per > 0).then(|| crate::rate_limit::Rate {
        interval: (period / u32::try_from(per).unwrap_or(u32::MAX)).max(Duration::from_nanos(1)),
        burst: u32::try_from(burst).unwrap_or(u32::MAX),
    })
}

/// An address (`10.0.0.1`) or a network (`10.0.0.0/8`).
fn parse_net(raw: &str) -> Result<ipnet::IpNet, String> {
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{raw:?} is not an IP address or network such as 10.0.0.0/8"))
}

/// Parses `3600`, `90s`, `15m`, `1h` or `7d` into a positive duration.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let multiplier = match unit {
        "ms" => 0,
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("expected a duration such as 3600, 90s, 15m, 1h or 7d".into()),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a duration such as 3600, 90s, 15m, 1h or 7d".to_string())?;
    let duration = if multiplier == 0 {
        Duration::from_millis(n)
    } else {
        Duration::from_secs(n.saturating_mul(multiplier))
    };
    if duration.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_to_embedded_sqlite_without_a_secret() {
        let c = config(&[]).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(
            c.database,
            DatabaseConfig::Sqlite {
                path: "data/shop.db".into()
            }
        );
        assert!(c.jwt_secret.is_none());
        assert_eq!(c.jwt_ttl, Duration::from_secs(3600));
        assert_eq!(c.currency, "USD");
    }

    #[test]
    fn postgres_requires_a_long_secret() {
        let err = config(&[("DATABASE_URL", "postgres://localhost/shop")]).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
        let err = config(&[
            ("DATABASE_URL", "postgres://localhost/shop"),
            ("JWT_SECRET", "short"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
        let ok = config(&[
            ("DATABASE_URL", "postgres://localhost/shop"),
            ("JWT_SECRET", &"x".repeat(32)),
        ]);
        assert!(ok.is_ok());
    }

    #[test]
    fn reports_every_bad_value_by_name() {
        let err = config(&[("JWT_EXPIRES_IN", "99999999999d")]).unwrap_err();
        assert!(err.to_string().contains("JWT_EXPIRES_IN"), "{err}");
        let err = config(&[
            ("PORT", "http"),
            ("BCRYPT_COST", "2"),
            ("CURRENCY", "usd"),
            ("DATABASE_URL", "mysql://x"),
        ])
        .unwrap_err();
        let msg = err.to_string();
        for name in ["PORT", "BCRYPT_COST", "CURRENCY", "DATABASE_URL"] {
            assert!(msg.contains(name), "{name} missing from {msg}");
        }
        assert_eq!(err.0.len(), 4);
    }

    #[test]
    fn the_lease_must_outlast_an_attempt() {
        let err = config(&[("PAYMENT_LATENCY_MS", "20000"), ("QUEUE_LEASE", "30s")]).unwrap_err();
        assert!(err.to_string().contains("QUEUE_LEASE"), "{err}");
        assert!(config(&[("PAYMENT_LATENCY_MS", "500"), ("QUEUE_LEASE", "30s")]).is_ok());
    }

    #[test]
    fn reads_rate_limits_and_proxies() {
        let c = config(&[
            ("RATE_LIMIT_PER_SECOND", "0"),
            ("LOGIN_RATE_LIMIT_PER_MINUTE", "6"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
        ])
        .unwrap();
        assert_eq!(c.api_rate, None);
        assert_eq!(c.login_rate.unwrap().interval, Duration::from_secs(10));
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(config(&[("TRUSTED_PROXIES", "proxy.local")]).is_err());
        assert!(config(&[("CORS_ORIGINS", "shop.example")]).is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("").is_err());
    }
}
