//! `cargo run -p seed -- [--products N]`: creates the admin account (`ADMIN_EMAIL`,
//! `ADMIN_PASSWORD`) and a fake catalog of at least N live products. Safe to run again.

use clap::Parser;
use shop::{app::AppState, config::Config, seed};

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
    let (email, password) = (config.admin_email.clone(), config.admin_password.clone());
    let (state, _realtime) = AppState::new(config).await?;
    let report = seed::run(&state, &email, password.expose(), args.products).await?;
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
