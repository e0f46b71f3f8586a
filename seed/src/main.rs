//! `cargo run -p seed -- [--products N]`: creates the admin account (`ADMIN_EMAIL`,
//! `ADMIN_PASSWORD`) and a fake catalog of at least N live products. Safe to run again.
//! Needs the database (and Redis, when configured, to refresh the catalog cache); no
//! HTTP or Socket.IO.

use clap::Parser;
use secrecy::ExposeSecret;
use shop::{auth::PasswordHasher, config::Config, db, media::Media, seed, startup::Backends};

#[derive(Parser)]
#[command(name = "seed", about = "Seed the admin account and a fake catalog")]
struct Args {
    /// Add fake products until the catalog has at least this many live ones.
    #[arg(long, default_value_t = 50)]
    products: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::from_env()?;
    let db = db::connect(&config).await?;
    let passwords = PasswordHasher::new(config.bcrypt_cost)?;
    // Each new product gets a picture, which the running service's workers render.
    let media = Media::new(&config.media)?;
    let email = config.admin_email.clone();
    let report = seed::run(
        &db,
        &passwords,
        &email,
        config.admin_password.expose_secret(),
        args.products,
        Some(&media),
    )
    .await?;
    if report.products_created > 0 {
        // Catalog reads cached by running instances must not hide the new products.
        Backends::connect(&config).await?.cache.bump().await;
    }
    println!(
        "admin {email}: {}; products added: {}",
        if report.admin_created {
            "created"
        } else {
            "already there"
        },
        report.products_created
    );
    Ok(())
}
