//! Accounts as admins manage them: list and search, read, create (admins too), change
//! role or name, disable and enable. The shop never loses its last enabled admin.

pub mod routes;

use entity::user;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    auth::{PasswordHasher, Role, dto::UserResponse, service::create_user, standing},
    clock, db,
    domain::{Email, check_text},
    error::{AppError, AppResult, FieldErrors},
    extract::present,
    pagination::{Page, PageRequest, SortField, SortOrder},
    state::AppState,
};

/// The longest `q`.
const MAX_QUERY_CHARS: usize = 100;

/// `GET /admin/users`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Items to skip (default 0).
    #[param(value_type = Option<u64>, minimum = 0, maximum = 1_000_000)]
    pub skip: Option<String>,
    /// Page size (default 10).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100)]
    pub take: Option<String>,
    /// The field to order by (default createdAt).
    #[param(value_type = Option<UserSortParam>)]
    pub order_by: Option<String>,
    /// The direction (default desc).
    #[param(value_type = Option<SortOrder>)]
    pub order: Option<String>,
    /// Only accounts whose email or name contains this text, case-insensitively (up to
    /// 100 characters).
    #[param(max_length = 100, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub q: Option<String>,
    /// Only accounts of this role.
    #[param(value_type = Option<Role>)]
    pub role: Option<String>,
    /// `true` for disabled accounts only, `false` for enabled ones.
    #[param(value_type = Option<bool>)]
    pub disabled: Option<String>,
}

/// The fields `GET /admin/users` may be ordered by.
#[derive(ToSchema)]
#[schema(as = UserOrderBy)]
#[allow(dead_code)] // describes a query parameter, read as text by `PageRequest`
pub enum UserSortParam {
    #[schema(rename = "createdAt")]
    CreatedAt,
    #[schema(rename = "email")]
    Email,
    #[schema(rename = "name")]
    Name,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UserSort {
    CreatedAt,
    Email,
    Name,
}

impl SortField for UserSort {
    const ALLOWED: &'static [(&'static str, Self)] = &[
        ("createdAt", Self::CreatedAt),
        ("email", Self::Email),
        ("name", Self::Name),
    ];
    const DEFAULT: Self = Self::CreatedAt;
}

/// `POST /admin/users`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUser {
    #[schema(value_type = String, required = true, format = Email, max_length = 320, example = "staff@example.com")]
    pub email: Option<String>,
    /// Up to 200 characters, no control characters.
    #[schema(value_type = Option<String>, max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", example = "Sam")]
    pub name: Option<String>,
    /// The password policy of registration.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128, pattern = r"^(?=.*[A-Z])(?=.*[a-z])(?=.*[0-9])(?=.*[^A-Za-z0-9\s])[^\u0000-\u001F\u007F-\u009F]*$", example = "Str0ng!pass")]
    pub password: Option<String>,
    #[schema(value_type = Role, required = true)]
    pub role: Option<String>,
}

/// `PATCH /admin/users/{id}`: any subset.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = UserChanges)]
pub struct UserChanges {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Role)]
    pub role: Option<Option<String>>,
    /// `true` disables the account (its sessions end at once; it cannot sign in);
    /// `false` enables it again.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool)]
    pub disabled: Option<Option<bool>>,
    /// Up to 200 characters, no control characters; `null` or empty clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: Option<Option<String>>,
}

/// A role named by a client; `None` (with a message under `field`) for anything else.
fn role(raw: &str, field: &str, errors: &mut FieldErrors) -> Option<Role> {
    match raw {
        "CLIENT" => Some(Role::Client),
        "ADMIN" => Some(Role::Admin),
        _ => {
            errors.insert(field.into(), vec!["must be CLIENT or ADMIN".into()]);
            None
        }
    }
}

/// A name as sent: trimmed, empty is none; control characters and more than 200
/// characters are refused.
fn name(raw: Option<&str>, errors: &mut FieldErrors) -> Option<String> {
    let raw = raw?;
    if let Err(msg) = check_text(raw, false) {
        errors.insert("name".into(), vec![msg]);
        return None;
    }
    let name = raw.trim();
    if name.chars().count() > 200 {
        errors.insert("name".into(), vec!["must be at most 200 characters".into()]);
        return None;
    }
    (!name.is_empty()).then(|| name.to_owned())
}

/// A page of accounts.
pub async fn list(state: &AppState, query: UserListQuery) -> AppResult<Page<UserResponse>> {
    let mut errors = FieldErrors::new();
    let page = PageRequest::<UserSort>::parse(
        query.skip.as_deref(),
        query.take.as_deref(),
        query.order_by.as_deref(),
        query.order.as_deref(),
        &mut errors,
    );
    if let Some(Err(msg)) = query.q.as_deref().map(|q| check_text(q, false)) {
        errors.insert("q".into(), vec![msg]);
    }
    let search = query
        .q
        .map(|q| q.trim().to_lowercase())
        .filter(|q| !q.is_empty());
    if search
        .as_ref()
        .is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS)
    {
        errors.insert(
            "q".into(),
            vec![format!("must be at most {MAX_QUERY_CHARS} characters")],
        );
    }
    let role = query
        .role
        .as_deref()
        .and_then(|raw| role(raw, "role", &mut errors));
    let disabled = match query.disabled.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            errors.insert("disabled".into(), vec!["must be true or false".into()]);
            None
        }
    };
    let Some(page) = page.filter(|_| errors.is_empty()) else {
        return Err(AppError::validation(errors));
    };
    let mut select = user::Entity::find();
    if let Some(q) = search {
        select = select.filter(
            Condition::any()
                .add(db::lower_contains(
                    Expr::col((user::Entity, user::Column::Email)),
                    &q,
                ))
                .add(db::lower_contains(
                    Expr::col((user::Entity, user::Column::Name)),
                    &q,
                )),
        );
    }
    if let Some(role) = role {
        select = select.filter(user::Column::Role.eq(role));
    }
    match disabled {
        Some(true) => select = select.filter(user::Column::DisabledAt.is_not_null()),
        Some(false) => select = select.filter(user::Column::DisabledAt.is_null()),
        None => {}
    }
    let total = select.clone().count(&state.db).await?;
    let column = match page.order_by {
        UserSort::CreatedAt => user::Column::CreatedAt,
        UserSort::Email => user::Column::Email,
        UserSort::Name => user::Column::Name,
    };
    let order = page.direction();
    let rows = select
        .order_by(column, order.clone())
        .order_by(user::Column::Id, order)
        .offset(page.skip)
        .limit(page.take)
        .all(&state.db)
        .await?;
    let items = rows.into_iter().map(UserResponse::from).collect();
    Ok(Page::new(items, &page, total))
}

/// One account; 404 when there is none.
pub async fn get(state: &AppState, id: Uuid) -> AppResult<UserResponse> {
    user::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .map(UserResponse::from)
        .ok_or_else(|| AppError::not_found("user"))
}

/// Creates an account of any role.
pub async fn create(
    state: &AppState,
    passwords: &PasswordHasher,
    body: NewUser,
) -> AppResult<UserResponse> {
    let mut errors = FieldErrors::new();
    let email = match body.email.as_deref().map(Email::parse) {
        Some(Ok(email)) => Some(email),
        Some(Err(msg)) => {
            errors.insert("email".into(), vec![msg]);
            None
        }
        None => {
            errors.insert("email".into(), vec!["is required".into()]);
            None
        }
    };
    let password =
        crate::auth::service::new_password("password", body.password.as_deref(), &mut errors);
    let role = match body.role.as_deref() {
        Some(raw) => role(raw, "role", &mut errors),
        None => {
            errors.insert("role".into(), vec!["is required".into()]);
            None
        }
    };
    let name = name(body.name.as_deref(), &mut errors);
    let (Some(email), Some(password), Some(role), true) =
        (email, password, role, errors.is_empty())
    else {
        return Err(AppError::validation(errors));
    };
    let user = create_user(&state.db, passwords, &email, name, &password, role).await?;
    tracing::info!(user_id = %user.id, role = ?user.role, "account created by an admin");
    Ok(user.into())
}

/// Changes an account's role, name or disabled flag. Disabling ends every session of the
/// account. 409 `last_admin` when no enabled admin would remain.
pub async fn update(state: &AppState, id: Uuid, body: UserChanges) -> AppResult<UserResponse> {
    let mut errors = FieldErrors::new();
    let role = match body.role {
        None => None,
        Some(Some(raw)) => role(&raw, "role", &mut errors),
        Some(None) => {
            errors.insert("role".into(), vec!["must be CLIENT or ADMIN".into()]);
            None
        }
    };
    let disabled = match body.disabled {
        None => None,
        Some(Some(flag)) => Some(flag),
        Some(None) => {
            errors.insert("disabled".into(), vec!["must be true or false".into()]);
            None
        }
    };
    let new_name = body.name.map(|raw| name(raw.as_deref(), &mut errors));
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    let now = clock::now();
    let txn = db::begin_write(&state.db).await?;
    lock_admins(&txn).await?;
    let Some(current) = user::Entity::find_by_id(id).one(&txn).await? else {
        return Err(AppError::not_found("user"));
    };
    let mut update = user::Entity::update_many()
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(id));
    if let Some(role) = role {
        update = update.col_expr(user::Column::Role, Expr::value(role));
    }
    if let Some(name) = new_name {
        update = update.col_expr(user::Column::Name, Expr::value(name));
    }
    match disabled {
        // Disabling an enabled account keeps its first date.
        Some(true) if current.disabled_at.is_none() => {
            update = update.col_expr(user::Column::DisabledAt, Expr::value(Some(now)));
        }
        Some(false) => {
            update = update.col_expr(
                user::Column::DisabledAt,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            );
        }
        _ => {}
    }
    update.exec(&txn).await?;
    let admins = user::Entity::find()
        .filter(user::Column::Role.eq(Role::Admin))
        .filter(user::Column::DisabledAt.is_null())
        .count(&txn)
        .await?;
    if admins == 0 {
        return Err(AppError::conflict(
            "last_admin",
            "This would leave the shop without an enabled admin; make another admin first.",
        ));
    }
    let newly_disabled = disabled == Some(true) && current.disabled_at.is_none();
    let account = if newly_disabled {
        standing::end_all(&txn, id, now).await?
    } else {
        user::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("user"))?
    };
    txn.commit().await?;
    state.auth.forget(id);
    if newly_disabled {
        tracing::info!(user_id = %id, "account disabled; its sessions are ended");
    }
    Ok(account.into())
}

/// Serialises changes of roles and disabled flags on PostgreSQL (SQLite serialises every
/// writer), so two admins demoting each other at once cannot both pass the last-admin
/// check.
async fn lock_admins<C: ConnectionTrait>(txn: &C) -> AppResult<()> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(7431002)")
            .await?;
    }
    Ok(())
}
