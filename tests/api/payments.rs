//! Payments: every method's outcome, retries, compensation exactly once, lease expiry,
//! the sweeper, the admin queue view, and the `/payment` event sequence.

use std::{sync::Arc, time::Duration};

use entity::payment;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use shop::{payments::worker, queue::MemoryQueue, startup::spawn_workers};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    helpers::TestApp,
    socket::{Auth, Listener},
};

both_backends!(
    each_payment_method_ends_as_documented,
    transient_failures_retry_with_the_documented_events,
    a_job_delivered_twice_restores_stock_once,
    a_cancel_racing_the_last_attempt_restores_stock_once,
    a_worker_killed_mid_attempt_is_replaced_once,
    the_sweeper_refills_a_lost_queue,
    admins_see_and_retry_dead_jobs,
    a_confirmed_action_lets_the_payment_succeed,
    an_order_awaiting_action_can_be_cancelled,
    an_unconfirmed_action_expires_and_restores_stock_once,
    a_confirm_racing_the_expiry_changes_things_once,
);

const TERMINAL: &[&str] = &["COMPLETED", "FAILED", "CANCELLED"];

/// Another instance, on the same database, with payment workers running.
async fn with_workers(app: &TestApp, extra: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![("WORKERS", "1")];
    settings.extend_from_slice(extra);
    app.sibling(&settings).await
}

async fn payment_id(app: &TestApp, order_id: &str) -> Uuid {
    payment::Entity::find()
        .filter(payment::Column::OrderId.eq(Uuid::parse_str(order_id).unwrap()))
        .one(&app.state.db)
        .await
        .unwrap()
        .expect("every order has a payment")
        .id
}

async fn each_payment_method_ends_as_documented(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Widget", "4.00", 100).await;
    let (client, _) = app.client_user().await;
    let paying = with_workers(&app, &[("PAYMENT_SUCCESS_RATE", "1")]).await;
    for (method, status, payment_status, attempts, stock_back) in [
        ("pm_success", "COMPLETED", "SUCCEEDED", 1, false),
        ("pm_random", "COMPLETED", "SUCCEEDED", 1, false),
        ("pm_decline", "FAILED", "FAILED", 1, true),
        ("pm_transient_1", "COMPLETED", "SUCCEEDED", 2, false),
        ("pm_transient_4", "COMPLETED", "SUCCEEDED", 5, false),
        ("pm_unavailable", "FAILED", "FAILED", 5, true),
    ] {
        let before = paying.stock(&admin, &product).await;
        let order = paying.order_with(&client, &[(&product, 3)], method).await;
        let id = order.expect(201)["id"].as_str().unwrap().to_owned();
        let done = paying.wait_for_order(&client, &id, TERMINAL).await;
        assert_eq!(done["status"], status, "{method}: {done:#}");
        assert_eq!(done["payment"]["status"], payment_status, "{method}");
        assert_eq!(done["payment"]["attempts"], attempts, "{method}");
        assert_eq!(done["payment"]["nextAttemptAt"], Value::Null, "{method}");
        let after = paying.stock(&admin, &product).await;
        assert_eq!(
            after,
            if stock_back { before } else { before - 3 },
            "{method}"
        );
        if status == "FAILED" {
            assert!(
                done["payment"]["lastError"]
                    .as_str()
                    .unwrap()
                    .contains("simulated")
            );
        }
    }
}

async fn transient_failures_retry_with_the_documented_events(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Gadget", "2.50", 10).await;
    let (client, _) = app.client_user().await;
    // Retries must come from the queue's delayed set, not from the sweeper.
    let paying = with_workers(&app, &[("SWEEP_INTERVAL", "1h")]).await;
    let mut payments = Listener::connect(paying.port, "/payment", Auth::Payload(&client))
        .await
        .unwrap();
    let mut orders = Listener::connect(paying.port, "/orders", Auth::Header(&client))
        .await
        .unwrap();

    let order = paying
        .order_with(&client, &[(&product, 2)], "pm_transient_2")
        .await;
    let id = order.expect(201)["id"].as_str().unwrap().to_owned();
    let heard = payments.until(|e| e["status"] == "SUCCEEDED").await;
    let statuses: Vec<&str> = heard
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "PROCESSING",
            "RETRYING",
            "PROCESSING",
            "RETRYING",
            "PROCESSING",
            "SUCCEEDED"
        ]
    );
    let attempts: Vec<i64> = heard
        .iter()
        .map(|e| e["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 1, 2, 2, 3, 3]);
    let retrying = &heard[1];
    assert_eq!(retrying["orderId"], id.as_str());
    assert_eq!(retrying["amount"], "5.00");
    assert_eq!(retrying["currency"], "USD");
    assert_eq!(retrying["paymentMethod"], "pm_transient_2");
    assert_eq!(retrying["maxAttempts"], 5);
    assert!(retrying["nextAttemptAt"].is_string());
    assert!(retrying["error"].as_str().unwrap().contains("simulated"));

    let order_events = orders.until(|e| e["status"] == "COMPLETED").await;
    let statuses: Vec<&str> = order_events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["PENDING", "PROCESSING", "COMPLETED"]);
    let final_order = paying.get(&format!("/orders/{id}"), Some(&client)).await;
    assert_eq!(order_events[2], *final_order.expect(200));
    payments.close().await;
    orders.close().await;
}

async fn a_job_delivered_twice_restores_stock_once(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Fragile", "1.00", 10).await;
    let (client, _) = app.client_user().await;
    let order = app
        .order_with(&client, &[(&product, 4)], "pm_decline")
        .await;
    let id = order.expect(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(app.stock(&admin, &product).await, 6);

    let payment = payment_id(&app, &id).await;
    let env = app.worker_env();
    let (a, b, c) = tokio::join!(
        worker::process(&env, payment),
        worker::process(&env, payment),
        worker::process(&env, payment),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    worker::process(&app.worker_env(), payment).await.unwrap();

    let done = app.wait_for_order(&client, &id, TERMINAL).await;
    assert_eq!(done["status"], "FAILED");
    assert_eq!(done["payment"]["attempts"], 1);
    assert_eq!(app.stock(&admin, &product).await, 10);
}

async fn a_cancel_racing_the_last_attempt_restores_stock_once(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Contested", "1.00", 50).await;
    let (client, _) = app.client_user().await;
    let racing = app
        .sibling(&[
            ("PAYMENT_MAX_ATTEMPTS", "2"),
            ("PAYMENT_BACKOFF_BASE_MS", "1"),
            ("PAYMENT_BACKOFF_MAX_MS", "1"),
        ])
        .await;
    let mut outcomes = (0, 0);
    for round in 0..9 {
        let order = racing
            .order_with(&client, &[(&product, 5)], "pm_unavailable")
            .await;
        let id = order.expect(201)["id"].as_str().unwrap().to_owned();
        let payment = payment_id(&racing, &id).await;
        // Attempt 1 fails transiently: the payment waits for its last attempt.
        worker::process(&racing.worker_env(), payment)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let path = format!("/orders/{id}/cancel");
        // Give each side a head start in turn (and none at all every third round), so both
        // outcomes of the race happen.
        // (A head start long enough to hold on a busy two-core machine.)
        let (attempt_delay, cancel_delay) = match round % 3 {
            0 => (Duration::from_millis(150), Duration::ZERO),
            1 => (Duration::ZERO, Duration::from_millis(150)),
            _ => (Duration::ZERO, Duration::ZERO),
        };
        let (attempt, cancel) = tokio::join!(
            async {
                tokio::time::sleep(attempt_delay).await;
                worker::process(&racing.worker_env(), payment).await
            },
            async {
                tokio::time::sleep(cancel_delay).await;
                racing.post(&path, Some(&client), json!({})).await
            },
        );
        attempt.unwrap();
        let done = racing
            .wait_for_order(&client, &id, &["FAILED", "CANCELLED"])
            .await;
        match cancel.status.as_u16() {
            200 => {
                assert_eq!(done["status"], "CANCELLED");
                outcomes.0 += 1;
            }
            _ => {
                cancel.expect_problem(409, "order_not_cancellable");
                assert_eq!(done["status"], "FAILED");
                assert_eq!(done["payment"]["attempts"], 2);
                outcomes.1 += 1;
            }
        }
        assert_eq!(
            racing.stock(&admin, &product).await,
            50,
            "stock restored exactly once"
        );
    }
    assert!(
        outcomes.0 >= 3 && outcomes.1 >= 3,
        "both sides won some races: {outcomes:?}"
    );
}

async fn a_worker_killed_mid_attempt_is_replaced_once(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Durable", "7.00", 10).await;
    let (client, _) = app.client_user().await;
    let slow = app
        .sibling(&[("PAYMENT_LATENCY_MS", "400"), ("QUEUE_LEASE", "1s")])
        .await;
    let order = slow.order(&client, &[(&product, 1)]).await;
    let id = order.expect(201)["id"].as_str().unwrap().to_owned();

    // A worker leases the job, starts the attempt, and dies in the middle of it.
    let leased = slow
        .state
        .queue
        .reserve(1, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    let env = slow.worker_env();
    let doomed = tokio::spawn(async move { worker::process(&env, leased[0]).await });
    // Killed once the attempt is under way (PROCESSING committed, the provider not yet answered).
    let path = format!("/orders/{id}");
    for _ in 0..200 {
        let now = slow.get(&path, Some(&client)).await;
        if now.expect(200)["payment"]["status"] == "PROCESSING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    doomed.abort();
    let stuck = slow.get(&path, Some(&client)).await;
    assert_eq!(stuck.expect(200)["payment"]["status"], "PROCESSING");
    assert_eq!(stuck.body["payment"]["attempts"], 1);

    // Another worker takes over once the lease has expired.
    let stop = CancellationToken::new();
    let workers = spawn_workers(slow.worker_env(), &stop);
    let done = slow.wait_for_order(&client, &id, TERMINAL).await;
    stop.cancel();
    workers.await;
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["payment"]["status"], "SUCCEEDED");
    assert_eq!(done["payment"]["attempts"], 2);
    assert_eq!(slow.stock(&admin, &product).await, 9);
    assert_eq!(slow.state.queue.counts().await.unwrap().processing, 0);
}

async fn the_sweeper_refills_a_lost_queue(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Survivor", "1.00", 10).await;
    let (client, _) = app.client_user().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let order = app.order(&client, &[(&product, 1)]).await;
        ids.push(order.expect(201)["id"].as_str().unwrap().to_owned());
    }
    // Lose the queue: Redis flushed (our keys), or a fresh in-process queue after a restart.
    let mut env = app.worker_env();
    if app.is_external() {
        flush_queue_keys(&app).await;
    } else {
        env.queue = Arc::new(MemoryQueue::new());
    }
    assert_eq!(env.queue.counts().await.unwrap().ready, 0);

    let stop = CancellationToken::new();
    let workers = spawn_workers(env, &stop);
    for id in &ids {
        let done = app.wait_for_order(&client, id, TERMINAL).await;
        assert_eq!(done["status"], "COMPLETED");
        assert_eq!(done["payment"]["attempts"], 1);
    }
    stop.cancel();
    workers.await;
    assert_eq!(app.stock(&admin, &product).await, 7);
}

async fn flush_queue_keys(app: &TestApp) {
    use fred::prelude::*;
    let prefix = &app.env["REDIS_KEY_PREFIX"];
    let client = Builder::from_config(Config::from_url(&app.env["REDIS_URL"]).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    let keys: Vec<String> = client
        .custom(fred::cmd!("KEYS"), vec![format!("{{{prefix}:payments}}*")])
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the queue had keys");
    let _: i64 = client.del(keys).await.unwrap();
    client.quit().await.unwrap();
}

async fn admins_see_and_retry_dead_jobs(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Doomed", "9.00", 5).await;
    let (client, _) = app.client_user().await;
    let paying = with_workers(&app, &[("PAYMENT_MAX_ATTEMPTS", "2")]).await;
    let order = paying
        .order_with(&client, &[(&product, 2)], "pm_unavailable")
        .await;
    let id = order.expect(201)["id"].as_str().unwrap().to_owned();
    paying.wait_for_order(&client, &id, TERMINAL).await;
    let payment = payment_id(&paying, &id).await;

    paying
        .get("/admin/queues", Some(&client))
        .await
        .expect_problem(403, "forbidden");
    // The job reaches the dead list just after the order's FAILED commit.
    let mut view = Value::Null;
    for _ in 0..200 {
        view = paying
            .get("/admin/queues", Some(&admin))
            .await
            .expect(200)
            .clone();
        if view["payments"]["dead"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(view["payments"]["dead"], 1);
    assert_eq!(view["payments"]["processing"], 0);
    assert_eq!(view["deadJobs"][0]["id"], payment.to_string());
    assert!(
        view["deadJobs"][0]["error"]
            .as_str()
            .unwrap()
            .contains("unavailable")
    );
    assert_eq!(paying.stock(&admin, &product).await, 5);

    let retry = paying
        .post(
            &format!("/admin/queues/dead/{payment}/retry"),
            Some(&admin),
            json!({}),
        )
        .await;
    let retried = retry.expect(200);
    assert_eq!(retried["id"], id.as_str());
    assert!(["PENDING", "PROCESSING"].contains(&retried["status"].as_str().unwrap()));
    // It runs again (and, the provider still being down, gives up again).
    let done = paying.wait_for_order(&client, &id, TERMINAL).await;
    assert_eq!(done["status"], "FAILED");
    assert_eq!(done["payment"]["attempts"], 2);
    assert_eq!(paying.stock(&admin, &product).await, 5);

    paying
        .post(
            &format!("/admin/queues/dead/{}/retry", Uuid::new_v4()),
            Some(&admin),
            json!({}),
        )
        .await
        .expect_problem(404, "not_found");
}

/// Waits until the order's payment is `status`.
async fn wait_for_payment(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let order = app.get(&format!("/orders/{id}"), Some(token)).await;
        let body = order.expect(200).clone();
        if body["payment"]["status"] == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "payment never reached {status}: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_confirmed_action_lets_the_payment_succeed(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Secure", "9.00", 10).await;
    let (client, _) = app.client_user().await;
    let (stranger, _) = app.client_user().await;
    let paying = with_workers(&app, &[]).await;
    let mut payments = Listener::connect(paying.port, "/payment", Auth::Payload(&client))
        .await
        .unwrap();
    let order = paying
        .order_with(&client, &[(&product, 2)], "pm_requires_action")
        .await;
    let id = order.expect(201)["id"].as_str().unwrap().to_owned();
    let path = format!("/orders/{id}/confirm-payment");

    let waiting = wait_for_payment(&paying, &client, &id, "REQUIRES_ACTION").await;
    assert_eq!(waiting["status"], "PROCESSING");
    assert_eq!(waiting["payment"]["attempts"], 1);
    let expires = waiting["payment"]["actionExpiresAt"].as_str().unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(expires).unwrap();
    assert!(expires > chrono::Utc::now() + chrono::Duration::minutes(14));

    // Only the customer who placed it may confirm.
    paying
        .post(&path, Some(&stranger), json!({}))
        .await
        .expect_problem(404, "not_found");
    paying
        .post(&path, Some(&admin), json!({}))
        .await
        .expect_problem(403, "forbidden");
    let confirmed = paying.post(&path, Some(&client), json!({})).await;
    let confirmed = confirmed.expect(200);
    assert_eq!(confirmed["payment"]["status"], "PENDING");
    assert_eq!(confirmed["payment"]["actionExpiresAt"], Value::Null);

    let done = paying.wait_for_order(&client, &id, TERMINAL).await;
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["payment"]["status"], "SUCCEEDED");
    assert_eq!(done["payment"]["attempts"], 2);
    assert_eq!(paying.stock(&admin, &product).await, 8);
    paying
        .post(&path, Some(&client), json!({}))
        .await
        .expect_problem(409, "payment_not_awaiting_action");

    let heard = payments.until(|e| e["status"] == "SUCCEEDED").await;
    let statuses: Vec<&str> = heard
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["PROCESSING", "REQUIRES_ACTION", "PROCESSING", "SUCCEEDED"]
    );
    assert!(heard[1]["actionExpiresAt"].is_string());
    payments.close().await;
}

async fn an_order_awaiting_action_can_be_cancelled(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Hesitant", "3.00", 10).await;
    let (client, _) = app.client_user().await;
    let paying = with_workers(&app, &[]).await;
    let order = paying
        .order_with(&client, &[(&product, 4)], "pm_requires_action")
        .await;
    let id = order.expect(201)["id"].as_str().unwrap().to_owned();
    wait_for_payment(&paying, &client, &id, "REQUIRES_ACTION").await;
    assert_eq!(paying.stock(&admin, &product).await, 6);

    let cancelled = paying
        .post(&format!("/orders/{id}/cancel"), Some(&client), json!({}))
        .await;
    let cancelled = cancelled.expect(200);
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["payment"]["status"], "CANCELLED");
    assert_eq!(paying.stock(&admin, &product).await, 10);
    paying
        .post(
            &format!("/orders/{id}/confirm-payment"),
            Some(&client),
            json!({}),
        )
        .await
        .expect_problem(409, "payment_not_awaiting_action");
    // The job that waited for the action's expiry finds nothing to do.
    let payment = payment_id(&paying, &id).await;
    worker::process(&paying.worker_env(), payment)
        .await
        .unwrap();
    let after = paying.get(&format!("/orders/{id}"), Some(&client)).await;
    assert_eq!(after.expect(200)["status"], "CANCELLED");
    assert_eq!(paying.stock(&admin, &product).await, 10);
}

async fn an_unconfirmed_action_expires_and_restores_stock_once(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Abandoned", "3.00", 10).await;
    let (client, _) = app.client_user().await;
    let paying = with_workers(&app, &[("PAYMENT_ACTION_TIMEOUT", "300ms")]).await;
    let order = paying
        .order_with(&client, &[(&product, 3)], "pm_requires_action")
        .await;
    let id = order.expect(201)["id"].as_str().unwrap().to_owned();
    let done = paying.wait_for_order(&client, &id, TERMINAL).await;
    assert_eq!(done["status"], "FAILED");
    assert_eq!(done["payment"]["status"], "FAILED");
    assert!(
        done["payment"]["lastError"]
            .as_str()
            .unwrap()
            .contains("not confirmed in time")
    );
    assert_eq!(paying.stock(&admin, &product).await, 10);

    // Delivered again, swept again: the stock comes back only once.
    let env = paying.worker_env();
    let payment = payment_id(&paying, &id).await;
    let (a, b) = tokio::join!(
        worker::process(&env, payment),
        worker::process(&env, payment)
    );
    a.unwrap();
    b.unwrap();
    worker::sweep(&env).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(paying.stock(&admin, &product).await, 10);
    paying
        .post(
            &format!("/orders/{id}/confirm-payment"),
            Some(&client),
            json!({}),
        )
        .await
        .expect_problem(409, "payment_not_awaiting_action");
}

async fn a_confirm_racing_the_expiry_changes_things_once(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Raced", "1.00", 100).await;
    let (client, _) = app.client_user().await;
    // The attempt asks for the action; then a confirm and the expiry race for it.
    let racing = app.sibling(&[("PAYMENT_ACTION_TIMEOUT", "150ms")]).await;
    let env = racing.worker_env();
    let mut completed = 0;
    for _ in 0..8 {
        let order = racing
            .order_with(&client, &[(&product, 1)], "pm_requires_action")
            .await;
        let id = order.expect(201)["id"].as_str().unwrap().to_owned();
        let payment = payment_id(&racing, &id).await;
        worker::process(&env, payment).await.unwrap();
        wait_for_payment(&racing, &client, &id, "REQUIRES_ACTION").await;
        tokio::time::sleep(Duration::from_millis(140)).await;
        let path = format!("/orders/{id}/confirm-payment");
        let (confirm, expiry) = tokio::join!(
            racing.post(&path, Some(&client), json!({})),
            worker::process(&env, payment)
        );
        expiry.unwrap();
        let confirmed = confirm.status == 200;
        if !confirmed {
            confirm.expect_problem(409, "payment_not_awaiting_action");
        }
        // Whatever won, the payment moves on from there exactly once.
        tokio::time::sleep(Duration::from_millis(200)).await;
        worker::process(&env, payment).await.unwrap();
        let done = racing.wait_for_order(&client, &id, TERMINAL).await;
        if confirmed {
            assert_eq!(done["status"], "COMPLETED", "{done:#}");
            completed += 1;
        } else {
            assert_eq!(done["status"], "FAILED", "{done:#}");
        }
    }
    // Each completed order keeps its unit; each failed one gave it back, once.
    assert_eq!(racing.stock(&admin, &product).await, 100 - completed);
}
