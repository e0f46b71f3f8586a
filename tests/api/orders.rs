//! Orders: placement, stock reservation, privacy, listing, cancellation.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::TestApp;

both_backends!(
    placing_an_order_reserves_stock_and_snapshots_prices,
    a_short_line_rolls_the_whole_order_back,
    unknown_and_deleted_products_are_named,
    order_input_is_validated,
    orders_are_visible_to_their_owner_and_admins_only,
    orders_list_pages_filters_and_validates,
    cancelling_restores_stock_exactly_once,
    orders_of_deleted_products_keep_working,
);

async fn placing_an_order_reserves_stock_and_snapshots_prices(app: TestApp) {
    let admin = app.admin().await;
    let mug = app.product(&admin, "Mug", "12.50", 10).await;
    let pen = app.product(&admin, "Pen", "0.99", 100).await;
    let (client, client_id) = app.client_user().await;

    let answer = app.order(&client, &[(&mug, 2), (&pen, 3)]).await;
    let order = answer.expect(201).clone();
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["userId"], client_id.as_str());
    assert_eq!(order["total"], "27.97");
    assert_eq!(order["currency"], "USD");
    assert_eq!(order["paymentMethod"], "pm_success");
    assert_eq!(order["payment"]["status"], "PENDING");
    assert_eq!(order["payment"]["attempts"], 0);
    assert_eq!(order["payment"]["maxAttempts"], 5);
    let items = order["orderItems"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let mug_line = items
        .iter()
        .find(|i| i["productId"] == mug.as_str())
        .unwrap();
    assert_eq!(mug_line["price"], "12.50");
    assert_eq!(mug_line["subtotal"], "25.00");
    assert_eq!(mug_line["quantity"], 2);
    assert_eq!(mug_line["product"], json!({"id": mug, "name": "Mug"}));

    assert_eq!(app.stock(&admin, &mug).await, 8);
    assert_eq!(app.stock(&admin, &pen).await, 97);

    // A later price change does not touch the order.
    app.call(
        Method::PATCH,
        &format!("/products/{mug}"),
        Some(&admin),
        Some(json!({"price": "20"})),
    )
    .await
    .expect(200);
    let id = order["id"].as_str().unwrap();
    let again = app.get(&format!("/orders/{id}"), Some(&client)).await;
    assert_eq!(again.expect(200)["total"], "27.97");
    assert_eq!(*again.expect(200), order);

    let default_method = app
        .post(
            "/orders",
            Some(&client),
            json!({"items": [{"productId": pen, "quantity": 1}]}),
        )
        .await;
    assert_eq!(default_method.expect(201)["paymentMethod"], "pm_random");
}

async fn a_short_line_rolls_the_whole_order_back(app: TestApp) {
    let admin = app.admin().await;
    let plenty = app.product(&admin, "Plenty", "1.00", 50).await;
    let scarce = app.product(&admin, "Scarce", "1.00", 2).await;
    let (client, _) = app.client_user().await;

    let answer = app.order(&client, &[(&plenty, 5), (&scarce, 3)]).await;
    let problem = answer.expect_problem(409, "insufficient_stock");
    assert_eq!(problem["errors"][&scarce][0], "requested 3, available 2");
    assert!(problem["errors"].get(&plenty).is_none());

    assert_eq!(app.stock(&admin, &plenty).await, 50);
    assert_eq!(app.stock(&admin, &scarce).await, 2);
    let mine = app.get("/orders", Some(&client)).await;
    assert_eq!(mine.expect(200)["totalCount"], 0);

    // Exactly what is left can be bought.
    app.order(&client, &[(&scarce, 2)]).await.expect(201);
    assert_eq!(app.stock(&admin, &scarce).await, 0);
    app.order(&client, &[(&scarce, 1)])
        .await
        .expect_problem(409, "insufficient_stock");
}

async fn unknown_and_deleted_products_are_named(app: TestApp) {
    let admin = app.admin().await;
    let live = app.product(&admin, "Live", "1.00", 5).await;
    let gone = app.product(&admin, "Gone", "1.00", 5).await;
    app.call(
        Method::DELETE,
        &format!("/products/{gone}"),
        Some(&admin),
        None,
    )
    .await
    .expect(200);
    let missing = Uuid::new_v4().to_string();
    let (client, _) = app.client_user().await;

    let answer = app
        .order(&client, &[(&live, 1), (&gone, 1), (&missing, 1)])
        .await;
    let problem = answer.expect_problem(422, "unknown_products");
    assert_eq!(problem["errors"][&gone][0], "product was deleted");
    assert_eq!(problem["errors"][&missing][0], "no such product");
    assert!(problem["errors"].get(&live).is_none());
    assert_eq!(app.stock(&admin, &live).await, 5);
    assert_eq!(app.stock(&admin, &gone).await, 5);
}

async fn order_input_is_validated(app: TestApp) {
    let admin = app.admin().await;
    let id = app.product(&admin, "Thing", "1.00", 5000).await;
    let (client, _) = app.client_user().await;
    let line = |q: Value| json!({"productId": id, "quantity": q});
    let many: Vec<Value> = (0..101)
        .map(|_| json!({"productId": Uuid::new_v4(), "quantity": 1}))
        .collect();
    for (body, field) in [
        (json!({"items": []}), "items"),
        (json!({}), "items"),
        (json!({"items": many}), "items"),
        (json!({"items": [line(json!(0))]}), "items[0].quantity"),
        (json!({"items": [line(json!(1001))]}), "items[0].quantity"),
        (json!({"items": [{"productId": id}]}), "items[0].quantity"),
        (
            json!({"items": [{"productId": "nope", "quantity": 1}]}),
            "items[0].productId",
        ),
        (
            json!({"items": [line(json!(1)), line(json!(2))]}),
            "items[1].productId",
        ),
        (
            json!({"items": [line(json!(1))], "paymentMethod": "pm_cash"}),
            "paymentMethod",
        ),
    ] {
        let answer = app.post("/orders", Some(&client), body.clone()).await;
        let problem = answer.expect_problem(422, "validation_failed");
        assert!(problem["errors"][field].is_array(), "{body} → {problem}");
    }
    app.post(
        "/orders",
        Some(&client),
        json!({"items": [line(json!("2"))]}),
    )
    .await
    .expect_problem(400, "invalid_body");
    app.post("/orders", None, json!({"items": [line(json!(1))]}))
        .await
        .expect_problem(401, "unauthorized");
    assert_eq!(app.stock(&admin, &id).await, 5000);
    app.order(&client, &[(&id, 1000)]).await.expect(201);
}

async fn orders_are_visible_to_their_owner_and_admins_only(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Book", "8.00", 10).await;
    let (alice, alice_id) = app.client_user().await;
    let (bob, _) = app.client_user().await;
    let order = app.order(&alice, &[(&product, 1)]).await;
    let id = order.expect(201)["id"].as_str().unwrap().to_owned();
    let path = format!("/orders/{id}");

    app.get(&path, Some(&bob))
        .await
        .expect_problem(404, "not_found");
    app.post(&format!("{path}/cancel"), Some(&bob), json!({}))
        .await
        .expect_problem(404, "not_found");
    assert_eq!(
        app.get(&path, Some(&alice)).await.expect(200)["status"],
        "PENDING"
    );
    assert_eq!(
        app.get(&path, Some(&admin)).await.expect(200)["id"],
        id.as_str()
    );
    assert_eq!(
        app.get("/orders", Some(&bob)).await.expect(200)["totalCount"],
        0
    );
    app.get(&format!("/orders?userId={alice_id}"), Some(&bob))
        .await
        .expect_problem(403, "forbidden");
    let for_admin = app
        .get(&format!("/orders?userId={alice_id}"), Some(&admin))
        .await;
    assert_eq!(for_admin.expect(200)["items"][0]["id"], id.as_str());
    app.get(&format!("/orders/{}", Uuid::new_v4()), Some(&admin))
        .await
        .expect_problem(404, "not_found");
    app.get(&path, None)
        .await
        .expect_problem(401, "unauthorized");
    assert_eq!(app.stock(&admin, &product).await, 9);
}

async fn orders_list_pages_filters_and_validates(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Cup", "2.00", 100).await;
    let (client, _) = app.client_user().await;
    let mut ids = Vec::new();
    for quantity in [3, 1, 2] {
        let order = app.order(&client, &[(&product, quantity)]).await;
        ids.push(order.expect(201)["id"].as_str().unwrap().to_owned());
    }
    app.post(
        &format!("/orders/{}/cancel", ids[0]),
        Some(&client),
        json!({}),
    )
    .await
    .expect(200);

    let by_total = app
        .get("/orders?orderBy=total&order=asc&take=2", Some(&client))
        .await;
    let page = by_total.expect(200);
    let totals: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["total"].as_str().unwrap())
        .collect();
    assert_eq!(totals, ["2.00", "4.00"]);
    assert_eq!(page["totalCount"], 3);
    assert_eq!(page["hasNextPage"], true);

    let newest = app.get("/orders", Some(&client)).await;
    assert_eq!(newest.expect(200)["items"][0]["id"], ids[2].as_str());
    let cancelled = app.get("/orders?status=CANCELLED", Some(&client)).await;
    assert_eq!(cancelled.expect(200)["totalCount"], 1);
    assert_eq!(cancelled.body["items"][0]["id"], ids[0].as_str());
    let pending = app.get("/orders?status=PENDING", Some(&client)).await;
    assert_eq!(pending.expect(200)["totalCount"], 2);

    let bad = app
        .get("/orders?status=LOST&orderBy=price&userId=x", Some(&admin))
        .await;
    let errors = &bad.expect_problem(422, "validation_failed")["errors"];
    for field in ["status", "orderBy", "userId"] {
        assert!(errors[field].is_array(), "no error for {field}");
    }
    let all = app.get("/orders", Some(&admin)).await;
    assert_eq!(all.expect(200)["totalCount"], 3);
}

async fn cancelling_restores_stock_exactly_once(app: TestApp) {
    let admin = app.admin().await;
    let a = app.product(&admin, "A", "1.00", 10).await;
    let b = app.product(&admin, "B", "1.00", 10).await;
    let (client, _) = app.client_user().await;
    let order = app.order(&client, &[(&a, 4), (&b, 6)]).await;
    let id = order.expect(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(app.stock(&admin, &a).await, 6);

    let cancelled = app
        .post(&format!("/orders/{id}/cancel"), Some(&client), json!({}))
        .await;
    let body = cancelled.expect(200);
    assert_eq!(body["status"], "CANCELLED");
    assert_eq!(body["payment"]["status"], "CANCELLED");
    assert_eq!(app.stock(&admin, &a).await, 10);
    assert_eq!(app.stock(&admin, &b).await, 10);

    // Concurrent and repeated cancels restore nothing more.
    let order = app.order(&client, &[(&a, 5)]).await;
    let id = order.expect(201)["id"].as_str().unwrap().to_owned();
    let path = format!("/orders/{id}/cancel");
    let attempts = (0..8).map(|_| app.post(&path, Some(&client), json!({})));
    let answers = futures::future::join_all(attempts).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(ok, 1);
    for answer in answers.iter().filter(|a| a.status != 200) {
        answer.expect_problem(409, "order_not_cancellable");
    }
    assert_eq!(app.stock(&admin, &a).await, 10);

    // Admins may cancel anyone's order.
    let order = app.order(&client, &[(&b, 1)]).await;
    let id = order.expect(201)["id"].as_str().unwrap().to_owned();
    app.post(&format!("/orders/{id}/cancel"), Some(&admin), json!({}))
        .await
        .expect(200);
    assert_eq!(app.stock(&admin, &b).await, 10);
}

async fn orders_of_deleted_products_keep_working(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Vintage", "30.00", 3).await;
    let (client, _) = app.client_user().await;
    let order = app.order(&client, &[(&product, 2)]).await;
    let id = order.expect(201)["id"].as_str().unwrap().to_owned();
    app.call(
        Method::DELETE,
        &format!("/products/{product}"),
        Some(&admin),
        None,
    )
    .await
    .expect(200);

    let read = app.get(&format!("/orders/{id}"), Some(&client)).await;
    assert_eq!(
        read.expect(200)["orderItems"][0]["product"]["name"],
        "Vintage"
    );
    app.order(&client, &[(&product, 1)])
        .await
        .expect_problem(422, "unknown_products");
    app.post(&format!("/orders/{id}/cancel"), Some(&client), json!({}))
        .await
        .expect(200);
    assert_eq!(app.stock(&admin, &product).await, 3);
}
