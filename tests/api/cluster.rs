//! Several processes sharing PostgreSQL and Redis: events cross instances, and payments
//! survive Redis going away. PostgreSQL + Redis only.

use std::{process::Stdio, time::Duration};

use tokio::process::{Child, Command};

use crate::{
    helpers::{Backend, TestApp, announce_skip, require_external},
    socket::{Auth, Listener},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_clients_of_every_instance() {
    let Some(a) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let b = a.sibling(&[]).await;
    let _worker = a.process("worker", &[]);

    let admin = a.admin().await;
    let product = b.product(&admin, "Shared", "6.00", 5).await;
    let (client, _) = a.client_user().await;
    let mut orders = Listener::connect(a.port, "/orders", Auth::Payload(&client))
        .await
        .unwrap();
    let mut payments = Listener::connect(a.port, "/payment", Auth::Query(&client))
        .await
        .unwrap();
    let mut admin_ear = Listener::connect(a.port, "/orders", Auth::Header(&admin))
        .await
        .unwrap();

    // Placed through B, paid by the worker process, heard on A.
    let order = b.order(&client, &[(&product, 2)]).await;
    let id = order.expect(201)["id"].clone();
    let heard = orders.until(|e| e["status"] == "COMPLETED").await;
    let statuses: Vec<&str> = heard
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["PENDING", "PROCESSING", "COMPLETED"]);
    assert!(heard.iter().all(|e| e["id"] == id));
    let paid = payments.until(|e| e["status"] == "SUCCEEDED").await;
    let statuses: Vec<&str> = paid.iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["PROCESSING", "SUCCEEDED"]);
    let seen = admin_ear.until(|e| e["status"] == "COMPLETED").await;
    assert_eq!(seen.len(), 3);

    for ear in [orders, payments, admin_ear] {
        ear.close().await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_server(port: u16) -> Option<Child> {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()
}

async fn wait_until_listening(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not start on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_resume_when_redis_returns() {
    let port = free_port();
    let Some(mut redis) = redis_server(port) else {
        assert!(
            !require_external(),
            "redis-server is required to run this test"
        );
        announce_skip("redis-server is not installed");
        return;
    };
    wait_until_listening(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let Some(app) =
        TestApp::spawn_with(Backend::Postgres, &[("REDIS_URL", &url), ("WORKERS", "1")]).await
    else {
        let _ = redis.kill().await;
        return;
    };
    let admin = app.admin().await;
    let product = app.product(&admin, "Resilient", "3.00", 5).await;
    let (client, _) = app.client_user().await;
    let mut ear = Listener::connect(app.port, "/orders", Auth::Payload(&client))
        .await
        .unwrap();

    redis.kill().await.unwrap();
    // Orders are taken while Redis is away, and their events reach listeners at once:
    // they come from the database's log, not through Redis.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let order = app.order(&client, &[(&product, 1)]).await;
        ids.push(order.expect(201)["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(app.stock(&admin, &product).await, 2);
    let heard = ear
        .until(|e| e["id"] == ids[2].as_str() && e["status"] == "PENDING")
        .await;
    for id in &ids {
        assert!(
            heard
                .iter()
                .any(|e| e["id"] == id.as_str() && e["status"] == "PENDING")
        );
    }
    app.get("/ready", None)
        .await
        .expect_problem(503, "service_unavailable");

    // Once Redis is back the sweeper queues them, and they are paid and heard.
    let _redis = redis_server(port).expect("redis-server restarts");
    wait_until_listening(port).await;
    for id in &ids {
        let done = app
            .wait_for_order(&client, id, &["COMPLETED", "FAILED"])
            .await;
        assert_eq!(done["status"], "COMPLETED");
    }
    let mut completed = std::collections::HashSet::new();
    while completed.len() < ids.len() {
        let event = ear
            .next(Duration::from_secs(10))
            .await
            .expect("every completion is heard");
        if event["status"] == "COMPLETED" {
            completed.insert(event["id"].as_str().unwrap().to_owned());
        }
    }
    app.get("/ready", None).await.expect(200);
    ear.close().await;
}

/// An event is listed only once every transaction older than its own has ended (so no
/// reader can pass it and miss it); while one holds the log back, `/metrics` says for how
/// long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_older_transactions_and_the_wait_is_measured() {
    use sea_orm::{ConnectionTrait, TransactionTrait};

    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let admin = app.admin().await;
    // An older transaction that has written (it holds a transaction id) and stays open.
    let other = sea_orm::Database::connect(app.env["DATABASE_URL"].clone())
        .await
        .unwrap();
    let older = other.begin().await.unwrap();
    older
        .execute_unprepared("SELECT pg_current_xact_id()")
        .await
        .unwrap();
    app.product(&admin, "Held back", "1.00", 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let page = app.get("/events?type=product.*", Some(&admin)).await;
    assert_eq!(
        page.expect(200)["items"],
        serde_json::json!([]),
        "held behind the older transaction"
    );
    // The gauge is the process's, and every relay of this test binary's instances (held back
    // too: the oldest transaction counts cluster-wide) writes its own wait into it, so the
    // longest reading over a short while is this instance's.
    let mut held: f64 = 0.0;
    for _ in 0..30 {
        let metrics = app.get("/metrics", None).await;
        let reading: f64 = metrics
            .body
            .as_str()
            .unwrap()
            .lines()
            .find_map(|line| line.strip_prefix("event_log_held_seconds "))
            .expect("event_log_held_seconds is reported")
            .parse()
            .unwrap();
        held = held.max(reading);
        if held >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(held >= 1.0, "held for {held} s");

    older.rollback().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = app.get("/events?type=product.*", Some(&admin)).await;
        if page.expect(200)["items"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
