//! Production edges: rate limits, the login lockout, the catalog cache, request ids,
//! security headers, CORS, metrics, and shutting down under load.

use std::{collections::HashSet, time::Duration};

use entity::{payment, product};
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr};
use serde_json::json;
use shop::startup::spawn_workers;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, TestApp};

both_backends!(
    only_failed_logins_count_and_limits_lift_after_the_window,
    the_api_limit_spares_health_ready_and_metrics,
    repeated_failures_lock_the_account_until_a_success,
    reads_after_writes_never_show_stale_stock_or_price,
    request_ids_round_trip_and_security_headers_are_set,
    cors_answers_configured_origins_only,
    metrics_report_requests_orders_and_the_queue,
    sigterm_under_load_loses_no_order_and_strands_no_payment,
);

async fn only_failed_logins_count_and_limits_lift_after_the_window(app: TestApp) {
    let guarded = app
        .sibling(&[("LOGIN_MAX_FAILURES", "2"), ("LOGIN_LOCKOUT_WINDOW", "1s")])
        .await;
    let login = |email: &str, password: &str| {
        guarded.post(
            "/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
    };
    // People who sign in correctly are never refused, however often.
    for _ in 0..100 {
        login(ADMIN_EMAIL, ADMIN_PASSWORD).await.expect(200);
    }
    let email = format!("guessed-{}@example.com", Uuid::new_v4().simple());
    guarded
        .post(
            "/auth/register",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await
        .expect(201);
    let first = login(&email, "Wr0ng!pass").await;
    first.expect_problem(401, "invalid_credentials");
    assert_eq!(first.headers["ratelimit-limit"], "2");
    assert_eq!(first.headers["ratelimit-remaining"], "1");
    let refused = login(&email, "Wr0ng!pass").await;
    refused.expect_problem(429, "rate_limited");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(refused.headers["ratelimit-remaining"], "0");
    // Guessing stops: even the right password is refused from this address for now.
    login(&email, PASSWORD)
        .await
        .expect_problem(429, "rate_limited");
    // Another account from the same address (an office) is not locked out.
    login(ADMIN_EMAIL, ADMIN_PASSWORD).await.expect(200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    login(&email, PASSWORD).await.expect(200);

    // Failures across accounts from one address are limited too.
    let spread = app
        .sibling(&[("LOGIN_MAX_FAILURES_PER_ADDRESS", "3")])
        .await;
    for n in 0..2 {
        spread
            .post(
                "/auth/login",
                None,
                json!({"email": format!("nobody-{n}@example.com"), "password": "Wr0ng!pass"}),
            )
            .await
            .expect_problem(401, "invalid_credentials");
    }
    spread
        .post(
            "/auth/login",
            None,
            json!({"email": "nobody-2@example.com", "password": "Wr0ng!pass"}),
        )
        .await
        .expect_problem(429, "rate_limited");
    spread
        .post(
            "/auth/login",
            None,
            json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
        )
        .await
        .expect_problem(429, "rate_limited");
}

async fn the_api_limit_spares_health_ready_and_metrics(app: TestApp) {
    let limited = app
        .sibling(&[("RATE_LIMIT_PER_SECOND", "1"), ("RATE_LIMIT_BURST", "3")])
        .await;
    let statuses: Vec<u16> =
        futures::future::join_all((0..6).map(|_| limited.get("/products", None)))
            .await
            .iter()
            .map(|a| a.status.as_u16())
            .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
    for _ in 0..10 {
        for path in ["/health", "/ready", "/metrics"] {
            let answer = limited.get(path, None).await;
            assert_eq!(answer.status, 200, "{path}");
        }
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    limited.get("/products", None).await.expect(200);
}

async fn repeated_failures_lock_the_account_until_a_success(app: TestApp) {
    let guarded = app.sibling(&[("LOGIN_LOCKOUT_THRESHOLD", "3")]).await;
    for email in ["locked@example.com", "reset@example.com"] {
        guarded
            .post(
                "/auth/register",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await
            .expect(201);
    }
    let login = |email: &str, password: &str| {
        guarded.post(
            "/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
    };
    // A success clears the count.
    for _ in 0..2 {
        login("reset@example.com", "Wr0ng!pass")
            .await
            .expect_problem(401, "invalid_credentials");
    }
    login("reset@example.com", PASSWORD).await.expect(200);
    for _ in 0..2 {
        login("reset@example.com", "Wr0ng!pass")
            .await
            .expect_problem(401, "invalid_credentials");
    }
    login("reset@example.com", PASSWORD).await.expect(200);

    for _ in 0..2 {
        login("locked@example.com", "Wr0ng!pass")
            .await
            .expect_problem(401, "invalid_credentials");
    }
    let locked = login("LOCKED@example.com", "Wr0ng!pass").await;
    locked.expect_problem(429, "account_locked");
    assert!(
        locked.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 60
    );
    // Locked even with the right password, from any address, on any instance sharing Redis.
    login("locked@example.com", PASSWORD)
        .await
        .expect_problem(429, "account_locked");
    if app.is_external() {
        let other = guarded.sibling(&[]).await;
        other
            .post(
                "/auth/login",
                None,
                json!({"email": "locked@example.com", "password": PASSWORD}),
            )
            .await
            .expect_problem(429, "account_locked");
    }
    // Other accounts are unaffected.
    login("reset@example.com", PASSWORD).await.expect(200);
}

async fn reads_after_writes_never_show_stale_stock_or_price(app: TestApp) {
    // A long TTL: only invalidation can make a changed value show.
    let shop = app.sibling(&[("CACHE_TTL", "1h")]).await;
    let admin = shop.admin().await;
    let id = shop.product(&admin, "Cached", "10.00", 20).await;
    let (client, _) = shop.client_user().await;
    let item = format!("/products/{id}");
    let read = || async {
        let one = shop.get(&item, None).await.expect(200).clone();
        let page = shop
            .get("/products?take=100", None)
            .await
            .expect(200)
            .clone();
        let listed = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id.as_str())
            .cloned();
        assert_eq!(Some(&one), listed.as_ref(), "the page and the item agree");
        (
            one["stock"].as_i64().unwrap(),
            one["price"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(read().await, (20, "10.00".into()));

    // The cache is really in use: a change behind the service's back does not show.
    product::Entity::update_many()
        .col_expr(
            product::Column::Name,
            Expr::value("Renamed behind its back"),
        )
        .filter(product::Column::Id.eq(Uuid::parse_str(&id).unwrap()))
        .exec(&shop.state.db)
        .await
        .unwrap();
    assert_eq!(shop.get(&item, None).await.expect(200)["name"], "Cached");
    if app.is_external() {
        // Redis loses the version (flushed, restarted): no locally kept entry is reused.
        use fred::prelude::*;
        let redis = Builder::from_config(Config::from_url(&app.env["REDIS_URL"]).unwrap())
            .build()
            .unwrap();
        redis.init().await.unwrap();
        let key = format!("{}:cache:catalog-version", app.env["REDIS_KEY_PREFIX"]);
        let _: i64 = redis.del(key).await.unwrap();
        redis.quit().await.unwrap();
        let fresh = shop.get(&item, None).await;
        assert_eq!(fresh.expect(200)["name"], "Renamed behind its back");
    }

    shop.order_with(&client, &[(&id, 3)], "pm_success")
        .await
        .expect(201);
    assert_eq!(read().await.0, 17, "an order's reservation shows at once");

    shop.call(
        Method::PATCH,
        &item,
        Some(&admin),
        Some(json!({"price": "12.00"})),
    )
    .await
    .expect(200);
    assert_eq!(
        read().await,
        (17, "12.00".into()),
        "an admin's change shows at once"
    );

    let declined = shop.order_with(&client, &[(&id, 5)], "pm_decline").await;
    let declined_id = declined.expect(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(read().await.0, 12);
    let payment = payment::Entity::find()
        .filter(payment::Column::OrderId.eq(Uuid::parse_str(&declined_id).unwrap()))
        .one(&shop.state.db)
        .await
        .unwrap()
        .unwrap();
    shop::payments::worker::process(&shop.worker_env(), payment.id)
        .await
        .unwrap();
    assert_eq!(
        read().await.0,
        17,
        "a failed payment's restored stock shows at once"
    );

    // Cancellation restores stock; deletion hides the product.
    let cancelled = shop.order_with(&client, &[(&id, 4)], "pm_success").await;
    let cancelled_id = cancelled.expect(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(read().await.0, 13);
    shop.post(
        &format!("/orders/{cancelled_id}/cancel"),
        Some(&client),
        json!({}),
    )
    .await
    .expect(200);
    assert_eq!(read().await.0, 17, "a cancellation shows at once");
    shop.call(Method::DELETE, &item, Some(&admin), None)
        .await
        .expect(200);
    shop.get(&item, None).await.expect_problem(404, "not_found");
}

async fn request_ids_round_trip_and_security_headers_are_set(app: TestApp) {
    let given = app
        .call_with(
            Method::GET,
            "/products",
            None,
            None,
            &[("x-request-id", "trace-me-42")],
        )
        .await;
    assert_eq!(given.headers["x-request-id"], "trace-me-42");
    let made = app.get("/products", None).await;
    let id = made.headers["x-request-id"].to_str().unwrap();
    assert!(Uuid::parse_str(id).is_ok(), "{id}");
    let problem = app.get("/nope", None).await;
    assert!(problem.headers.contains_key("x-request-id"));
    for answer in [&made, &problem] {
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
        assert_eq!(answer.headers["x-frame-options"], "DENY");
        assert_eq!(answer.headers["referrer-policy"], "no-referrer");
    }
    assert_eq!(
        made.headers["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
}

async fn cors_answers_configured_origins_only(app: TestApp) {
    let open = app
        .sibling(&[("CORS_ORIGINS", "https://shop.example")])
        .await;
    let preflight = |origin: &'static str| {
        open.client
            .request(Method::OPTIONS, format!("{}/orders", open.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    // Without CORS_ORIGINS, no CORS headers at all.
    let closed = app
        .client
        .get(format!("{}/products", app.base))
        .header("origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert!(
        closed
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

async fn metrics_report_requests_orders_and_the_queue(app: TestApp) {
    let admin = app.admin().await;
    let id = app.product(&admin, "Counted", "1.00", 5).await;
    let (client, _) = app.client_user().await;
    app.order(&client, &[(&id, 1)]).await.expect(201);
    app.get(&format!("/products/{id}"), None).await.expect(200);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    for expected in [
        r#"http_requests_total{method="GET",route="/products/{id}",status="200"}"#,
        r#"http_requests_total{method="POST",route="/orders",status="201"}"#,
        "http_request_duration_seconds_bucket",
        r#"orders{status="PENDING"} 1"#,
        r#"orders{status="COMPLETED"} 0"#,
        r#"payment_queue_jobs{state="ready"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
}

async fn sigterm_under_load_loses_no_order_and_strands_no_payment(app: TestApp) {
    let admin = app.admin().await;
    let id = app.product(&admin, "Busy", "2.00", 10_000).await;
    let (client, _) = app.client_user().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port_text = port.to_string();
    let mut server = app.process(
        "serve",
        &[
            ("PORT", &port_text),
            ("WORKERS", "1"),
            ("PAYMENT_LATENCY_MS", "150"),
        ],
    );
    let base = app.wait_until_serving(port).await;

    let place = |i: usize| {
        let (http, base, client, id) =
            (app.client.clone(), base.clone(), client.clone(), id.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(10 * i as u64)).await;
            let response = http
                .post(format!("{base}/orders"))
                .bearer_auth(&client)
                .json(&json!({"items": [{"productId": id, "quantity": 1}], "paymentMethod": "pm_success"}))
                .send()
                .await
                .ok()?;
            if response.status() != 201 {
                return None;
            }
            let body: serde_json::Value = response.json().await.ok()?;
            body["id"].as_str().map(str::to_owned)
        }
    };
    let load = futures::future::join_all((0..120).map(place));
    let stop = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let pid = server.id().expect("server running").to_string();
        let killed = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await;
        assert!(killed.unwrap().success());
    };
    let (answers, ()) = tokio::join!(load, stop);
    let exit = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("the server stops within 30 s")
        .unwrap();
    assert!(exit.success(), "clean exit: {exit:?}");

    let confirmed: HashSet<String> = answers.into_iter().flatten().collect();
    assert!(
        !confirmed.is_empty(),
        "some orders were placed before the signal"
    );
    for order in &confirmed {
        app.get(&format!("/orders/{order}"), Some(&client))
            .await
            .expect(200);
    }
    let stranded = payment::Entity::find()
        .filter(payment::Column::Status.eq("PROCESSING"))
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(stranded, 0, "attempts running at the signal were finished");

    // What was still queued is paid by the next worker.
    let stop = CancellationToken::new();
    let workers = spawn_workers(app.worker_env(), &stop);
    for order in &confirmed {
        let done = app.wait_for_order(&client, order, &["COMPLETED"]).await;
        assert_eq!(done["payment"]["attempts"], 1);
    }
    stop.cancel();
    workers.await;
}
