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
    refresh_tokens_rotate_and_a_reused_one_ends_the_chain,
    two_refreshes_with_one_token_leave_neither_a_session,
    logout_ends_the_session_and_refresh_tokens_expire,
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
            ep: 0,
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

/// Signs a fresh client in; answers its access and refresh tokens.
async fn signed_in(app: &TestApp) -> (String, String) {
    let email = format!("s-{}@example.com", Uuid::new_v4().simple());
    let answer = app
        .post(
            "/auth/register",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    let body = answer.expect(201);
    assert!(body["refreshToken"].as_str().unwrap().starts_with("rt_"));
    assert_eq!(body["refreshExpiresIn"], 30 * 24 * 3600);
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refreshToken"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(app: &TestApp, token: &str) -> crate::helpers::Answer {
    app.post("/auth/refresh", None, json!({"refreshToken": token}))
        .await
}

async fn refresh_tokens_rotate_and_a_reused_one_ends_the_chain(app: TestApp) {
    let (_, first) = signed_in(&app).await;
    let renewed = refresh(&app, &first).await;
    let body = renewed.expect(200).clone();
    let second = body["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let access = body["access_token"].as_str().unwrap();
    app.get("/auth/me", Some(access)).await.expect(200);
    let third = refresh(&app, &second).await.expect(200)["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    // The first token again: spent, so the chain is over, the newest token included.
    refresh(&app, &first)
        .await
        .expect_problem(401, "invalid_refresh_token");
    refresh(&app, &third)
        .await
        .expect_problem(401, "invalid_refresh_token");
    // Another sign-in of the same account is another chain, untouched.
    let (_, other) = signed_in(&app).await;
    refresh(&app, &other).await.expect(200);
    for bad in ["", "rt_nope", "not-a-token", &"rt_".repeat(66)] {
        refresh(&app, bad)
            .await
            .expect_problem(401, "invalid_refresh_token");
    }
    for body in [json!({}), json!({"refreshToken": "rt_".repeat(67)})] {
        app.post("/auth/refresh", None, body)
            .await
            .expect_problem(422, "validation_failed");
    }
}

async fn two_refreshes_with_one_token_leave_neither_a_session(app: TestApp) {
    let (_, token) = signed_in(&app).await;
    let (a, b) = tokio::join!(refresh(&app, &token), refresh(&app, &token));
    let statuses = [a.status.as_u16(), b.status.as_u16()];
    assert!(statuses.contains(&401), "one is a reuse: {statuses:?}");
    // Whoever won, the chain is revoked: its new token no longer works.
    for won in [a, b].iter().filter(|x| x.status == 200) {
        let next = won.body["refreshToken"].as_str().unwrap();
        refresh(&app, next)
            .await
            .expect_problem(401, "invalid_refresh_token");
    }
}

async fn logout_ends_the_session_and_refresh_tokens_expire(app: TestApp) {
    let (access, token) = signed_in(&app).await;
    let (other_access, other_token) = signed_in(&app).await;
    // Another user's token is not the caller's to end.
    let answer = app
        .post(
            "/auth/logout",
            Some(&other_access),
            json!({"refreshToken": token}),
        )
        .await;
    assert_eq!(answer.status, 204);
    let next = refresh(&app, &token).await.expect(200)["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = app
        .post("/auth/logout", Some(&access), json!({"refreshToken": next}))
        .await;
    assert_eq!(out.status, 204);
    refresh(&app, &next)
        .await
        .expect_problem(401, "invalid_refresh_token");
    app.post("/auth/logout", None, json!({"refreshToken": other_token}))
        .await
        .expect(401);
    refresh(&app, &other_token).await.expect(200);

    let short = app.sibling(&[("REFRESH_TOKEN_TTL", "1s")]).await;
    let (_, expiring) = signed_in_with_ttl(&short).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    refresh(&short, &expiring)
        .await
        .expect_problem(401, "invalid_refresh_token");
}

async fn signed_in_with_ttl(app: &TestApp) -> (String, String) {
    let email = format!("t-{}@example.com", Uuid::new_v4().simple());
    let answer = app
        .post(
            "/auth/register",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    let body = answer.expect(201);
    assert_eq!(body["refreshExpiresIn"], 1);
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refreshToken"].as_str().unwrap().to_owned(),
    )
}
