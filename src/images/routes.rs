//! Product image routes (ADMIN) and `GET /media/{path}`, which serves stored renditions.

use axum::{
    extract::{
        DefaultBodyLimit, Multipart, State,
        multipart::{MultipartError, MultipartRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::BytesMut;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{ImageChanges, ImageResponse, Upload};
use crate::{
    auth::AuthUser,
    error::{AppError, AppResult, FieldErrors, Problem},
    events::Actor,
    extract::{Json, Path},
    state::AppState,
};

/// The image routes; uploads may be `image_max_bytes` (and the form around them).
pub fn router(image_max_bytes: usize) -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(upload_image))
        .layer(DefaultBodyLimit::max(image_max_bytes + FORM_OVERHEAD));
    OpenApiRouter::new()
        .routes(routes!(update_image, delete_image))
        .route("/media/{*path}", axum::routing::get(get_media))
        .merge(uploads)
}

/// Room for the form's boundaries, headers and `alt` around the file.
const FORM_OVERHEAD: usize = 64 * 1024;
/// The longest `alt` field read (the rule on its length is checked after).
const MAX_ALT_BYTES: usize = 4096;

/// `POST /products/{id}/images`: the form (no other fields).
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes the form the handler reads field by field
pub struct ImageUpload {
    /// JPEG, PNG, WebP or GIF (checked by its bytes), up to `IMAGE_MAX_BYTES` and 40 MP.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Up to 300 characters, no control characters.
    #[schema(max_length = 300, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    alt: Option<String>,
}

fn multipart_error(err: MultipartError) -> AppError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        AppError::bad_request(
            "invalid_body",
            format!("The form cannot be read: {}", err.body_text()),
        )
    }
}

fn too_large() -> AppError {
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "The image is larger than IMAGE_MAX_BYTES.",
    )
}

/// Reads the form, holding at most `max` bytes of the file (413 past it, while it streams).
async fn read_form(mut form: Multipart, max: usize) -> AppResult<Upload> {
    let mut file: Option<BytesMut> = None;
    let mut alt: Option<String> = None;
    let mut errors = FieldErrors::new();
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("file") if file.is_none() => {
                let mut bytes = BytesMut::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if bytes.len() + chunk.len() > max {
                        return Err(too_large());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = Some(bytes);
            }
            Some("file") => {
                return Err(AppError::invalid_field("file", "send one file per upload"));
            }
            Some("alt") => {
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if bytes.len() + chunk.len() > MAX_ALT_BYTES {
                        return Err(AppError::invalid_field(
                            "alt",
                            "must be at most 300 characters",
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                let text = String::from_utf8(bytes)
                    .map_err(|_| AppError::invalid_field("alt", "must be UTF-8 text"))?;
                alt = Some(text);
            }
            // Anything else is a mistake worth naming (its content is not read).
            other => {
                errors.insert(
                    other.unwrap_or_default().to_owned(),
                    vec!["is not a field of this form (send `file` and `alt`)".into()],
                );
            }
        }
    }
    let alt = alt.and_then(|raw| super::alt(&raw, &mut errors));
    let Some(file) = file else {
        errors.insert("file".into(), vec!["is required".into()]);
        return Err(AppError::validation(errors));
    };
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    Ok(Upload {
        bytes: file.freeze(),
        alt,
    })
}

/// Upload an image of a product (ADMIN). It is checked at once (its bytes, its header's
/// dimensions, a whole file) and answered `PROCESSING`; the workers make its renditions,
/// then it is `READY` (a `product.image_ready` event) or `FAILED`.
#[utoipa::path(post, path = "/products/{id}/images", tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body(content = ImageUpload, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Stored; the workers make its renditions", body = ImageResponse),
        (status = 400, description = "A form that cannot be read (`invalid_body`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product, or a deleted one", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`too_many_images`: the product has 30 already", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The file is larger than `IMAGE_MAX_BYTES` (`payload_too_large`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JPEG, PNG, WebP or GIF by its bytes (`unsupported_image`), or not a multipart form (`unsupported_media_type`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`file` missing, a bad `alt`, an image that cannot be read or is cut short (`invalid_image`), or more than 40 MP (`image_too_large`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The media store is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
async fn upload_image(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    form: Result<Multipart, MultipartRejection>,
) -> AppResult<(StatusCode, Json<ImageResponse>)> {
    user.require_admin()?;
    let form = form.map_err(|_| {
        AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the image as `multipart/form-data` with a `file` field.",
        )
    })?;
    let upload = read_form(form, state.config.media.image_max_bytes).await?;
    let image = super::upload(&state, Actor::caller(&user), id, upload).await?;
    Ok((StatusCode::ACCEPTED, Json(image)))
}

/// Change an image's `alt` or `position` (ADMIN).
#[utoipa::path(patch, path = "/products/{id}/images/{imageId}", tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("imageId" = Uuid, Path)),
    request_body = ImageChanges,
    responses(
        (status = 200, body = ImageResponse),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image of this product", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_image(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, image)): Path<(Uuid, Uuid)>,
    Json(body): Json<ImageChanges>,
) -> AppResult<Json<ImageResponse>> {
    user.require_admin()?;
    Ok(Json(
        super::update(&state, Actor::caller(&user), id, image, body).await?,
    ))
}

/// Delete an image and its files (ADMIN).
#[utoipa::path(delete, path = "/products/{id}/images/{imageId}", tag = "products",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("imageId" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted, with its files"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image of this product", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_image(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, image)): Path<(Uuid, Uuid)>,
) -> AppResult<StatusCode> {
    user.require_admin()?;
    super::delete(&state, Actor::caller(&user), id, image).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether `path` names a rendition (nothing else under the store is served).
fn servable(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    matches!(
        parts.as_slice(),
        ["images", product, image, file]
            if Uuid::parse_str(product).is_ok()
                && Uuid::parse_str(image).is_ok()
                && matches!(*file, "original.webp" | "medium.webp" | "thumb.webp")
    )
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, `*` for any).
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// A stored rendition, as the URLs in `images` name it. Files never change once stored, so
/// they are cached for a year; `If-None-Match` answers 304.
#[utoipa::path(get, path = "/media/{path}", tag = "products",
    params(("path" = String, Path, description = "`images/{productId}/{imageId}/{original|medium|thumb}.webp`",
        pattern = r"^images/[0-9a-fA-F-]{36}/[0-9a-fA-F-]{36}/(original|medium|thumb)\.webp$")),
    responses(
        (status = 200, description = "The file", content_type = "image/webp", body = Vec<u8>,
            headers(("ETag" = String), ("Cache-Control" = String, description = "`public, max-age=31536000, immutable`"))),
        (status = 304, description = "`If-None-Match` names the file's `ETag`"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_media(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    if !servable(&path) {
        return Err(AppError::not_found("file"));
    }
    let stored = state
        .media
        .get(&path)
        .await
        .map_err(|err| {
            tracing::error!(error = ?err, "the media store could not be read");
            AppError::unavailable("The media store is unavailable; try again shortly.")
        })?
        .ok_or_else(|| AppError::not_found("file"))?;
    let etag = format!("\"{}\"", stored.etag);
    let mut out = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if none_match(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/webp"));
    Ok((out, stored.bytes).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_renditions_are_served() {
        let id = Uuid::now_v7();
        assert!(servable(&format!("images/{id}/{id}/thumb.webp")));
        for path in [
            format!("uploads/{id}"),
            format!("images/{id}/{id}/../../uploads/{id}"),
            format!("images/{id}/{id}/secret.txt"),
            format!("images/{id}/thumb.webp"),
            "../Cargo.toml".to_owned(),
            String::new(),
        ] {
            assert!(!servable(&path), "{path}");
        }
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(none_match(&headers, "\"b\""));
        assert!(none_match(&headers, "\"a\""));
        assert!(!none_match(&headers, "\"c\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match(&headers, "\"c\""));
    }
}
