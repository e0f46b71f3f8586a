//! An account's whole life: sign out everywhere, change the password, reset it by mail,
//! and be disabled. Each ends every session at once.

use std::{path::Path, time::Duration};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{Answer, PASSWORD, TestApp},
    socket::{Auth, Listener},
};

both_backends!(
    logout_all_refuses_every_token_issued_before,
    change_password_ends_every_other_session,
    a_disabled_account_is_refused_at_once_and_cannot_sign_in,
    another_instance_hears_that_sessions_ended,
    password_reset_by_mail_end_to_end,
    password_reset_mail_leaves_by_smtp,
    a_refresh_token_of_an_older_epoch_is_refused,
    ending_sessions_spends_reset_links,
    password_reset_answers_alike_and_refuses_bad_tokens,
    password_reset_requests_are_rate_limited,
    open_streams_and_sockets_end_with_the_session,
);

const NEW_PASSWORD: &str = "N3w!passw0rd";

/// A new account signed in: `(email, access token, refresh token, id)`.
pub async fn account(app: &TestApp) -> (String, String, String, String) {
    let email = format!("a-{}@example.com", Uuid::new_v4().simple());
    let body = app
        .post(
            "/auth/register",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await
        .expect(201)
        .clone();
    (
        email,
        body["access_token"].as_str().unwrap().to_owned(),
        body["refreshToken"].as_str().unwrap().to_owned(),
        body["user"]["id"].as_str().unwrap().to_owned(),
    )
}

/// Another session of the account: `(access token, refresh token)`.
pub async fn login(app: &TestApp, email: &str, password: &str) -> (String, String) {
    let body = app
        .post(
            "/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
        .expect(200)
        .clone();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refreshToken"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(app: &TestApp, token: &str) -> Answer {
    app.post("/auth/refresh", None, json!({"refreshToken": token}))
        .await
}

/// Every token of these sessions is refused.
async fn all_refused(app: &TestApp, sessions: &[(&str, &str)]) {
    for (access, refresh_token) in sessions {
        app.get("/auth/me", Some(access))
            .await
            .expect_problem(401, "unauthorized");
        refresh(app, refresh_token)
            .await
            .expect_problem(401, "invalid_refresh_token");
    }
}

async fn logout_all_refuses_every_token_issued_before(app: TestApp) {
    let (email, access, refresh_token, _) = account(&app).await;
    let (other_access, other_refresh) = login(&app, &email, PASSWORD).await;
    // A refreshed access token of the second session, issued later, is old all the same.
    let renewed = refresh(&app, &other_refresh).await.expect(200).clone();
    let renewed_access = renewed["access_token"].as_str().unwrap();
    let renewed_refresh = renewed["refreshToken"].as_str().unwrap();
    let (_, bystander, _, _) = account(&app).await;

    let out = app
        .call(
            reqwest::Method::POST,
            "/auth/logout-all",
            Some(&access),
            None,
        )
        .await;
    assert_eq!(out.status, 204, "{:?}", out.body);
    all_refused(
        &app,
        &[
            (&access, &refresh_token),
            (&other_access, renewed_refresh),
            (renewed_access, renewed_refresh),
        ],
    )
    .await;
    let detail = app.get("/auth/me", Some(&access)).await.body["detail"].clone();
    assert!(detail.as_str().unwrap().contains("ended"), "{detail}");
    // Signing in again works, and other accounts never noticed.
    let (fresh, _) = login(&app, &email, PASSWORD).await;
    app.get("/auth/me", Some(&fresh)).await.expect(200);
    app.get("/auth/me", Some(&bystander)).await.expect(200);
    app.call(reqwest::Method::POST, "/auth/logout-all", None, None)
        .await
        .expect_problem(401, "unauthorized");
}

async fn change_password_ends_every_other_session(app: TestApp) {
    let (email, access, refresh_token, id) = account(&app).await;
    let (other_access, other_refresh) = login(&app, &email, PASSWORD).await;
    let change = |current: Value, new: Value| {
        let app = &app;
        let access = access.clone();
        async move {
            app.post(
                "/auth/change-password",
                Some(&access),
                json!({"currentPassword": current, "newPassword": new}),
            )
            .await
        }
    };
    let wrong = change(json!("Wr0ng!pass"), json!(NEW_PASSWORD)).await;
    wrong.expect_problem(401, "invalid_credentials");
    let weak = change(json!(PASSWORD), json!("weak")).await;
    let body = weak.expect_problem(422, "validation_failed");
    assert!(body["errors"]["newPassword"].is_array());
    let missing = app
        .post("/auth/change-password", Some(&access), json!({}))
        .await;
    let body = missing.expect_problem(422, "validation_failed");
    assert_eq!(body["errors"]["currentPassword"][0], "is required");
    assert_eq!(body["errors"]["newPassword"][0], "is required");
    // None of that changed anything.
    app.get("/auth/me", Some(&other_access)).await.expect(200);

    let changed = change(json!(PASSWORD), json!(NEW_PASSWORD)).await;
    let session = changed.expect(200).clone();
    assert_eq!(session["user"]["id"], id.as_str());
    let new_access = session["access_token"].as_str().unwrap();
    let new_refresh = session["refreshToken"].as_str().unwrap();
    all_refused(
        &app,
        &[(&access, &refresh_token), (&other_access, &other_refresh)],
    )
    .await;
    app.get("/auth/me", Some(new_access)).await.expect(200);
    refresh(&app, new_refresh).await.expect(200);
    app.post(
        "/auth/login",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await
    .expect_problem(401, "invalid_credentials");
    login(&app, &email, NEW_PASSWORD).await;
}

async fn a_disabled_account_is_refused_at_once_and_cannot_sign_in(app: TestApp) {
    let admin = app.admin().await;
    let (email, access, refresh_token, id) = account(&app).await;
    app.get("/auth/me", Some(&access)).await.expect(200);

    let disabled = app
        .call(
            reqwest::Method::PATCH,
            &format!("/admin/users/{id}"),
            Some(&admin),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(disabled.expect(200)["disabled"], true);
    // The very next request is refused, and so is every way back in.
    let refused = app.get("/auth/me", Some(&access)).await;
    let detail = refused.expect_problem(401, "unauthorized")["detail"].clone();
    assert!(detail.as_str().unwrap().contains("disabled"), "{detail}");
    refresh(&app, &refresh_token)
        .await
        .expect_problem(401, "invalid_refresh_token");
    let wrong = app
        .post(
            "/auth/login",
            None,
            json!({"email": email, "password": "Wr0ng!pass"}),
        )
        .await;
    let right = app
        .post(
            "/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    // One answer for a disabled account and a wrong password.
    let refusal = right.expect_problem(401, "invalid_credentials");
    assert_eq!(
        refusal["detail"],
        wrong.expect_problem(401, "invalid_credentials")["detail"]
    );

    let enabled = app
        .call(
            reqwest::Method::PATCH,
            &format!("/admin/users/{id}"),
            Some(&admin),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(enabled.expect(200)["disabled"], false);
    // Enabling lets the account sign in again; what was issued before stays dead.
    let (fresh, _) = login(&app, &email, PASSWORD).await;
    app.get("/auth/me", Some(&fresh)).await.expect(200);
    app.get("/auth/me", Some(&access))
        .await
        .expect_problem(401, "unauthorized");
}

/// Instances keep what they read of an account; when another instance (or SQL) ends its
/// sessions, PostgreSQL tells them. SQLite has one process per file: nothing to hear.
async fn another_instance_hears_that_sessions_ended(app: TestApp) {
    if !app.is_external() {
        return;
    }
    let other = app.sibling(&[]).await;
    let (_, access, _, id) = account(&app).await;
    // The other instance reads the account once and keeps it.
    other.get("/auth/me", Some(&access)).await.expect(200);
    app.call(
        reqwest::Method::POST,
        "/auth/logout-all",
        Some(&access),
        None,
    )
    .await;
    refused_soon(&other, &access).await;

    // A change made in SQL, behind every instance's back, is heard too.
    let (_, access, _, id2) = account(&app).await;
    other.get("/auth/me", Some(&access)).await.expect(200);
    use sea_orm::ConnectionTrait;
    app.state
        .db
        .execute_unprepared(&format!(
            "UPDATE users SET disabled_at = now() WHERE id = '{id2}'"
        ))
        .await
        .unwrap();
    refused_soon(&other, &access).await;
    assert_ne!(id, id2);
}

/// The token is refused by `app` within a couple of seconds.
async fn refused_soon(app: &TestApp, access: &str) {
    for _ in 0..100 {
        if app.get("/auth/me", Some(access)).await.status == 401 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the other instance still accepts a token whose sessions ended");
}

/// The newest mail to `to` in `dir` (waits up to 5 s for it): the whole message.
async fn mail_to(dir: &Path, to: &str) -> String {
    for _ in 0..250 {
        let mut found: Vec<(std::time::SystemTime, String)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let modified = entry.metadata().and_then(|m| m.modified()).ok();
                if text.contains(&format!("To: {to}")) && text.contains("token=") {
                    found.push((modified.unwrap_or(std::time::UNIX_EPOCH), text));
                }
            }
        }
        if let Some((_, text)) = found.into_iter().max_by_key(|(at, _)| *at) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no mail to {to} in {}", dir.display());
}

/// The mails in `dir` addressed to `to`.
fn mails_to(dir: &Path, to: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .contains(&format!("To: {to}"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// A quoted-printable text decoded (soft line breaks joined, `=XX` turned into bytes).
fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'=', Some(hex)) if hex.iter().all(u8::is_ascii_hexdigit) => {
                out.push(u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap());
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The token of the reset link in a mail.
fn link_token(mail: &str, public_url: &str) -> String {
    let mail = quoted_printable(mail);
    let prefix = format!("{public_url}/reset-password?token=");
    let start = mail.find(&prefix).expect("the mail holds the link") + prefix.len();
    mail[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// An instance whose mail goes to files in a directory of its own.
async fn with_mailbox(app: &TestApp, extra: &[(&str, &str)]) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = vec![
        ("MAIL_TRANSPORT", "file"),
        ("PUBLIC_URL", "https://shop.example/"),
    ];
    let path = dir.path().display().to_string();
    settings.push(("MAIL_DIR", path.as_str()));
    settings.extend_from_slice(extra);
    (app.sibling(&settings).await, dir)
}

async fn password_reset_by_mail_end_to_end(app: TestApp) {
    let (mailer, dir) = with_mailbox(&app, &[]).await;
    let (email, access, refresh_token, id) = account(&mailer).await;
    let asked = mailer
        .post(
            "/auth/password-reset",
            None,
            json!({"email": email.to_uppercase()}),
        )
        .await;
    assert_eq!(asked.status, 202);
    assert_eq!(asked.body, json!({}));

    let mail = mail_to(dir.path(), &email).await;
    assert!(mail.contains("Subject: Reset your shop password"), "{mail}");
    let token = link_token(&mail, "https://shop.example");
    assert!(token.starts_with("pr_") && token.len() >= 3 + 64, "{token}");

    // A weak password spends nothing.
    let weak = mailer
        .post(
            "/auth/password-reset/confirm",
            None,
            json!({"token": token, "newPassword": "weak"}),
        )
        .await;
    assert!(weak.expect_problem(422, "validation_failed")["errors"]["newPassword"].is_array());
    let confirmed = mailer
        .post(
            "/auth/password-reset/confirm",
            None,
            json!({"token": token, "newPassword": NEW_PASSWORD}),
        )
        .await;
    let session = confirmed.expect(200).clone();
    assert_eq!(session["user"]["id"], id.as_str());
    mailer
        .get("/auth/me", Some(session["access_token"].as_str().unwrap()))
        .await
        .expect(200);
    // Every earlier session is over, the old password too; the new one works.
    all_refused(&mailer, &[(&access, &refresh_token)]).await;
    mailer
        .post(
            "/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await
        .expect_problem(401, "invalid_credentials");
    login(&mailer, &email, NEW_PASSWORD).await;
    // The link works once.
    mailer
        .post(
            "/auth/password-reset/confirm",
            None,
            json!({"token": token, "newPassword": "An0ther!pass"}),
        )
        .await
        .expect_problem(400, "invalid_reset_token");
    login(&mailer, &email, NEW_PASSWORD).await;
}

async fn password_reset_answers_alike_and_refuses_bad_tokens(app: TestApp) {
    let (mailer, dir) = with_mailbox(&app, &[("PASSWORD_RESET_TTL", "1s")]).await;
    let (email, _, _, id) = account(&mailer).await;
    let unknown = format!("nobody-{}@example.com", Uuid::new_v4().simple());
    let known = mailer
        .post("/auth/password-reset", None, json!({"email": email}))
        .await;
    let stranger = mailer
        .post("/auth/password-reset", None, json!({"email": unknown}))
        .await;
    assert_eq!(
        (known.status, &known.body),
        (stranger.status, &stranger.body)
    );
    assert_eq!(known.status, 202);
    let token = link_token(&mail_to(dir.path(), &email).await, "https://shop.example");
    assert_eq!(
        mails_to(dir.path(), &unknown),
        0,
        "no mail for an unknown email"
    );

    for body in [json!({}), json!({"email": "not-an-email"})] {
        mailer
            .post("/auth/password-reset", None, body)
            .await
            .expect_problem(422, "validation_failed");
    }
    let missing = mailer
        .post("/auth/password-reset/confirm", None, json!({}))
        .await;
    let body = missing.expect_problem(422, "validation_failed");
    assert_eq!(body["errors"]["token"][0], "is required");
    assert_eq!(body["errors"]["newPassword"][0], "is required");
    for bad in ["", "pr_nope", "rt_0000", &format!("pr_{}", "0".repeat(64))] {
        mailer
            .post(
                "/auth/password-reset/confirm",
                None,
                json!({"token": bad, "newPassword": NEW_PASSWORD}),
            )
            .await
            .expect_problem(400, "invalid_reset_token");
    }
    // Expired (PASSWORD_RESET_TTL is 1 s here): refused, and the password stays.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    mailer
        .post(
            "/auth/password-reset/confirm",
            None,
            json!({"token": token, "newPassword": NEW_PASSWORD}),
        )
        .await
        .expect_problem(400, "invalid_reset_token");
    login(&mailer, &email, PASSWORD).await;

    // A disabled account is sent nothing.
    let admin = mailer.admin().await;
    mailer
        .call(
            reqwest::Method::PATCH,
            &format!("/admin/users/{id}"),
            Some(&admin),
            Some(json!({"disabled": true})),
        )
        .await
        .expect(200);
    let before = mails_to(dir.path(), &email);
    mailer
        .post("/auth/password-reset", None, json!({"email": email}))
        .await
        .expect(202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mails_to(dir.path(), &email), before);
}

async fn password_reset_requests_are_rate_limited(app: TestApp) {
    let (mailer, dir) = with_mailbox(
        &app,
        &[
            ("PASSWORD_RESET_MAX_PER_EMAIL", "2"),
            ("PASSWORD_RESET_MAX_PER_ADDRESS", "4"),
        ],
    )
    .await;
    let (email, _, _, _) = account(&mailer).await;
    for _ in 0..2 {
        mailer
            .post("/auth/password-reset", None, json!({"email": email}))
            .await
            .expect(202);
    }
    let limited = mailer
        .post("/auth/password-reset", None, json!({"email": email}))
        .await;
    limited.expect_problem(429, "rate_limited");
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
    // Unknown emails count the same way, so a 429 tells nothing about accounts; the
    // address's own limit comes next.
    let unknown = format!("nobody-{}@example.com", Uuid::new_v4().simple());
    for _ in 0..2 {
        mailer
            .post("/auth/password-reset", None, json!({"email": unknown}))
            .await
            .expect(202);
    }
    mailer
        .post("/auth/password-reset", None, json!({"email": unknown}))
        .await
        .expect_problem(429, "rate_limited");
    let other = format!("other-{}@example.com", Uuid::new_v4().simple());
    mailer
        .post("/auth/password-reset", None, json!({"email": other}))
        .await
        .expect_problem(429, "rate_limited");
    // Two mails were sent, no more.
    mail_to(dir.path(), &email).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mails_to(dir.path(), &email), 2);
}

/// Whether the server ends the event stream within `wait` (reading past whatever comes).
async fn stream_ends_within(stream: &mut reqwest::Response, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(_) => return true,
            Err(_) => return false,
        }
    }
}

async fn open_stream(app: &TestApp, access: &str) -> reqwest::Response {
    let stream = app
        .client
        .get(format!("{}/events/stream?access_token={access}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    stream
}

async fn open_streams_and_sockets_end_with_the_session(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Listened", "3.00", 10).await;
    let (_, access, _, _) = account(&app).await;
    let (_, bystander, _, _) = account(&app).await;
    let mut stream = open_stream(&app, &access).await;
    let mut other_stream = open_stream(&app, &bystander).await;
    let mut socket = Listener::connect(app.port, "/orders", Auth::Payload(&access))
        .await
        .unwrap();
    let mut other_socket = Listener::connect(app.port, "/orders", Auth::Payload(&bystander))
        .await
        .unwrap();

    let out = app
        .call(
            reqwest::Method::POST,
            "/auth/logout-all",
            Some(&access),
            None,
        )
        .await;
    assert_eq!(out.status, 204);
    assert!(stream_ends_within(&mut stream, Duration::from_secs(5)).await);
    assert!(socket.closed_within(Duration::from_secs(5)).await);
    // Reconnecting with the old token is refused.
    let again = Listener::connect(app.port, "/orders", Auth::Payload(&access)).await;
    assert_eq!(again.err().as_deref(), Some("unauthorized"));
    // Everyone else listens on.
    app.order(&bystander, &[(&product, 1)]).await.expect(201);
    assert!(other_socket.next(Duration::from_secs(10)).await.is_some());
    assert!(!stream_ends_within(&mut other_stream, Duration::from_millis(300)).await);
    other_socket.close().await;
}

/// A one-message SMTP server on a free port: answers the dialogue and hands over what came
/// after `DATA`.
async fn smtp_sink() -> (u16, tokio::sync::oneshot::Receiver<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
        let mut message = String::new();
        let mut in_data = false;
        while let Ok(Some(line)) = lines.next_line().await {
            if in_data {
                if line == "." {
                    in_data = false;
                    write.write_all(b"250 queued\r\n").await.unwrap();
                } else {
                    message.push_str(&line);
                    message.push_str("\r\n");
                }
                continue;
            }
            let verb = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                "DATA" => {
                    in_data = true;
                    b"354 go on\r\n"
                }
                "QUIT" => {
                    let _ = write.write_all(b"221 bye\r\n").await;
                    break;
                }
                _ => b"250 ok\r\n",
            };
            write.write_all(reply).await.unwrap();
        }
        let _ = tx.send(message);
    });
    (port, rx)
}

async fn password_reset_mail_leaves_by_smtp(app: TestApp) {
    let (port, received) = smtp_sink().await;
    let url = format!("smtp://127.0.0.1:{port}");
    let mailer = app
        .sibling(&[
            ("MAIL_TRANSPORT", "smtp"),
            ("SMTP_URL", &url),
            ("MAIL_FROM", "Shop <shop@example.com>"),
            ("PUBLIC_URL", "https://shop.example"),
        ])
        .await;
    let (email, _, _, _) = account(&mailer).await;
    mailer
        .post("/auth/password-reset", None, json!({"email": email}))
        .await
        .expect(202);
    let message = tokio::time::timeout(Duration::from_secs(10), received)
        .await
        .expect("a message reaches the SMTP server")
        .unwrap();
    assert!(message.contains(&format!("To: {email}")), "{message}");
    assert!(
        message.contains("From: Shop <shop@example.com>"),
        "{message}"
    );
    let token = link_token(&message, "https://shop.example");
    mailer
        .post(
            "/auth/password-reset/confirm",
            None,
            json!({"token": token, "newPassword": NEW_PASSWORD}),
        )
        .await
        .expect(200);
    login(&mailer, &email, NEW_PASSWORD).await;
}

/// A refresh token issued while every session was being ended (a sign-in racing with a
/// logout-all) carries the epoch before: it is refused, with its family.
async fn a_refresh_token_of_an_older_epoch_is_refused(app: TestApp) {
    use entity::user;
    use sea_orm::{
        ColumnTrait, EntityTrait, QueryFilter,
        sea_query::{Expr, ExprTrait},
    };

    let (_, _, token, id) = account(&app).await;
    // As the race leaves it: the epoch moved on, this token was not revoked.
    user::Entity::update_many()
        .col_expr(
            user::Column::SessionEpoch,
            Expr::col(user::Column::SessionEpoch).add(1),
        )
        .filter(user::Column::Id.eq(Uuid::parse_str(&id).unwrap()))
        .exec(&app.state.db)
        .await
        .unwrap();
    refresh(&app, &token)
        .await
        .expect_problem(401, "invalid_refresh_token");
    // A sign-in now is of the new epoch, and works.
    let email = app
        .get(&format!("/admin/users/{id}"), Some(&app.admin().await))
        .await;
    let email = email.expect(200)["email"].as_str().unwrap().to_owned();
    let (access, fresh) = login(&app, &email, PASSWORD).await;
    app.get("/auth/me", Some(&access)).await.expect(200);
    refresh(&app, &fresh).await.expect(200);
}

/// A reset link mailed before the sessions ended (here: a password change) no longer works.
async fn ending_sessions_spends_reset_links(app: TestApp) {
    let (mailer, dir) = with_mailbox(&app, &[]).await;
    let (email, access, _, _) = account(&mailer).await;
    mailer
        .post("/auth/password-reset", None, json!({"email": email}))
        .await
        .expect(202);
    let token = link_token(&mail_to(dir.path(), &email).await, "https://shop.example");
    mailer
        .post(
            "/auth/change-password",
            Some(&access),
            json!({"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}),
        )
        .await
        .expect(200);
    mailer
        .post(
            "/auth/password-reset/confirm",
            None,
            json!({"token": token, "newPassword": "An0ther!pass"}),
        )
        .await
        .expect_problem(400, "invalid_reset_token");
    login(&mailer, &email, NEW_PASSWORD).await;
}
