//! bcrypt hashing, run off the async executor. Verifying against an unknown account costs
//! the same as against a real one, so login timing does not reveal which emails exist.
//!
//! bcrypt reads at most 72 bytes; a longer password is first condensed to the hex SHA-256
//! of it (64 bytes), so every character of it counts. Shorter ones are hashed as they are.

use anyhow::Context;

use crate::{domain::Password, error::AppError};

/// Hashes and verifies passwords at the configured bcrypt cost.
pub struct PasswordHasher {
    cost: u32,
    /// A hash of a random password, verified against when the email is unknown.
    dummy_hash: String,
}

impl PasswordHasher {
    /// Builds the hasher; computes one hash, so call it off the executor or at start-up.
    pub fn new(cost: u32) -> anyhow::Result<Self> {
        let mut random = [0u8; 16];
        rand::fill(&mut random);
        let dummy_hash = bcrypt::hash(random, cost).context("bcrypt cost out of range")?;
        Ok(Self { cost, dummy_hash })
    }

    pub async fn hash(&self, password: &Password) -> Result<String, AppError> {
        let password = bcrypt_input(password.expose());
        let cost = self.cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .context("hashing task failed")?
            .context("hashing failed")
            .map_err(AppError::Internal)
    }

    /// Verifies `password` against `hash`, or against a dummy hash when `hash` is `None`
    /// (and then answers `false`), taking the same time either way.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AppError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy_hash).to_owned();
        let password = bcrypt_input(password);
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .context("verification task failed")?
            .unwrap_or(false);
        Ok(known && matches)
    }
}

/// What bcrypt is given for `password`: itself up to 72 bytes, else its hex SHA-256.
fn bcrypt_input(password: &str) -> String {
    use sha2::{Digest, Sha256};
    if password.len() <= 72 {
        password.to_owned()
    } else {
        format!("{:x}", Sha256::digest(password.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_only_their_password() {
        let hasher = PasswordHasher::new(4).unwrap();
        let password = Password::parse("Str0ng!pass").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$2b$04$"));
        assert_ne!(hash, password.expose());
        assert!(hasher.verify("Str0ng!pass", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("Str0ng!pasS", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("Str0ng!pass", None).await.unwrap());
        assert!(
            !hasher
                .verify("anything", Some("not a bcrypt hash"))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn every_character_of_a_long_password_counts() {
        let hasher = PasswordHasher::new(4).unwrap();
        let long = format!("Aa1!{}", "x".repeat(100));
        let hash = hasher.hash(&Password::parse(&long).unwrap()).await.unwrap();
        assert!(hasher.verify(&long, Some(&hash)).await.unwrap());
        // Differs only past bcrypt's 72 bytes.
        let other = format!("Aa1!{}y", "x".repeat(99));
        assert!(!hasher.verify(&other, Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn salts_every_hash() {
        let hasher = PasswordHasher::new(4).unwrap();
        let password = Password::parse("Str0ng!pass").unwrap();
        assert_ne!(
            hasher.hash(&password).await.unwrap(),
            hasher.hash(&password).await.unwrap()
        );
    }
}
