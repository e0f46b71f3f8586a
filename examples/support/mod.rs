//! What the benchmarks share: the `shop` processes they start, the environment they read,
//! HTTP helpers, and a shop ready to take orders.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

/// `shop` processes, killed when dropped.
pub struct Processes(pub Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A whole-number setting, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts `shop <command>` from `SHOP_BIN_DIR`, with the environment and `extra`.
pub fn spawn(command: &str, extra: &[(&str, &str)]) -> Child {
    let bin_dir = std::env::var("SHOP_BIN_DIR").expect("SHOP_BIN_DIR");
    Command::new(format!("{bin_dir}/shop"))
        .arg(command)
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start shop {command}: {err}"))
}

/// `POST`s `body`; answers the status and the JSON answer (`null` when there is none).
pub async fn post(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> (reqwest::StatusCode, Value) {
    let mut request = http.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// As [`post`], for a request that must succeed.
pub async fn post_ok(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Value {
    let (status, body) = post(http, url, token, body).await;
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// The value at rank `p` (0–100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A running shop to order from: the admin's token, a client's token and 100 products
/// with ample stock.
pub struct Shop {
    pub http: reqwest::Client,
    pub base: String,
    pub admin: String,
    pub client: String,
    pub products: Vec<String>,
}

impl Shop {
    /// Waits for the instance on `PORT`, signs the admin in (`ADMIN_EMAIL`,
    /// `ADMIN_PASSWORD`, else the documented defaults), adds the products and registers a
    /// client.
    pub async fn ready() -> Self {
        shop::webhooks::sender::install_crypto();
        let http = reqwest::Client::new();
        let port = std::env::var("PORT").expect("PORT");
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if http.get(format!("{base}/health")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let email = std::env::var("ADMIN_EMAIL").unwrap_or("admin@shop.local".into());
        let password = std::env::var("ADMIN_PASSWORD").unwrap_or("Admin123!".into());
        let token = |answer: Value| answer["access_token"].as_str().expect("a token").to_owned();
        let login = json!({"email": email, "password": password});
        let admin = token(post_ok(&http, format!("{base}/auth/login"), None, login).await);
        let mut products = Vec::new();
        for i in 0..100 {
            let body =
                json!({"name": format!("Bench product {i}"), "price": "9.99", "stock": 1_000_000});
            let created = post_ok(&http, format!("{base}/products"), Some(&admin), body).await;
            products.push(created["id"].as_str().unwrap().to_owned());
        }
        let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
        let register = json!({"email": email, "password": "Bench!pass1"});
        let client = token(post_ok(&http, format!("{base}/auth/register"), None, register).await);
        Self {
            http,
            base,
            admin,
            client,
            products,
        }
    }
}
