//! Seeding: the admin account and a fake catalog, both idempotent. Used by the `seed`
//! binary and by the first `shop serve` on an empty embedded database. It needs only the
//! database and the password hasher.

use entity::{
    ImageStatus, MovementReason, category, product, product_category, product_image, user,
};
use fake::{
    Fake,
    faker::{company::en::Buzzword, lorem::en::Sentence},
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, Set};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::{
    auth::{PasswordHasher, Role, service::create_user},
    clock,
    config::{Config, DEFAULT_ADMIN_PASSWORD},
    domain::{Email, Password},
    error::AppError,
    events::Actor,
    images,
    inventory::{self, Cause},
    media::Media,
};

/// The demo products' kinds, each with the slug of its category.
const NOUNS: &[(&str, &str)] = &[
    ("Mug", "kitchen"),
    ("Lamp", "living-room"),
    ("Backpack", "bags"),
    ("Notebook", "office"),
    ("Headphones", "electronics"),
    ("Chair", "living-room"),
    ("Desk", "office"),
    ("Kettle", "kitchen"),
    ("Jacket", "clothing"),
    ("Sneakers", "clothing"),
    ("Watch", "accessories"),
    ("Wallet", "accessories"),
    ("Blanket", "living-room"),
    ("Speaker", "electronics"),
    ("Keyboard", "electronics"),
    ("Bottle", "kitchen"),
    ("Scarf", "clothing"),
    ("Pan", "kitchen"),
];

/// The demo category tree: `(slug, name, parent slug)`, parents first.
const CATEGORIES: &[(&str, &str, Option<&str>)] = &[
    ("home", "Home", None),
    ("kitchen", "Kitchen", Some("home")),
    ("living-room", "Living room", Some("home")),
    ("office", "Office", None),
    ("electronics", "Electronics", Some("office")),
    ("fashion", "Fashion", None),
    ("clothing", "Clothing", Some("fashion")),
    ("accessories", "Accessories", Some("fashion")),
    ("bags", "Bags", Some("accessories")),
];

/// Creates the demo categories that are missing (by slug); answers every demo slug's id.
async fn demo_categories<C: sea_orm::ConnectionTrait>(
    db: &C,
) -> anyhow::Result<std::collections::HashMap<String, Uuid>> {
    let now = clock::now();
    let mut ids = std::collections::HashMap::new();
    for (position, (slug, name, parent)) in CATEGORIES.iter().enumerate() {
        let existing = category::Entity::find()
            .filter(category::Column::Slug.eq(*slug))
            .one(db)
            .await?;
        let id = match existing {
            Some(row) => row.id,
            None => {
                let row = category::Model {
                    id: Uuid::now_v7(),
                    name: (*name).to_owned(),
                    slug: (*slug).to_owned(),
                    parent_id: parent.and_then(|p| ids.get(p).copied()),
                    position: i32::try_from(position).unwrap_or(0),
                    version: 1,
                    created_at: now,
                    updated_at: now,
                };
                category::Entity::insert(category::ActiveModel::from(row.clone()))
                    .exec_without_returning(db)
                    .await?;
                row.id
            }
        };
        ids.insert((*slug).to_owned(), id);
    }
    Ok(ids)
}

/// What seeding did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub admin_created: bool,
    pub products_created: u64,
}

/// Creates the admin account unless the email exists, and adds fake products until the
/// live catalog has at least `products`.
pub async fn run(
    db: &DatabaseConnection,
    passwords: &PasswordHasher,
    admin_email: &str,
    admin_password: &str,
    products: u64,
    media: Option<&Media>,
) -> anyhow::Result<SeedReport> {
    let email = Email::parse(admin_email).map_err(|m| anyhow::anyhow!("ADMIN_EMAIL {m}"))?;
    let password =
        Password::parse(admin_password).map_err(|m| anyhow::anyhow!("ADMIN_PASSWORD {m}"))?;
    let exists = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .count(db)
        .await?
        > 0;
    let admin_created = if exists {
        false
    } else {
        match create_user(
            db,
            passwords,
            &email,
            Some("Admin".into()),
            &password,
            Role::Admin,
        )
        .await
        {
            Ok(_) => true,
            // Another process seeded it at the same moment.
            Err(AppError::Problem {
                code: "email_taken",
                ..
            }) => false,
            Err(err) => return Err(anyhow::anyhow!("cannot create the admin: {err}")),
        }
    };

    let live = product::Entity::find()
        .filter(product::Column::DeletedAt.is_null())
        .count(db)
        .await?;
    let missing = products.saturating_sub(live);
    let now = clock::now();
    let mut kinds = Vec::new();
    let rows: Vec<product::Model> = (0..missing)
        .map(|_| {
            let buzz: String = Buzzword().fake();
            let (noun, kind) = NOUNS[rand::random_range(0..NOUNS.len())];
            kinds.push(kind);
            let description: String = Sentence(6..14).fake();
            product::Model {
                id: Uuid::now_v7(),
                name: format!("{} {noun}", capitalize(&buzz)),
                description: Some(description),
                price_cents: rand::random_range(199..=49_999),
                stock: rand::random_range(0..=500),
                version: 1,
                views: 0,
                created_at: now,
                updated_at: now,
                deleted_at: None,
            }
        })
        .collect();
    // A picture of each, stored as an upload for the workers to render.
    let mut pictures = Vec::new();
    if let Some(media) = media {
        for (n, (product, kind)) in rows.iter().zip(&kinds).enumerate() {
            let image = Uuid::now_v7();
            let bytes = tokio::task::spawn_blocking({
                let kind = *kind;
                move || picture(n as u64, kind)
            })
            .await??;
            media.put(&images::upload_key(image), bytes.into()).await?;
            pictures.push(product_image::Model {
                id: image,
                product_id: product.id,
                status: ImageStatus::Processing,
                alt: Some(product.name.clone()),
                position: 0,
                width: None,
                height: None,
                attempts: 0,
                next_attempt_at: Some(now),
                error: None,
                created_at: now,
                updated_at: now,
            });
        }
    }
    // Each product with its opening stock in the ledger, or none of them.
    let txn = crate::db::begin_write(db).await?;
    for chunk in rows.chunks(500) {
        product::Entity::insert_many(chunk.iter().cloned().map(product::ActiveModel::from))
            .exec_without_returning(&txn)
            .await?;
    }
    let cause = Cause::manual(MovementReason::Correction, Actor::SYSTEM, Some("seed"));
    inventory::opening(&txn, &rows, cause, now).await?;
    if !rows.is_empty() {
        let categories = demo_categories(&txn).await?;
        let links: Vec<product_category::ActiveModel> = rows
            .iter()
            .zip(&kinds)
            .filter_map(|(product, kind)| {
                Some(product_category::ActiveModel {
                    product_id: Set(product.id),
                    category_id: Set(*categories.get(*kind)?),
                })
            })
            .collect();
        for chunk in links.chunks(500) {
            product_category::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&txn)
                .await?;
        }
    }
    for chunk in pictures.chunks(500) {
        product_image::Entity::insert_many(
            chunk.iter().cloned().map(product_image::ActiveModel::from),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(SeedReport {
        admin_created,
        products_created: missing,
    })
}

/// On an empty database, seeds the admin (`ADMIN_EMAIL`, `ADMIN_PASSWORD`) and
/// `SEED_PRODUCTS` products, and says how to sign in.
pub async fn first_run(
    db: &DatabaseConnection,
    passwords: &PasswordHasher,
    config: &Config,
    media: &Media,
) -> anyhow::Result<()> {
    if user::Entity::find().count(db).await? > 0 {
        return Ok(());
    }
    let report = run(
        db,
        passwords,
        &config.admin_email,
        config.admin_password.expose_secret(),
        u64::from(config.seed_products),
        Some(media),
    )
    .await?;
    if config.admin_password_is_default() {
        // The documented default, so nothing secret: show it so a newcomer can sign in.
        tracing::info!(
            admin_email = %config.admin_email,
            admin_password = DEFAULT_ADMIN_PASSWORD,
            products = report.products_created,
            "empty database: seeded an admin account and a catalog; set ADMIN_PASSWORD for anything but a trial"
        );
    } else {
        tracing::info!(
            admin_email = %config.admin_email,
            products = report.products_created,
            "empty database: seeded an admin account (password from ADMIN_PASSWORD) and a catalog"
        );
    }
    Ok(())
}

/// A demo product picture (PNG, 600 px square): a soft two-colour background, a shadow and
/// a shape that stands for the product's kind, in colours drawn from `n`. No network, no
/// files: drawn pixel by pixel.
fn picture(n: u64, kind: &str) -> anyhow::Result<Vec<u8>> {
    use image::{ImageFormat, Rgb, RgbImage};

    const SIZE: u32 = 600;
    // Colours spread around the wheel by the golden angle.
    let hue = (n as f64 * 137.508) % 360.0;
    let base = hsv(hue, 0.35, 0.97);
    let deep = hsv((hue + 25.0) % 360.0, 0.45, 0.80);
    let ink = hsv((hue + 180.0) % 360.0, 0.65, 0.55);
    let centre = SIZE as f64 / 2.0;
    let inside = |x: f64, y: f64| -> bool {
        let (dx, dy) = (x - centre, y - centre);
        match kind {
            // A cup, a lamp, a bottle: round things.
            "kitchen" | "living-room" => dx * dx + dy * dy <= 150.0 * 150.0,
            // Devices and paper: a rounded rectangle.
            "office" | "electronics" => {
                let (ax, ay) = ((dx.abs() - 150.0).max(0.0), (dy.abs() - 105.0).max(0.0));
                dx.abs() <= 190.0 && dy.abs() <= 145.0 && ax * ax + ay * ay <= 40.0 * 40.0
            }
            // Clothes: a diamond.
            "clothing" => dx.abs() / 170.0 + dy.abs() / 190.0 <= 1.0,
            // Bags and accessories: a ring.
            _ => {
                let r = (dx * dx + dy * dy).sqrt();
                (95.0..=165.0).contains(&r)
            }
        }
    };
    let image = RgbImage::from_fn(SIZE, SIZE, |x, y| {
        let (fx, fy) = (f64::from(x), f64::from(y));
        if inside(fx, fy) {
            // A little light from the top left.
            let light = 1.0 - ((fx + fy) / (2.0 * SIZE as f64)) * 0.35;
            return Rgb(ink.map(|c| (f64::from(c) * light).min(255.0) as u8));
        }
        // The shape's shadow on the floor.
        let (sx, sy) = ((fx - centre - 18.0) / 200.0, (fy - centre - 205.0) / 28.0);
        let shadow = if sx * sx + sy * sy <= 1.0 { 0.82 } else { 1.0 };
        let t = fy / SIZE as f64;
        Rgb(std::array::from_fn(|i| {
            let mixed = f64::from(base[i]) * (1.0 - t) + f64::from(deep[i]) * t;
            (mixed * shadow) as u8
        }))
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// An sRGB colour from hue (degrees), saturation and value (0 to 1).
fn hsv(hue: f64, saturation: f64, value: f64) -> [u8; 3] {
    let c = value * saturation;
    let x = c * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let m = value - c;
    let (r, g, b) = match (hue / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    [r, g, b].map(|v| ((v + m) * 255.0).round() as u8)
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
