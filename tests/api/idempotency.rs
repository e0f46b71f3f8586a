//! `Idempotency-Key` on `POST /orders`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp};

both_backends!(
    concurrent_repeats_create_one_order,
    a_repeat_replays_the_first_answer,
    a_key_reused_with_another_body_is_refused,
    a_refused_request_is_replayed_too,
    keys_belong_to_one_user,
    malformed_keys_are_refused,
);

async fn place(app: &TestApp, token: &str, key: &str, body: &Value) -> Answer {
    app.call_with(
        Method::POST,
        "/orders",
        Some(token),
        Some(body.clone()),
        &[("Idempotency-Key", key)],
    )
    .await
}

async fn concurrent_repeats_create_one_order(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Hot", "5.00", 100).await;
    let (client, _) = app.client_user().await;
    let body =
        json!({"items": [{"productId": product, "quantity": 1}], "paymentMethod": "pm_success"});

    let requests = (0..20).map(|_| place(&app, &client, "checkout-42", &body));
    let answers = futures::future::join_all(requests).await;
    let created: Vec<&Answer> = answers.iter().filter(|a| a.status == 201).collect();
    assert!(!created.is_empty());
    for answer in &answers {
        match answer.status.as_u16() {
            201 => assert_eq!(answer.body["id"], created[0].body["id"]),
            409 => assert_eq!(answer.code(), "idempotency_key_in_use"),
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    assert_eq!(
        app.get("/orders", Some(&client)).await.expect(200)["totalCount"],
        1
    );
    assert_eq!(app.stock(&admin, &product).await, 99);

    // Once the first has finished, every repeat is a replay.
    let replay = place(&app, &client, "checkout-42", &body).await;
    assert_eq!(replay.expect(201)["id"], created[0].body["id"]);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
}

async fn a_repeat_replays_the_first_answer(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Pen", "1.25", 10).await;
    let (client, _) = app.client_user().await;
    let body =
        json!({"items": [{"productId": product, "quantity": 2}], "paymentMethod": "pm_success"});

    let first = place(&app, &client, "k-1", &body).await;
    first.expect(201);
    assert!(first.headers.get("idempotent-replayed").is_none());
    // Same request with other formatting and key order: same fingerprint.
    let reordered =
        json!({"paymentMethod": "pm_success", "items": [{"quantity": 2, "productId": product}]});
    let second = place(&app, &client, "k-1", &reordered).await;
    assert_eq!(second.expect(201), &first.body);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    assert_eq!(second.headers["content-type"], "application/json");
    assert_eq!(app.stock(&admin, &product).await, 8);

    // A new key is a new order.
    place(&app, &client, "k-2", &body).await.expect(201);
    assert_eq!(app.stock(&admin, &product).await, 6);
}

async fn a_key_reused_with_another_body_is_refused(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Pen", "1.25", 10).await;
    let (client, _) = app.client_user().await;
    let body = json!({"items": [{"productId": product, "quantity": 1}]});
    place(&app, &client, "k", &body).await.expect(201);
    let other = json!({"items": [{"productId": product, "quantity": 3}]});
    place(&app, &client, "k", &other)
        .await
        .expect_problem(422, "idempotency_key_reused");
    assert_eq!(app.stock(&admin, &product).await, 9);
}

async fn a_refused_request_is_replayed_too(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Rare", "9.00", 1).await;
    let (client, _) = app.client_user().await;
    let body = json!({"items": [{"productId": product, "quantity": 2}]});
    let first = place(&app, &client, "retry-me", &body).await;
    first.expect_problem(409, "insufficient_stock");
    app.call(
        Method::PATCH,
        &format!("/products/{product}"),
        Some(&admin),
        Some(json!({"stock": 5})),
    )
    .await
    .expect(200);
    // The key's first answer stands, even though the stock is back: nothing is created.
    let again = place(&app, &client, "retry-me", &body).await;
    assert_eq!(again.expect_problem(409, "insufficient_stock"), &first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(app.stock(&admin, &product).await, 5);
    // A new key places the order.
    place(&app, &client, "retry-me-2", &body).await.expect(201);
    assert_eq!(app.stock(&admin, &product).await, 3);
}

async fn keys_belong_to_one_user(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Shared", "1.00", 10).await;
    let (alice, _) = app.client_user().await;
    let (bob, _) = app.client_user().await;
    let body = json!({"items": [{"productId": product, "quantity": 1}]});
    let a = place(&app, &alice, "same-key", &body).await;
    let b = place(&app, &bob, "same-key", &body).await;
    assert_ne!(a.expect(201)["id"], b.expect(201)["id"]);
    assert!(b.headers.get("idempotent-replayed").is_none());
    assert_eq!(app.stock(&admin, &product).await, 8);
}

async fn malformed_keys_are_refused(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Pen", "1.00", 10).await;
    let (client, _) = app.client_user().await;
    let body = json!({"items": [{"productId": product, "quantity": 1}]});
    place(&app, &client, &"k".repeat(256), &body)
        .await
        .expect_problem(400, "invalid_idempotency_key");
    place(&app, &client, &"k".repeat(255), &body)
        .await
        .expect(201);
    assert_eq!(app.stock(&admin, &product).await, 9);
}
