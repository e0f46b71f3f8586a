//! Product images: uploads checked by their bytes, WebP renditions made by the workers,
//! served from `/media` with validators, and deleted with their files.

use std::{io::Cursor, path::Path, time::Duration};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use reqwest::{
    Method,
    multipart::{Form, Part},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Answer, TestApp};

both_backends!(
    uploads_become_webp_renditions_served_with_validators,
    bad_uploads_are_refused_and_nothing_is_stored,
    editing_and_deleting_an_image_removes_its_files,
    an_upload_that_cannot_be_decoded_fails_and_leaves_no_file,
    images_live_in_an_s3_bucket_when_one_is_set,
    an_image_whose_attempts_keep_dying_fails,
);

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn picture(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    }))
}

fn png(width: u32, height: u32) -> Vec<u8> {
    encode(picture(width, height), ImageFormat::Png)
}

/// A JPEG whose EXIF says "rotate 90° clockwise to show" (orientation 6).
fn rotated_jpeg(width: u32, height: u32) -> Vec<u8> {
    let jpeg = encode(picture(width, height), ImageFormat::Jpeg);
    let tiff: [u8; 26] = [
        b'M', b'M', 0, 0x2A, 0, 0, 0, 8, // big-endian TIFF, IFD0 at 8
        0, 1, // one entry
        0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, // Orientation (SHORT) = 6
        0, 0, 0, 0, // no next IFD
    ];
    let mut app1 = vec![0xFF, 0xE1, 0, (2 + 6 + tiff.len()) as u8];
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// The CRC-32 of PNG chunks.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A few hundred bytes whose header claims 20,000 x 20,000 pixels.
fn bomb() -> Vec<u8> {
    let mut bytes = png(1, 1);
    bytes[16..20].copy_from_slice(&20_000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// Sends a form with `file` (named `name`, declared `mime`) and optional `alt`.
async fn upload(
    app: &TestApp,
    token: &str,
    product: &str,
    bytes: Vec<u8>,
    name: &str,
    mime: &str,
    alt: Option<&str>,
) -> Answer {
    let mut form = Form::new().part(
        "file",
        Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str(mime)
            .unwrap(),
    );
    if let Some(alt) = alt {
        form = form.text("alt", alt.to_owned());
    }
    let response = app
        .client
        .post(format!("{}/products/{product}/images", app.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    answer(response).await
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// The image `id` of a product as admins see it, once it is no longer `PROCESSING`.
async fn settled(app: &TestApp, admin: &str, product: &str, id: &str) -> Value {
    for _ in 0..300 {
        let body = app
            .get(&format!("/products/{product}"), Some(admin))
            .await
            .expect(200)
            .clone();
        let image = body["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .expect("the image is listed for admins");
        if image["status"] != "PROCESSING" {
            return image;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("image {id} still PROCESSING");
}

/// Every file under `dir`, as paths relative to it.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The events of `kind` about `product`, once there are `want` of them (or after 10 s): the
/// log lists an event only once every older transaction of the PostgreSQL cluster has
/// ended, and other tests hold some open for a while.
async fn product_events(
    app: &TestApp,
    admin: &str,
    kind: &str,
    product: &str,
    want: usize,
) -> Vec<Value> {
    let mut found = Vec::new();
    for _ in 0..200 {
        let events = app
            .get(&format!("/events?type={kind}&limit=100"), Some(admin))
            .await;
        found = events.expect(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"]["id"] == product)
            .cloned()
            .collect();
        if found.len() >= want {
            // Anything more would have been written with them.
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    found
}

/// An instance that processes images (the one under test runs no workers).
async fn with_workers(app: &TestApp, extra: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![("WORKERS", "1")];
    settings.extend_from_slice(extra);
    app.sibling(&settings).await
}

async fn get_raw(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client.get(format!("{}{path}", app.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn uploads_become_webp_renditions_served_with_validators(app: TestApp) {
    let app_with_workers = with_workers(&app, &[]).await;
    let app = &app_with_workers;
    let admin = app.admin().await;
    let product = app.product(&admin, "Pictured", "5.00", 3).await;
    let before = app.get(&format!("/products/{product}"), None).await;
    let first_etag = before.headers["etag"].clone();

    let uploaded = upload(
        app,
        &admin,
        &product,
        png(900, 600),
        "a.png",
        "image/png",
        Some(" A red cup "),
    )
    .await;
    let image = uploaded.expect(202).clone();
    assert_eq!(image["status"], "PROCESSING");
    assert_eq!(image["alt"], "A red cup");
    assert_eq!(image["urls"], Value::Null);
    let id = image["id"].as_str().unwrap().to_owned();

    let ready = settled(app, &admin, &product, &id).await;
    assert_eq!(ready["status"], "READY", "{ready}");
    assert_eq!(
        (ready["width"].as_i64(), ready["height"].as_i64()),
        (Some(900), Some(600))
    );
    // The public sees it now, with its addresses.
    let public = app.get(&format!("/products/{product}"), None).await;
    assert_ne!(
        public.headers["etag"], first_etag,
        "a new image is a new version"
    );
    let listed = &public.body["images"][0];
    assert_eq!(listed["id"], id.as_str());
    let urls = listed["urls"].clone();
    let page = app.get("/products?q=Pictured&take=100", None).await;
    assert!(
        page.expect(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["images"][0]["id"] == id.as_str())
    );

    for (name, limit) in [("original", 2048), ("medium", 800), ("thumb", 200)] {
        let url = urls[name].as_str().unwrap();
        let served = get_raw(app, url, &[]).await;
        assert_eq!(served.status(), 200, "{url}");
        assert_eq!(served.headers()["content-type"], "image/webp");
        assert_eq!(
            served.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let etag = served.headers()["etag"].to_str().unwrap().to_owned();
        let bytes = served.bytes().await.unwrap();
        let decoded = image::load_from_memory_with_format(&bytes, ImageFormat::WebP).unwrap();
        assert!(
            decoded.width() <= limit && decoded.height() <= limit,
            "{name}"
        );
        let (w, h) = (i64::from(decoded.width()), i64::from(decoded.height()));
        assert!((w * 2 - h * 3).abs() <= 3, "{name} keeps 3:2: {w} x {h}");
        let again = get_raw(app, url, &[("If-None-Match", &etag)]).await;
        assert_eq!(again.status(), 304);
        assert_eq!(again.headers()["etag"], etag.as_str());
        assert!(again.bytes().await.unwrap().is_empty());
    }
    // The upload itself is gone; only renditions are served.
    app.get(&format!("/media/uploads/{id}"), None)
        .await
        .expect_problem(404, "not_found");

    // EXIF orientation is applied, then dropped with the rest of the metadata.
    let turned = upload(
        app,
        &admin,
        &product,
        rotated_jpeg(300, 200),
        "r.jpg",
        "image/jpeg",
        None,
    )
    .await;
    let turned_id = turned.expect(202)["id"].as_str().unwrap().to_owned();
    let turned = settled(app, &admin, &product, &turned_id).await;
    assert_eq!(
        (turned["width"].as_i64(), turned["height"].as_i64()),
        (Some(200), Some(300))
    );
    assert_eq!(turned["position"], 1);
    let url = turned["urls"]["original"].as_str().unwrap().to_owned();
    let bytes = get_raw(app, &url, &[]).await.bytes().await.unwrap();
    assert!(!bytes.windows(4).any(|w| w == b"EXIF" || w == b"Exif"));

    // Listeners heard of each.
    let ready_events = product_events(app, &admin, "product.image_ready", &product, 2).await;
    assert_eq!(ready_events.len(), 2, "{ready_events:#?}");
    drop(app_with_workers);
}

async fn bad_uploads_are_refused_and_nothing_is_stored(app: TestApp) {
    let small = with_workers(&app, &[("IMAGE_MAX_BYTES", "4096")]).await;
    let admin = app.admin().await;
    let product = app.product(&admin, "Unpictured", "5.00", 3).await;
    let media = Path::new(&app.env["MEDIA_DIR"]).to_owned();

    let text = upload(
        &app,
        &admin,
        &product,
        b"not a picture at all".to_vec(),
        "cat.jpg",
        "image/jpeg",
        None,
    )
    .await;
    text.expect_problem(415, "unsupported_image");
    let mut cut = png(64, 64);
    cut.truncate(cut.len() / 2);
    let truncated = upload(&app, &admin, &product, cut, "cut.png", "image/png", None).await;
    truncated.expect_problem(422, "invalid_image");
    let huge = bomb();
    assert!(huge.len() < 4096, "a few hundred bytes: {}", huge.len());
    let bomb = upload(&app, &admin, &product, huge, "big.png", "image/png", None).await;
    let detail = bomb.expect_problem(422, "image_too_large")["detail"].clone();
    assert!(
        detail.as_str().unwrap().contains("20000 x 20000"),
        "{detail}"
    );
    // Over IMAGE_MAX_BYTES (4 KiB on this instance), refused while it streams.
    let over = upload(
        &small,
        &admin,
        &product,
        vec![0x89; 64 * 1024],
        "x.png",
        "image/png",
        None,
    )
    .await;
    over.expect_problem(413, "payload_too_large");
    // A form without a file, an alt that breaks its rule, JSON instead of a form.
    let response = app
        .client
        .post(format!("{}/products/{product}/images", app.base))
        .bearer_auth(&admin)
        .multipart(Form::new().text("alt", "no file"))
        .send()
        .await
        .unwrap();
    let missing = answer(response).await;
    assert_eq!(
        missing.expect_problem(422, "validation_failed")["errors"]["file"][0],
        "is required"
    );
    let response = app
        .client
        .post(format!("{}/products/{product}/images", app.base))
        .bearer_auth(&admin)
        .multipart(
            Form::new()
                .part("file", Part::bytes(png(8, 8)).file_name("a.png"))
                .text("caption", "not a field"),
        )
        .send()
        .await
        .unwrap();
    let unknown = answer(response).await;
    assert!(unknown.expect_problem(422, "validation_failed")["errors"]["caption"].is_array());
    let bad_alt = upload(
        &app,
        &admin,
        &product,
        png(8, 8),
        "a.png",
        "image/png",
        Some("a\u{7}b"),
    )
    .await;
    assert!(bad_alt.expect_problem(422, "validation_failed")["errors"]["alt"].is_array());
    let json_body = app
        .post(
            &format!("/products/{product}/images"),
            Some(&admin),
            json!({"file": "x"}),
        )
        .await;
    json_body.expect_problem(415, "unsupported_media_type");
    // Who and what.
    let (client, _) = app.client_user().await;
    upload(
        &app,
        &client,
        &product,
        png(8, 8),
        "a.png",
        "image/png",
        None,
    )
    .await
    .expect_problem(403, "forbidden");
    upload(
        &app,
        &admin,
        &Uuid::new_v4().to_string(),
        png(8, 8),
        "a.png",
        "image/png",
        None,
    )
    .await
    .expect_problem(404, "not_found");

    let admin_view = app.get(&format!("/products/{product}"), Some(&admin)).await;
    assert_eq!(admin_view.expect(200)["images"], json!([]));
    assert_eq!(files(&media), Vec::<String>::new(), "nothing was stored");
}

async fn editing_and_deleting_an_image_removes_its_files(app: TestApp) {
    let worker = with_workers(&app, &[]).await;
    let admin = app.admin().await;
    let product = app.product(&admin, "Edited", "5.00", 3).await;
    let media = Path::new(&app.env["MEDIA_DIR"]).to_owned();
    let first = upload(
        &worker,
        &admin,
        &product,
        png(40, 40),
        "a.png",
        "image/png",
        None,
    )
    .await;
    let first = first.expect(202)["id"].as_str().unwrap().to_owned();
    let second = upload(
        &worker,
        &admin,
        &product,
        png(30, 20),
        "b.gif",
        "image/png",
        Some("second"),
    )
    .await;
    let second = second.expect(202)["id"].as_str().unwrap().to_owned();
    for id in [&first, &second] {
        assert_eq!(settled(&app, &admin, &product, id).await["status"], "READY");
    }
    let stored = files(&media);
    assert_eq!(stored.len(), 6, "three renditions each: {stored:?}");
    assert!(
        stored
            .iter()
            .all(|f| f.starts_with("images/") && f.ends_with(".webp"))
    );

    // The second goes first, with a new text.
    let path = format!("/products/{product}/images/{second}");
    let moved = app
        .call(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"position": 0, "alt": "front"})),
        )
        .await;
    assert_eq!(moved.expect(200)["alt"], "front");
    app.call(
        Method::PATCH,
        &format!("/products/{product}/images/{first}"),
        Some(&admin),
        Some(json!({"position": 5, "alt": null})),
    )
    .await
    .expect(200);
    let listed = app.get(&format!("/products/{product}"), None).await;
    let order: Vec<&str> = listed.expect(200)["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [second.as_str(), first.as_str()]);
    for bad in [json!({"position": -1}), json!({"alt": "x".repeat(301)})] {
        app.call(Method::PATCH, &path, Some(&admin), Some(bad))
            .await
            .expect_problem(422, "validation_failed");
    }
    let thumb = listed.body["images"][0]["urls"]["thumb"]
        .as_str()
        .unwrap()
        .to_owned();

    let deleted = app.call(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        files(&media).len(),
        3,
        "only the first image's files are left"
    );
    assert!(files(&media).iter().all(|f| f.contains(&first)));
    app.get(&thumb, None).await.expect_problem(404, "not_found");
    app.call(Method::DELETE, &path, Some(&admin), None)
        .await
        .expect_problem(404, "not_found");
    // Each change of the images was a new version of the product, with its event: two
    // uploads, two edits and a delete (the refused edits wrote nothing).
    let updates = product_events(&app, &admin, "product.updated", &product, 5).await;
    assert_eq!(updates.len(), 5, "{updates:#?}");
    assert!(updates.iter().all(|e| e["actor"]["kind"] == "admin"));
    // An image of another product is not this product's to delete.
    let other = app.product(&admin, "Other", "1.00", 1).await;
    app.call(
        Method::DELETE,
        &format!("/products/{other}/images/{first}"),
        Some(&admin),
        None,
    )
    .await
    .expect_problem(404, "not_found");
    let (client, _) = app.client_user().await;
    app.call(
        Method::DELETE,
        &format!("/products/{product}/images/{first}"),
        Some(&client),
        None,
    )
    .await
    .expect_problem(403, "forbidden");
    drop(worker);
}

async fn an_upload_that_cannot_be_decoded_fails_and_leaves_no_file(app: TestApp) {
    let worker = with_workers(&app, &[]).await;
    let admin = app.admin().await;
    let product = app.product(&admin, "Broken", "5.00", 3).await;
    let media = Path::new(&app.env["MEDIA_DIR"]).to_owned();
    // A whole PNG (header and trailer intact) whose pixel data is garbage.
    let mut bytes = png(64, 64);
    let data = bytes.windows(4).position(|w| w == b"IDAT").unwrap() + 4;
    for byte in &mut bytes[data..data + 20] {
        *byte ^= 0x5A;
    }
    let uploaded = upload(
        &worker,
        &admin,
        &product,
        bytes,
        "broken.png",
        "image/png",
        None,
    )
    .await;
    let id = uploaded.expect(202)["id"].as_str().unwrap().to_owned();
    let failed = settled(&app, &admin, &product, &id).await;
    assert_eq!(failed["status"], "FAILED");
    assert!(!failed["error"].as_str().unwrap().is_empty());
    assert_eq!(failed["urls"], Value::Null);
    assert_eq!(files(&media), Vec::<String>::new());
    // The public never sees it.
    let public = app.get(&format!("/products/{product}"), None).await;
    assert_eq!(public.expect(200)["images"], json!([]));
    drop(worker);
}

/// The keys of an S3 bucket, as the store lists them (XML).
async fn bucket_listing(app: &TestApp, endpoint: &str, bucket: &str) -> String {
    app.client
        .get(format!("{endpoint}/{bucket}?list-type=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// With `S3_BUCKET`, uploads and renditions live in the bucket (an S3-compatible store at
/// `TEST_S3_ENDPOINT`; CI runs one), and nothing in `MEDIA_DIR`.
async fn images_live_in_an_s3_bucket_when_one_is_set(app: TestApp) {
    let Ok(endpoint) = std::env::var("TEST_S3_ENDPOINT") else {
        eprintln!("NOTE: TEST_S3_ENDPOINT is not set; the S3 media test is skipped");
        return;
    };
    let bucket = format!("shop-test-{}", Uuid::new_v4().simple());
    let made = app
        .client
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("the S3 store answers");
    assert!(made.status().is_success(), "bucket: {}", made.status());
    let s3 = with_workers(
        &app,
        &[
            ("S3_BUCKET", &bucket),
            ("S3_ENDPOINT", &endpoint),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    )
    .await;
    let admin = s3.admin().await;
    let product = s3.product(&admin, "Bucketed", "5.00", 3).await;
    let uploaded = upload(
        &s3,
        &admin,
        &product,
        png(120, 80),
        "a.png",
        "image/png",
        None,
    )
    .await;
    let id = uploaded.expect(202)["id"].as_str().unwrap().to_owned();
    let ready = settled(&s3, &admin, &product, &id).await;
    assert_eq!(ready["status"], "READY", "{ready}");
    let url = ready["urls"]["medium"].as_str().unwrap().to_owned();
    let served = get_raw(&s3, &url, &[]).await;
    assert_eq!(served.status(), 200);
    let etag = served.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        get_raw(&s3, &url, &[("If-None-Match", &etag)])
            .await
            .status(),
        304
    );
    // The bucket holds the renditions (and no longer the upload); the directory nothing.
    let listing = bucket_listing(&app, &endpoint, &bucket).await;
    for name in ["original", "medium", "thumb"] {
        assert!(listing.contains(&format!("{id}/{name}.webp")), "{listing}");
    }
    assert!(!listing.contains("uploads/"), "{listing}");
    assert_eq!(
        files(Path::new(&app.env["MEDIA_DIR"])),
        Vec::<String>::new()
    );
    // Deleting removes them from the bucket.
    let deleted = s3
        .call(
            Method::DELETE,
            &format!("/products/{product}/images/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    let listing = bucket_listing(&app, &endpoint, &bucket).await;
    assert!(!listing.contains(&id), "{listing}");
    drop(s3);
}

/// An image whose worker keeps dying in it (taken over after each lease) fails once its
/// attempts are spent, rather than being taken over forever.
async fn an_image_whose_attempts_keep_dying_fails(app: TestApp) {
    use entity::product_image;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    let admin = app.admin().await;
    let product = app.product(&admin, "Doomed", "5.00", 3).await;
    // Uploaded where no worker runs, then made to look like its last attempt's worker died.
    let uploaded = upload(
        &app,
        &admin,
        &product,
        png(20, 20),
        "a.png",
        "image/png",
        None,
    )
    .await;
    let id = uploaded.expect(202)["id"].as_str().unwrap().to_owned();
    let long_ago = chrono::Utc::now() - chrono::Duration::days(1);
    product_image::Entity::update_many()
        .col_expr(product_image::Column::Attempts, Expr::value(5))
        .col_expr(
            product_image::Column::NextAttemptAt,
            Expr::value(None::<chrono::DateTime<chrono::Utc>>),
        )
        .col_expr(product_image::Column::UpdatedAt, Expr::value(long_ago))
        .filter(product_image::Column::Id.eq(Uuid::parse_str(&id).unwrap()))
        .exec(&app.state.db)
        .await
        .unwrap();
    let worker = with_workers(&app, &[("PAYMENT_MAX_ATTEMPTS", "5")]).await;
    let failed = settled(&app, &admin, &product, &id).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("interrupted"));
    assert_eq!(
        files(Path::new(&app.env["MEDIA_DIR"])),
        Vec::<String>::new()
    );
    drop(worker);
}
