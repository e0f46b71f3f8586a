//! One typed configuration, read from the environment (and `.env`) once, at start.
//!
//! Each variable is parsed once into its typed value (durations with `humantime`, secrets
//! as `secrecy` strings that never show in logs). Every bad value is reported at once, each
//! with the variable's name, so a misconfigured deployment fails with one clear message
//! instead of a panic later.

use std::{
    fmt::Display, net::IpAddr, ops::RangeInclusive, path::PathBuf, str::FromStr, time::Duration,
};

use secrecy::{ExposeSecret, SecretString};

use crate::rate_limit::{LoginPolicy, Rate};

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
    pub jwt_secret: Option<SecretString>,
    pub jwt_ttl: Duration,
    /// How long a refresh token lives (each refresh issues a new one).
    pub refresh_ttl: Duration,
    pub bcrypt_cost: u32,
    pub currency: String,
    pub admin_email: String,
    pub admin_password: SecretString,
    pub seed_products: u32,
    pub idempotency_ttl: Duration,
    /// How long events are kept in the log.
    pub event_retention: Duration,
    pub payments: PaymentConfig,
    pub webhooks: WebhookConfig,
    pub redis_key_prefix: String,
    pub redis_pool_size: usize,
    pub log_format: LogFormat,
    /// The per-address limit on the whole API; `None` when off.
    pub api_rate: Option<Rate>,
    /// Proxies allowed to say who the client is in `X-Forwarded-For`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How many failed logins are allowed, counted three ways.
    pub login: LoginPolicy,
    /// How long a cached catalog read may be served.
    pub cache_ttl: Duration,
    /// Origins allowed by CORS (`*` for any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// The longest a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// How mail is sent, and what password reset mails hold.
    pub mail: MailConfig,
    /// Where product images are stored, and how large an upload may be.
    pub media: MediaConfig,
}

/// Product images.
#[derive(Clone, Debug)]
pub struct MediaConfig {
    /// Files live here unless `S3_BUCKET` is set (`MEDIA_DIR`).
    pub dir: PathBuf,
    /// S3-compatible storage, when `S3_BUCKET` is set.
    pub s3: Option<S3Config>,
    /// The largest upload (`IMAGE_MAX_BYTES`).
    pub image_max_bytes: usize,
}

/// An S3 bucket (AWS, or any S3-compatible store such as MinIO).
#[derive(Clone, Debug)]
pub struct S3Config {
    pub bucket: String,
    /// `S3_ENDPOINT`, such as `http://minio:9000`; unset: AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`; unset: the usual AWS sources.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
}

/// How mail leaves the service.
#[derive(Clone, Debug)]
pub enum MailTransport {
    /// One `.eml` file per message in a directory (`MAIL_DIR`).
    File { dir: PathBuf },
    /// An SMTP server (`SMTP_URL`, such as `smtps://user:pass@smtp.example.com` or
    /// `smtp://relay:587?tls=required`).
    Smtp { url: SecretString },
    /// Written to the log.
    Log,
}

/// Mail, and password resets.
#[derive(Clone, Debug)]
pub struct MailConfig {
    pub transport: MailTransport,
    /// The sender (`MAIL_FROM`).
    pub from: String,
    /// Where the storefront is (`PUBLIC_URL`, no trailing `/`): links in mails point there.
    pub public_url: String,
    /// How long a password reset link works (`PASSWORD_RESET_TTL`).
    pub reset_ttl: Duration,
    /// Reset requests allowed per address per hour (`PASSWORD_RESET_MAX_PER_ADDRESS`).
    pub reset_per_address: u32,
    /// Reset requests allowed per email per hour (`PASSWORD_RESET_MAX_PER_EMAIL`).
    pub reset_per_email: u32,
}

/// How payments are simulated, retried and worked off.
#[derive(Clone, Debug, PartialEq)]
pub struct PaymentConfig {
    /// Attempts a payment gets before it gives up.
    pub max_attempts: u8,
    /// Probability that a `pm_random` attempt succeeds.
    pub success_rate: f64,
    /// Probability that a refund attempt fails transiently (and is retried).
    pub refund_failure_rate: f64,
    /// How long each simulated attempt takes.
    pub latency: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long a payment waits for the customer's action (`pm_requires_action`).
    pub action_timeout: Duration,
    /// Whether `shop serve` also runs payment workers.
    pub workers: bool,
    /// Payments processed at once per process.
    pub worker_concurrency: usize,
    /// How long a worker holds a job before it counts as dead and the job returns.
    pub lease: Duration,
    /// How often the sweeper looks for due payments missing from the queue.
    pub sweep_interval: Duration,
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

/// How webhook deliveries are sent and retried.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    /// How long an endpoint has to answer (connecting, sending and reading back).
    pub timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Attempts a delivery gets before it fails.
    pub max_attempts: u32,
    /// Whether endpoints may resolve to loopback, private or link-local addresses.
    pub allow_private: bool,
}

impl WebhookConfig {
    pub fn retry_policy(&self) -> crate::queue::RetryPolicy {
        crate::queue::RetryPolicy {
            base: self.backoff_base,
            max_delay: self.backoff_max,
            max_attempts: self.max_attempts,
        }
    }
}

/// The default admin account, documented in the README; change it in production.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@shop.local";
/// The default admin password, documented in the README; change it in production.
pub const DEFAULT_ADMIN_PASSWORD: &str = "Admin123!";

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// All the problems found in the environment, one line each.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// Reads variables, parsing each once and collecting every problem.
struct Reader<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<String>,
}

impl Reader<'_> {
    /// The trimmed value; unset and empty are the same.
    fn raw(&self, name: &str) -> Option<String> {
        (self.get)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// `name` parsed by `parse`, or `default` when unset. A bad value is reported (and
    /// `default` stands in, so the rest can still be checked).
    fn parse<T>(
        &mut self,
        name: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        let Some(raw) = self.raw(name) else {
            return default;
        };
        match parse(&raw) {
            Ok(value) => value,
            Err(msg) => {
                self.errors.push(format!("{name}={raw:?}: {msg}"));
                default
            }
        }
    }

    fn number<T>(&mut self, name: &str, default: T, range: RangeInclusive<T>) -> T
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        self.parse(name, default, |raw| match raw.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(format!(
                "expected a whole number from {} to {}",
                range.start(),
                range.end()
            )),
        })
    }

    /// A duration such as `90s`, `15m`, `1h 30m`, `7d`, `250ms` (or bare seconds).
    fn duration(
        &mut self,
        name: &str,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Duration {
        self.parse(name, default, |raw| {
            let duration = parse_duration(raw)?;
            if range.contains(&duration) {
                Ok(duration)
            } else {
                Err(format!(
                    "must be from {} to {}",
                    humantime::format_duration(*range.start()),
                    humantime::format_duration(*range.end())
                ))
            }
        })
    }

    fn milliseconds(&mut self, name: &str, default: u64, range: RangeInclusive<u64>) -> Duration {
        Duration::from_millis(self.number(name, default, range))
    }

    fn list<T>(&mut self, name: &str, parse: impl Fn(&str) -> Result<T, String>) -> Vec<T> {
        self.parse(name, Vec::new(), |raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(&parse)
                .collect()
        })
    }
}

/// Parses `3600` (seconds), `90s`, `15m`, `1h 30m`, `7d` or `250ms` into a positive duration.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let duration = match raw.trim().parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(raw.trim()).map_err(|err| {
            format!("expected a duration such as 3600, 90s, 15m, 1h or 7d ({err})")
        })?,
    };
    if duration.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(duration)
}

impl Config {
    /// Reads the process environment, after loading `.env` if there is one.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a configuration from any variable source (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Reader {
            get: &get,
            errors: Vec::new(),
        };
        let host = env.parse("HOST", IpAddr::from([0, 0, 0, 0]), |raw| {
            raw.parse()
                .map_err(|_| "expected an IP address such as 0.0.0.0 or 127.0.0.1".into())
        });
        let port = env.number("PORT", 3000u16, 0..=65535);
        let database = env.parse("DATABASE_URL", sqlite_default(), parse_database);
        let database_max_connections = env.number("DATABASE_MAX_CONNECTIONS", 10u32, 1..=1000);
        if database.is_postgres() && database_max_connections < 3 {
            env.errors.push(format!(
                "DATABASE_MAX_CONNECTIONS={database_max_connections}: at least 3 with PostgreSQL \
                 (each process holds two for LISTEN: the event log and sessions)"
            ));
        }
        let redis_url = env.parse("REDIS_URL", None, |raw| {
            if raw.starts_with("redis://") || raw.starts_with("rediss://") {
                Ok(Some(raw.to_owned()))
            } else {
                Err("expected a redis:// or rediss:// URL".into())
            }
        });
        let jwt_secret = env.parse("JWT_SECRET", None, |raw| {
            if raw.len() < 32 {
                Err("must be at least 32 bytes long".into())
            } else {
                Ok(Some(SecretString::from(raw)))
            }
        });
        if jwt_secret.is_none() && database.is_postgres() && env.raw("JWT_SECRET").is_none() {
            env.errors.push(
                "JWT_SECRET: required with PostgreSQL (at least 32 bytes, e.g. `openssl rand -hex 32`)"
                    .into(),
            );
        }
        let jwt_ttl = env.duration("JWT_EXPIRES_IN", HOUR, SECOND..=30 * DAY);
        let refresh_ttl = env.duration("REFRESH_TOKEN_TTL", 30 * DAY, SECOND..=365 * DAY);
        let bcrypt_cost = env.number("BCRYPT_COST", 12u32, 4..=31);
        let currency = env.parse("CURRENCY", "USD".to_owned(), |raw| {
            if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(raw.to_owned())
            } else {
                Err("expected a three-letter ISO 4217 code such as USD".into())
            }
        });
        let admin_email = env.parse("ADMIN_EMAIL", DEFAULT_ADMIN_EMAIL.to_owned(), |raw| {
            crate::domain::Email::parse(raw).map(|email| email.as_str().to_owned())
        });
        let admin_password = env.parse(
            "ADMIN_PASSWORD",
            SecretString::from(DEFAULT_ADMIN_PASSWORD),
            |raw| crate::domain::Password::parse(raw).map(|_| SecretString::from(raw)),
        );
        let seed_products = env.number("SEED_PRODUCTS", 50u32, 0..=100_000);
        let idempotency_ttl = env.duration("IDEMPOTENCY_TTL", DAY, DAY..=30 * DAY);
        let event_retention = env.duration("EVENT_RETENTION", 30 * DAY, HOUR..=3650 * DAY);
        let payments = payment_config(&mut env);
        let webhooks = WebhookConfig {
            timeout: env.duration(
                "WEBHOOK_TIMEOUT",
                10 * SECOND,
                Duration::from_millis(10)..=60 * SECOND,
            ),
            backoff_base: env.milliseconds("WEBHOOK_BACKOFF_BASE_MS", 30_000, 1..=3_600_000),
            backoff_max: env.milliseconds("WEBHOOK_BACKOFF_MAX_MS", 3_600_000, 1..=86_400_000),
            max_attempts: env.number("WEBHOOK_MAX_ATTEMPTS", 10u32, 1..=50),
            allow_private: env.parse("WEBHOOK_ALLOW_PRIVATE", false, |raw| match raw {
                "1" | "true" => Ok(true),
                "0" | "false" => Ok(false),
                _ => Err(
                    "expected true (endpoints may be on loopback or private networks) or false"
                        .into(),
                ),
            }),
        };
        let redis_key_prefix = env.parse("REDIS_KEY_PREFIX", "shop".to_owned(), |raw| {
            if raw.len() <= 64
                && raw
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c))
            {
                Ok(raw.to_owned())
            } else {
                Err("expected up to 64 letters, digits, '-', '_', ':' or '.'".into())
            }
        });
        let redis_pool_size = env.number("REDIS_POOL_SIZE", 8usize, 1..=256);
        let rate_per_second = env.number("RATE_LIMIT_PER_SECOND", 100u32, 0..=1_000_000);
        let rate_burst = env.number("RATE_LIMIT_BURST", 200u32, 1..=1_000_000);
        let api_rate = (rate_per_second > 0).then(|| Rate {
            interval: (SECOND / rate_per_second).max(Duration::from_nanos(1)),
            burst: rate_burst,
        });
        let trusted_proxies = env.list("TRUSTED_PROXIES", parse_net);
        let login = login_policy(&mut env);
        let cache_ttl = env.duration("CACHE_TTL", 10 * SECOND, Duration::from_millis(1)..=HOUR);
        let cors_origins = env.list("CORS_ORIGINS", |origin| {
            if origin == "*" || origin.starts_with("http://") || origin.starts_with("https://") {
                Ok(origin.to_owned())
            } else {
                Err(format!(
                    "{origin:?} is not an origin such as https://shop.example"
                ))
            }
        });
        let request_timeout = env.duration(
            "REQUEST_TIMEOUT",
            30 * SECOND,
            Duration::from_millis(1)..=HOUR,
        );
        let log_format = env.parse("LOG_FORMAT", LogFormat::Pretty, |raw| match raw {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected pretty or json".into()),
        });
        let mail = mail_config(&mut env, &database, port);
        let media = media_config(&mut env);
        if !env.errors.is_empty() {
            return Err(ConfigError(env.errors));
        }
        Ok(Self {
            host,
            port,
            database,
            database_max_connections,
            redis_url,
            jwt_secret,
            jwt_ttl,
            refresh_ttl,
            bcrypt_cost,
            currency,
            admin_email,
            admin_password,
            seed_products,
            idempotency_ttl,
            event_retention,
            payments,
            webhooks,
            redis_key_prefix,
            redis_pool_size,
            log_format,
            api_rate,
            trusted_proxies,
            login,
            cache_ttl,
            cors_origins,
            request_timeout,
            mail,
            media,
        })
    }

    /// Whether the admin password is the documented default (so it may be shown).
    pub fn admin_password_is_default(&self) -> bool {
        self.admin_password.expose_secret() == DEFAULT_ADMIN_PASSWORD
    }
}

/// A probability from 0 to 1.
fn probability(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err("expected a probability from 0 to 1, such as 0.8".into()),
    }
}

/// `PAYMENT_*`, `REFUND_FAILURE_RATE`, `WORKERS`, `WORKER_CONCURRENCY`, `QUEUE_LEASE`,
/// `SWEEP_INTERVAL`.
fn payment_config(env: &mut Reader<'_>) -> PaymentConfig {
    let payments = PaymentConfig {
        max_attempts: env.number("PAYMENT_MAX_ATTEMPTS", 5u8, 1..=20),
        success_rate: env.parse("PAYMENT_SUCCESS_RATE", 0.8, probability),
        refund_failure_rate: env.parse("REFUND_FAILURE_RATE", 0.0, probability),
        latency: env.milliseconds("PAYMENT_LATENCY_MS", 500, 0..=600_000),
        backoff_base: env.milliseconds("PAYMENT_BACKOFF_BASE_MS", 1000, 1..=3_600_000),
        backoff_max: env.milliseconds("PAYMENT_BACKOFF_MAX_MS", 30_000, 1..=86_400_000),
        action_timeout: env.duration(
            "PAYMENT_ACTION_TIMEOUT",
            15 * 60 * SECOND,
            Duration::from_millis(100)..=7 * DAY,
        ),
        workers: env.parse("WORKERS", true, |raw| match raw {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => Err("expected 1 (run payment workers in this process) or 0".into()),
        }),
        worker_concurrency: env.number("WORKER_CONCURRENCY", 16usize, 1..=1024),
        lease: env.duration(
            "QUEUE_LEASE",
            30 * SECOND,
            Duration::from_millis(100)..=HOUR,
        ),
        sweep_interval: env.duration(
            "SWEEP_INTERVAL",
            5 * SECOND,
            Duration::from_millis(10)..=HOUR,
        ),
    };
    if payments.lease <= payments.latency * 2 {
        env.errors.push(format!(
            "QUEUE_LEASE={:?}: must be more than twice PAYMENT_LATENCY_MS, or healthy attempts would be taken over",
            humantime::format_duration(payments.lease).to_string()
        ));
    }
    payments
}

/// `MAIL_*`, `SMTP_URL`, `PUBLIC_URL` and `PASSWORD_RESET_*`. Mail goes to files on the
/// embedded database and to the log with PostgreSQL, unless `MAIL_TRANSPORT` says otherwise.
fn mail_config(env: &mut Reader<'_>, database: &DatabaseConfig, port: u16) -> MailConfig {
    let default = if database.is_postgres() {
        "log"
    } else {
        "file"
    };
    let kind = env.parse("MAIL_TRANSPORT", default.to_owned(), |raw| match raw {
        "file" | "smtp" | "log" => Ok(raw.to_owned()),
        _ => Err("expected file, smtp or log".into()),
    });
    let dir = env.parse("MAIL_DIR", PathBuf::from("data/mail"), |raw| {
        Ok(PathBuf::from(raw))
    });
    let smtp = env.parse("SMTP_URL", None, |raw| {
        if raw.starts_with("smtp://") || raw.starts_with("smtps://") {
            Ok(Some(SecretString::from(raw)))
        } else {
            Err("expected an smtp:// or smtps:// URL".into())
        }
    });
    let transport = match (kind.as_str(), smtp) {
        ("smtp", Some(url)) => MailTransport::Smtp { url },
        ("smtp", None) => {
            env.errors
                .push("SMTP_URL: required with MAIL_TRANSPORT=smtp".into());
            MailTransport::Log
        }
        ("file", _) => MailTransport::File { dir },
        _ => MailTransport::Log,
    };
    let from = env.parse(
        "MAIL_FROM",
        "shop <no-reply@shop.local>".to_owned(),
        |raw| {
            raw.parse::<lettre::message::Mailbox>()
                .map(|_| raw.to_owned())
                .map_err(|err| {
                    format!("expected a mailbox such as `Shop <shop@example.com>` ({err})")
                })
        },
    );
    let public_url = env.parse("PUBLIC_URL", format!("http://localhost:{port}"), |raw| {
        let url = raw.trim_end_matches('/');
        if (url.starts_with("http://") || url.starts_with("https://"))
            && !url.contains(char::is_whitespace)
        {
            Ok(url.to_owned())
        } else {
            Err("expected the storefront's http:// or https:// address".into())
        }
    });
    MailConfig {
        transport,
        from,
        public_url,
        reset_ttl: env.duration("PASSWORD_RESET_TTL", 30 * 60 * SECOND, SECOND..=DAY),
        reset_per_address: env.number("PASSWORD_RESET_MAX_PER_ADDRESS", 10u32, 1..=100_000),
        reset_per_email: env.number("PASSWORD_RESET_MAX_PER_EMAIL", 3u32, 1..=1000),
    }
}

/// `MEDIA_DIR`, `IMAGE_MAX_BYTES` and `S3_*` (with `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`).
fn media_config(env: &mut Reader<'_>) -> MediaConfig {
    let dir = env.parse("MEDIA_DIR", PathBuf::from("data/media"), |raw| {
        Ok(PathBuf::from(raw))
    });
    let image_max_bytes = env.number(
        "IMAGE_MAX_BYTES",
        10 * 1024 * 1024,
        1024..=100 * 1024 * 1024,
    );
    let bucket = env.parse("S3_BUCKET", None, |raw| {
        if (3..=63).contains(&raw.len())
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            Ok(Some(raw.to_owned()))
        } else {
            Err("expected a bucket name: 3 to 63 lower-case letters, digits, '-' or '.'".into())
        }
    });
    let endpoint = env.parse("S3_ENDPOINT", None, |raw| {
        if raw.starts_with("http://") || raw.starts_with("https://") {
            Ok(Some(raw.trim_end_matches('/').to_owned()))
        } else {
            Err("expected an http:// or https:// URL such as http://minio:9000".into())
        }
    });
    let region = env.parse(
        "S3_REGION",
        "us-east-1".to_owned(),
        |raw| Ok(raw.to_owned()),
    );
    let access_key_id = env.raw("AWS_ACCESS_KEY_ID");
    let secret_access_key = env.raw("AWS_SECRET_ACCESS_KEY").map(SecretString::from);
    let s3 = bucket.map(|bucket| S3Config {
        bucket,
        endpoint,
        region,
        access_key_id,
        secret_access_key,
    });
    MediaConfig {
        dir,
        s3,
        image_max_bytes,
    }
}

/// `LOGIN_*`: how many failed sign-ins are allowed, counted three ways.
fn login_policy(env: &mut Reader<'_>) -> LoginPolicy {
    LoginPolicy {
        per_account_and_address: env.number("LOGIN_MAX_FAILURES", 5u32, 1..=1000),
        per_address: env.number("LOGIN_MAX_FAILURES_PER_ADDRESS", 30u32, 1..=100_000),
        per_account: env.number("LOGIN_LOCKOUT_THRESHOLD", 10u32, 1..=1000),
        window: env.duration("LOGIN_LOCKOUT_WINDOW", 15 * 60 * SECOND, SECOND..=DAY),
    }
}

fn sqlite_default() -> DatabaseConfig {
    DatabaseConfig::Sqlite {
        path: PathBuf::from("data/shop.db"),
    }
}

fn parse_database(url: &str) -> Result<DatabaseConfig, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(DatabaseConfig::Postgres {
            url: url.to_owned(),
        });
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err("expected postgres://user:pass@host/db or sqlite://path/to/file.db".into());
    };
    let path = rest
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err("a SQLite database must be a file, such as sqlite://data/shop.db".into());
    }
    Ok(DatabaseConfig::Sqlite {
        path: PathBuf::from(path),
    })
}

/// An address (`10.0.0.1`) or a network (`10.0.0.0/8`).
fn parse_net(raw: &str) -> Result<ipnet::IpNet, String> {
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{raw:?} is not an IP address or network such as 10.0.0.0/8"))
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
        let err = config(&[("JWT_EXPIRES_IN", "31d")]).unwrap_err();
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
            ("LOGIN_MAX_FAILURES", "6"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
        ])
        .unwrap();
        assert_eq!(c.api_rate, None);
        assert_eq!(c.login.per_account_and_address, 6);
        assert_eq!(c.login.window, Duration::from_secs(900));
        assert_eq!(
            config(&[("RATE_LIMIT_PER_SECOND", "4")])
                .unwrap()
                .api_rate
                .unwrap()
                .interval,
            Duration::from_millis(250)
        );
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
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("1 banana").is_err());
        assert!(parse_duration("").is_err());
    }
}
