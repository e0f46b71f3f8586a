//! Accounts and authentication: JWTs, password hashing, the signing-key file, the auth
//! extractors and the `/auth` routes.

pub mod dto;
mod jwt;
mod password;
pub mod reset;
pub mod routes;
mod secret;
pub mod service;
pub mod sessions;
pub mod standing;

use std::sync::Arc;

use axum::{
    extract::{FromRef, FromRequestParts, OptionalFromRequestParts},
    http::{header, request::Parts},
};
pub use entity::Role;
pub use jwt::{Claims, JwtKeys};
pub use password::PasswordHasher;
pub use secret::jwt_secret;
pub use standing::Authenticator;
use uuid::Uuid;

use crate::error::AppError;

/// The authenticated caller, from a valid `Authorization: Bearer` token.
///
/// This extractor is the only place that reads the `Authorization` header of HTTP requests.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub id: Uuid,
    pub email: String,
    /// The account's current role (not necessarily the token's).
    pub role: Role,
    /// The session epoch of the token.
    pub epoch: i64,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), AppError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AppError::forbidden("This action needs the ADMIN role."))
        }
    }
}

/// The token of an `Authorization` value of the form `Bearer <token>` (the scheme in any
/// case); `None` for anything else. The one parser of bearer credentials, for HTTP and
/// Socket.IO alike.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The bearer token of a request; `Ok(None)` when there is no `Authorization` header, 401
/// when there is one of another form.
fn request_token(parts: &Parts) -> Result<Option<&str>, AppError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(bearer)
        .map(Some)
        .ok_or_else(|| {
            AppError::unauthorized("The Authorization header must be `Bearer <access_token>`.")
        })
}

/// Works with any state that can hand out the [`Authenticator`].
impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    Arc<Authenticator>: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match request_token(parts)? {
            Some(token) => {
                Arc::<Authenticator>::from_ref(state)
                    .authenticate(token)
                    .await
            }
            None => Err(AppError::unauthorized(
                "Sign in and send `Authorization: Bearer <access_token>`.",
            )),
        }
    }
}

/// `Option<AuthUser>`: anonymous callers are welcome, but a token that is sent must be valid.
impl<S> OptionalFromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    Arc<Authenticator>: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, AppError> {
        match request_token(parts)? {
            Some(token) => Ok(Some(
                Arc::<Authenticator>::from_ref(state)
                    .authenticate(token)
                    .await?,
            )),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_values_parse_one_way() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("BEARER abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
