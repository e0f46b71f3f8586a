//! Admin: users. List, read, create, change role, disable; never without an enabled admin.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::{
    accounts::{account, login},
    helpers::{ADMIN_EMAIL, PASSWORD, TestApp},
};

both_backends!(
    admins_list_search_and_read_accounts,
    admins_create_accounts_of_either_role,
    a_role_change_applies_to_the_next_request,
    the_last_enabled_admin_cannot_be_demoted_or_disabled,
    two_admins_demoting_each_other_leave_one,
    only_admins_manage_accounts,
);

async fn patch(
    app: &TestApp,
    token: &str,
    id: &str,
    body: serde_json::Value,
) -> crate::helpers::Answer {
    app.call(
        Method::PATCH,
        &format!("/admin/users/{id}"),
        Some(token),
        Some(body),
    )
    .await
}

/// Creates an account as `admin`; answers its id.
async fn create(app: &TestApp, admin: &str, email: &str, role: &str) -> String {
    let created = app
        .post(
            "/admin/users",
            Some(admin),
            json!({"email": email, "password": PASSWORD, "role": role, "name": "Staff"}),
        )
        .await;
    let body = created.expect(201);
    assert_eq!(body["role"], role);
    assert_eq!(body["disabled"], false);
    body["id"].as_str().unwrap().to_owned()
}

async fn admins_list_search_and_read_accounts(app: TestApp) {
    let admin = app.admin().await;
    let tag = Uuid::new_v4().simple().to_string();
    let mut ids = Vec::new();
    for n in 0..3 {
        let email = format!("zed{n}-{tag}@example.com");
        ids.push(create(&app, &admin, &email, "CLIENT").await);
    }
    patch(&app, &admin, &ids[1], json!({"disabled": true}))
        .await
        .expect(200);

    let found = app
        .get(
            &format!("/admin/users?q={}&orderBy=email&order=asc", &tag[..12]),
            Some(&admin),
        )
        .await;
    let page = found.expect(200);
    assert_eq!(page["totalCount"], 3);
    let emails: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        (0..3)
            .map(|n| format!("zed{n}-{tag}@example.com"))
            .collect::<Vec<_>>()
    );
    // Search is case-insensitive and matches names too.
    let upper = app
        .get(
            &format!("/admin/users?q={}", tag[..12].to_uppercase()),
            Some(&admin),
        )
        .await;
    assert_eq!(upper.expect(200)["totalCount"], 3);
    let by_name = app.get("/admin/users?q=staff&take=2", Some(&admin)).await;
    let page = by_name.expect(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["hasNextPage"], true);
    // Filters.
    let disabled = app
        .get(&format!("/admin/users?q={tag}&disabled=true"), Some(&admin))
        .await;
    let page = disabled.expect(200);
    assert_eq!(page["totalCount"], 1);
    assert_eq!(page["items"][0]["id"], ids[1].as_str());
    let admins = app.get("/admin/users?role=ADMIN", Some(&admin)).await;
    let page = admins.expect(200);
    assert_eq!(page["totalCount"], 1);
    assert_eq!(page["items"][0]["email"], ADMIN_EMAIL);
    // A literal `%` matches nothing but itself.
    let literal = app.get("/admin/users?q=%25", Some(&admin)).await;
    assert_eq!(literal.expect(200)["totalCount"], 0);

    let one = app
        .get(&format!("/admin/users/{}", ids[0]), Some(&admin))
        .await;
    let body = one.expect(200);
    assert_eq!(body["name"], "Staff");
    assert!(body.get("passwordHash").is_none());
    app.get(&format!("/admin/users/{}", Uuid::new_v4()), Some(&admin))
        .await
        .expect_problem(404, "not_found");
    app.get("/admin/users/not-a-uuid", Some(&admin))
        .await
        .expect(400);
    for bad in [
        "role=OWNER",
        "disabled=maybe",
        "orderBy=password",
        "take=0",
        "q=%00",
    ] {
        app.get(&format!("/admin/users?{bad}"), Some(&admin))
            .await
            .expect_problem(422, "validation_failed");
    }
}

async fn admins_create_accounts_of_either_role(app: TestApp) {
    let admin = app.admin().await;
    let email = format!("boss-{}@example.com", Uuid::new_v4().simple());
    create(&app, &admin, &email, "ADMIN").await;
    // The new admin signs in and acts as one.
    let (boss, _) = login(&app, &email, PASSWORD).await;
    app.get("/admin/users", Some(&boss)).await.expect(200);
    let clerk = format!("clerk-{}@example.com", Uuid::new_v4().simple());
    create(&app, &boss, &clerk, "CLIENT").await;

    let taken = app
        .post(
            "/admin/users",
            Some(&admin),
            json!({"email": email.to_uppercase(), "password": PASSWORD, "role": "CLIENT"}),
        )
        .await;
    taken.expect_problem(409, "email_taken");
    let bad = app
        .post(
            "/admin/users",
            Some(&admin),
            json!({"email": "nope", "password": "weak", "role": "OWNER", "name": "a\u{1}"}),
        )
        .await;
    let body = bad.expect_problem(422, "validation_failed");
    for field in ["email", "password", "role", "name"] {
        assert!(body["errors"][field].is_array(), "{field}: {body}");
    }
    let missing = app.post("/admin/users", Some(&admin), json!({})).await;
    let body = missing.expect_problem(422, "validation_failed");
    for field in ["email", "password", "role"] {
        assert_eq!(body["errors"][field][0], "is required", "{field}");
    }
}

async fn a_role_change_applies_to_the_next_request(app: TestApp) {
    let admin = app.admin().await;
    let email = format!("temp-{}@example.com", Uuid::new_v4().simple());
    let id = create(&app, &admin, &email, "ADMIN").await;
    let (token, _) = login(&app, &email, PASSWORD).await;
    app.get("/admin/users", Some(&token)).await.expect(200);
    let demoted = patch(
        &app,
        &admin,
        &id,
        json!({"role": "CLIENT", "name": "  Temp "}),
    )
    .await;
    let body = demoted.expect(200);
    assert_eq!(body["role"], "CLIENT");
    assert_eq!(body["name"], "Temp");
    // The token says ADMIN; the account no longer is.
    app.get("/admin/users", Some(&token))
        .await
        .expect_problem(403, "forbidden");
    app.get("/auth/me", Some(&token)).await.expect(200);
    let promoted = patch(&app, &admin, &id, json!({"role": "ADMIN", "name": null})).await;
    assert_eq!(promoted.expect(200)["name"], serde_json::Value::Null);
    app.get("/admin/users", Some(&token)).await.expect(200);

    for bad in [
        json!({"role": "OWNER"}),
        json!({"role": null}),
        json!({"disabled": null}),
    ] {
        patch(&app, &admin, &id, bad)
            .await
            .expect_problem(422, "validation_failed");
    }
    patch(&app, &admin, &id, json!({"disabled": "yes"}))
        .await
        .expect(400);
    patch(
        &app,
        &admin,
        &Uuid::new_v4().to_string(),
        json!({"role": "CLIENT"}),
    )
    .await
    .expect_problem(404, "not_found");
}

async fn the_last_enabled_admin_cannot_be_demoted_or_disabled(app: TestApp) {
    let admin = app.admin().await;
    let me = app.get("/auth/me", Some(&admin)).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for change in [json!({"role": "CLIENT"}), json!({"disabled": true})] {
        patch(&app, &admin, &me, change)
            .await
            .expect_problem(409, "last_admin");
    }
    // Nothing changed.
    let body = app.get(&format!("/admin/users/{me}"), Some(&admin)).await;
    assert_eq!(body.expect(200)["role"], "ADMIN");
    app.get("/admin/users", Some(&admin)).await.expect(200);

    // A disabled admin does not count.
    let email = format!("spare-{}@example.com", Uuid::new_v4().simple());
    let spare = create(&app, &admin, &email, "ADMIN").await;
    patch(&app, &admin, &spare, json!({"disabled": true}))
        .await
        .expect(200);
    patch(&app, &admin, &me, json!({"role": "CLIENT"}))
        .await
        .expect_problem(409, "last_admin");
    // With another enabled admin, stepping down works.
    patch(&app, &admin, &spare, json!({"disabled": false}))
        .await
        .expect(200);
    let down = patch(&app, &admin, &me, json!({"role": "CLIENT"})).await;
    assert_eq!(down.expect(200)["role"], "CLIENT");
    app.get("/admin/users", Some(&admin))
        .await
        .expect_problem(403, "forbidden");
}

async fn two_admins_demoting_each_other_leave_one(app: TestApp) {
    let admin = app.admin().await;
    let me = app.get("/auth/me", Some(&admin)).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let email = format!("peer-{}@example.com", Uuid::new_v4().simple());
    let peer = create(&app, &admin, &email, "ADMIN").await;
    let (peer_token, _) = login(&app, &email, PASSWORD).await;
    let (a, b) = tokio::join!(
        patch(&app, &admin, &peer, json!({"role": "CLIENT"})),
        patch(&app, &peer_token, &me, json!({"disabled": true})),
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    // One goes first; the other is refused, either as the last admin or because its
    // caller just stopped being an admin.
    assert!(
        statuses == [200, 403] || statuses == [200, 409] || statuses == [200, 401],
        "{statuses:?}: {:?} {:?}",
        a.body,
        b.body
    );
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let enabled_admins = entity::user::Entity::find()
        .filter(entity::user::Column::Role.eq(entity::Role::Admin))
        .filter(entity::user::Column::DisabledAt.is_null())
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(enabled_admins, 1, "{statuses:?}");
}

async fn only_admins_manage_accounts(app: TestApp) {
    let (_, client, _, id) = account(&app).await;
    app.get("/admin/users", None)
        .await
        .expect_problem(401, "unauthorized");
    app.get("/admin/users", Some(&client))
        .await
        .expect_problem(403, "forbidden");
    app.get(&format!("/admin/users/{id}"), Some(&client))
        .await
        .expect_problem(403, "forbidden");
    let email = format!("sneaky-{}@example.com", Uuid::new_v4().simple());
    app.post(
        "/admin/users",
        Some(&client),
        json!({"email": email, "password": PASSWORD, "role": "ADMIN"}),
    )
    .await
    .expect_problem(403, "forbidden");
    patch(&app, &client, &id, json!({"role": "ADMIN"}))
        .await
        .expect_problem(403, "forbidden");
}
