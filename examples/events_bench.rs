//! Event delivery benchmark (run through `bench/events.sh`, which builds and prepares it).
//!
//! Against PostgreSQL and a Redis of its own, one `shop serve` (with workers,
//! `PAYMENT_LATENCY_MS=0`):
//! 1. an admin listens three ways: Socket.IO `/orders`, the SSE stream, and a webhook
//!    receiver on this machine subscribed to `order.*`;
//! 2. orders are placed at `BENCH_RATE` (100) orders/s, then as fast as 16 clients can;
//!    for each `order.*` event, how long it took from the change to each listener, p50
//!    and p99. The change's time is the `updatedAt` of the order (Socket.IO) or the
//!    event's `createdAt` (SSE, webhooks), both stamped in the committing transaction
//!    before its statements run, so the figures are upper bounds;
//! 3. `POST /orders` requests/s by 16 clients with Redis up, then with Redis stopped
//!    (`redis-cli shutdown`); Redis is started again and every event is checked to reach
//!    the Socket.IO listener and the webhook receiver.

use std::{
    collections::HashSet,
    net::SocketAddr,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State, http::StatusCode, routing::post as route_post};
use chrono::{DateTime, Utc};
mod support;

use futures::{FutureExt, StreamExt, stream};
use rust_socketio::{Payload, TransportType, asynchronous::ClientBuilder};
use serde_json::{Value, json};
use support::{Processes, Shop, env_or, percentile, post, post_ok, spawn};

/// Delays in ms, per listener, with the event ids seen.
#[derive(Default)]
struct Seen {
    delays: Vec<f64>,
    ids: HashSet<String>,
}

type Shared = Arc<Mutex<Seen>>;

fn record(seen: &Shared, id: String, changed: &str) {
    let now = Utc::now();
    if let Ok(at) = DateTime::parse_from_rfc3339(changed) {
        let ms = (now - at.with_timezone(&Utc))
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1000.0;
        let mut seen = seen.lock().unwrap();
        if seen.ids.insert(id) {
            seen.delays.push(ms);
        }
    }
}

/// How many, p50 and p99 of the delays `seen` recorded between entries `from` and `to`.
fn summary(seen: &Shared, from: usize, to: usize) -> (usize, f64, f64) {
    let mut delays = seen.lock().unwrap().delays[from..to].to_vec();
    delays.sort_by(f64::total_cmp);
    (
        delays.len(),
        percentile(&delays, 50.0),
        percentile(&delays, 99.0),
    )
}

async fn receive(State(seen): State<Shared>, body: Bytes) -> StatusCode {
    if let Ok(event) = serde_json::from_slice::<Value>(&body)
        && let (Some(id), Some(at)) = (event["id"].as_str(), event["createdAt"].as_str())
    {
        record(&seen, id.to_owned(), at);
    }
    StatusCode::NO_CONTENT
}

/// Reads the SSE stream, recording each `order.*` event.
async fn listen_sse(http: reqwest::Client, url: String, seen: Shared) {
    let mut response = http.get(url).send().await.expect("SSE stream");
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: "))
                && let Ok(event) = serde_json::from_str::<Value>(data)
                && event["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("order."))
                && let (Some(id), Some(at)) = (event["id"].as_str(), event["createdAt"].as_str())
            {
                record(&seen, id.to_owned(), at);
            }
        }
    }
}

/// Places `count` orders, `concurrency` at a time; answers how long it took and how many
/// were accepted.
async fn place(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    products: &[String],
    count: usize,
    concurrency: usize,
) -> (Duration, usize) {
    let started = Instant::now();
    let accepted = stream::iter(0..count)
        .map(|i| {
            let body = json!({
                "items": [{"productId": products[i % products.len()], "quantity": 1}],
                "paymentMethod": "pm_success",
            });
            post(http, format!("{base}/orders"), Some(token), body)
        })
        .buffer_unordered(concurrency)
        .filter(|(_, answer)| std::future::ready(answer["id"].is_string()))
        .count()
        .await;
    (started.elapsed(), accepted)
}

/// The server's `event_relay_delay_seconds` histogram: cumulative counts by upper bound.
async fn relay_buckets(http: &reqwest::Client, base: &str) -> Vec<(f64, u64)> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| line.strip_prefix("event_relay_delay_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            Some((
                le.parse::<f64>().unwrap_or(f64::INFINITY),
                count.trim().parse().ok()?,
            ))
        })
        .collect()
}

/// The upper bounds (ms) of p50 and p99 of what the histogram gained between two scrapes.
fn bucket_quantiles(before: &[(f64, u64)], after: &[(f64, u64)]) -> (u64, f64, f64) {
    let counts: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before.iter().find(|(b, _)| b == le).map_or(0, |(_, n)| *n);
            (*le, n - was)
        })
        .collect();
    let total = counts.last().map_or(0, |(_, n)| *n);
    let bound = |q: f64| {
        counts
            .iter()
            .find(|(_, n)| *n as f64 >= q * total as f64)
            .map_or(f64::NAN, |(le, _)| le * 1000.0)
    };
    (total, bound(0.5), bound(0.99))
}

/// Waits (up to 60 s) until `seen` holds `want` events.
async fn settle(seen: &Shared, want: usize) {
    let started = Instant::now();
    while seen.lock().unwrap().ids.len() < want && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() {
    let redis_port = std::env::var("BENCH_REDIS_PORT").expect("BENCH_REDIS_PORT");
    let orders = env_or("BENCH_ORDERS", 1_000);
    let rate = env_or("BENCH_RATE", 100);
    let _processes = Processes(vec![spawn("serve", &[])]);
    let Shop {
        http,
        base,
        admin,
        client,
        products,
    } = Shop::ready().await;

    // 1. Three listeners.
    let socket: Shared = Arc::default();
    let sse: Shared = Arc::default();
    let hooks: Shared = Arc::default();
    let sink = socket.clone();
    let listener = ClientBuilder::new(base.clone())
        .namespace("/orders")
        .transport_type(TransportType::Websocket)
        .auth(json!({"token": admin}))
        .on("status", move |payload, _| {
            let sink = sink.clone();
            async move {
                if let Payload::Text(values) = payload
                    && let Some(order) = values.first()
                    && let (Some(id), Some(status), Some(at)) = (
                        order["id"].as_str(),
                        order["status"].as_str(),
                        order["updatedAt"].as_str(),
                    )
                {
                    record(&sink, format!("{id}:{status}"), at);
                }
            }
            .boxed()
        })
        .connect()
        .await
        .expect("socket.io connect");
    tokio::spawn(listen_sse(
        http.clone(),
        format!("{base}/events/stream?access_token={admin}"),
        sse.clone(),
    ));
    let receiver = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let hook_url = format!(
        "http://127.0.0.1:{}/hook",
        receiver.local_addr().unwrap().port()
    );
    let app = axum::Router::new()
        .route("/hook", route_post(receive))
        .with_state(hooks.clone());
    tokio::spawn(async move { axum::serve(receiver, app).await });
    // BENCH_WEBHOOK=0 leaves webhooks out, to see what they cost the other listeners.
    let webhooks = env_or("BENCH_WEBHOOK", 1) == 1;
    if webhooks {
        let created = post_ok(
            &http,
            format!("{base}/webhooks"),
            Some(&admin),
            json!({"url": hook_url, "events": ["order.*"]}),
        )
        .await;
        assert!(created["secret"].is_string(), "webhook endpoint: {created}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2. Paced, then saturated. Each order makes three order.* events.
    let relay_start = relay_buckets(&http, &base).await;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut paced = Vec::new();
    for i in 0..orders {
        tick.tick().await;
        let (http, base, client) = (http.clone(), base.clone(), client.clone());
        let product = products[i % products.len()].clone();
        paced.push(tokio::spawn(async move {
            let body = json!({"items": [{"productId": product, "quantity": 1}], "paymentMethod": "pm_success"});
            post(&http, format!("{base}/orders"), Some(&client), body).await
        }));
    }
    futures::future::join_all(paced).await;
    let listeners: Vec<&Shared> = if webhooks {
        vec![&socket, &sse, &hooks]
    } else {
        vec![&socket, &sse]
    };
    for seen in &listeners {
        settle(seen, orders * 3).await;
    }
    let relay_paced = relay_buckets(&http, &base).await;
    let marks: Vec<usize> = [&socket, &sse, &hooks]
        .iter()
        .map(|s| s.lock().unwrap().delays.len())
        .collect();
    let (took, _) = place(&http, &base, &client, &products, orders, 16).await;
    let saturated_rate = orders as f64 / took.as_secs_f64();
    for seen in &listeners {
        settle(seen, orders * 6).await;
    }
    let relay_saturated = relay_buckets(&http, &base).await;
    let ends: Vec<usize> = [&socket, &sse, &hooks]
        .iter()
        .map(|s| s.lock().unwrap().delays.len())
        .collect();

    // 3. POST /orders with Redis up, then stopped.
    let burst = orders * 2;
    let (up, up_ok) = place(&http, &base, &client, &products, burst, 16).await;
    let redis_cli = |args: &[&str]| {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &redis_port])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    let _ = redis_cli(&["shutdown", "nosave"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (down, down_ok) = place(&http, &base, &client, &products, burst, 16).await;
    let _ = Command::new("redis-server")
        .args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            &redis_port,
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .status();
    let total = (orders * 2 + up_ok + down_ok) * 3;
    let back = Instant::now();
    settle(&socket, total).await;
    if webhooks {
        settle(&hooks, total).await;
    }
    let caught_up = back.elapsed();
    let _ = listener.disconnect().await;

    println!();
    println!("| figure | value |");
    println!("|---|---|");
    for (label, before, after) in [
        (format!("{rate} orders/s"), &relay_start, &relay_paced),
        ("saturation".to_owned(), &relay_paced, &relay_saturated),
    ] {
        let (n, p50, p99) = bucket_quantiles(before, after);
        println!(
            "| change → the server's relay, {label} ({n} events, every type) | p50 ≤ {p50} ms, p99 ≤ {p99} ms (histogram bucket bounds) |"
        );
    }
    for (label, from) in [
        (format!("{rate} orders/s"), None),
        ("saturation".to_owned(), Some(())),
    ] {
        for (i, (name, seen)) in [("Socket.IO", &socket), ("SSE", &sse), ("webhook", &hooks)]
            .into_iter()
            .enumerate()
        {
            let (n, p50, p99) = match from {
                None => summary(seen, 0, marks[i]),
                Some(()) => summary(seen, marks[i], ends[i]),
            };
            let target = if name == "webhook" { 100 } else { 50 };
            println!(
                "| change → {name}, {label} ({n} events) | p50 {p50:.1} ms, p99 {p99:.1} ms (target p99 < {target} ms) |"
            );
        }
    }
    println!("| saturation: orders placed by 16 clients | {saturated_rate:.0} orders/s |");
    let up_rate = up_ok as f64 / up.as_secs_f64();
    let down_rate = down_ok as f64 / down.as_secs_f64();
    println!(
        "| `POST /orders`, 16 clients, Redis up | {up_rate:.0} orders/s ({up_ok}/{burst} accepted) |"
    );
    println!(
        "| `POST /orders`, 16 clients, Redis stopped | {down_rate:.0} orders/s ({down_ok}/{burst} accepted; {:.0} % of Redis up, target ≥ 90 %) |",
        100.0 * down_rate / up_rate
    );
    let (socket_ids, hook_ids) = (
        socket.lock().unwrap().ids.len(),
        hooks.lock().unwrap().ids.len(),
    );
    println!(
        "| after Redis returned: events at Socket.IO / webhook | {socket_ids} / {hook_ids} of {total} ({:.1} s to catch up) |",
        caught_up.as_secs_f64()
    );
}
