//! `TestApp`: a running instance plus request helpers, and the `both_backends!` macro.

use std::{
    collections::HashMap,
    io::Write,
    sync::{Once, OnceLock},
    time::Duration,
};

use reqwest::{Method, StatusCode, header::HeaderMap};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use shop::{config::Config, payments::worker, startup::Application, state::AppState};
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "admin@shop.test";
pub const ADMIN_PASSWORD: &str = "Adm1n!pass";
pub const PASSWORD: &str = "Str0ng!pass";

/// Generates one test per backend for each named `async fn(TestApp)`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Sqlite)
                        .await
                        .expect("SQLite is always available");
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) =
                        $crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres).await
                    {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An HTTP answer, decoded.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The problem `code`, or "" when the body is not a problem.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// Asserts the status and, for errors, the problem+json shape.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {:#}",
            self.body
        );
        if status >= 400 {
            let content_type = self.headers["content-type"].to_str().unwrap();
            assert_eq!(content_type, "application/problem+json");
            assert_eq!(self.body["status"], status);
            assert!(
                self.body["type"]
                    .as_str()
                    .unwrap()
                    .starts_with("urn:shop:problem:")
            );
            assert!(self.body["title"].is_string() && self.body["detail"].is_string());
        }
        &self.body
    }

    /// Asserts an error status and its problem `code`.
    #[track_caller]
    pub fn expect_problem(&self, status: u16, code: &str) -> &Value {
        self.expect(status);
        assert_eq!(self.code(), code, "unexpected problem: {:#}", self.body);
        &self.body
    }
}

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub state: AppState,
    /// The settings it was started with.
    pub env: HashMap<String, String>,
    /// The PostgreSQL database made for this test, dropped with it.
    pg_database: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let Some(name) = self.pg_database.take() else {
            return;
        };
        // Drop is synchronous: use a throwaway runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = Database::connect(&postgres_admin_url()).await.ok()?;
                let _ = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
                admin.close().await.ok()
            })
        })
        .join();
    }
}

pub fn require_external() -> bool {
    std::env::var("SHOP_TEST_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1" || v == "true")
}

fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Says once, past the test harness's output capture, that the PostgreSQL suite is skipped.
pub fn announce_skip(reason: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\nNOTE: an external backend is not reachable ({reason}); the external-backend \
             (PostgreSQL + Redis) tests are SKIPPED and pass vacuously. Set TEST_DATABASE_URL \
             and TEST_REDIS_URL, or SHOP_TEST_REQUIRE_EXTERNAL=1 to make this a failure.\n"
        );
    });
}

impl TestApp {
    /// Starts an instance on a fresh database with a seeded admin. `None` when the backend
    /// is PostgreSQL, it is unreachable, and it is not required.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, &[]).await
    }

    /// As [`spawn`](Self::spawn), with extra environment settings.
    pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> Option<TestApp> {
        let mut vars: HashMap<String, String> = HashMap::from([
            ("HOST".into(), "127.0.0.1".into()),
            ("PORT".into(), "0".into()),
            (
                "JWT_SECRET".into(),
                "test-secret-test-secret-test-secret!".into(),
            ),
            ("BCRYPT_COST".into(), "4".into()),
            ("SEED_PRODUCTS".into(), "0".into()),
            ("ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
            ("ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
            ("DATABASE_MAX_CONNECTIONS".into(), "8".into()),
            // Payments are fast here, and processed only where a test asks for workers.
            ("WORKERS".into(), "0".into()),
            ("PAYMENT_LATENCY_MS".into(), "0".into()),
            ("PAYMENT_BACKOFF_BASE_MS".into(), "10".into()),
            ("PAYMENT_BACKOFF_MAX_MS".into(), "40".into()),
            ("SWEEP_INTERVAL".into(), "200ms".into()),
            ("QUEUE_LEASE".into(), "5s".into()),
            // Every test talks from 127.0.0.1: limits are tested where a test sets them.
            ("RATE_LIMIT_PER_SECOND".into(), "0".into()),
        ]);
        // Files of this instance (the SQLite database, mail, media) live in a directory of
        // its own.
        let tmp = tempfile::tempdir().expect("temp dir");
        for (name, sub) in [("MAIL_DIR", "mail"), ("MEDIA_DIR", "media")] {
            vars.insert(name.into(), tmp.path().join(sub).display().to_string());
        }
        let mut pg_database = None;
        match backend {
            Backend::Sqlite => {
                vars.insert(
                    "DATABASE_URL".into(),
                    format!("sqlite://{}", tmp.path().join("shop.db").display()),
                );
            }
            Backend::Postgres => {
                // The external backend is PostgreSQL with Redis, under a key prefix of its own.
                let redis = redis_url().await?;
                let (url, name) = create_postgres_database().await?;
                vars.insert("DATABASE_URL".into(), url);
                pg_database = Some(name);
                vars.insert("REDIS_URL".into(), redis);
                vars.insert(
                    "REDIS_KEY_PREFIX".into(),
                    format!("test-{}", Uuid::new_v4().simple()),
                );
            }
        }
        for (k, v) in extra {
            vars.insert((*k).into(), (*v).into());
        }
        let mut app = Self::start(vars).await;
        shop::seed::run(
            &app.state.db,
            &app.state.passwords,
            ADMIN_EMAIL,
            ADMIN_PASSWORD,
            0,
            None,
        )
        .await
        .expect("admin seeded");
        app.pg_database = pg_database;
        app._dir = Some(tmp);
        Some(app)
    }

    async fn start(env: HashMap<String, String>) -> TestApp {
        let config = Config::from_lookup(|name| env.get(name).cloned()).expect("test config");
        let app = Application::build(config)
            .await
            .expect("application starts");
        let port = app.port();
        let state = app.state().clone();
        shop::webhooks::sender::install_crypto();
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        TestApp {
            base: format!("http://127.0.0.1:{port}"),
            port,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            state,
            env,
            pg_database: None,
            _dir: None,
        }
    }

    /// Another instance on the same database and Redis (the first one owns them).
    pub async fn sibling(&self, extra: &[(&str, &str)]) -> TestApp {
        let mut env = self.env.clone();
        for (k, v) in extra {
            env.insert((*k).into(), (*v).into());
        }
        Self::start(env).await
    }

    /// Starts a `shop <command>` process with this instance's settings (and `extra`).
    pub fn process(&self, command: &str, extra: &[(&str, &str)]) -> tokio::process::Child {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_shop"))
            .arg(command)
            .envs(&self.env)
            .envs(extra.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start a shop process")
    }

    /// Waits until a `shop` process started with [`process`](Self::process) answers on
    /// `port` (panics after 10 s); returns its base URL.
    pub async fn wait_until_serving(&self, port: u16) -> String {
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..400 {
            if self
                .client
                .get(format!("{base}/health"))
                .send()
                .await
                .is_ok()
            {
                return base;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no shop process answered on {port}");
    }

    /// What this instance's payment workers use, for running them (or one attempt) here.
    pub fn worker_env(&self) -> worker::Environment {
        worker::Environment::from(&self.state)
    }

    /// Whether this instance uses the external backends (PostgreSQL + Redis).
    pub fn is_external(&self) -> bool {
        self.env.contains_key("REDIS_URL")
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Registers a fresh client; returns its token and id.
    pub async fn client_user(&self) -> (String, String) {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        let answer = self
            .post(
                "/auth/register",
                None,
                json!({"email": email, "password": PASSWORD, "name": "Test"}),
            )
            .await;
        let body = answer.expect(201);
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["user"]["id"].as_str().unwrap().to_owned(),
        )
    }

    /// The seeded admin's token.
    pub async fn admin(&self) -> String {
        let answer = self
            .post(
                "/auth/login",
                None,
                json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
            )
            .await;
        answer.expect(200)["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates a product as admin; returns its id.
    pub async fn product(&self, admin: &str, name: &str, price: &str, stock: i64) -> String {
        let answer = self
            .post(
                "/products",
                Some(admin),
                json!({"name": name, "price": price, "stock": stock}),
            )
            .await;
        answer.expect(201)["id"].as_str().unwrap().to_owned()
    }

    /// A product's current stock, read as an admin (sees deleted ones too).
    pub async fn stock(&self, admin: &str, id: &str) -> i64 {
        let answer = self.get(&format!("/products/{id}"), Some(admin)).await;
        answer.expect(200)["stock"].as_i64().unwrap()
    }

    /// Places an order of `(product, quantity)` lines, paid with `pm_success`.
    pub async fn order(&self, token: &str, lines: &[(&str, i64)]) -> Answer {
        self.order_with(token, lines, "pm_success").await
    }

    /// Places an order of `(product, quantity)` lines with a payment method.
    pub async fn order_with(&self, token: &str, lines: &[(&str, i64)], method: &str) -> Answer {
        let items: Vec<Value> = lines
            .iter()
            .map(|(id, q)| json!({"productId": id, "quantity": q}))
            .collect();
        self.post(
            "/orders",
            Some(token),
            json!({"items": items, "paymentMethod": method}),
        )
        .await
    }

    /// Polls an order until its status is one of `statuses` (panics after 30 s).
    pub async fn wait_for_order(&self, token: &str, id: &str, statuses: &[&str]) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let order = self.get(&format!("/orders/{id}"), Some(token)).await;
            let body = order.expect(200).clone();
            if statuses.iter().any(|s| body["status"] == *s) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order never reached {statuses:?}: {body:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Creates an empty database for one test; `None` (after saying so) when PostgreSQL is
/// unreachable and not required.
async fn create_postgres_database() -> Option<(String, String)> {
    // Once PostgreSQL has been found unreachable, later tests skip at once.
    static UNREACHABLE: OnceLock<String> = OnceLock::new();
    if let Some(reason) = UNREACHABLE.get() {
        return unavailable(reason);
    }
    let admin_url = postgres_admin_url();
    let mut options = sea_orm::ConnectOptions::new(admin_url.clone());
    options
        .connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(3))
        .max_connections(1)
        .sqlx_logging(false);
    let connect = tokio::time::timeout(Duration::from_secs(5), Database::connect(options)).await;
    let admin = match connect {
        Ok(Ok(db)) => db,
        Ok(Err(err)) => return unavailable(UNREACHABLE.get_or_init(|| err.to_string())),
        Err(_) => return unavailable(UNREACHABLE.get_or_init(|| "connection timed out".into())),
    };
    let name = format!("shop_test_{}", Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let _ = admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
    Some((format!("{base}/{name}"), name))
}

/// The Redis to test against; `None` (after saying so) when unreachable and not required.
pub async fn redis_url() -> Option<String> {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let address = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let reachable = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(address.clone()),
    )
    .await;
    match reachable {
        Ok(Ok(_)) => Some(url),
        Ok(Err(err)) => unavailable(&format!("Redis at {address}: {err}")),
        Err(_) => unavailable(&format!("Redis at {address}: timed out")),
    }
}

fn unavailable<T>(reason: &str) -> Option<T> {
    if require_external() {
        panic!(
            "external backends are required (SHOP_TEST_REQUIRE_EXTERNAL=1) but unreachable: {reason}"
        );
    }
    announce_skip(reason);
    None
}
