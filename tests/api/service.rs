//! Service endpoints and the error contract for requests no handler accepts.

use reqwest::Method;
use serde_json::json;

use crate::helpers::TestApp;

both_backends!(
    health_ready_and_docs_answer,
    openapi_describes_every_route,
    malformed_requests_get_problem_json,
    unknown_routes_and_methods_get_problem_json,
);

async fn health_ready_and_docs_answer(app: TestApp) {
    assert_eq!(app.get("/health", None).await.expect(200)["status"], "ok");
    assert_eq!(app.get("/ready", None).await.expect(200)["status"], "ready");
    let docs = app
        .client
        .get(format!("{}/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

async fn openapi_describes_every_route(app: TestApp) {
    let spec = app.get("/openapi.json", None).await;
    let spec = spec.expect(200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = spec["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/auth/register", &["post"][..]),
        ("/auth/login", &["post"]),
        ("/auth/me", &["get"]),
        ("/auth/refresh", &["post"]),
        ("/auth/logout", &["post"]),
        ("/products", &["get", "post"]),
        ("/products/{id}", &["get", "put", "patch", "delete"]),
        ("/orders", &["get", "post"]),
        ("/orders/{id}", &["get"]),
        ("/orders/{id}/cancel", &["post"]),
        ("/orders/{id}/confirm-payment", &["post"]),
        ("/admin/queues", &["get"]),
        ("/admin/queues/dead/{id}/retry", &["post"]),
        ("/health", &["get"]),
        ("/ready", &["get"]),
        ("/metrics", &["get"]),
        ("/events", &["get"]),
        ("/events/stream", &["get"]),
        ("/orders/{id}/events", &["get"]),
        ("/orders/{id}/refunds", &["get", "post"]),
        ("/products/{id}/stock-adjustments", &["post"]),
        ("/products/{id}/stock-movements", &["get"]),
        ("/admin/stock/audit", &["get"]),
        ("/categories", &["get", "post"]),
        ("/categories/{id}", &["get", "patch", "delete"]),
        ("/webhooks", &["get", "post"]),
        ("/webhooks/{id}", &["get", "patch", "delete"]),
        ("/webhooks/{id}/rotate-secret", &["post"]),
        ("/webhooks/{id}/deliveries", &["get"]),
        (
            "/webhooks/{id}/deliveries/{deliveryId}/redeliver",
            &["post"],
        ),
    ] {
        for method in methods {
            assert!(
                paths[path].get(*method).is_some(),
                "{method} {path} undocumented"
            );
        }
    }
    // What a webhook endpoint receives: the event, with its signature headers.
    let delivery = &spec["webhooks"]["event"]["post"];
    assert_eq!(
        delivery["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Event"
    );
    let headers: Vec<&str> = delivery["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        headers,
        ["Shop-Event-Id", "Shop-Event-Type", "Shop-Signature"]
    );
    // Every status an operation can answer is listed.
    let statuses = |path: &str, method: &str| -> Vec<String> {
        paths[path][method]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    for status in [
        "201", "400", "401", "409", "413", "415", "422", "429", "503",
    ] {
        assert!(
            statuses("/orders", "post").contains(&status.to_owned()),
            "POST /orders {status}"
        );
    }
    for status in [
        "200", "400", "401", "403", "404", "413", "415", "422", "429", "503",
    ] {
        assert!(
            statuses("/products/{id}", "patch").contains(&status.to_owned()),
            "PATCH {status}"
        );
    }
    for status in [
        "202", "400", "401", "403", "404", "409", "413", "415", "422", "429", "503",
    ] {
        assert!(
            statuses("/orders/{id}/refunds", "post").contains(&status.to_owned()),
            "POST /orders/{{id}}/refunds {status}"
        );
    }
    for method in ["put", "patch", "delete"] {
        assert!(
            statuses("/products/{id}", method).contains(&"412".to_owned()),
            "{method} /products/{{id}} 412"
        );
        let parameters = paths["/products/{id}"][method]["parameters"]
            .as_array()
            .unwrap();
        assert!(
            parameters
                .iter()
                .any(|p| p["name"] == "If-Match" && p["in"] == "header"),
            "{method} /products/{{id}} If-Match"
        );
    }
    assert!(
        paths["/products/{id}"]["get"]["responses"]["200"]["headers"]["ETag"].is_object(),
        "GET /products/{{id}} ETag"
    );
    for status in ["200", "400", "401", "403", "422", "429", "503"] {
        assert!(
            statuses("/products", "get").contains(&status.to_owned()),
            "GET /products {status}"
        );
    }
    assert!(
        !statuses("/health", "get").contains(&"429".to_owned()),
        "never limited"
    );
    // Constraints and links.
    let skip = paths["/products"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "skip")
        .unwrap();
    assert_eq!(skip["allowEmptyValue"], true);
    assert_eq!(skip["schema"]["maximum"], 1_000_000);
    let links = &paths["/orders"]["post"]["responses"]["201"]["links"];
    assert_eq!(links["get_order"]["operationId"], "get_order");
    assert_eq!(links["get_order"]["parameters"]["id"], "$response.body#/id");
    assert!(paths["/products"]["post"]["responses"]["201"]["links"]["get_product"].is_object());
    assert!(spec["components"]["schemas"]["Problem"].is_object());
    assert!(spec["components"]["schemas"]["PaymentEvent"].is_object());
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
}

async fn malformed_requests_get_problem_json(app: TestApp) {
    let url = format!("{}/auth/login", app.base);
    let send = |body: &'static str, content_type: &'static str| {
        let client = app.client.clone();
        let url = url.clone();
        async move {
            let response = client
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            let body: serde_json::Value = response.json().await.unwrap();
            (
                status,
                content_type,
                body["code"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (status, ct, code) = send("{", "application/json").await;
    assert_eq!(
        (status, ct.as_str(), code.as_str()),
        (400, "application/problem+json", "malformed_json")
    );
    let (status, _, code) = send("{}", "text/plain").await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
    // Only a JSON object is a body, even where serde could read a struct from an array.
    for not_an_object in ["[]", "[\"a@b.co\", \"Str0ng!pass\"]", "\"x\"", "7", "null"] {
        let (status, _, code) = send(not_an_object, "application/json").await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_body"),
            "{not_an_object}"
        );
    }

    let big = "x".repeat(1024 * 1024 + 1);
    let response = app
        .client
        .post(format!("{}/auth/register", app.base))
        .header("content-type", "application/json")
        .body(format!("{{\"email\":\"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    let admin = app.admin().await;
    app.get("/products/not-a-uuid", None)
        .await
        .expect_problem(400, "invalid_path");
    app.get("/orders/123", Some(&admin))
        .await
        .expect_problem(400, "invalid_path");
    app.call(Method::POST, "/orders", Some(&admin), Some(json!([1, 2])))
        .await
        .expect_problem(400, "invalid_body");
}

async fn unknown_routes_and_methods_get_problem_json(app: TestApp) {
    app.get("/nope", None)
        .await
        .expect_problem(404, "not_found");
    app.call(Method::DELETE, "/orders", None, None)
        .await
        .expect_problem(405, "method_not_allowed");
}
