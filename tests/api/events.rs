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
);

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
    let mine = app.get("/events", Some(&client)).await;
    assert_eq!(kinds(mine.expect(200)).len(), 5);
    assert_eq!(mine.body["hasMore"], false);
    let theirs = app.get("/events", Some(&stranger)).await;
    assert!(kinds(theirs.expect(200)).is_empty());
    let all = app.get("/events?type=product.*", Some(&admin)).await;
    assert_eq!(kinds(all.expect(200)), ["product.created"]);
    assert_eq!(all.body["items"][0]["actor"]["kind"], "admin");

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
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if app
            .client
            .get(format!("{base}/health"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
