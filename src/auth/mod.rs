//! Accounts and authentication: roles, JWTs, password hashing, the auth extractors and the
//! `/auth` routes.

pub mod dto;
mod jwt;
mod password;
pub mod routes;
pub mod service;

pub use jwt::{Claims, JwtKeys};
pub use password::PasswordHasher;

use axum::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    http::{header, request::Parts},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{app::AppState, error::AppError};

/// What an account may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    Client,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "CLIENT",
            Role::Admin => "ADMIN",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "CLIENT" => Some(Role::Client),
            "ADMIN" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The authenticated caller, from a valid `Authorization: Bearer` token.
///
/// This extractor is the only place that reads the `Authorization` header of HTTP requests.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
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

impl From<Claims> for AuthUser {
    fn from(claims: Claims) -> Self {
        Self {
            id: claims.sub,
            email: claims.email,
            role: claims.role,
        }
    }
}

fn bearer_token(parts: &Parts) -> Result<Option<&str>, AppError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AppError::unauthorized("The Authorization header is not valid text."))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(AppError::unauthorized(
            "The Authorization header must be `Bearer <access_token>`.",
        )),
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match bearer_token(parts)? {
            Some(token) => Ok(state.jwt.verify(token)?.into()),
            None => Err(AppError::unauthorized(
                "Sign in and send `Authorization: Bearer <access_token>`.",
            )),
        }
    }
}

/// `Option<AuthUser>`: anonymous callers are welcome, but a token that is sent must be valid.
impl OptionalFromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, AppError> {
        match bearer_token(parts)? {
            Some(token) => Ok(Some(state.jwt.verify(token)?.into())),
            None => Ok(None),
        }
    }
}
