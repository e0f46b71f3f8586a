//! Seeding: the admin account and a fake catalog, both idempotent. Used by the `seed`
//! binary and by the first `shop serve` on an empty embedded database.

use entity::{product, user};
use fake::{
    Fake,
    faker::{company::en::Buzzword, lorem::en::Sentence},
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::{Role, service::create_user},
    clock,
    domain::{Email, Password},
    error::AppError,
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
    state: &AppState,
    admin_email: &str,
    admin_password: &str,
    products: u64,
) -> anyhow::Result<SeedReport> {
    let email = Email::parse(admin_email).map_err(|m| anyhow::anyhow!("ADMIN_EMAIL {m}"))?;
    let password =
        Password::parse(admin_password).map_err(|m| anyhow::anyhow!("ADMIN_PASSWORD {m}"))?;
    let exists = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .count(&state.db)
        .await?
        > 0;
    let admin_created = if exists {
        false
    } else {
        match create_user(state, &email, Some("Admin".into()), &password, Role::Admin).await {
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
        .count(&state.db)
        .await?;
    let missing = products.saturating_sub(live);
    let now = clock::now();
    let rows: Vec<product::ActiveModel> = (0..missing)
        .map(|_| {
            let buzz: String = Buzzword().fake();
            let noun = NOUNS[rand::random_range(0..NOUNS.len())];
            let description: String = Sentence(6..14).fake();
            product::ActiveModel {
                id: Set(Uuid::now_v7()),
                name: Set(format!("{} {noun}", capitalize(&buzz))),
                description: Set(Some(description)),
                price_cents: Set(rand::random_range(199..=49_999)),
                stock: Set(rand::random_range(0..=500)),
                created_at: Set(now),
                updated_at: Set(now),
                deleted_at: Set(None),
            }
        })
        .collect();
    for chunk in rows.chunks(500) {
        product::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&state.db)
            .await?;
    }
    if missing > 0 {
        state.cache.bump().await;
    }
    Ok(SeedReport {
        admin_created,
        products_created: missing,
    })
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
