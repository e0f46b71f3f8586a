//! Webhooks: a receiver on port 0 checks each delivery's signature and sees every event
//! it asked for, once; failures are retried or not by status; private addresses are
//! refused unless allowed; redelivery repeats the event id; rotation changes the key.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::TestApp;

both_backends!(
    a_receiver_gets_every_event_it_asked_for_signed_and_once,
    failures_are_retried_only_when_worth_it,
    urls_and_event_types_are_checked,
    redelivery_repeats_the_event_and_rotation_changes_the_key,
    two_instances_deliver_each_event_once,
    a_name_that_resolves_inside_is_refused_when_sending,
    ended_deliveries_older_than_the_retention_are_pruned,
);

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Received {
    event_id: String,
    event_type: String,
    signature: String,
    body: String,
}

/// An HTTP receiver on a free port that answers each request with the next scripted
/// status (200 once the script runs out).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> (Self, String) {
        let receiver = Self::default();
        receiver.script.lock().unwrap().extend(script);
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hook",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received (panics after 20 s).
    async fn wait(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never received {what}: {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/json");
    receiver.got.lock().unwrap().push(Received {
        event_id: header("shop-event-id"),
        event_type: header("shop-event-type"),
        signature: header("shop-signature"),
        body: String::from_utf8(body.to_vec()).unwrap(),
    });
    let status = receiver.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

/// Whether `received` carries a valid `Shop-Signature` under `secret`, made within the
/// last five minutes, and its headers match its body.
fn verified(received: &Received, secret: &str) -> bool {
    let Some((t, v1)) = received
        .signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", received.body).as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap();
    let event: Value = serde_json::from_str(&received.body).unwrap();
    expected == v1
        && (0..300).contains(&age)
        && event["id"] == received.event_id.as_str()
        && event["type"] == received.event_type.as_str()
}

/// A sibling that sends webhooks and may reach this machine's receivers.
async fn sending(app: &TestApp) -> TestApp {
    app.sibling(&[
        ("WORKERS", "1"),
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WEBHOOK_BACKOFF_BASE_MS", "20"),
        ("WEBHOOK_BACKOFF_MAX_MS", "50"),
        ("WEBHOOK_TIMEOUT", "2s"),
        ("WEBHOOK_MAX_ATTEMPTS", "3"),
    ])
    .await
}

async fn endpoint(app: &TestApp, admin: &str, url: &str, events: Value) -> (String, String) {
    let created = app
        .post(
            "/webhooks",
            Some(admin),
            json!({"url": url, "events": events, "description": "test receiver"}),
        )
        .await;
    let body = created.expect(201);
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

async fn deliveries(app: &TestApp, admin: &str, endpoint: &str, query: &str) -> Value {
    app.get(
        &format!("/webhooks/{endpoint}/deliveries{query}"),
        Some(admin),
    )
    .await
    .expect(200)
    .clone()
}

/// Waits until every delivery of `endpoint` has ended (and there are `count`).
async fn ended(app: &TestApp, admin: &str, endpoint: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = deliveries(app, admin, endpoint, "").await;
        let items = page["items"].as_array().unwrap().clone();
        if items.len() == count
            && items
                .iter()
                .all(|d| d["status"] == "SUCCEEDED" || d["status"] == "FAILED")
        {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries did not end: {page:#}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn a_receiver_gets_every_event_it_asked_for_signed_and_once(app: TestApp) {
    let admin = app.admin().await;
    let (receiver, url) = Receiver::start(&[]).await;
    let sender = sending(&app).await;
    let (id, secret) = endpoint(
        &sender,
        &admin,
        &url,
        json!(["order.*", "payment.succeeded"]),
    )
    .await;
    assert!(
        secret.starts_with("whsec_") && secret.len() == 70,
        "{secret}"
    );

    let product = app.product(&admin, "Hooked", "3.00", 5).await;
    let (client, _) = app.client_user().await;
    let order = app.order(&client, &[(&product, 1)]).await;
    let order_id = order.expect(201)["id"].as_str().unwrap().to_owned();
    app.wait_for_order(&client, &order_id, &["COMPLETED"]).await;

    let wanted = [
        "order.created",
        "order.processing",
        "payment.succeeded",
        "order.completed",
    ];
    let got = receiver
        .wait("the order's events", |got| got.len() >= wanted.len())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_now = receiver.got();
    assert_eq!(
        got_now.len(),
        got.len(),
        "nothing more, and nothing twice: {got_now:#?}"
    );
    let mut kinds: Vec<&str> = got.iter().map(|r| r.event_type.as_str()).collect();
    kinds.sort_unstable();
    let mut expected = wanted.to_vec();
    expected.sort_unstable();
    assert_eq!(
        kinds, expected,
        "product.* and payment.processing are not asked for"
    );
    for received in &got {
        assert!(verified(received, &secret), "bad signature: {received:#?}");
        assert!(!verified(received, "whsec_wrong"));
        let event: Value = serde_json::from_str(&received.body).unwrap();
        assert_eq!(event["orderId"], order_id.as_str());
        assert!(event["actor"]["kind"].is_string());
    }
    // The body is the event as the log shows it.
    let log = app
        .get(&format!("/orders/{order_id}/events"), Some(&admin))
        .await;
    let completed = got
        .iter()
        .find(|r| r.event_type == "order.completed")
        .unwrap();
    let in_log = log.expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "order.completed")
        .unwrap()
        .clone();
    assert_eq!(
        serde_json::from_str::<Value>(&completed.body).unwrap(),
        in_log
    );

    let items = ended(&sender, &admin, &id, wanted.len()).await;
    for delivery in &items {
        assert_eq!(delivery["status"], "SUCCEEDED", "{delivery:#}");
        assert_eq!(delivery["attempts"], 1);
        assert_eq!(delivery["lastStatusCode"], 200);
        assert_eq!(delivery["endpointId"], id.as_str());
        assert!(delivery["nextAttemptAt"].is_null());
    }
    // Endpoints are listed, never with their secret.
    let listed = app.get("/webhooks", Some(&admin)).await;
    let listed = listed.expect(200)["items"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["url"], url.as_str());
    assert_eq!(listed[0]["events"], json!(["order.*", "payment.succeeded"]));
    assert!(listed[0].get("secret").is_none());
    let one = app.get(&format!("/webhooks/{id}"), Some(&admin)).await;
    assert!(one.expect(200).get("secret").is_none());
    let (client, _) = app.client_user().await;
    app.get("/webhooks", Some(&client))
        .await
        .expect_problem(403, "forbidden");
}

async fn failures_are_retried_only_when_worth_it(app: TestApp) {
    let admin = app.admin().await;
    let (flaky, flaky_url) = Receiver::start(&[500, 503]).await;
    let (refusing, refusing_url) = Receiver::start(&[400]).await;
    let sender = sending(&app).await;
    let (flaky_id, _) = endpoint(&sender, &admin, &flaky_url, json!(["product.created"])).await;
    let (refusing_id, _) = endpoint(&sender, &admin, &refusing_url, json!(["product.*"])).await;

    app.product(&admin, "Retried", "1.00", 1).await;

    let flaky_deliveries = ended(&sender, &admin, &flaky_id, 1).await;
    assert_eq!(flaky_deliveries[0]["status"], "SUCCEEDED");
    assert_eq!(flaky_deliveries[0]["attempts"], 3, "500, 503, then 200");
    assert_eq!(flaky_deliveries[0]["lastStatusCode"], 200);
    let attempts = flaky.got();
    assert_eq!(attempts.len(), 3);
    assert!(
        attempts.iter().all(|r| r.event_id == attempts[0].event_id),
        "every retry carries the same event id"
    );

    let refused = ended(&sender, &admin, &refusing_id, 1).await;
    assert_eq!(refused[0]["status"], "FAILED");
    assert_eq!(refused[0]["attempts"], 1, "a 400 is not retried");
    assert_eq!(refused[0]["lastStatusCode"], 400);
    assert!(
        refused[0]["lastError"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 400")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(refusing.got().len(), 1);

    // Nobody listening: connection errors are retried until attempts run out.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("http://127.0.0.1:{port}/hook")
    };
    let (closed_id, _) = endpoint(&sender, &admin, &closed, json!(["product.deleted"])).await;
    let doomed = app.product(&admin, "Doomed", "1.00", 1).await;
    app.call(
        Method::DELETE,
        &format!("/products/{doomed}"),
        Some(&admin),
        None,
    )
    .await
    .expect(200);
    let gone = ended(&sender, &admin, &closed_id, 1).await;
    assert_eq!(gone[0]["status"], "FAILED");
    assert_eq!(gone[0]["attempts"], 3);
    assert!(gone[0]["lastStatusCode"].is_null());
    assert!(!gone[0]["lastError"].as_str().unwrap().is_empty());
}

async fn urls_and_event_types_are_checked(app: TestApp) {
    let admin = app.admin().await;
    let (_, url) = Receiver::start(&[]).await;
    // This instance keeps the default: no loopback, private or link-local targets.
    for target in [
        url.as_str(),
        "http://localhost:9/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/hook",
    ] {
        let refused = app
            .post(
                "/webhooks",
                Some(&admin),
                json!({"url": target, "events": ["order.*"]}),
            )
            .await;
        let problem = refused.expect_problem(422, "validation_failed");
        assert!(
            problem["errors"]["url"][0]
                .as_str()
                .unwrap()
                .contains("loopback, private or link-local"),
            "{target}: {problem:#}"
        );
    }
    for (body, field) in [
        (
            json!({"url": "ftp://example.com/x", "events": ["order.*"]}),
            "url",
        ),
        (json!({"url": "not a url", "events": ["order.*"]}), "url"),
        (json!({"events": ["order.*"]}), "url"),
        (json!({"url": url}), "events"),
        (json!({"url": url, "events": []}), "events"),
        (json!({"url": url, "events": ["order.shipped"]}), "events"),
        (json!({"url": url, "events": ["orders.*"]}), "events"),
        (
            json!({"url": url, "events": ["order.*"], "description": "x".repeat(501)}),
            "description",
        ),
    ] {
        let refused = app.post("/webhooks", Some(&admin), body.clone()).await;
        let problem = refused.expect_problem(422, "validation_failed");
        assert!(
            problem["errors"].get(field).is_some(),
            "{body}: {problem:#}"
        );
    }
    app.post(
        "/webhooks",
        Some(&admin),
        json!({"url": url, "events": "order.*"}),
    )
    .await
    .expect_problem(400, "invalid_body");
    let (client, _) = app.client_user().await;
    app.post(
        "/webhooks",
        Some(&client),
        json!({"url": url, "events": ["order.*"]}),
    )
    .await
    .expect_problem(403, "forbidden");
    app.post(
        "/webhooks",
        None,
        json!({"url": url, "events": ["order.*"]}),
    )
    .await
    .expect_problem(401, "unauthorized");
    let listed = app.get("/webhooks", Some(&admin)).await;
    assert_eq!(listed.expect(200)["items"], json!([]), "nothing was saved");

    // Allowed, a loopback endpoint is saved; its changes are checked the same way.
    let open = app.sibling(&[("WEBHOOK_ALLOW_PRIVATE", "true")]).await;
    let (id, _) = endpoint(&open, &admin, &url, json!(["order.*", "order.*", "*"])).await;
    let path = format!("/webhooks/{id}");
    let shown = app.get(&path, Some(&admin)).await;
    assert_eq!(
        shown.expect(200)["events"],
        json!(["order.*", "*"]),
        "deduplicated"
    );
    app.call(
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"url": url})),
    )
    .await
    .expect_problem(422, "validation_failed");
    let patched = app
        .call(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"enabled": false, "events": ["payment.failed"], "description": null})),
        )
        .await;
    let patched = patched.expect(200);
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["events"], json!(["payment.failed"]));
    assert!(patched["description"].is_null());
    assert_eq!(patched["url"], url.as_str(), "unchanged");
    app.call(Method::DELETE, &path, Some(&admin), None)
        .await
        .expect(204);
    app.get(&path, Some(&admin))
        .await
        .expect_problem(404, "not_found");
    app.call(Method::DELETE, &path, Some(&admin), None)
        .await
        .expect_problem(404, "not_found");
    app.get("/webhooks/not-a-uuid", Some(&admin))
        .await
        .expect(400);
}

async fn redelivery_repeats_the_event_and_rotation_changes_the_key(app: TestApp) {
    let admin = app.admin().await;
    let (receiver, url) = Receiver::start(&[]).await;
    let sender = sending(&app).await;
    let (id, old_secret) = endpoint(&sender, &admin, &url, json!(["product.*"])).await;
    let product = app.product(&admin, "Again", "1.00", 1).await;
    app.call(
        Method::PATCH,
        &format!("/products/{product}"),
        Some(&admin),
        Some(json!({"stock": 2})),
    )
    .await
    .expect(200);
    let first = ended(&sender, &admin, &id, 2).await;
    // Newest first: the update, then the creation.
    assert_eq!(first[0]["eventType"], "product.updated");
    assert_eq!(first[1]["eventType"], "product.created");
    let created = first[1].clone();

    let rotated = app
        .post(
            &format!("/webhooks/{id}/rotate-secret"),
            Some(&admin),
            json!({}),
        )
        .await;
    let new_secret = rotated.expect(200)["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);

    let again = app
        .post(
            &format!(
                "/webhooks/{id}/deliveries/{}/redeliver",
                created["id"].as_str().unwrap()
            ),
            Some(&admin),
            json!({}),
        )
        .await;
    let again = again.expect(202).clone();
    assert_ne!(again["id"], created["id"], "a new delivery");
    assert_eq!(again["eventId"], created["eventId"]);
    assert_eq!(again["status"], "PENDING");
    let got = receiver.wait("the redelivery", |got| got.len() == 3).await;
    let repeat = &got[2];
    assert_eq!(repeat.event_id, created["eventId"].as_str().unwrap());
    assert_eq!(
        repeat.body,
        got.iter()
            .find(|r| r.event_id == repeat.event_id)
            .unwrap()
            .body
    );
    assert!(verified(repeat, &new_secret), "signed with the new secret");
    assert!(
        !verified(repeat, &old_secret),
        "the old secret signs nothing more"
    );

    // The log pages by cursor, newest first.
    let items = ended(&sender, &admin, &id, 3).await;
    assert_eq!(items[0]["id"], again["id"]);
    let page = deliveries(&app, &admin, &id, "?limit=2").await;
    assert_eq!(page["hasMore"], true);
    let rest = deliveries(
        &app,
        &admin,
        &id,
        &format!("?limit=2&after={}", page["nextCursor"].as_str().unwrap()),
    )
    .await;
    assert_eq!(rest["hasMore"], false);
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["id"], items[2]["id"]);
    for bad in ["?limit=0", "?limit=101", "?after=nope"] {
        app.get(&format!("/webhooks/{id}/deliveries{bad}"), Some(&admin))
            .await
            .expect_problem(422, "validation_failed");
    }
    let stranger = uuid::Uuid::new_v4();
    app.post(
        &format!("/webhooks/{id}/deliveries/{stranger}/redeliver"),
        Some(&admin),
        json!({}),
    )
    .await
    .expect_problem(404, "not_found");
    app.get(&format!("/webhooks/{stranger}/deliveries"), Some(&admin))
        .await
        .expect_problem(404, "not_found");
}

async fn two_instances_deliver_each_event_once(app: TestApp) {
    let admin = app.admin().await;
    let (receiver, url) = Receiver::start(&[]).await;
    let first = sending(&app).await;
    let second = sending(&app).await;
    endpoint(&first, &admin, &url, json!(["product.created"])).await;
    let mut names = Vec::new();
    for n in 0..12 {
        let via = if n % 2 == 0 { &first } else { &second };
        via.product(&admin, &format!("Twice {n}"), "1.00", 1).await;
        names.push(format!("Twice {n}"));
    }
    receiver
        .wait("every product", |got| got.len() >= names.len())
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.got();
    let mut ids: Vec<&str> = got.iter().map(|r| r.event_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), names.len(), "each event once: {got:#?}");
    assert_eq!(got.len(), names.len(), "and nothing twice");
}

/// A URL saved where private addresses were allowed, sent from where they are not: the
/// sender checks again and fails the delivery at once, sending nothing.
async fn a_name_that_resolves_inside_is_refused_when_sending(app: TestApp) {
    let admin = app.admin().await;
    let (receiver, url) = Receiver::start(&[]).await;
    let by_name = url.replace("127.0.0.1", "localhost");
    let open = app.sibling(&[("WEBHOOK_ALLOW_PRIVATE", "true")]).await;
    let (id, _) = endpoint(&open, &admin, &by_name, json!(["product.created"])).await;
    let strict = app.sibling(&[("WORKERS", "1")]).await;
    app.product(&admin, "Not for localhost", "1.00", 1).await;
    let refused = ended(&strict, &admin, &id, 1).await;
    assert_eq!(refused[0]["status"], "FAILED");
    assert_eq!(refused[0]["attempts"], 1, "not retried");
    assert!(
        refused[0]["lastError"]
            .as_str()
            .unwrap()
            .contains("loopback, private or link-local"),
        "{refused:#?}"
    );
    assert!(receiver.got().is_empty(), "nothing was sent");
}

/// Ended deliveries go with the events they carried, after `EVENT_RETENTION`; one still
/// being retried stays.
async fn ended_deliveries_older_than_the_retention_are_pruned(app: TestApp) {
    use entity::webhook_delivery;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    let admin = app.admin().await;
    let (_, url) = Receiver::start(&[]).await;
    let sender = sending(&app).await;
    let (id, _) = endpoint(&sender, &admin, &url, json!(["product.*"])).await;
    app.product(&admin, "Old news", "1.00", 1).await;
    let done = ended(&sender, &admin, &id, 1).await;
    assert_eq!(done[0]["status"], "SUCCEEDED");
    // A redelivery of it, still waiting for a retry, from as long ago.
    let original = webhook_delivery::Entity::find()
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut copy: webhook_delivery::ActiveModel = original.clone().into();
    copy.id = sea_orm::Set(uuid::Uuid::now_v7());
    copy.redelivery_of = sea_orm::Set(Some(original.id));
    copy.status = sea_orm::Set(entity::DeliveryStatus::Retrying);
    copy.next_attempt_at = sea_orm::Set(Some(chrono::Utc::now() + chrono::Duration::days(1)));
    let kept = webhook_delivery::Entity::insert(copy)
        .exec_with_returning(&app.state.db)
        .await
        .unwrap();
    webhook_delivery::Entity::update_many()
        .col_expr(
            webhook_delivery::Column::UpdatedAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::days(31)),
        )
        .filter(webhook_delivery::Column::EndpointId.eq(uuid::Uuid::parse_str(&id).unwrap()))
        .exec(&app.state.db)
        .await
        .unwrap();
    let pruned = shop::webhooks::prune(&app.state.db, app.state.config.event_retention)
        .await
        .unwrap();
    assert_eq!(pruned, 1, "the succeeded one");
    let left = deliveries(&app, &admin, &id, "").await;
    let left = left["items"].as_array().unwrap().clone();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], kept.id.to_string().as_str());
    assert_eq!(left[0]["status"], "RETRYING");
}
