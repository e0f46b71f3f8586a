//! Product views: `GET /products/{id}` counts one in memory, and a task adds the counts to
//! `products.views` every [`FLUSH_EVERY`], one statement per product viewed, in one
//! transaction. So a read never writes to the database, and the counts lag by a second or
//! so. A view is not a write of the product: neither its version (`ETag`) nor `updatedAt`
//! moves. Counts not yet flushed when a process stops are flushed as it stops.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use entity::product;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{db, error::AppResult};

/// How often counted views are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Views counted since the last flush.
#[derive(Debug, Default)]
pub struct ViewCounter {
    counts: Mutex<HashMap<Uuid, i64>>,
}

impl ViewCounter {
    /// Counts one view of `product`.
    pub fn count(&self, product: Uuid) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(product).or_default() += 1;
        }
    }

    /// Adds what was counted to the products (and forgets it once written); answers how
    /// many views were written. On failure the counts are kept for the next flush.
    pub async fn flush(&self, db: &DatabaseConnection) -> AppResult<i64> {
        let taken = match self.counts.lock() {
            Ok(mut counts) => std::mem::take(&mut *counts),
            Err(_) => return Ok(0),
        };
        if taken.is_empty() {
            return Ok(0);
        }
        match write(db, &taken).await {
            Ok(()) => Ok(taken.values().sum()),
            Err(err) => {
                if let Ok(mut counts) = self.counts.lock() {
                    for (id, n) in taken {
                        *counts.entry(id).or_default() += n;
                    }
                }
                Err(err)
            }
        }
    }
}

async fn write(db: &DatabaseConnection, counts: &HashMap<Uuid, i64>) -> AppResult<()> {
    let mut ids: Vec<_> = counts.iter().collect();
    // The same order as every other writer of products, so flushes never deadlock them.
    ids.sort();
    let txn = db::begin_write(db).await?;
    for (id, n) in ids {
        product::Entity::update_many()
            .col_expr(
                product::Column::Views,
                Expr::col(product::Column::Views).add(*n),
            )
            .filter(product::Column::Id.eq(*id))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Flushes every [`FLUSH_EVERY`] until `stop`, then once more.
pub async fn run(
    counter: std::sync::Arc<ViewCounter>,
    db: DatabaseConnection,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(err) = counter.flush(&db).await {
            tracing::warn!(error = ?err, "could not write product views; trying again");
        }
    }
    if let Err(err) = counter.flush(&db).await {
        tracing::warn!(error = ?err, "could not write the last product views");
    }
}
