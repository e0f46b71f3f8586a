//! Payment benchmark (run through `bench/payments.sh`, which builds and prepares it).
//!
//! Against PostgreSQL + Redis, with `PAYMENT_LATENCY_MS=0`:
//! 1. starts `shop serve` without workers and queues `BENCH_ORDERS` (10,000) paid orders;
//! 2. starts one `shop worker` and times how long it takes to drain them all;
//! 3. places `BENCH_LATENCY_ORDERS` (1,000) more while an admin listens on `/orders`, first
//!    paced at `BENCH_LATENCY_RATE` (100) orders/s, then as fast as 8 clients can, and
//!    reports how long each event took from the order's commit to the listening client,
//!    p50 and p99. The commit time is approximated by the order's `updatedAt`, stamped in
//!    the committing transaction before its statements run, so the figures are upper bounds.
//!
//! Settings come from the environment the script exports (DATABASE_URL, REDIS_URL, ...).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

mod support;

use futures::{FutureExt, StreamExt, stream};
use rust_socketio::{Payload, TransportType, asynchronous::ClientBuilder};
use serde_json::{Value, json};
use support::{Processes, Shop, env_or, percentile, post_ok, spawn};

async fn get(http: &reqwest::Client, url: String, token: &str) -> Value {
    let response = http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    response.json().await.expect("json")
}

async fn place_orders(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    products: &[String],
    count: usize,
    concurrency: usize,
) -> Duration {
    let started = Instant::now();
    stream::iter(0..count)
        .map(|i| {
            let body = json!({
                "items": [{"productId": products[i % products.len()], "quantity": 1}],
                "paymentMethod": "pm_success",
            });
            post_ok(http, format!("{base}/orders"), Some(token), body)
        })
        .buffer_unordered(concurrency)
        .for_each(|_| async {})
        .await;
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let orders = env_or("BENCH_ORDERS", 10_000);
    let latency_orders = env_or("BENCH_LATENCY_ORDERS", 1_000);
    let mut processes = Processes(vec![spawn("serve", &[("WORKERS", "0")])]);
    let Shop {
        http,
        base,
        admin,
        client,
        products,
    } = Shop::ready().await;

    // 1. Queue the backlog.
    let fill = place_orders(&http, &base, &client, &products, orders, 32).await;
    let queued = get(&http, format!("{base}/admin/queues"), &admin).await;
    assert_eq!(
        queued["payments"]["ready"].as_u64(),
        Some(orders as u64),
        "{queued}"
    );

    // 2. One worker drains it.
    let drain_started = Instant::now();
    processes.0.push(spawn("worker", &[]));
    loop {
        let view = get(&http, format!("{base}/admin/queues"), &admin).await;
        let left: u64 = ["ready", "delayed", "processing"]
            .iter()
            .map(|k| view["payments"][k].as_u64().unwrap_or(u64::MAX))
            .sum();
        if left == 0 {
            break;
        }
        assert!(
            drain_started.elapsed() < Duration::from_secs(600),
            "drain stalled: {view}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = drain_started.elapsed();
    let completed = get(
        &http,
        format!("{base}/orders?status=COMPLETED&take=1"),
        &admin,
    )
    .await;
    assert_eq!(
        completed["totalCount"].as_u64(),
        Some(orders as u64),
        "every payment succeeded"
    );

    // 3. Commit-to-client delay of /orders events, with the worker running.
    let delays: Arc<Mutex<Vec<(String, f64)>>> = Arc::default();
    let sink = delays.clone();
    let listener = ClientBuilder::new(base.clone())
        .namespace("/orders")
        .transport_type(TransportType::Websocket)
        .auth(json!({"token": admin}))
        .on("status", move |payload, _| {
            let received = chrono::Utc::now();
            let sink = sink.clone();
            async move {
                if let Payload::Text(values) = payload
                    && let Some(order) = values.first()
                    && let Some(updated) = order["updatedAt"].as_str()
                    && let Ok(updated) = chrono::DateTime::parse_from_rfc3339(updated)
                {
                    let ms = (received - updated.with_timezone(&chrono::Utc))
                        .num_microseconds()
                        .unwrap_or(0) as f64
                        / 1000.0;
                    let status = order["status"].as_str().unwrap_or_default().to_owned();
                    sink.lock().unwrap().push((status, ms));
                }
            }
            .boxed()
        })
        .connect()
        .await
        .expect("socket.io connect");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rate = env_or("BENCH_LATENCY_RATE", 100);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut paced = Vec::new();
    for i in 0..latency_orders {
        tick.tick().await;
        let (http, base, client) = (http.clone(), base.clone(), client.clone());
        let product = products[i % products.len()].clone();
        paced.push(tokio::spawn(async move {
            let body = json!({"items": [{"productId": product, "quantity": 1}], "paymentMethod": "pm_success"});
            post_ok(&http, format!("{base}/orders"), Some(&client), body).await
        }));
    }
    futures::future::join_all(paced).await;
    let settle = |want: usize| {
        let delays = delays.clone();
        async move {
            let started = Instant::now();
            while delays.lock().unwrap().len() < want && started.elapsed() < Duration::from_secs(60)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            delays.lock().unwrap().clone()
        }
    };
    let paced_delays = settle(latency_orders * 3).await;
    place_orders(&http, &base, &client, &products, latency_orders, 8).await;
    let all_delays = settle(latency_orders * 6).await;
    let _ = listener.disconnect().await;
    let saturated_delays = all_delays[paced_delays.len().min(all_delays.len())..].to_vec();

    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| orders queued (HTTP, 32 concurrent) | {orders} in {:.2} s ({:.0} orders/s) |",
        fill.as_secs_f64(),
        orders as f64 / fill.as_secs_f64()
    );
    println!(
        "| one `shop worker` drains {orders} payments | {:.2} s ({:.0} payments/s; target < 10 s) |",
        drain.as_secs_f64(),
        orders as f64 / drain.as_secs_f64()
    );
    for (label, delays) in [
        (format!("paced at {rate} orders/s"), &paced_delays),
        (
            "8 clients as fast as they can".to_owned(),
            &saturated_delays,
        ),
    ] {
        let mut all: Vec<f64> = delays.iter().map(|(_, ms)| *ms).collect();
        all.sort_by(f64::total_cmp);
        println!(
            "| commit → `/orders` event at the client, {label}, {} events | p50 {:.1} ms, p99 {:.1} ms (target p99 < 50 ms) |",
            all.len(),
            percentile(&all, 50.0),
            percentile(&all, 99.0)
        );
        for (status, source) in [
            ("PENDING", "API"),
            ("PROCESSING", "worker"),
            ("COMPLETED", "worker"),
        ] {
            let mut these: Vec<f64> = delays
                .iter()
                .filter(|(s, _)| s == status)
                .map(|(_, ms)| *ms)
                .collect();
            these.sort_by(f64::total_cmp);
            println!(
                "| … {status} events (published by the {source}), {} | p50 {:.1} ms, p99 {:.1} ms |",
                these.len(),
                percentile(&these, 50.0),
                percentile(&these, 99.0)
            );
        }
    }
}
