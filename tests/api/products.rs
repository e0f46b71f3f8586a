//! The catalog: public reads, paging, search, admin writes and soft delete.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

both_backends!(
    integers_may_be_written_with_a_fraction_and_empty_parameters_are_absent,
    catalog_pages_and_orders_by_each_field,
    catalog_search_ignores_case_and_wildcards,
    catalog_rejects_bad_paging_with_field_errors,
    admins_create_update_and_soft_delete_products,
    only_admins_write_products,
    product_input_is_validated_and_changes_nothing,
    views_are_counted_in_batches_without_changing_the_etag,
);

fn names(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

async fn catalog_pages_and_orders_by_each_field(app: TestApp) {
    let admin = app.admin().await;
    app.product(&admin, "Banana", "3.00", 5).await;
    app.product(&admin, "Apple", "1.50", 9).await;
    app.product(&admin, "Cherry", "2.25", 1).await;

    let page = app
        .get("/products?take=2&orderBy=price&order=asc", None)
        .await;
    let page = page.expect(200);
    assert_eq!(names(page), ["Apple", "Cherry"]);
    assert_eq!(page["totalCount"], 3);
    assert_eq!(page["hasNextPage"], true);
    assert_eq!(page["items"][0]["price"], "1.50");
    assert_eq!(page["items"][0]["currency"], "USD");

    let rest = app
        .get("/products?skip=2&take=2&orderBy=price&order=asc", None)
        .await;
    assert_eq!(names(rest.expect(200)), ["Banana"]);
    assert_eq!(rest.body["hasNextPage"], false);

    let by_name = app.get("/products?orderBy=name&order=desc", None).await;
    assert_eq!(names(by_name.expect(200)), ["Cherry", "Banana", "Apple"]);
    let by_stock = app.get("/products?orderBy=stock&order=asc", None).await;
    assert_eq!(names(by_stock.expect(200)), ["Cherry", "Banana", "Apple"]);
    let newest = app.get("/products", None).await;
    assert_eq!(names(newest.expect(200)), ["Cherry", "Apple", "Banana"]);
    let oldest = app.get("/products?orderBy=createdAt&order=asc", None).await;
    assert_eq!(names(oldest.expect(200)), ["Banana", "Apple", "Cherry"]);
}

async fn catalog_search_ignores_case_and_wildcards(app: TestApp) {
    let admin = app.admin().await;
    app.product(&admin, "Red Espresso Cup", "5.00", 1).await;
    app.product(&admin, "espresso machine", "99.00", 1).await;
    app.product(&admin, "Tea Pot", "20.00", 1).await;
    app.product(&admin, "100% Cotton", "20.00", 1).await;

    let found = app
        .get("/products?q=ESPRESSO&orderBy=name&order=asc", None)
        .await;
    assert_eq!(
        names(found.expect(200)),
        ["Red Espresso Cup", "espresso machine"]
    );
    assert_eq!(found.body["totalCount"], 2);
    let literal = app.get("/products?q=%25", None).await;
    assert_eq!(names(literal.expect(200)), ["100% Cotton"]);
    let none = app.get("/products?q=_", None).await;
    assert_eq!(none.expect(200)["totalCount"], 0);
}

async fn catalog_rejects_bad_paging_with_field_errors(app: TestApp) {
    let answer = app
        .get(
            "/products?take=0&skip=-1&orderBy=bogus&order=sideways",
            None,
        )
        .await;
    let errors = &answer.expect_problem(422, "validation_failed")["errors"];
    for field in ["take", "skip", "orderBy", "order"] {
        assert!(errors[field].is_array(), "no error for {field}: {errors}");
    }
    app.get("/products?q=%00", None)
        .await
        .expect_problem(422, "validation_failed");
    app.get("/products?take=101", None)
        .await
        .expect_problem(422, "validation_failed");
    app.get("/products?take=ten", None)
        .await
        .expect_problem(422, "validation_failed");
    app.get("/products?includeDeleted=true", None)
        .await
        .expect_problem(401, "unauthorized");
    let (client, _) = app.client_user().await;
    app.get("/products?includeDeleted=true", Some(&client))
        .await
        .expect_problem(403, "forbidden");
}

async fn admins_create_update_and_soft_delete_products(app: TestApp) {
    let admin = app.admin().await;
    let created = app
        .post(
            "/products",
            Some(&admin),
            json!({"name": " Mug ", "description": "Blue", "price": 12.5, "stock": 10}),
        )
        .await;
    let product = created.expect(201).clone();
    assert_eq!(product["name"], "Mug");
    assert_eq!(product["price"], "12.50");
    assert_eq!(product["stock"], 10);
    assert_eq!(product["deletedAt"], Value::Null);
    let id = product["id"].as_str().unwrap();
    let path = format!("/products/{id}");

    let patched = app
        .call(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"price": "15"})),
        )
        .await;
    let patched = patched.expect(200);
    assert_eq!(patched["price"], "15.00");
    assert_eq!(patched["name"], "Mug");
    assert_eq!(patched["description"], "Blue");

    let put = app
        .call(
            Method::PUT,
            &path,
            Some(&admin),
            Some(json!({"stock": 20, "description": null})),
        )
        .await;
    let put = put.expect(200);
    assert_eq!(put["stock"], 20);
    assert_eq!(put["description"], Value::Null);
    assert_eq!(put["price"], "15.00");
    assert_eq!(app.get(&path, None).await.expect(200)["stock"], 20);

    let deleted = app.call(Method::DELETE, &path, Some(&admin), None).await;
    assert!(deleted.expect(200)["deletedAt"].is_string());
    app.get(&path, None).await.expect_problem(404, "not_found");
    let (client, _) = app.client_user().await;
    app.get(&path, Some(&client))
        .await
        .expect_problem(404, "not_found");
    assert!(app.get(&path, Some(&admin)).await.expect(200)["deletedAt"].is_string());
    assert_eq!(
        app.get("/products", None).await.expect(200)["totalCount"],
        0
    );
    let with_deleted = app.get("/products?includeDeleted=true", Some(&admin)).await;
    assert_eq!(with_deleted.expect(200)["totalCount"], 1);
    // Deleting again changes nothing; updating a deleted product is refused.
    let again = app.call(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(again.expect(200)["deletedAt"], deleted.body["deletedAt"]);
    app.call(
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"stock": 1})),
    )
    .await
    .expect_problem(404, "not_found");

    let missing = format!("/products/{}", uuid::Uuid::new_v4());
    app.get(&missing, None)
        .await
        .expect_problem(404, "not_found");
    app.call(Method::DELETE, &missing, Some(&admin), None)
        .await
        .expect_problem(404, "not_found");
}

async fn only_admins_write_products(app: TestApp) {
    let admin = app.admin().await;
    let id = app.product(&admin, "Lamp", "10.00", 3).await;
    let path = format!("/products/{id}");
    let (client, _) = app.client_user().await;
    let body = json!({"name": "Hacked", "price": 1, "stock": 1});
    for (method, path) in [
        (Method::POST, "/products"),
        (Method::PUT, path.as_str()),
        (Method::PATCH, path.as_str()),
        (Method::DELETE, path.as_str()),
    ] {
        app.call(method.clone(), path, Some(&client), Some(body.clone()))
            .await
            .expect_problem(403, "forbidden");
        app.call(method, path, None, Some(body.clone()))
            .await
            .expect_problem(401, "unauthorized");
    }
    let unchanged = app.get(&path, None).await;
    assert_eq!(unchanged.expect(200)["name"], "Lamp");
    assert_eq!(
        app.get("/products", None).await.expect(200)["totalCount"],
        1
    );
}

async fn product_input_is_validated_and_changes_nothing(app: TestApp) {
    let admin = app.admin().await;
    for (body, field) in [
        (json!({"name": "A", "price": "1.234", "stock": 1}), "price"),
        (json!({"name": "A", "price": 0, "stock": 1}), "price"),
        (json!({"name": "A", "price": "abc", "stock": 1}), "price"),
        (
            json!({"name": "A", "price": 100000000, "stock": 1}),
            "price",
        ),
        (json!({"name": "A", "price": 1, "stock": -1}), "stock"),
        (json!({"name": "  ", "price": 1, "stock": 1}), "name"),
        (
            json!({"name": "A".repeat(201), "price": 1, "stock": 1}),
            "name",
        ),
        (json!({"name": "A\u{0}B", "price": 1, "stock": 1}), "name"),
        (
            json!({"name": "A", "description": "x\u{0}", "price": 1, "stock": 1}),
            "description",
        ),
        (json!({"price": 1, "stock": 1}), "name"),
        (json!({"name": "A", "stock": 1}), "price"),
        (json!({"name": "A", "price": 1}), "stock"),
    ] {
        let answer = app.post("/products", Some(&admin), body.clone()).await;
        let problem = answer.expect_problem(422, "validation_failed");
        assert!(problem["errors"][field].is_array(), "{body} → {problem}");
    }
    app.post(
        "/products",
        Some(&admin),
        json!({"name": "A", "price": 1, "stock": "many"}),
    )
    .await
    .expect_problem(400, "invalid_body");
    assert_eq!(
        app.get("/products", None).await.expect(200)["totalCount"],
        0
    );

    let id = app.product(&admin, "Kept", "2.00", 2).await;
    let path = format!("/products/{id}");
    app.call(
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"name": "New", "price": "-1"})),
    )
    .await
    .expect_problem(422, "validation_failed");
    let product = app.get(&path, None).await;
    assert_eq!(product.expect(200)["name"], "Kept");
    assert_eq!(product.body["price"], "2.00");
}

async fn integers_may_be_written_with_a_fraction_and_empty_parameters_are_absent(app: TestApp) {
    let admin = app.admin().await;
    // `7.0` is the integer 7.
    let created = app
        .post(
            "/products",
            Some(&admin),
            json!({"name": "Whole", "price": 3, "stock": 7.0}),
        )
        .await;
    let id = created.expect(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["stock"], 7);
    app.post(
        "/products",
        Some(&admin),
        json!({"name": "Half", "price": 3, "stock": 7.5}),
    )
    .await
    .expect_problem(400, "invalid_body");
    let (client, _) = app.client_user().await;
    let order = app
        .post(
            "/orders",
            Some(&client),
            json!({"items": [{"productId": id, "quantity": 2.0}], "paymentMethod": "pm_success"}),
        )
        .await;
    assert_eq!(order.expect(201)["orderItems"][0]["quantity"], 2);
    // An empty parameter counts as absent; a value must still be valid.
    let page = app
        .get("/products?skip=&take=&orderBy=&order=&q=", None)
        .await;
    assert_eq!(page.expect(200)["items"].as_array().unwrap().len(), 1);
    app.get("/orders?status=&userId=", Some(&client))
        .await
        .expect(200);
    app.get("/products?order=ASC", None)
        .await
        .expect_problem(422, "validation_failed");
    // Control characters are refused as sent, even where trimming would drop them.
    for (field, value) in [
        ("name", "Cup\u{b}"),
        ("name", "\tCup"),
        ("name", "Cup\u{85}"),
        ("description", "fine\u{b}"),
    ] {
        app.call(
            Method::PATCH,
            &format!("/products/{id}"),
            Some(&admin),
            Some(json!({ field: value })),
        )
        .await
        .expect_problem(422, "validation_failed");
    }
    app.get("/products?q=J%0B", None)
        .await
        .expect_problem(422, "validation_failed");
    // A required field sent as null is refused, and nothing changes.
    app.call(
        Method::PATCH,
        &format!("/products/{id}"),
        Some(&admin),
        Some(json!({"name": null, "stock": 1})),
    )
    .await
    .expect_problem(422, "validation_failed");
    assert_eq!(app.stock(&admin, &id).await, 5);
}

async fn views_are_counted_in_batches_without_changing_the_etag(app: TestApp) {
    let admin = app.admin().await;
    let popular = app.product(&admin, "Popular", "1.00", 1).await;
    let quiet = app.product(&admin, "Quiet", "1.00", 1).await;
    let first = app.get(&format!("/products/{popular}"), None).await;
    assert_eq!(first.expect(200)["views"], 0);
    let etag = first.headers["etag"].to_str().unwrap().to_owned();
    for _ in 0..4 {
        app.get(&format!("/products/{popular}"), None)
            .await
            .expect(200);
    }
    app.get(&format!("/products/{quiet}"), None)
        .await
        .expect(200);
    // Written within about a second; admins read past the cache.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = app.get(&format!("/products/{popular}"), Some(&admin)).await;
        let views = now.expect(200)["views"].as_i64().unwrap();
        if views >= 5 {
            assert_eq!(now.headers["etag"], etag.as_str(), "a view is not a write");
            assert_eq!(now.body["updatedAt"], first.body["updatedAt"]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "views never written: {views}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = app
            .get(
                "/products?orderBy=views&order=desc&includeDeleted=true",
                Some(&admin),
            )
            .await;
        let page = page.expect(200).clone();
        if page["items"][1]["views"].as_i64().unwrap_or(0) >= 1 {
            assert_eq!(names(&page)[..2], ["Popular", "Quiet"]);
            assert!(page["items"][0]["views"].as_i64().unwrap() >= 6);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{page:#}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
