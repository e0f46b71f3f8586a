//! Seeding: the admin account and a fake catalog, both idempotent. Used by the `seed`
//! binary and by the first `shop serve` on an empty embedded database. It needs only the
//! database and the password hasher.

use entity::{MovementReason, product, user};
use fake::{
    Fake,
    faker::{company::en::Buzzword, lorem::en::Sentence},
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::{
    auth::{PasswordHasher, Role, service::create_user},
    clock,
    config::{Config, DEFAULT_ADMIN_PASSWORD},
    domain::{Email, Password},
    error::AppError,
    events::Actor,
    inventory::{self, Cause},
};

const NOUNS: &[&str] = &[
    "Mug",
    "Lamp",
    "Backpack",
    "Notebook",
    "Headphones",
    "Chair",
    "Desk",
    "Kettle",
    "Jacket",
    "Sneakers",
    "Watch",
    "Wallet",
    "Blanket",
    "Speaker",
    "Keyboard",
    "Bottle",
    "Scarf",
    "Pan",
];

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
    let rows: Vec<product::Model> = (0..missing)
        .map(|_| {
            let buzz: String = Buzzword().fake();
            let noun = NOUNS[rand::random_range(0..NOUNS.len())];
            let description: String = Sentence(6..14).fake();
            product::Model {
                id: Uuid::now_v7(),
                name: format!("{} {noun}", capitalize(&buzz)),
                description: Some(description),
                price_cents: rand::random_range(199..=49_999),
                stock: rand::random_range(0..=500),
                version: 1,
                created_at: now,
                updated_at: now,
                deleted_at: None,
            }
        })
        .collect();
    // Each product with its opening stock in the ledger, or none of them.
    let txn = crate::db::begin_write(db).await?;
    for chunk in rows.chunks(500) {
        product::Entity::insert_many(chunk.iter().cloned().map(product::ActiveModel::from))
            .exec_without_returning(&txn)
            .await?;
    }
    let cause = Cause::manual(MovementReason::Correction, Actor::SYSTEM, Some("seed"));
    inventory::opening(&txn, &rows, cause, now).await?;
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

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
