//! The signing key of access tokens: `JWT_SECRET`, or on the embedded default one kept in
//! a file next to the database (generated on first start), so tokens survive restarts.

use std::path::Path;

use anyhow::Context;

use secrecy::SecretString;

use crate::config::{Config, DatabaseConfig};

/// The configured secret, or the embedded default's kept (or newly generated) one.
pub fn jwt_secret(config: &Config) -> anyhow::Result<SecretString> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.clone());
    }
    let DatabaseConfig::Sqlite { path } = &config.database else {
        anyhow::bail!("JWT_SECRET is required with PostgreSQL");
    };
    let file = path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("jwt_secret");
    if let Ok(existing) = std::fs::read_to_string(&file)
        && existing.trim().len() >= 32
    {
        return Ok(SecretString::from(existing.trim()));
    }
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&file, &secret).with_context(|| {
        format!(
            "cannot write the generated JWT secret to {}",
            file.display()
        )
    })?;
    tracing::warn!(
        file = %file.display(),
        "JWT_SECRET is not set: generated one and saved it next to the database; set JWT_SECRET in production"
    );
    Ok(SecretString::from(secret))
}

/// Writes a file only its owner may read.
fn write_private(file: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(file)?.write_all(contents.as_bytes())
}
