//! Request and response bodies of the `/auth` routes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Role;

/// `POST /auth/register`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// Trimmed and compared case-insensitively.
    #[schema(value_type = String, required = true, format = Email, max_length = 320, example = "ann@example.com")]
    pub email: Option<String>,
    /// Up to 200 characters, no control characters.
    #[schema(value_type = Option<String>, max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", example = "Ann")]
    pub name: Option<String>,
    /// 8 to 128 characters with an upper-case letter, a lower-case letter, a digit and a
    /// symbol.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128, pattern = r"^(?=.*[A-Z])(?=.*[a-z])(?=.*[0-9])(?=.*[^A-Za-z0-9\s])[^\u0000-\u001F\u007F-\u009F]*$", example = "Str0ng!pass")]
    pub password: Option<String>,
}

/// `POST /auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(value_type = String, required = true, example = "ann@example.com")]
    pub email: Option<String>,
    #[schema(value_type = String, required = true, example = "Str0ng!pass")]
    pub password: Option<String>,
}

/// `POST /auth/change-password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangePasswordRequest {
    #[schema(value_type = String, required = true, example = "Str0ng!pass")]
    pub current_password: Option<String>,
    /// The password policy of registration.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128, pattern = r"^(?=.*[A-Z])(?=.*[a-z])(?=.*[0-9])(?=.*[^A-Za-z0-9\s])[^\u0000-\u001F\u007F-\u009F]*$", example = "N3w!passw0rd")]
    pub new_password: Option<String>,
}

/// `POST /auth/password-reset`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordResetRequest {
    /// The account's email (trimmed, any case).
    #[schema(value_type = String, required = true, format = Email, max_length = 320, example = "ann@example.com")]
    pub email: Option<String>,
}

/// `POST /auth/password-reset/confirm`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordResetConfirm {
    /// The token of the emailed link.
    #[schema(value_type = String, required = true, max_length = 200, example = "pr_4b9c...")]
    pub token: Option<String>,
    /// The password policy of registration.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128, pattern = r"^(?=.*[A-Z])(?=.*[a-z])(?=.*[0-9])(?=.*[^A-Za-z0-9\s])[^\u0000-\u001F\u007F-\u009F]*$", example = "N3w!passw0rd")]
    pub new_password: Option<String>,
}

/// An account as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    pub id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    /// A disabled account cannot sign in, and its tokens are refused.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A signed-in session.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthResponse {
    pub access_token: String,
    /// Always `Bearer`.
    #[serde(rename = "tokenType")]
    pub token_type: &'static str,
    /// Seconds until `access_token` expires.
    #[serde(rename = "expiresIn")]
    pub expires_in: u64,
    /// Exchange it at `POST /auth/refresh` for new tokens (it is spent then); shown only
    /// here.
    #[serde(rename = "refreshToken")]
    #[schema(example = "rt_4b9c...")]
    pub refresh_token: String,
    /// Seconds until `refreshToken` expires.
    #[serde(rename = "refreshExpiresIn")]
    pub refresh_expires_in: u64,
    pub user: UserResponse,
}

/// `POST /auth/refresh` and `POST /auth/logout`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    #[serde(rename = "refreshToken")]
    #[schema(value_type = String, required = true, max_length = 200, example = "rt_4b9c...")]
    pub refresh_token: Option<String>,
}

impl From<entity::user::Model> for UserResponse {
    fn from(user: entity::user::Model) -> Self {
        Self {
            id: user.id,
            email: user.email,
            name: user.name,
            role: user.role,
            disabled: user.disabled_at.is_some(),
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}
