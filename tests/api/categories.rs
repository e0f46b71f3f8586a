//! Categories: the tree (slugs, positions, parents before children), cycles refused,
//! `If-Match`, deletion rules, products' `categoryIds` and `GET /products?categoryId=`
//! covering descendants.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp};

both_backends!(
    categories_form_a_tree_with_unique_slugs,
    a_category_never_moves_under_itself_or_a_descendant,
    a_category_with_children_stays_and_a_deleted_one_leaves_its_products,
    products_are_listed_by_category_with_its_descendants,
);

async fn create(app: &TestApp, admin: &str, body: Value) -> Answer {
    app.post("/categories", Some(admin), body).await
}

async fn id_of(app: &TestApp, admin: &str, body: Value) -> String {
    create(app, admin, body).await.expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn patch(
    app: &TestApp,
    admin: &str,
    id: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> Answer {
    app.call_with(
        Method::PATCH,
        &format!("/categories/{id}"),
        Some(admin),
        Some(body),
        headers,
    )
    .await
}

async fn categories_form_a_tree_with_unique_slugs(app: TestApp) {
    let admin = app.admin().await;
    let (client, _) = app.client_user().await;
    let home = create(&app, &admin, json!({"name": "Home & Garden"})).await;
    let home = home.expect(201).clone();
    assert_eq!(home["slug"], "home-garden");
    assert_eq!(home["parentId"], Value::Null);
    assert_eq!(home["position"], 0);
    let home_id = home["id"].as_str().unwrap();
    let kitchen = id_of(
        &app,
        &admin,
        json!({"name": "Kitchen", "parentId": home_id}),
    )
    .await;
    let cups = id_of(
        &app,
        &admin,
        json!({"name": "Cups", "slug": "cups", "parentId": kitchen, "position": 2}),
    )
    .await;
    let pans = id_of(
        &app,
        &admin,
        json!({"name": "Pans", "parentId": kitchen, "position": 1}),
    )
    .await;
    let office = id_of(&app, &admin, json!({"name": "Office", "position": 5})).await;

    let list = app.get("/categories", None).await;
    let names: Vec<&str> = list.expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Home & Garden", "Kitchen", "Pans", "Cups", "Office"]
    );

    // By id or by slug, with an ETag.
    let by_slug = app.get("/categories/cups", None).await;
    assert_eq!(by_slug.expect(200)["id"], cups.as_str());
    assert_eq!(by_slug.body["parentId"], kitchen.as_str());
    let by_id = app.get(&format!("/categories/{cups}"), None).await;
    assert_eq!(by_id.headers["etag"], by_slug.headers["etag"]);
    app.get("/categories/no-such-thing", None)
        .await
        .expect_problem(404, "not_found");

    // Slugs are unique, well formed, and made from a name only when it can be.
    create(&app, &admin, json!({"name": "Cups again", "slug": "cups"}))
        .await
        .expect_problem(409, "slug_taken");
    patch(&app, &admin, &pans, json!({"slug": "cups"}), &[])
        .await
        .expect_problem(409, "slug_taken");
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": " "}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": "Tea", "slug": "Tea Cups"}), "slug"),
        (json!({"name": "Tea", "slug": "tea--cups"}), "slug"),
        (json!({"name": "日本"}), "slug"),
        (json!({"name": "Tea", "parentId": "nope"}), "parentId"),
        (
            json!({"name": "Tea", "parentId": uuid::Uuid::now_v7()}),
            "parentId",
        ),
        (json!({"name": "Tea", "position": -1}), "position"),
        (json!({"name": "Tea", "position": 1_000_001}), "position"),
    ] {
        let answer = create(&app, &admin, body.clone()).await;
        answer.expect_problem(422, "validation_failed");
        assert!(
            answer.body["errors"][field].is_array(),
            "{body}: {:#}",
            answer.body
        );
    }
    create(&app, &client, json!({"name": "Tea"}))
        .await
        .expect_problem(403, "forbidden");
    create(&app, "", json!({"name": "Tea"})).await.expect(401);
    for body in [
        json!({"slug": null}),
        json!({"position": null}),
        json!({"name": null}),
    ] {
        patch(&app, &admin, &office, body, &[])
            .await
            .expect_problem(422, "validation_failed");
    }
    // On a new category, null means the default.
    let defaults = create(
        &app,
        &admin,
        json!({"name": "Tea", "slug": null, "position": null}),
    )
    .await;
    assert_eq!(defaults.expect(201)["slug"], "tea");
    let moved = patch(
        &app,
        &admin,
        &office,
        json!({"name": "Stationery", "slug": "stationery", "position": 0}),
        &[],
    )
    .await;
    assert_eq!(moved.expect(200)["slug"], "stationery");
    assert_eq!(
        app.get("/categories/stationery", None).await.expect(200)["name"],
        "Stationery"
    );
}

async fn a_category_never_moves_under_itself_or_a_descendant(app: TestApp) {
    let admin = app.admin().await;
    let a = id_of(&app, &admin, json!({"name": "A"})).await;
    let b = id_of(&app, &admin, json!({"name": "B", "parentId": a})).await;
    let c = id_of(&app, &admin, json!({"name": "C", "parentId": b})).await;
    for parent in [&a, &b, &c] {
        let answer = patch(&app, &admin, &a, json!({"parentId": parent}), &[]).await;
        answer.expect_problem(422, "category_cycle");
    }
    assert_eq!(
        app.get(&format!("/categories/{a}"), None).await.expect(200)["parentId"],
        Value::Null
    );

    // A stale If-Match changes nothing; the current one, and null for the top, go through.
    let read = app.get(&format!("/categories/{c}"), None).await;
    let etag = read.headers["etag"].to_str().unwrap().to_owned();
    patch(
        &app,
        &admin,
        &c,
        json!({"position": 3}),
        &[("If-Match", &etag)],
    )
    .await
    .expect(200);
    patch(
        &app,
        &admin,
        &c,
        json!({"parentId": null}),
        &[("If-Match", &etag)],
    )
    .await
    .expect_problem(412, "precondition_failed");
    assert_eq!(
        app.get(&format!("/categories/{c}"), None).await.expect(200)["parentId"],
        b.as_str()
    );
    let top = patch(&app, &admin, &c, json!({"parentId": null}), &[]).await;
    assert_eq!(top.expect(200)["parentId"], Value::Null);

    // Two moves at once that would make a loop together: at most one goes through.
    let x = id_of(&app, &admin, json!({"name": "X"})).await;
    let y = id_of(&app, &admin, json!({"name": "Y"})).await;
    let (first, second) = tokio::join!(
        patch(&app, &admin, &x, json!({"parentId": y}), &[]),
        patch(&app, &admin, &y, json!({"parentId": x}), &[]),
    );
    let statuses = [first.status.as_u16(), second.status.as_u16()];
    assert!(
        statuses.contains(&200) && statuses.contains(&422),
        "{statuses:?}"
    );
    let tree = app.get("/categories", None).await.expect(200)["items"].clone();
    let parent_of = |id: &str| -> Option<String> {
        tree.as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()["parentId"]
            .as_str()
            .map(str::to_owned)
    };
    for start in [&x, &y] {
        let mut at = Some(start.clone());
        for _ in 0..3 {
            at = at.and_then(|id| parent_of(&id));
        }
        assert_eq!(at, None, "a loop through {start}");
    }
    let unknown = uuid::Uuid::now_v7().to_string();
    patch(&app, &admin, &unknown, json!({"name": "Z"}), &[])
        .await
        .expect_problem(404, "not_found");
    patch(&app, &admin, &unknown, json!({"parentId": a}), &[])
        .await
        .expect_problem(404, "not_found");
}

async fn a_category_with_children_stays_and_a_deleted_one_leaves_its_products(app: TestApp) {
    let admin = app.admin().await;
    let parent = id_of(&app, &admin, json!({"name": "Parent"})).await;
    let child = id_of(&app, &admin, json!({"name": "Child", "parentId": parent})).await;
    let product = app
        .post(
            "/products",
            Some(&admin),
            json!({"name": "Thing", "price": "1.00", "stock": 1, "categoryIds": [child, parent]}),
        )
        .await;
    let product = product.expect(201).clone();
    let mut expected = vec![parent.clone(), child.clone()];
    expected.sort();
    assert_eq!(product["categoryIds"], json!(expected));
    let path = format!("/products/{}", product["id"].as_str().unwrap());
    let before = app.get(&path, None).await.headers["etag"]
        .to_str()
        .unwrap()
        .to_owned();

    let delete = |id: String, headers: Vec<(&'static str, String)>| {
        let (app, admin) = (&app, admin.clone());
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.call_with(
                Method::DELETE,
                &format!("/categories/{id}"),
                Some(&admin),
                None,
                &headers,
            )
            .await
        }
    };
    delete(parent.clone(), vec![])
        .await
        .expect_problem(409, "category_not_empty");
    delete(child.clone(), vec![("If-Match", "\"999\"".into())])
        .await
        .expect_problem(412, "precondition_failed");
    let gone = delete(child.clone(), vec![]).await;
    assert_eq!(gone.status, 204);
    delete(child.clone(), vec![])
        .await
        .expect_problem(404, "not_found");
    app.get(&format!("/categories/{child}"), None)
        .await
        .expect_problem(404, "not_found");
    let after = app.get(&path, None).await;
    assert_eq!(after.expect(200)["categoryIds"], json!([parent]));
    assert_ne!(
        after.headers["etag"].to_str().unwrap(),
        before,
        "the product changed"
    );
    assert_eq!(delete(parent.clone(), vec![]).await.status, 204);
    assert_eq!(
        app.get(&path, None).await.expect(200)["categoryIds"],
        json!([])
    );
}

async fn products_are_listed_by_category_with_its_descendants(app: TestApp) {
    let admin = app.admin().await;
    let home = id_of(&app, &admin, json!({"name": "Home"})).await;
    let kitchen = id_of(&app, &admin, json!({"name": "Kitchen", "parentId": home})).await;
    let cups = id_of(&app, &admin, json!({"name": "Cups", "parentId": kitchen})).await;
    let office = id_of(&app, &admin, json!({"name": "Office"})).await;
    let product = |name: &'static str, categories: Vec<&String>| {
        let (app, admin) = (&app, admin.clone());
        let body = json!({"name": name, "price": "2.00", "stock": 5, "categoryIds": categories});
        async move {
            app.post("/products", Some(&admin), body).await.expect(201)["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let kettle = product("Kettle", vec![&kitchen]).await;
    let cup = product("Cup", vec![&cups]).await;
    let desk = product("Desk", vec![&office]).await;
    let _loose = product("Loose", vec![]).await;
    let names = |category: &str| {
        let app = &app;
        let path = format!("/products?take=100&orderBy=name&order=asc&categoryId={category}");
        async move {
            let page = app.get(&path, None).await;
            page.expect(200)["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names(&home).await, ["Cup", "Kettle"]);
    assert_eq!(names(&kitchen).await, ["Cup", "Kettle"]);
    assert_eq!(names(&cups).await, ["Cup"]);
    assert_eq!(names(&office).await, ["Desk"]);
    assert!(names(&uuid::Uuid::now_v7().to_string()).await.is_empty());
    app.get("/products?categoryId=nope", None)
        .await
        .expect_problem(422, "validation_failed");

    // Moving a category moves what the filter covers at once (the cached list too).
    patch(&app, &admin, &cups, json!({"parentId": office}), &[])
        .await
        .expect(200);
    assert_eq!(names(&home).await, ["Kettle"]);
    assert_eq!(names(&office).await, ["Cup", "Desk"]);

    // categoryIds replace the product's categories; each is checked.
    let path = format!("/products/{desk}");
    let changed = app
        .call(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"categoryIds": [home]})),
        )
        .await;
    assert_eq!(changed.expect(200)["categoryIds"], json!([home]));
    assert_eq!(names(&office).await, ["Cup"]);
    let unknown = uuid::Uuid::now_v7().to_string();
    for (body, field) in [
        (json!({"categoryIds": [unknown]}), "categoryIds"),
        (json!({"categoryIds": ["nope"]}), "categoryIds[0]"),
        (json!({"categoryIds": [home, home]}), "categoryIds[1]"),
        (json!({"categoryIds": null}), "categoryIds"),
        (
            json!({"categoryIds": vec![home.clone(); 21]}),
            "categoryIds",
        ),
    ] {
        let answer = app
            .call(Method::PATCH, &path, Some(&admin), Some(body.clone()))
            .await;
        answer.expect_problem(422, "validation_failed");
        assert!(
            answer.body["errors"][field].is_array(),
            "{body}: {:#}",
            answer.body
        );
    }
    assert_eq!(
        app.get(&path, None).await.expect(200)["categoryIds"],
        json!([home])
    );
    let cleared = app
        .call(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"categoryIds": []})),
        )
        .await;
    assert_eq!(cleared.expect(200)["categoryIds"], json!([]));
    let listed = app
        .get(&format!("/products?categoryId={kitchen}"), None)
        .await;
    assert_eq!(
        listed.expect(200)["items"][0]["categoryIds"],
        json!([kitchen])
    );
    assert_eq!(listed.body["items"][0]["id"], kettle.as_str());
    let _ = cup;
}
