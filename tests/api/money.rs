//! Money and stock: the stock ledger under a storm of everything that moves stock, stock
//! adjustments, the audit, `ETag` / `If-Match` on products, and refunds (concurrent,
//! partial, restocking, failing, idempotent).

use std::{collections::BTreeSet, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    helpers::{Answer, TestApp},
    socket::{Auth, Listener},
};

both_backends!(
    a_storm_leaves_every_stock_equal_to_its_ledger,
    concurrent_partial_refunds_never_exceed_what_was_paid_or_ordered,
    two_admins_with_the_same_if_match_one_wins,
    an_adjustment_below_zero_is_refused_and_changes_nothing,
    adjustments_and_movements_are_validated_and_paged,
    a_refund_restocks_moves_the_order_and_is_told_once,
    a_refund_that_keeps_failing_gives_its_claim_back,
);

const ENDED: &[&str] = &["COMPLETED", "FAILED", "CANCELLED"];

/// Another instance on the same database, with workers (payments and refunds).
async fn with_workers(app: &TestApp, extra: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![("WORKERS", "1"), ("PAYMENT_SUCCESS_RATE", "1")];
    settings.extend_from_slice(extra);
    app.sibling(&settings).await
}

/// Asks for a refund of `order`.
async fn refund(app: &TestApp, admin: &str, order: &str, body: Value) -> Answer {
    app.post(&format!("/orders/{order}/refunds"), Some(admin), body)
        .await
}

/// Polls an order's refunds until none is `PENDING` (panics after 60 s).
async fn refunds_settled(app: &TestApp, admin: &str, order: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = app
            .get(&format!("/orders/{order}/refunds"), Some(admin))
            .await;
        let items = answer.expect(200)["items"].as_array().unwrap().clone();
        if items.iter().all(|r| r["status"] != "PENDING") {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refunds never settled: {items:#?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every movement of a product, newest first, read page by page.
async fn movements(app: &TestApp, admin: &str, product: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/products/{product}/stock-movements?limit=100{after}");
        let page = app.get(&path, Some(admin)).await.expect(200).clone();
        all.extend(page["items"].as_array().unwrap().iter().cloned());
        if page["hasMore"] != true {
            return all;
        }
        after = format!("&after={}", page["nextCursor"].as_str().unwrap());
    }
}

/// Asserts the ledger of `product` adds up to its stock, and that each movement's
/// `stockAfter` follows from the one before; answers the reasons seen.
async fn assert_balanced(app: &TestApp, admin: &str, product: &str) -> BTreeSet<String> {
    let stock = app.stock(admin, product).await;
    let mut oldest_first = movements(app, admin, product).await;
    oldest_first.reverse();
    let mut running = 0;
    let mut reasons = BTreeSet::new();
    for m in &oldest_first {
        running += m["delta"].as_i64().unwrap();
        assert_eq!(m["stockAfter"].as_i64().unwrap(), running, "movement {m:#}");
        assert!(running >= 0, "the ledger went below zero at {m:#}");
        reasons.insert(m["reason"].as_str().unwrap().to_owned());
    }
    assert_eq!(running, stock, "the ledger of {product} does not add up");
    reasons
}

/// The audit, which must find no drift.
async fn assert_audit_clean(app: &TestApp, admin: &str) -> Value {
    let audit = app.get("/admin/stock/audit", Some(admin)).await;
    let body = audit.expect(200).clone();
    assert_eq!(body["drift"], json!([]), "drift: {body:#}");
    body
}

/// One request of the storm, and what it was.
type Step<'a> = BoxFuture<'a, (&'static str, Answer)>;

async fn a_storm_leaves_every_stock_equal_to_its_ledger(app: TestApp) {
    let admin = app.admin().await;
    let shop = with_workers(
        &app,
        &[
            ("PAYMENT_ACTION_TIMEOUT", "300ms"),
            ("REFUND_FAILURE_RATE", "0.3"),
        ],
    )
    .await;
    let mut products = Vec::new();
    for name in ["Storm A", "Storm B", "Storm C"] {
        products.push(shop.product(&admin, name, "3.00", 300).await);
    }
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(shop.client_user().await.0);
    }
    let p = |i: usize| products[i % products.len()].as_str();
    let c = |i: usize| clients[i % clients.len()].as_str();

    // Round one: orders of every fate, cancels, adjustments and PUT stock, all at once.
    let mut steps: Vec<Step<'_>> = Vec::new();
    for i in 0..40 {
        let lines = [(p(i), (i % 3 + 1) as i64), (p(i + 1), 1)];
        let shop = &shop;
        steps.push(
            async move { ("paid", shop.order_with(c(i), &lines, "pm_success").await) }.boxed(),
        );
    }
    for i in 0..15 {
        let shop = &shop;
        steps.push(
            async move {
                (
                    "declined",
                    shop.order_with(c(i), &[(p(i), 2)], "pm_decline").await,
                )
            }
            .boxed(),
        );
    }
    for i in 0..10 {
        let shop = &shop;
        steps.push(
            async move {
                let lines = [(p(i + 2), 1)];
                (
                    "expiring",
                    shop.order_with(c(i), &lines, "pm_requires_action").await,
                )
            }
            .boxed(),
        );
    }
    for i in 0..15 {
        let shop = &shop;
        steps.push(
            async move {
                let placed = shop.order_with(c(i), &[(p(i), 3)], "pm_transient_2").await;
                let id = placed.expect(201)["id"].as_str().unwrap().to_owned();
                let cancel = shop
                    .post(&format!("/orders/{id}/cancel"), Some(c(i)), json!({}))
                    .await;
                ("cancel", cancel)
            }
            .boxed(),
        );
    }
    for i in 0..20 {
        let (shop, admin) = (&shop, admin.as_str());
        let body = if i % 2 == 0 {
            json!({"delta": 5, "reason": "restock", "reference": format!("PO-{i}")})
        } else {
            json!({"delta": -3, "reason": "damage"})
        };
        steps.push(
            async move {
                let path = format!("/products/{}/stock-adjustments", p(i));
                ("adjust", shop.post(&path, Some(admin), body).await)
            }
            .boxed(),
        );
    }
    for i in 0..6 {
        let (shop, admin) = (&shop, admin.as_str());
        steps.push(
            async move {
                let path = format!("/products/{}", p(i));
                let body = json!({"stock": 250 + i});
                (
                    "put",
                    shop.call(Method::PUT, &path, Some(admin), Some(body)).await,
                )
            }
            .boxed(),
        );
    }
    let round_one = futures::future::join_all(steps).await;
    let mut orders = Vec::new();
    let mut cancelled = 0;
    for (kind, answer) in &round_one {
        match *kind {
            "cancel" => {
                assert!(
                    answer.status == 200 || answer.code() == "order_not_cancellable",
                    "{:#}",
                    answer.body
                );
                cancelled += usize::from(answer.status == 200);
            }
            "adjust" => assert_eq!(answer.status, 201, "{:#}", answer.body),
            "put" => assert_eq!(answer.status, 200, "{:#}", answer.body),
            _ => {
                let order = answer.expect(201);
                orders.push(order["id"].as_str().unwrap().to_owned());
            }
        }
    }
    let mut completed = Vec::new();
    for id in &orders {
        let order = shop.wait_for_order(&admin, id, ENDED).await;
        if order["status"] == "COMPLETED" {
            completed.push(order);
        }
    }
    assert!(completed.len() >= 40, "paid orders: {}", completed.len());

    // Round two: refunds with restock (two partial and one for the rest, per order, at
    // once), beside new orders and adjustments.
    let mut steps: Vec<Step<'_>> = Vec::new();
    for order in &completed {
        let id = order["id"].as_str().unwrap().to_owned();
        let line = &order["orderItems"][0];
        let product = line["productId"].as_str().unwrap().to_owned();
        for body in [
            json!({"amount": "1.00", "reason": "late", "restock": [{"productId": product, "quantity": 1}]}),
            json!({"amount": "0.50"}),
            json!({"restock": [{"productId": product, "quantity": line["quantity"]}]}),
        ] {
            let (shop, admin, id) = (&shop, admin.as_str(), id.clone());
            steps.push(async move { ("refund", refund(shop, admin, &id, body).await) }.boxed());
        }
    }
    for i in 0..10 {
        let shop = &shop;
        steps.push(
            async move {
                (
                    "paid",
                    shop.order_with(c(i), &[(p(i), 1)], "pm_success").await,
                )
            }
            .boxed(),
        );
        let admin = admin.as_str();
        steps.push(
            async move {
                let path = format!("/products/{}/stock-adjustments", p(i));
                let body = json!({"delta": 2, "reason": "return"});
                ("adjust", shop.post(&path, Some(admin), body).await)
            }
            .boxed(),
        );
    }
    let round_two = futures::future::join_all(steps).await;
    let mut refunds = 0;
    for (kind, answer) in &round_two {
        match *kind {
            "refund" => {
                assert!(
                    answer.status == 202
                        || [
                            "refund_exceeds_remaining",
                            "restock_exceeds_order",
                            // The other refunds of the order succeeded first.
                            "order_not_refundable",
                        ]
                        .contains(&answer.code()),
                    "{:#}",
                    answer.body
                );
                refunds += usize::from(answer.status == 202);
            }
            "adjust" => assert_eq!(answer.status, 201, "{:#}", answer.body),
            _ => {
                let id = answer.expect(201)["id"].as_str().unwrap().to_owned();
                shop.wait_for_order(&admin, &id, ENDED).await;
            }
        }
    }
    assert!(refunds >= completed.len(), "refunds accepted: {refunds}");
    for order in &completed {
        let id = order["id"].as_str().unwrap();
        let settled = refunds_settled(&shop, &admin, id).await;
        let refunded: f64 = settled
            .iter()
            .filter(|r| r["status"] == "SUCCEEDED")
            .map(|r| r["amount"].as_str().unwrap().parse::<f64>().unwrap())
            .sum();
        let now = shop.get(&format!("/orders/{id}"), Some(&admin)).await;
        let now = now.expect(200);
        let total: f64 = now["total"].as_str().unwrap().parse().unwrap();
        let shown: f64 = now["refunded"].as_str().unwrap().parse().unwrap();
        assert!(
            (refunded - shown).abs() < 0.001 && shown <= total + 0.001,
            "{now:#}"
        );
    }

    let mut reasons = BTreeSet::new();
    for product in &products {
        reasons.extend(assert_balanced(&shop, &admin, product).await);
    }
    let mut expected: BTreeSet<String> = [
        "order",
        "payment_failed",
        "expired",
        "refund",
        "restock",
        "damage",
        "return",
        "correction",
    ]
    .map(str::to_owned)
    .into();
    if cancelled > 0 {
        expected.insert("cancel".into());
    }
    assert!(reasons.is_superset(&expected), "reasons seen: {reasons:?}");
    let audit = assert_audit_clean(&app, &admin).await;
    println!(
        "storm: {} requests in round one, {} in round two; {} orders, {} completed, {cancelled} cancelled, {refunds} refunds accepted; audit: {} products, {} movements, drift {}",
        round_one.len(),
        round_two.len(),
        orders.len() + 10,
        completed.len(),
        audit["products"],
        audit["movements"],
        audit["drift"]
    );
}

async fn concurrent_partial_refunds_never_exceed_what_was_paid_or_ordered(app: TestApp) {
    let admin = app.admin().await;
    let shop = with_workers(&app, &[]).await;
    let (client, _) = shop.client_user().await;
    let product = shop.product(&admin, "Lamp", "2.00", 10).await;
    let placed = shop.order(&client, &[(&product, 5)]).await;
    let id = placed.expect(201)["id"].as_str().unwrap().to_owned();
    shop.wait_for_order(&client, &id, &["COMPLETED"]).await;
    assert_eq!(shop.stock(&admin, &product).await, 5);

    // Twenty refunds of 1.00 of a 10.00 order, at once: ten fit.
    let attempts = (0..20).map(|_| refund(&shop, &admin, &id, json!({"amount": 1})));
    let answers = futures::future::join_all(attempts).await;
    let accepted = answers.iter().filter(|a| a.status == 202).count();
    for refused in answers.iter().filter(|a| a.status != 202) {
        // Once the ten have succeeded the order is REFUNDED: later ones are told so.
        match refused.status.as_u16() {
            409 => refused.expect_problem(409, "order_not_refundable"),
            _ => refused.expect_problem(422, "refund_exceeds_remaining"),
        };
    }
    assert_eq!(accepted, 10);
    let settled = refunds_settled(&shop, &admin, &id).await;
    assert_eq!(settled.len(), 10);
    assert!(settled.iter().all(|r| r["status"] == "SUCCEEDED"));
    let order = shop.wait_for_order(&client, &id, &["REFUNDED"]).await;
    assert_eq!(order["refunded"], "10.00");
    assert_eq!(order["total"], "10.00");
    refund(&shop, &admin, &id, json!({}))
        .await
        .expect_problem(409, "order_not_refundable");

    // Twenty refunds restocking one unit each of a 5-unit line, at once: five fit.
    let placed = shop.order(&client, &[(&product, 5)]).await;
    let id = placed.expect(201)["id"].as_str().unwrap().to_owned();
    shop.wait_for_order(&client, &id, &["COMPLETED"]).await;
    assert_eq!(shop.stock(&admin, &product).await, 0);
    let line = json!({"amount": "0.01", "restock": [{"productId": product, "quantity": 1}]});
    let attempts = (0..20).map(|_| refund(&shop, &admin, &id, line.clone()));
    let answers = futures::future::join_all(attempts).await;
    let accepted = answers.iter().filter(|a| a.status == 202).count();
    for refused in answers.iter().filter(|a| a.status != 202) {
        refused.expect_problem(422, "restock_exceeds_order");
    }
    assert_eq!(accepted, 5);
    refunds_settled(&shop, &admin, &id).await;
    let order = shop
        .wait_for_order(&client, &id, &["PARTIALLY_REFUNDED"])
        .await;
    assert_eq!(order["refunded"], "0.05");
    assert_eq!(shop.stock(&admin, &product).await, 5);
    assert_balanced(&shop, &admin, &product).await;
    assert_audit_clean(&shop, &admin).await;
}

async fn two_admins_with_the_same_if_match_one_wins(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Chair", "30.00", 7).await;
    let path = format!("/products/{product}");
    let read = app.get(&path, None).await;
    read.expect(200);
    let etag = read.headers["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "a strong ETag: {etag}"
    );
    // Reading again (a view, not a write) keeps it.
    let again = app.get(&path, Some(&admin)).await;
    assert_eq!(again.headers["etag"], etag.as_str());

    let edit = |name: &'static str, stock: i64| {
        let (app, admin, path, etag) = (&app, admin.as_str(), path.as_str(), etag.as_str());
        async move {
            let body = json!({"name": name, "stock": stock});
            app.call_with(
                Method::PATCH,
                path,
                Some(admin),
                Some(body),
                &[("If-Match", etag)],
            )
            .await
        }
    };
    let (first, second) = tokio::join!(edit("Chair (oak)", 9), edit("Chair (pine)", 3));
    let (won, lost) = match (first.status.as_u16(), second.status.as_u16()) {
        (200, 412) => (first, second),
        (412, 200) => (second, first),
        other => panic!(
            "expected one 200 and one 412, got {other:?}: {:#} {:#}",
            first.body, second.body
        ),
    };
    lost.expect_problem(412, "precondition_failed");
    let new_etag = won.headers["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag);
    let now = app.get(&path, Some(&admin)).await;
    assert_eq!(now.expect(200)["name"], won.body["name"]);
    assert_eq!(now.body["stock"], won.body["stock"]);
    assert_eq!(now.headers["etag"], new_etag.as_str());
    // The loser changed nothing: one correction only, by the winner.
    let corrections = movements(&app, &admin, &product)
        .await
        .into_iter()
        .filter(|m| m["reason"] == "correction")
        .count();
    assert_eq!(corrections, 2, "the opening stock and the winner's");
    assert_balanced(&app, &admin, &product).await;

    // A stale tag still fails (PUT and DELETE too); a current one, `*` or none goes through.
    for method in [Method::PUT, Method::DELETE] {
        let stale = app
            .call_with(
                method,
                &path,
                Some(&admin),
                Some(json!({"name": "x"})),
                &[("If-Match", &etag)],
            )
            .await;
        stale.expect_problem(412, "precondition_failed");
    }
    let weak = format!("W/{new_etag}");
    app.call_with(
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"name": "x"})),
        &[("If-Match", &weak)],
    )
    .await
    .expect_problem(412, "precondition_failed");
    let listed = format!("\"999999\", {new_etag}");
    let current = app
        .call_with(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"name": "Chair"})),
            &[("If-Match", &listed)],
        )
        .await;
    current.expect(200);
    let star = app
        .call_with(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"price": "31.00"})),
            &[("If-Match", "*")],
        )
        .await;
    star.expect(200);
    let plain = app
        .call(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"price": "32.00"})),
        )
        .await;
    plain.expect(200);
    let latest = plain.headers["etag"].to_str().unwrap().to_owned();
    let deleted = app
        .call_with(
            Method::DELETE,
            &path,
            Some(&admin),
            None,
            &[("If-Match", &latest)],
        )
        .await;
    assert!(deleted.expect(200)["deletedAt"].is_string());
    // A missing product is a 404 whatever If-Match says.
    let missing = format!("/products/{}", uuid::Uuid::now_v7());
    app.call_with(
        Method::PATCH,
        &missing,
        Some(&admin),
        Some(json!({"name": "x"})),
        &[("If-Match", "*")],
    )
    .await
    .expect_problem(404, "not_found");
}

async fn an_adjustment_below_zero_is_refused_and_changes_nothing(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Mug", "8.00", 5).await;
    let path = format!("/products/{product}");
    let before = app.get(&path, Some(&admin)).await;
    let etag = before.headers["etag"].to_str().unwrap().to_owned();
    let adjust = format!("{path}/stock-adjustments");
    let refused = app
        .post(
            &adjust,
            Some(&admin),
            json!({"delta": -6, "reason": "damage"}),
        )
        .await;
    refused.expect_problem(409, "insufficient_stock");
    assert_eq!(
        refused.body["errors"][&product][0],
        "requested 6, available 5"
    );
    let after = app.get(&path, Some(&admin)).await;
    assert_eq!(after.expect(200)["stock"], 5);
    assert_eq!(after.headers["etag"], etag.as_str(), "nothing was written");
    assert_eq!(movements(&app, &admin, &product).await.len(), 1);

    // Down to exactly zero is fine; one more is not.
    let to_zero = app
        .post(
            &adjust,
            Some(&admin),
            json!({"delta": -5, "reason": "damage", "reference": "flood"}),
        )
        .await;
    let movement = to_zero.expect(201);
    assert_eq!(movement["stockAfter"], 0);
    assert_eq!(movement["delta"], -5);
    assert_eq!(movement["reference"], "flood");
    app.post(
        &adjust,
        Some(&admin),
        json!({"delta": -1, "reason": "other"}),
    )
    .await
    .expect_problem(409, "insufficient_stock");
    assert_eq!(app.stock(&admin, &product).await, 0);
    assert_balanced(&app, &admin, &product).await;
}

async fn adjustments_and_movements_are_validated_and_paged(app: TestApp) {
    let admin = app.admin().await;
    let (client, _) = app.client_user().await;
    let product = app.product(&admin, "Pen", "1.00", 10).await;
    let adjust = format!("/products/{product}/stock-adjustments");
    for (body, field) in [
        (json!({"reason": "restock"}), "delta"),
        (json!({"delta": 0, "reason": "restock"}), "delta"),
        (
            json!({"delta": 2_000_000_000i64, "reason": "restock"}),
            "delta",
        ),
        (json!({"delta": i64::MIN, "reason": "damage"}), "delta"),
        (json!({"delta": 1}), "reason"),
        (json!({"delta": 1, "reason": "order"}), "reason"),
        (json!({"delta": 1, "reason": "gift"}), "reason"),
        (
            json!({"delta": 1, "reason": "other", "reference": "x".repeat(201)}),
            "reference",
        ),
        (
            json!({"delta": 1, "reason": "other", "reference": "a\u{0}b"}),
            "reference",
        ),
    ] {
        let answer = app.post(&adjust, Some(&admin), body.clone()).await;
        answer.expect_problem(422, "validation_failed");
        assert!(
            answer.body["errors"][field].is_array(),
            "{body}: {:#}",
            answer.body
        );
    }
    app.post(
        &adjust,
        Some(&admin),
        json!({"delta": "1", "reason": "other"}),
    )
    .await
    .expect(400);
    app.post(
        &adjust,
        Some(&client),
        json!({"delta": 1, "reason": "other"}),
    )
    .await
    .expect_problem(403, "forbidden");
    let unknown = format!("/products/{}/stock-adjustments", uuid::Uuid::now_v7());
    app.post(
        &unknown,
        Some(&admin),
        json!({"delta": 1, "reason": "other"}),
    )
    .await
    .expect_problem(404, "not_found");
    app.post(
        &adjust,
        Some(&admin),
        json!({"delta": 999_999_990, "reason": "correction"}),
    )
    .await
    .expect(201);
    let over = app
        .post(
            &adjust,
            Some(&admin),
            json!({"delta": 1, "reason": "restock"}),
        )
        .await;
    over.expect_problem(422, "validation_failed");
    assert_eq!(app.stock(&admin, &product).await, 1_000_000_000);

    // PUT stock is a correction of the difference.
    let put = app
        .call(
            Method::PUT,
            &format!("/products/{product}"),
            Some(&admin),
            Some(json!({"stock": 40})),
        )
        .await;
    put.expect(200);
    for i in 0..4 {
        app.post(
            &adjust,
            Some(&admin),
            json!({"delta": i + 1, "reason": "restock", "reference": format!("R{i}")}),
        )
        .await
        .expect(201);
    }
    let all = movements(&app, &admin, &product).await;
    assert_eq!(all.len(), 7);
    assert_eq!(all[4]["reason"], "correction");
    assert_eq!(all[4]["delta"], 40 - 1_000_000_000);
    assert_eq!(all[4]["stockAfter"], 40);
    assert_eq!(all[0]["reference"], "R3");
    assert_eq!(all[0]["actor"]["kind"], "admin");
    assert!(all[0]["actor"]["id"].is_string());
    assert_eq!(all[6]["reference"], "initial stock");

    // Paging: newest first, each page picking up after the last.
    let base = format!("/products/{product}/stock-movements");
    let first = app.get(&format!("{base}?limit=3"), Some(&admin)).await;
    let first = first.expect(200).clone();
    assert_eq!(first["hasMore"], true);
    let ids = |page: &Value| -> Vec<Value> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].clone())
            .collect()
    };
    assert_eq!(
        ids(&first),
        all[..3].iter().map(|m| m["id"].clone()).collect::<Vec<_>>()
    );
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = app
        .get(&format!("{base}?limit=3&after={cursor}"), Some(&admin))
        .await;
    assert_eq!(
        ids(second.expect(200)),
        all[3..6]
            .iter()
            .map(|m| m["id"].clone())
            .collect::<Vec<_>>()
    );
    for bad in ["?after=nope", "?limit=0", "?limit=101"] {
        app.get(&format!("{base}{bad}"), Some(&admin))
            .await
            .expect_problem(422, "validation_failed");
    }
    app.get(&base, Some(&client))
        .await
        .expect_problem(403, "forbidden");
    app.get(
        &format!("/products/{}/stock-movements", uuid::Uuid::now_v7()),
        Some(&admin),
    )
    .await
    .expect_problem(404, "not_found");
    app.get("/admin/stock/audit", Some(&client))
        .await
        .expect_problem(403, "forbidden");
    let audit = assert_audit_clean(&app, &admin).await;
    assert_eq!(audit["products"], 1);
    assert_eq!(audit["movements"], 7);
}

async fn a_refund_restocks_moves_the_order_and_is_told_once(app: TestApp) {
    let admin = app.admin().await;
    let shop = with_workers(&app, &[]).await;
    let (client, _) = shop.client_user().await;
    let (other, _) = shop.client_user().await;
    let kettle = shop.product(&admin, "Kettle", "20.00", 10).await;
    let cup = shop.product(&admin, "Cup", "2.50", 10).await;
    // Not paid (waiting for the customer), then cancelled: not refundable.
    let unpaid = shop
        .order_with(&client, &[(&cup, 1)], "pm_requires_action")
        .await;
    let unpaid = unpaid.expect(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(
        shop.wait_for_order(&client, &unpaid, &["PROCESSING"]).await["refunded"],
        "0.00"
    );
    refund(&shop, &admin, &unpaid, json!({}))
        .await
        .expect_problem(409, "order_not_refundable");
    shop.post(
        &format!("/orders/{unpaid}/cancel"),
        Some(&client),
        json!({}),
    )
    .await
    .expect(200);
    refund(&shop, &admin, &unpaid, json!({}))
        .await
        .expect_problem(409, "order_not_refundable");

    let mut listening = Listener::connect(shop.port, "/orders", Auth::Payload(&client))
        .await
        .unwrap();
    let placed = shop.order(&client, &[(&kettle, 1), (&cup, 4)]).await;
    let id = placed.expect(201)["id"].as_str().unwrap().to_owned();
    shop.wait_for_order(&client, &id, &["COMPLETED"]).await;

    // Who may, and what is checked.
    refund(&shop, &client, &id, json!({}))
        .await
        .expect_problem(403, "forbidden");
    refund(&shop, &admin, &uuid::Uuid::now_v7().to_string(), json!({}))
        .await
        .expect_problem(404, "not_found");
    for (body, field) in [
        (json!({"amount": 0}), "amount"),
        (json!({"amount": "1.005"}), "amount"),
        (json!({"reason": "x".repeat(501)}), "reason"),
        (
            json!({"restock": [{"productId": "nope", "quantity": 1}]}),
            "restock[0].productId",
        ),
        (
            json!({"restock": [{"productId": cup, "quantity": 0}]}),
            "restock[0].quantity",
        ),
        (
            json!({"restock": [{"productId": cup, "quantity": 1}, {"productId": cup, "quantity": 1}]}),
            "restock[1].productId",
        ),
    ] {
        let answer = refund(&shop, &admin, &id, body.clone()).await;
        answer.expect_problem(422, "validation_failed");
        assert!(
            answer.body["errors"][field].is_array(),
            "{body}: {:#}",
            answer.body
        );
    }
    refund(&shop, &admin, &id, json!({"amount": "30.01"}))
        .await
        .expect_problem(422, "refund_exceeds_remaining");
    let too_many = refund(
        &shop,
        &admin,
        &id,
        json!({"restock": [{"productId": cup, "quantity": 5}]}),
    )
    .await;
    too_many.expect_problem(422, "restock_exceeds_order");
    let stranger = refund(
        &shop,
        &admin,
        &id,
        json!({"restock": [{"productId": uuid::Uuid::now_v7(), "quantity": 1}]}),
    )
    .await;
    stranger.expect_problem(422, "restock_exceeds_order");
    // A refused request claimed nothing.
    assert_eq!(
        shop.get(&format!("/orders/{id}/refunds"), Some(&admin))
            .await
            .expect(200)["items"],
        json!([])
    );

    // A partial refund with restock, asked twice with one Idempotency-Key.
    let body = json!({"amount": "5.00", "reason": "chipped cups", "restock": [{"productId": cup, "quantity": 2}]});
    let key = [("Idempotency-Key", "refund-cups-1")];
    let path = format!("/orders/{id}/refunds");
    let first = shop
        .call_with(Method::POST, &path, Some(&admin), Some(body.clone()), &key)
        .await;
    let created = first.expect(202).clone();
    assert_eq!(created["status"], "PENDING");
    assert_eq!(created["amount"], "5.00");
    assert_eq!(created["reason"], "chipped cups");
    assert_eq!(
        created["restock"],
        json!([{"productId": cup, "quantity": 2}])
    );
    let repeat = shop
        .call_with(Method::POST, &path, Some(&admin), Some(body), &key)
        .await;
    assert_eq!(repeat.expect(202)["id"], created["id"]);
    assert_eq!(repeat.headers["idempotent-replayed"], "true");
    let other_body = shop
        .call_with(
            Method::POST,
            &path,
            Some(&admin),
            Some(json!({"amount": "1.00"})),
            &key,
        )
        .await;
    other_body.expect_problem(422, "idempotency_key_reused");

    let settled = refunds_settled(&shop, &admin, &id).await;
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0]["status"], "SUCCEEDED");
    assert_eq!(settled[0]["attempts"], 1);
    let order = shop
        .wait_for_order(&client, &id, &["PARTIALLY_REFUNDED"])
        .await;
    assert_eq!(order["refunded"], "5.00");
    assert_eq!(shop.stock(&admin, &cup).await, 10 - 4 + 2);
    let last = &movements(&shop, &admin, &cup).await[0];
    assert_eq!(last["reason"], "refund");
    assert_eq!(last["delta"], 2);
    assert_eq!(last["orderId"], id.as_str());
    assert_eq!(last["actor"]["kind"], "worker");

    // The rest, by default: the order is REFUNDED; what is left of the cups may still go back.
    let rest = refund(&shop, &admin, &id, json!({"restock": [{"productId": cup, "quantity": 2}, {"productId": kettle, "quantity": 1}]})).await;
    assert_eq!(rest.expect(202)["amount"], "25.00");
    refunds_settled(&shop, &admin, &id).await;
    let order = shop.wait_for_order(&client, &id, &["REFUNDED"]).await;
    assert_eq!(order["refunded"], "30.00");
    // Socket.IO `/orders` sent the order at each of its status changes, refunds included.
    let heard = listening
        .until(|o| o["id"] == id.as_str() && o["status"] == "REFUNDED")
        .await;
    let statuses: Vec<(&str, &str)> = heard
        .iter()
        .filter(|o| o["id"] == id.as_str())
        .map(|o| {
            (
                o["status"].as_str().unwrap(),
                o["refunded"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("PENDING", "0.00"),
            ("PROCESSING", "0.00"),
            ("COMPLETED", "0.00"),
            ("PARTIALLY_REFUNDED", "5.00"),
            ("REFUNDED", "30.00")
        ]
    );
    listening.close().await;
    assert_eq!(shop.stock(&admin, &cup).await, 10);
    assert_eq!(shop.stock(&admin, &kettle).await, 10);

    // The owner sees the refunds and hears each step once; another client sees nothing.
    let listed = shop.get(&path, Some(&client)).await;
    assert_eq!(listed.expect(200)["items"].as_array().unwrap().len(), 2);
    shop.get(&path, Some(&other))
        .await
        .expect_problem(404, "not_found");
    let history = shop
        .get(&format!("/orders/{id}/events"), Some(&client))
        .await;
    let kinds: Vec<&str> = history.expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    let refund_steps: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| k.starts_with("refund.") || k.ends_with("refunded"))
        .collect();
    assert_eq!(
        refund_steps,
        [
            "refund.pending",
            "refund.succeeded",
            "order.partially_refunded",
            "refund.pending",
            "refund.succeeded",
            "order.refunded"
        ]
    );
    let events = shop
        .get(
            &format!("/events?orderId={id}&type=order.refunded"),
            Some(&client),
        )
        .await;
    let refunded = &events.expect(200)["items"][0]["data"];
    assert_eq!(refunded["status"], "REFUNDED");
    assert_eq!(refunded["refunded"], "30.00");
    refund(&shop, &admin, &id, json!({}))
        .await
        .expect_problem(409, "order_not_refundable");
    let metrics = shop
        .client
        .get(format!("{}/metrics", shop.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("refunds_total{outcome=\"succeeded\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("refunded_amount_cents_total"), "{metrics}");
    assert_balanced(&shop, &admin, &cup).await;
    assert_audit_clean(&shop, &admin).await;
}

async fn a_refund_that_keeps_failing_gives_its_claim_back(app: TestApp) {
    let admin = app.admin().await;
    // Each attempt takes 300 ms, so the refund is still pending when the next request
    // comes.
    let failing = with_workers(
        &app,
        &[
            ("REFUND_FAILURE_RATE", "1"),
            ("PAYMENT_MAX_ATTEMPTS", "3"),
            ("PAYMENT_LATENCY_MS", "300"),
        ],
    )
    .await;
    let (client, _) = failing.client_user().await;
    let product = failing.product(&admin, "Vase", "12.00", 3).await;
    let placed = failing.order(&client, &[(&product, 2)]).await;
    let id = placed.expect(201)["id"].as_str().unwrap().to_owned();
    failing.wait_for_order(&client, &id, &["COMPLETED"]).await;
    let body = json!({"restock": [{"productId": product, "quantity": 2}]});
    refund(&failing, &admin, &id, body.clone())
        .await
        .expect(202);
    // While it is pending, nothing more can be claimed.
    refund(&failing, &admin, &id, json!({"amount": "0.01"}))
        .await
        .expect_problem(422, "refund_exceeds_remaining");
    let settled = refunds_settled(&failing, &admin, &id).await;
    assert_eq!(settled[0]["status"], "FAILED");
    assert_eq!(settled[0]["attempts"], 3);
    assert!(
        settled[0]["lastError"]
            .as_str()
            .unwrap()
            .contains("simulated")
    );
    let order = failing.get(&format!("/orders/{id}"), Some(&client)).await;
    assert_eq!(order.expect(200)["status"], "COMPLETED");
    assert_eq!(order.body["refunded"], "0.00");
    assert_eq!(
        failing.stock(&admin, &product).await,
        1,
        "nothing restocked"
    );
    let history = failing
        .get(&format!("/orders/{id}/events?"), Some(&admin))
        .await;
    let kinds: Vec<&str> = history.expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .filter(|k| k.starts_with("refund."))
        .collect();
    assert_eq!(
        kinds,
        [
            "refund.pending",
            "refund.pending",
            "refund.pending",
            "refund.failed"
        ]
    );
    // The claim came back: the whole amount and the units may be refunded again.
    let again = refund(&failing, &admin, &id, body).await;
    assert_eq!(again.expect(202)["amount"], "24.00");
}
