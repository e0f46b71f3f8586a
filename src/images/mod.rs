//! Product images: uploads checked by their bytes, stored, and turned into WebP renditions
//! by the workers (`worker`); their place and text edited, and deleted with their files.

pub mod render;
pub mod routes;
pub mod worker;

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use entity::{ImageStatus, product, product_image};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    clock, db,
    domain::{WholeNumber, check_text},
    error::{AppError, AppResult, FieldErrors},
    events::{self, Actor, NewEvent},
    extract::present,
    state::AppState,
};

/// The most images one product may have.
pub const MAX_IMAGES: u64 = 30;
/// The longest `alt`.
const MAX_ALT: usize = 300;
/// The largest `position`.
const MAX_POSITION: i64 = 1_000_000;

/// Where an upload waits for the workers.
pub fn upload_key(image: Uuid) -> String {
    format!("uploads/{image}")
}

/// Where a rendition of an image lives.
pub fn rendition_key(product: Uuid, image: Uuid, name: &str) -> String {
    format!("images/{product}/{image}/{name}.webp")
}

/// Every file an image may have: its upload and its renditions.
pub fn keys(image: &product_image::Model) -> Vec<String> {
    let mut keys = vec![upload_key(image.id)];
    keys.extend(
        render::RENDITIONS
            .iter()
            .map(|(name, _)| rendition_key(image.product_id, image.id, name)),
    );
    keys
}

/// The addresses of an image's renditions (under `/media`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageUrls {
    /// At most 2048 px on its longer side.
    #[schema(example = "/media/images/0193…/0193…/original.webp")]
    pub original: String,
    /// At most 800 px.
    pub medium: String,
    /// At most 200 px.
    pub thumb: String,
}

/// A product image as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageResponse {
    pub id: Uuid,
    pub product_id: Uuid,
    pub status: ImageStatus,
    pub alt: Option<String>,
    /// Its place among the product's images (ascending).
    pub position: i32,
    /// Of the `original` rendition, once `READY`.
    pub width: Option<i32>,
    pub height: Option<i32>,
    /// Once `READY`.
    pub urls: Option<ImageUrls>,
    /// Why it `FAILED`.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<product_image::Model> for ImageResponse {
    fn from(image: product_image::Model) -> Self {
        let url =
            |name: &str| format!("/media/{}", rendition_key(image.product_id, image.id, name));
        let urls = (image.status == ImageStatus::Ready).then(|| ImageUrls {
            original: url("original"),
            medium: url("medium"),
            thumb: url("thumb"),
        });
        Self {
            id: image.id,
            product_id: image.product_id,
            status: image.status,
            alt: image.alt,
            position: image.position,
            width: image.width,
            height: image.height,
            urls,
            error: image.error,
            created_at: image.created_at,
        }
    }
}

/// The images of each of `products` by position (a product with none is left out); only
/// `READY` ones when `ready_only`.
pub async fn images_of<C: ConnectionTrait>(
    db: &C,
    products: &[Uuid],
    ready_only: bool,
) -> AppResult<HashMap<Uuid, Vec<ImageResponse>>> {
    if products.is_empty() {
        return Ok(HashMap::new());
    }
    let mut select = product_image::Entity::find()
        .filter(product_image::Column::ProductId.is_in(products.iter().copied()));
    if ready_only {
        select = select.filter(product_image::Column::Status.eq(ImageStatus::Ready));
    }
    let rows = select
        .order_by_asc(product_image::Column::Position)
        .order_by_asc(product_image::Column::Id)
        .all(db)
        .await?;
    let mut by_product: HashMap<Uuid, Vec<ImageResponse>> = HashMap::new();
    for row in rows {
        by_product
            .entry(row.product_id)
            .or_default()
            .push(row.into());
    }
    Ok(by_product)
}

/// The product's images changed, so its representation did: a new version, and its
/// `product.<change>` event (the product as admins see it), in the caller's transaction.
pub(crate) async fn product_changed<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    change: &str,
    actor: Actor,
    currency: &str,
    now: DateTime<Utc>,
) -> AppResult<()> {
    touch(db, id, now).await?;
    announce(db, id, change, actor, currency, now).await
}

/// A new version of the product `id` (deleted or not); answers how many rows it wrote.
/// The first write of a transaction that changes the product's images: on PostgreSQL it
/// holds the product's row, so such transactions take turns.
async fn touch<C: ConnectionTrait>(db: &C, id: Uuid, now: DateTime<Utc>) -> AppResult<u64> {
    Ok(product::Entity::update_many()
        .col_expr(
            product::Column::Version,
            Expr::col(product::Column::Version).add(1),
        )
        .col_expr(product::Column::UpdatedAt, Expr::value(now))
        .filter(product::Column::Id.eq(id))
        .exec(db)
        .await?
        .rows_affected)
}

/// Writes the product's `product.<change>` event as it now stands.
async fn announce<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    change: &str,
    actor: Actor,
    currency: &str,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let row = product::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("product"))?;
    let response = crate::products::service::respond(db, row, currency).await?;
    events::record(db, vec![NewEvent::product(change, &response, actor)], now).await
}

/// An `alt` text as sent: trimmed, empty is none; control characters and more than 300
/// characters are refused.
fn alt(raw: &str, errors: &mut FieldErrors) -> Option<String> {
    if let Err(msg) = check_text(raw, false) {
        errors.insert("alt".into(), vec![msg]);
        return None;
    }
    let alt = raw.trim();
    if alt.chars().count() > MAX_ALT {
        errors.insert(
            "alt".into(),
            vec![format!("must be at most {MAX_ALT} characters")],
        );
        return None;
    }
    (!alt.is_empty()).then(|| alt.to_owned())
}

/// A product that exists and is not deleted; 404 otherwise.
async fn live_product<C: ConnectionTrait>(db: &C, id: Uuid) -> AppResult<product::Model> {
    product::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|p| p.deleted_at.is_none())
        .ok_or_else(|| AppError::not_found("product"))
}

/// An upload, read and checked: its bytes and its `alt`.
pub struct Upload {
    pub bytes: Bytes,
    pub alt: Option<String>,
}

/// 415 `unsupported_image`, or 422 naming `file`, for an upload that is refused.
pub fn refused(refusal: render::Refusal) -> AppError {
    match refusal {
        render::Refusal::Unsupported => AppError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_image",
            "The file is not a JPEG, PNG, WebP or GIF image (its bytes say so, whatever its name).",
        ),
        render::Refusal::Unreadable(why) => AppError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_image",
            format!("The image cannot be used: {why}."),
        ),
        render::Refusal::TooManyPixels { width, height } => AppError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "image_too_large",
            format!(
                "The image is {width} x {height} pixels; at most {} million are accepted.",
                render::MAX_PIXELS / 1_000_000
            ),
        ),
    }
}

/// Stores an upload of product `id` and queues it for the workers: 202 `PROCESSING`.
/// 404 for a missing or deleted product, 409 `too_many_images` past [`MAX_IMAGES`].
pub async fn upload(
    state: &AppState,
    actor: Actor,
    id: Uuid,
    upload: Upload,
) -> AppResult<ImageResponse> {
    let inspected = render::inspect(&upload.bytes).map_err(refused)?;
    live_product(&state.db, id).await?;
    let image = Uuid::now_v7();
    let key = upload_key(image);
    state.media.put(&key, upload.bytes).await.map_err(|err| {
        tracing::error!(error = ?err, "an upload could not be stored");
        AppError::unavailable("The media store is unavailable; try again shortly.")
    })?;
    let stored = record_upload(state, actor, id, image, upload.alt).await;
    let row = match stored {
        Ok(row) => row,
        Err(err) => {
            state.media.delete_all(&[key]).await;
            return Err(err);
        }
    };
    tracing::info!(image_id = %image, product_id = %id, format = ?inspected.format, width = inspected.width, height = inspected.height, "image uploaded");
    if let Err(err) = state.image_queue.enqueue(image, row.created_at).await {
        tracing::warn!(error = %err, "could not queue an image; the sweeper will");
    }
    state.notifier.events_written();
    state.notifier.catalog_changed().await;
    Ok(row.into())
}

/// The row of a stored upload, last among the product's images.
async fn record_upload(
    state: &AppState,
    actor: Actor,
    id: Uuid,
    image: Uuid,
    alt: Option<String>,
) -> AppResult<product_image::Model> {
    let txn = db::begin_write(&state.db).await?;
    let now = clock::now();
    // The product's row first: concurrent uploads of one product take turns, so the count
    // and the position below see each other.
    live_product(&txn, id).await?;
    touch(&txn, id, now).await?;
    let count = product_image::Entity::find()
        .filter(product_image::Column::ProductId.eq(id))
        .count(&txn)
        .await?;
    if count >= MAX_IMAGES {
        return Err(AppError::conflict(
            "too_many_images",
            format!("A product has at most {MAX_IMAGES} images; delete one first."),
        ));
    }
    let last: Option<i32> = product_image::Entity::find()
        .select_only()
        .column_as(product_image::Column::Position.max(), "last")
        .filter(product_image::Column::ProductId.eq(id))
        .into_tuple::<Option<i32>>()
        .one(&txn)
        .await?
        .flatten();
    let row = product_image::Model {
        id: image,
        product_id: id,
        status: ImageStatus::Processing,
        alt,
        position: last.map_or(0, |p| p.saturating_add(1)),
        width: None,
        height: None,
        attempts: 0,
        next_attempt_at: Some(now),
        error: None,
        created_at: now,
        updated_at: now,
    };
    product_image::Entity::insert(product_image::ActiveModel::from(row.clone()))
        .exec_without_returning(&txn)
        .await?;
    announce(&txn, id, "updated", actor, &state.config.currency, now).await?;
    txn.commit().await?;
    Ok(row)
}

/// `PATCH /products/{id}/images/{imageId}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = ImageChanges)]
pub struct ImageChanges {
    /// Up to 300 characters, no control characters; `null` or empty clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 300, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub alt: Option<Option<String>>,
    /// 0 to 1,000,000; images are listed by position.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = i64, minimum = 0, maximum = 1_000_000)]
    pub position: Option<Option<WholeNumber>>,
}

/// The image `image` of product `id`; 404 otherwise.
async fn find<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    image: Uuid,
) -> AppResult<product_image::Model> {
    product_image::Entity::find_by_id(image)
        .filter(product_image::Column::ProductId.eq(id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("image"))
}

/// Changes an image's `alt` or `position`.
pub async fn update(
    state: &AppState,
    actor: Actor,
    id: Uuid,
    image: Uuid,
    body: ImageChanges,
) -> AppResult<ImageResponse> {
    let mut errors = FieldErrors::new();
    let new_alt = body
        .alt
        .map(|raw| raw.and_then(|raw| alt(&raw, &mut errors)));
    let position = match body.position {
        None => None,
        Some(Some(n)) if (0..=MAX_POSITION).contains(&n.0) => i32::try_from(n.0).ok(),
        Some(_) => {
            errors.insert(
                "position".into(),
                vec![format!("must be a whole number from 0 to {MAX_POSITION}")],
            );
            None
        }
    };
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    let txn = db::begin_write(&state.db).await?;
    let now = clock::now();
    find(&txn, id, image).await?;
    let mut update = product_image::Entity::update_many()
        .col_expr(product_image::Column::UpdatedAt, Expr::value(now))
        .filter(product_image::Column::Id.eq(image));
    if let Some(alt) = new_alt {
        update = update.col_expr(product_image::Column::Alt, Expr::value(alt));
    }
    if let Some(position) = position {
        update = update.col_expr(product_image::Column::Position, Expr::value(position));
    }
    update.exec(&txn).await?;
    product_changed(&txn, id, "updated", actor, &state.config.currency, now).await?;
    let row = find(&txn, id, image).await?;
    txn.commit().await?;
    state.notifier.events_written();
    state.notifier.catalog_changed().await;
    Ok(row.into())
}

/// Deletes an image and then its files (an image that the workers are still making is
/// cleaned up by them: they find its row gone).
pub async fn delete(state: &AppState, actor: Actor, id: Uuid, image: Uuid) -> AppResult<()> {
    let txn = db::begin_write(&state.db).await?;
    let now = clock::now();
    let row = find(&txn, id, image).await?;
    product_image::Entity::delete_by_id(image)
        .exec(&txn)
        .await?;
    product_changed(&txn, id, "updated", actor, &state.config.currency, now).await?;
    txn.commit().await?;
    state.notifier.events_written();
    state.media.delete_all(&keys(&row)).await;
    if let Err(err) = state.image_queue.ack(image).await {
        tracing::debug!(error = %err, "could not take a deleted image off the queue");
    }
    state.notifier.catalog_changed().await;
    tracing::info!(image_id = %image, product_id = %id, "image deleted with its files");
    Ok(())
}
