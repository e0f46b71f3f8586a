//! HS256 access tokens: issue and verify.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Role;
use crate::error::AppError;

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub email: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    /// The account's session epoch when the token was issued; a token of an older epoch
    /// is refused. Tokens without it are of epoch 0.
    #[serde(default)]
    pub ep: i64,
}

/// The signing keys and token lifetime.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// How long an issued token stays valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs a token for `user` (in its current session epoch) valid from `now` for the
    /// configured lifetime.
    pub fn issue(
        &self,
        user: &entity::user::Model,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, AppError> {
        let iat = now.timestamp();
        let claims = Claims {
            sub: user.id,
            email: user.email.clone(),
            role: user.role,
            iat,
            exp: iat + self.ttl.as_secs() as i64,
            ep: user.session_epoch,
        };
        self.sign(&claims)
    }

    /// Signs the given claims as they are.
    pub fn sign(&self, claims: &Claims) -> Result<String, AppError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|err| AppError::Internal(err.into()))
    }

    /// Checks signature, algorithm and expiry; any failure is a 401.
    pub fn verify(&self, token: &str) -> Result<Claims, AppError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => {
                    AppError::unauthorized("The access token has expired; sign in again.")
                }
                _ => AppError::unauthorized("The access token is invalid."),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn keys() -> JwtKeys {
        JwtKeys::new(&[7u8; 32], Duration::from_secs(3600))
    }

    fn user(id: Uuid, role: Role) -> entity::user::Model {
        entity::user::Model {
            id,
            email: "a@b.co".into(),
            name: None,
            password_hash: String::new(),
            role,
            session_epoch: 3,
            disabled_at: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn detail(err: AppError) -> String {
        match err {
            AppError::Problem { status, detail, .. } => {
                assert_eq!(status, axum::http::StatusCode::UNAUTHORIZED);
                detail
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn issued_tokens_verify_with_their_claims() {
        let id = Uuid::now_v7();
        let now = Utc::now();
        let token = keys().issue(&user(id, Role::Admin), now).unwrap();
        let claims = keys().verify(&token).unwrap();
        assert_eq!(claims.sub, id);
        assert_eq!(claims.email, "a@b.co");
        assert_eq!(claims.role, Role::Admin);
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(claims.ep, 3);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let past = Utc::now() - chrono::Duration::hours(2);
        let token = keys()
            .issue(&user(Uuid::now_v7(), Role::Client), past)
            .unwrap();
        assert!(detail(keys().verify(&token).unwrap_err()).contains("expired"));
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let token = keys()
            .issue(&user(Uuid::now_v7(), Role::Client), Utc::now())
            .unwrap();
        // Promote the payload to ADMIN without re-signing.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(engine.decode(&parts[1]).unwrap()).unwrap();
        parts[1] = engine.encode(payload.replace("CLIENT", "ADMIN"));
        let forged = parts.join(".");
        assert!(detail(keys().verify(&forged).unwrap_err()).contains("invalid"));
        // Signed with another secret.
        let other = JwtKeys::new(&[8u8; 32], Duration::from_secs(3600));
        let foreign = other
            .issue(&user(Uuid::now_v7(), Role::Client), Utc::now())
            .unwrap();
        assert!(keys().verify(&foreign).is_err());
        assert!(keys().verify("not.a.token").is_err());
        assert!(keys().verify("").is_err());
    }

    #[test]
    fn tokens_with_another_algorithm_are_refused() {
        let claims = Claims {
            sub: Uuid::now_v7(),
            email: "a@b.co".into(),
            role: Role::Admin,
            iat: Utc::now().timestamp(),
            exp: Utc::now().timestamp() + 60,
            ep: 0,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap();
        assert!(keys().verify(&token).is_err());
    }
}
