//! `cargo run -p migration -- [up|down|status|fresh]` against `DATABASE_URL`
//! (default: the embedded SQLite database `data/shop.db`).

use migration::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::Database;

#[tokio::main]
async fn main() {
    let _ = dotenvy::dotenv();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://data/shop.db?mode=rwc".to_owned());
    let command = std::env::args().nth(1).unwrap_or_else(|| "up".to_owned());
    if url.starts_with("sqlite:") {
        let _ = std::fs::create_dir_all("data");
    }
    let db = match Database::connect(&url).await {
        Ok(db) => db,
        Err(err) => {
            eprintln!("cannot connect to {url}: {err}");
            std::process::exit(1);
        }
    };
    let result = match command.as_str() {
        "up" => Migrator::up(&db, None).await,
        "down" => Migrator::down(&db, Some(1)).await,
        "fresh" => Migrator::fresh(&db).await,
        "status" => Migrator::status(&db).await,
        other => {
            eprintln!("unknown command {other:?}; use up, down, status or fresh");
            std::process::exit(2);
        }
    };
    if let Err(err) = result {
        eprintln!("migration {command} failed: {err}");
        std::process::exit(1);
    }
}
