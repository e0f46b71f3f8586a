//! Accounts: register, login, me, tokens.

use chrono::Utc;
use serde_json::json;
use shop::auth::{Claims, Role};
use uuid::Uuid;

use crate::helpers::{ADMIN_EMAIL, PASSWORD, TestApp};

both_backends!(
    register_creates_a_client_and_signs_it_in,
    register_refuses_a_taken_email_whatever_its_case,
    register_validates_every_field,
    registration_cannot_make_admins,
    login_answers_unknown_email_and_wrong_password_alike,
    me_needs_a_valid_unexpired_token,
);

async fn register_creates_a_client_and_signs_it_in(app: TestApp) {
    let answer = app
        .post(
            "/auth/register",
            None,
            json!({"email": "  Ann@Example.COM ", "name": "Ann", "password": PASSWORD}),
        )
        .await;
    let body = answer.expect(201);
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 3600);
    assert_eq!(body["user"]["email"], "ann@example.com");
    assert_eq!(body["user"]["name"], "Ann");
    assert_eq!(body["user"]["role"], "CLIENT");
    assert!(body["user"].get("passwordHash").is_none() && body["user"].get("password").is_none());

    let token = body["access_token"].as_str().unwrap();
    let me = app.get("/auth/me", Some(token)).await;
    assert_eq!(me.expect(200)["id"], body["user"]["id"]);
}

async fn register_refuses_a_taken_email_whatever_its_case(app: TestApp) {
    let first = json!({"email": "bob@example.com", "password": PASSWORD});
    app.post("/auth/register", None, first).await.expect(201);
    let again = json!({"email": "BOB@example.com", "password": PASSWORD});
    app.post("/auth/register", None, again)
        .await
        .expect_problem(409, "email_taken");
}

async fn register_validates_every_field(app: TestApp) {
    let answer = app
        .post(
            "/auth/register",
            None,
            json!({"email": "not-an-email", "password": "weak"}),
        )
        .await;
    let body = answer.expect_problem(422, "validation_failed");
    assert!(body["errors"]["email"].is_array());
    assert!(
        body["errors"]["password"][0]
            .as_str()
            .unwrap()
            .contains("upper-case")
    );

    let answer = app.post("/auth/register", None, json!({})).await;
    let body = answer.expect_problem(422, "validation_failed");
    assert_eq!(body["errors"]["email"][0], "is required");
    assert_eq!(body["errors"]["password"][0], "is required");

    let answer = app
        .post(
            "/auth/register",
            None,
            json!({"email": "nul@example.com", "password": PASSWORD, "name": "a\u{0}"}),
        )
        .await;
    assert!(answer.expect_problem(422, "validation_failed")["errors"]["name"].is_array());

    // Wrong JSON types are malformed requests.
    app.post(
        "/auth/register",
        None,
        json!({"email": 5, "password": PASSWORD}),
    )
    .await
    .expect_problem(400, "invalid_body");
    // Nothing was created by the failed attempts.
    app.post(
        "/auth/login",
        None,
        json!({"email": "not-an-email", "password": "weak"}),
    )
    .await
    .expect_problem(401, "invalid_credentials");
}

async fn registration_cannot_make_admins(app: TestApp) {
    let answer = app
        .post(
            "/auth/register",
            None,
            json!({"email": "mallory@example.com", "password": PASSWORD, "role": "ADMIN"}),
        )
        .await;
    assert_eq!(answer.expect(201)["user"]["role"], "CLIENT");
    let token = answer.body["access_token"].as_str().unwrap();
    app.post(
        "/products",
        Some(token),
        json!({"name": "x", "price": 1, "stock": 1}),
    )
    .await
    .expect_problem(403, "forbidden");
}

async fn login_answers_unknown_email_and_wrong_password_alike(app: TestApp) {
    app.post(
        "/auth/register",
        None,
        json!({"email": "carol@example.com", "password": PASSWORD}),
    )
    .await
    .expect(201);

    let ok = app
        .post(
            "/auth/login",
            None,
            json!({"email": "CAROL@example.com ", "password": PASSWORD}),
        )
        .await;
    assert_eq!(ok.expect(200)["user"]["email"], "carol@example.com");

    let wrong = app
        .post(
            "/auth/login",
            None,
            json!({"email": "carol@example.com", "password": "Wr0ng!pass"}),
        )
        .await;
    let unknown = app
        .post(
            "/auth/login",
            None,
            json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;
    wrong.expect_problem(401, "invalid_credentials");
    unknown.expect_problem(401, "invalid_credentials");
    assert_eq!(wrong.body, unknown.body);

    let admin = app.admin().await;
    let me = app.get("/auth/me", Some(&admin)).await;
    assert_eq!(me.expect(200)["role"], "ADMIN");
    assert_eq!(me.body["email"], ADMIN_EMAIL);
}

async fn me_needs_a_valid_unexpired_token(app: TestApp) {
    app.get("/auth/me", None)
        .await
        .expect_problem(401, "unauthorized");
    let garbage = app.get("/auth/me", Some("garbage")).await;
    garbage.expect_problem(401, "unauthorized");
    assert_eq!(garbage.headers["www-authenticate"], "Bearer");

    let (token, id) = app.client_user().await;
    let now = Utc::now().timestamp();
    let expired = app
        .state
        .jwt
        .sign(&Claims {
            sub: Uuid::parse_str(&id).unwrap(),
            email: "x@example.com".into(),
            role: Role::Client,
            iat: now - 7200,
            exp: now - 3600,
        })
        .unwrap();
    let answer = app.get("/auth/me", Some(&expired)).await;
    assert!(
        answer.expect_problem(401, "unauthorized")["detail"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    app.get("/auth/me", Some(&tampered))
        .await
        .expect_problem(401, "unauthorized");
    app.get("/auth/me", Some(&token)).await.expect(200);
}
