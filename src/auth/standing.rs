//! Whether an access token still speaks for its account: the account exists, is enabled,
//! and the token was issued in its current session epoch. Logout-all, a new password and
//! disabling raise the epoch, so every access token issued before is refused on its next
//! request, on every instance.
//!
//! Each process keeps what it read of an account (epoch, role, disabled) in memory, so a
//! request costs no database round trip; the first request of an account (or one after
//! [`TTL`]) reads its row. The process that changes an account forgets it after the
//! commit; on PostgreSQL a trigger notifies every instance (`shop_sessions`), which forget
//! it too, and a lost `LISTEN` connection forgets everything once it is back.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use entity::user;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QuerySelect};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{AuthUser, Claims, JwtKeys, Role};
use crate::error::{AppError, AppResult};

/// The channel the `users` trigger notifies on PostgreSQL.
const CHANNEL: &str = "shop_sessions";
/// How long an account's standing is kept without hearing of it: the bound on a stale
/// answer should a notification ever be lost.
const TTL: Duration = Duration::from_secs(300);
/// How many accounts a process keeps.
const CAPACITY: u64 = 200_000;

/// What a token is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Standing {
    epoch: i64,
    role: Role,
    disabled: bool,
}

/// What changed, for those that hold a caller for long (Socket.IO sockets, event
/// streams): one account, or possibly any (a lost `LISTEN` connection, a lagging receiver).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Account(Uuid),
    Any,
}

/// Verifies access tokens: signature and expiry ([`JwtKeys`]), then the account's standing.
pub struct Authenticator {
    jwt: Arc<JwtKeys>,
    db: DatabaseConnection,
    accounts: moka::sync::Cache<Uuid, Standing>,
    /// Grows with every [`forget`](Self::forget): a read that raced with one is not kept.
    forgotten: AtomicU64,
    changes: broadcast::Sender<Change>,
}

impl Authenticator {
    pub fn new(jwt: Arc<JwtKeys>, db: DatabaseConnection) -> Self {
        Self {
            jwt,
            db,
            accounts: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TTL)
                .build(),
            forgotten: AtomicU64::new(0),
            changes: broadcast::channel(256).0,
        }
    }

    /// Hears of every account this process forgets.
    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// `user` as its account stands now (its role may have changed); `None` when its
    /// session has ended or the account is disabled or gone. For callers held for long.
    pub async fn recheck(&self, user: &AuthUser) -> Option<AuthUser> {
        let claims = Claims {
            sub: user.id,
            email: user.email.clone(),
            role: user.role,
            iat: 0,
            exp: 0,
            ep: user.epoch,
        };
        match self.admit(claims).await {
            Ok(user) => Some(user),
            Err(AppError::Problem { status, .. }) if status == StatusCode::UNAUTHORIZED => None,
            // The database is unreachable: keep what stood, and look again at the next change.
            Err(_) => Some(user.clone()),
        }
    }

    /// The caller a bearer token speaks for; 401 when the token is bad or expired, was
    /// issued before the account's sessions were ended, or the account is disabled or gone.
    /// The role is the account's current one.
    pub async fn authenticate(&self, token: &str) -> AppResult<AuthUser> {
        let claims = self.jwt.verify(token)?;
        self.admit(claims).await
    }

    async fn admit(&self, claims: Claims) -> AppResult<AuthUser> {
        let Some(standing) = self.standing(claims.sub).await? else {
            return Err(AppError::unauthorized(
                "The account of this token no longer exists.",
            ));
        };
        if standing.disabled {
            return Err(AppError::unauthorized("This account is disabled."));
        }
        if claims.ep < standing.epoch {
            return Err(AppError::unauthorized(
                "This session was ended (signed out everywhere or the password changed); sign in again.",
            ));
        }
        Ok(AuthUser {
            id: claims.sub,
            email: claims.email,
            role: standing.role,
            epoch: claims.ep,
        })
    }

    async fn standing(&self, id: Uuid) -> AppResult<Option<Standing>> {
        if let Some(standing) = self.accounts.get(&id) {
            return Ok(Some(standing));
        }
        let before = self.forgotten.load(Ordering::Acquire);
        let row: Option<(i64, Role, Option<DateTime<Utc>>)> = user::Entity::find_by_id(id)
            .select_only()
            .column(user::Column::SessionEpoch)
            .column(user::Column::Role)
            .column(user::Column::DisabledAt)
            .into_tuple()
            .one(&self.db)
            .await?;
        let Some((epoch, role, disabled_at)) = row else {
            return Ok(None);
        };
        let standing = Standing {
            epoch,
            role,
            disabled: disabled_at.is_some(),
        };
        // Kept only if no change was heard of while it was read (it may predate it), nor
        // while it was being kept.
        if self.forgotten.load(Ordering::Acquire) == before {
            self.accounts.insert(id, standing);
            if self.forgotten.load(Ordering::Acquire) != before {
                self.accounts.invalidate(&id);
            }
        }
        Ok(Some(standing))
    }

    /// The account changed (after the commit): its next request reads it again.
    pub fn forget(&self, id: Uuid) {
        self.forgotten.fetch_add(1, Ordering::AcqRel);
        self.accounts.invalidate(&id);
        let _ = self.changes.send(Change::Account(id));
    }

    fn forget_all(&self) {
        self.forgotten.fetch_add(1, Ordering::AcqRel);
        self.accounts.invalidate_all();
        let _ = self.changes.send(Change::Any);
    }

    /// On PostgreSQL, forgets each account another instance (or an operator's SQL) changed,
    /// until `stop`. Nothing to do on SQLite: one process owns the file. When the `LISTEN`
    /// connection is lost, notifications may be missed until it is back: everything is
    /// forgotten once it listens again.
    pub async fn listen(self: Arc<Self>, stop: CancellationToken) {
        if self.db.get_database_backend() != DatabaseBackend::Postgres {
            return;
        }
        let pool = self.db.get_postgres_connection_pool();
        loop {
            let connected = async {
                let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(CHANNEL).await?;
                Ok::<_, sea_orm::sqlx::Error>(listener)
            };
            let mut listener = match connected.await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(error = %err, "sessions: no LISTEN connection; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            };
            // Whatever was read before this LISTEN began may already be stale.
            self.forget_all();
            loop {
                let received = tokio::select! {
                    () = stop.cancelled() => return,
                    received = listener.try_recv() => received,
                };
                match received {
                    Ok(Some(notification)) => match notification.payload().parse::<Uuid>() {
                        Ok(id) => self.forget(id),
                        Err(_) => self.forget_all(),
                    },
                    // The connection was lost (`None`) or failed: listen afresh.
                    Ok(None) => {
                        tracing::warn!("sessions: LISTEN connection lost; reconnecting");
                        break;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "sessions: LISTEN failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

/// Ends every session of `user` in the caller's transaction: the session epoch grows (so
/// every access token issued before is refused), every refresh token is revoked, and every
/// password reset link not yet used is spent.
/// Answers the account as it is now. Call [`Authenticator::forget`] after the commit.
pub async fn end_all<C: ConnectionTrait>(
    db: &C,
    user: Uuid,
    now: DateTime<Utc>,
) -> AppResult<user::Model> {
    use entity::refresh_token;
    use sea_orm::{
        ColumnTrait, QueryFilter,
        sea_query::{Expr, ExprTrait},
    };

    user::Entity::update_many()
        .col_expr(
            user::Column::SessionEpoch,
            Expr::col(user::Column::SessionEpoch).add(1),
        )
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(user))
        .exec(db)
        .await?;
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(Some(now)))
        .filter(refresh_token::Column::UserId.eq(user))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    entity::password_reset::Entity::update_many()
        .col_expr(
            entity::password_reset::Column::UsedAt,
            Expr::value(Some(now)),
        )
        .filter(entity::password_reset::Column::UserId.eq(user))
        .filter(entity::password_reset::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    user::Entity::find_by_id(user)
        .one(db)
        .await?
        .ok_or_else(|| AppError::unauthorized("The account of this token no longer exists."))
}
