//! The event log: what each caller may read, in order, with cursors and filters; an
//! order's history; and no event lost when the process that committed it dies at once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    helpers::TestApp,
    socket::{Auth, Listener},
};

both_backends!(
    the_log_shows_each_caller_what_it_may_see,
    a_process_killed_after_its_commit_loses_no_event,
    sse_replays_after_the_last_event_id_then_goes_live,
    socketio_resumes_after_the_last_event_id,
    events_older_than_the_retention_are_pruned,
);

/// `GET /events` (with `query`) as `token` sees it, once it holds at least `want` events:
/// an event is listed once every transaction older than its own has ended, a moment after
/// its commit.
async fn events_page(app: &TestApp, token: &str, query: &str, want: usize) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = app.get(&format!("/events{query}"), Some(token)).await;
        let page = page.expect(200).clone();
        if page["items"].as_array().unwrap().len() >= want {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {want} events: {page:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kinds(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_log_shows_each_caller_what_it_may_see(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Logged", "2.00", 10).await;
    let (client, client_id) = app.client_user().await;
    let (stranger, _) = app.client_user().await;
    let paying = app.sibling(&[("WORKERS", "1")]).await;
    let order = paying.order(&client, &[(&product, 1)]).await;
    let id = order.expect(201)["id"].as_str().unwrap().to_owned();
    paying.wait_for_order(&client, &id, &["COMPLETED"]).await;

    // The history of the order, oldest first, with who did what.
    let history = app
        .get(&format!("/orders/{id}/events"), Some(&client))
        .await;
    let history = history.expect(200);
    assert_eq!(
        kinds(history),
        [
            "order.created",
            "order.processing",
            "payment.processing",
            "order.completed",
            "payment.succeeded"
        ]
    );
    let items = history["items"].as_array().unwrap();
    assert_eq!(items[0]["actor"], json!({"kind": "user", "id": client_id}));
    assert_eq!(items[0]["data"]["status"], "PENDING");
    assert_eq!(items[3]["actor"]["kind"], "worker");
    assert_eq!(items[4]["data"]["status"], "SUCCEEDED");
    assert!(
        items
            .windows(2)
            .all(|w| w[0]["id"].as_str() < w[1]["id"].as_str())
    );
    app.get(&format!("/orders/{id}/events"), Some(&stranger))
        .await
        .expect_problem(404, "not_found");

    // A client reads its own events; an admin also the catalog's; others nothing of them.
    let mine = events_page(&app, &client, "", 5).await;
    assert_eq!(kinds(&mine).len(), 5);
    assert_eq!(mine["hasMore"], false);
    let theirs = app.get("/events", Some(&stranger)).await;
    assert!(kinds(theirs.expect(200)).is_empty());
    let all = events_page(&app, &admin, "?type=product.*", 1).await;
    assert_eq!(kinds(&all), ["product.created"]);
    assert_eq!(all["items"][0]["actor"]["kind"], "admin");

    // Filters and cursor pages.
    let payments = app
        .get("/events?type=payment.*,order.completed", Some(&client))
        .await;
    assert_eq!(
        kinds(payments.expect(200)),
        ["payment.processing", "order.completed", "payment.succeeded"]
    );
    let first = app.get("/events?limit=2", Some(&client)).await;
    let first = first.expect(200);
    assert_eq!(kinds(first), ["order.created", "order.processing"]);
    assert_eq!(first["hasMore"], true);
    let cursor = first["nextCursor"].as_str().unwrap();
    let rest = app
        .get(
            &format!("/events?after={cursor}&orderId={id}"),
            Some(&client),
        )
        .await;
    assert_eq!(
        kinds(rest.expect(200)),
        ["payment.processing", "order.completed", "payment.succeeded"]
    );
    assert_eq!(rest.body["hasMore"], false);
    app.get("/events?after=nope&type=order&limit=0", Some(&client))
        .await
        .expect_problem(422, "validation_failed");
    app.get("/events", None)
        .await
        .expect_problem(401, "unauthorized");
}

async fn a_process_killed_after_its_commit_loses_no_event(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Orphaned", "2.00", 10).await;
    let (client, _) = app.client_user().await;
    let mut ear = Listener::connect(app.port, "/orders", Auth::Payload(&client))
        .await
        .unwrap();
    // Another instance takes the order and dies the moment it has answered.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut doomed = app.process("serve", &[("PORT", &port.to_string())]);
    let base = app.wait_until_serving(port).await;
    let placed = app
        .client
        .post(format!("{base}/orders"))
        .bearer_auth(&client)
        .json(&json!({"items": [{"productId": product, "quantity": 1}], "paymentMethod": "pm_success"}))
        .send()
        .await
        .unwrap();
    doomed.start_kill().unwrap();
    assert_eq!(placed.status(), 201);
    let order: Value = placed.json().await.unwrap();
    let _ = doomed.wait().await;
    // The listener on this instance still hears it, from the log.
    let heard = ear.until(|e| e["id"] == order["id"]).await;
    assert_eq!(heard.last().unwrap()["status"], "PENDING");
    ear.close().await;
}

/// Reads server-sent events from a response until `want` have arrived (panics after 20 s).
async fn read_sse(response: &mut reqwest::Response, want: usize) -> Vec<(String, String, Value)> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while events.len() < want {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("events arrive in time")
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.to_owned();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if !id.is_empty() {
                events.push((id, kind, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

async fn sse_replays_after_the_last_event_id_then_goes_live(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Streamed", "2.00", 10).await;
    let (client, _) = app.client_user().await;
    let (stranger, _) = app.client_user().await;
    app.order(&client, &[(&product, 1)]).await.expect(201);
    let first = events_page(&app, &client, "", 1).await;
    let first_id = first["items"][0]["id"].as_str().unwrap().to_owned();
    // Missed while away: the stranger's order must not show.
    let missed = app.order(&client, &[(&product, 2)]).await;
    let missed_id = missed.expect(201)["id"].clone();
    app.order(&stranger, &[(&product, 1)]).await.expect(201);

    let mut stream = app
        .client
        .get(format!("{}/events/stream?access_token={client}", app.base))
        .header("Last-Event-ID", &first_id)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let replayed = read_sse(&mut stream, 1).await;
    assert_eq!(replayed[0].1, "order.created");
    assert_eq!(replayed[0].2["data"]["id"], missed_id);
    assert!(replayed[0].0 > first_id);
    // Then live, with nothing twice.
    let live = app.order(&client, &[(&product, 3)]).await;
    let live_id = live.expect(201)["id"].clone();
    let heard = read_sse(&mut stream, 1).await;
    assert_eq!(heard[0].1, "order.created");
    assert_eq!(heard[0].2["data"]["id"], live_id);
    assert!(heard[0].0 > replayed[0].0);

    // Open streams and the log's lag are measured.
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    for name in ["sse_connections", "event_log_lag_seconds"] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    // A bad token or cursor is refused before the stream opens.
    let refused = app
        .client
        .get(format!("{}/events/stream?access_token=nope", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let refused = app
        .client
        .get(format!("{}/events/stream", app.base))
        .bearer_auth(&client)
        .header("Last-Event-ID", "42")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
}

async fn socketio_resumes_after_the_last_event_id(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Resumed", "2.00", 10).await;
    let (client, _) = app.client_user().await;
    let (stranger, _) = app.client_user().await;
    app.order(&client, &[(&product, 1)]).await.expect(201);
    let first = events_page(&app, &client, "", 1).await;
    let first_id = first["items"][0]["id"].as_str().unwrap().to_owned();
    // Missed while away (and someone else's order, which must not show).
    let mut missed = Vec::new();
    for quantity in [2, 3] {
        let order = app.order(&client, &[(&product, quantity)]).await;
        missed.push(order.expect(201)["id"].clone());
    }
    app.order(&stranger, &[(&product, 1)]).await.expect(201);

    let mut ear = Listener::connect(app.port, "/orders", Auth::Resume(&client, &first_id))
        .await
        .unwrap();
    let live = app.order(&client, &[(&product, 1)]).await;
    let live_id = live.expect(201)["id"].clone();
    // The missed events first, in order, then the live one, each once.
    let mut heard = Vec::new();
    while heard.len() < 3 {
        let event = ear
            .next(Duration::from_secs(10))
            .await
            .expect("missed and live events are heard");
        heard.push(event["id"].clone());
    }
    assert_eq!(heard, [missed[0].clone(), missed[1].clone(), live_id]);
    assert!(
        ear.next(Duration::from_millis(600)).await.is_none(),
        "nothing twice"
    );
    ear.close().await;

    let refused = Listener::connect(app.port, "/orders", Auth::Resume(&client, "42")).await;
    assert_eq!(refused.err().as_deref(), Some("invalid lastEventId"));
}

async fn events_older_than_the_retention_are_pruned(app: TestApp) {
    use entity::event;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    let admin = app.admin().await;
    let product = app.product(&admin, "Forgotten", "2.00", 10).await;
    let (client, _) = app.client_user().await;
    let old = app.order(&client, &[(&product, 1)]).await;
    let old_id = old.expect(201)["id"].as_str().unwrap().to_owned();
    let recent = app.order(&client, &[(&product, 1)]).await;
    let recent_id = recent.expect(201)["id"].as_str().unwrap().to_owned();
    // The first order's events were written 31 days ago.
    let aged = event::Entity::update_many()
        .col_expr(
            event::Column::CreatedAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::days(31)),
        )
        .filter(event::Column::OrderId.eq(uuid::Uuid::parse_str(&old_id).unwrap()))
        .exec(&app.state.db)
        .await
        .unwrap();
    assert_eq!(aged.rows_affected, 1, "the old order's one event");
    let pruned = shop::events::prune(&app.state.db, app.state.config.event_retention)
        .await
        .unwrap();
    // The instance prunes at start and hourly too: on a slow start its own round may be
    // the one that removed it.
    assert!(pruned <= 1, "only the old event: {pruned}");
    let history = |id: String| {
        let app = &app;
        let client = client.clone();
        async move {
            let answer = app
                .get(&format!("/orders/{id}/events"), Some(&client))
                .await;
            answer.expect(200)["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(history(old_id).await, 0);
    assert_eq!(history(recent_id).await, 1);
}
