//! Where media files live: a local directory (`MEDIA_DIR`, the default) or an
//! S3-compatible bucket (`S3_BUCKET`), both behind `object_store`. Keys are relative paths
//! such as `images/{product}/{image}/thumb.webp`.

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, aws::AmazonS3Builder, local::LocalFileSystem,
    path::Path,
};
use secrecy::ExposeSecret;

use crate::config::MediaConfig;

/// A stored file's bytes and what identifies that version of it.
pub struct Stored {
    pub bytes: Bytes,
    /// A strong validator of the content: the store's entity tag, or the size and time.
    pub etag: String,
}

/// The media store of a process.
#[derive(Clone)]
pub struct Media {
    store: Arc<dyn ObjectStore>,
    /// Where it is, for logs and errors.
    place: String,
}

impl Media {
    pub fn new(config: &MediaConfig) -> anyhow::Result<Self> {
        if let Some(s3) = &config.s3 {
            crate::webhooks::sender::install_crypto();
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(&s3.bucket)
                .with_region(&s3.region);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(key) = &s3.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(secret.expose_secret());
            }
            let store = builder
                .build()
                .context("cannot set up the S3 media store (S3_*)")?;
            return Ok(Self {
                store: Arc::new(store),
                place: format!("s3://{}", s3.bucket),
            });
        }
        std::fs::create_dir_all(&config.dir)
            .with_context(|| format!("cannot create MEDIA_DIR {}", config.dir.display()))?;
        let store = LocalFileSystem::new_with_prefix(&config.dir)
            .with_context(|| format!("cannot use MEDIA_DIR {}", config.dir.display()))?;
        Ok(Self {
            store: Arc::new(store),
            place: config.dir.display().to_string(),
        })
    }

    /// Where the files are.
    pub fn place(&self) -> &str {
        &self.place
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> anyhow::Result<()> {
        self.store
            .put(&Path::from(key), PutPayload::from_bytes(bytes))
            .await
            .with_context(|| format!("cannot store {key} in {}", self.place))?;
        Ok(())
    }

    /// The file at `key`; `None` when there is none.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Stored>> {
        let found = match self.store.get(&Path::from(key)).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("cannot read {key}")),
        };
        let meta = found.meta.clone();
        let bytes = found
            .bytes()
            .await
            .with_context(|| format!("cannot read {key}"))?;
        let etag = match meta.e_tag {
            Some(tag) => tag.trim_matches('"').to_owned(),
            None => format!(
                "{:x}-{:x}",
                meta.size,
                meta.last_modified.timestamp_micros()
            ),
        };
        Ok(Some(Stored { bytes, etag }))
    }

    /// Deletes `key`; a file already gone is fine.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err).with_context(|| format!("cannot delete {key}")),
        }
    }

    /// Deletes every key, logging (not failing on) the ones that could not be.
    pub async fn delete_all(&self, keys: &[String]) {
        for key in keys {
            if let Err(err) = self.delete(key).await {
                tracing::warn!(error = ?err, key, "a media file could not be deleted");
            }
        }
    }
}
