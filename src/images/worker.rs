//! The image worker: takes uploads off the `images` queue, decodes each (within the pixel
//! limit, on the blocking pool), stores its WebP renditions and marks it `READY` with a
//! `product.image_ready` event. An upload that cannot be read `FAILED` at once; trouble
//! with the store is retried with the payments' backoff. Every move of an image row is a
//! conditional update naming the attempt it belongs to, so a job delivered twice, or taken
//! over after its worker died, ends the image once. An image deleted meanwhile leaves no
//! files behind: the worker that finds its row gone deletes what it stored.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{ImageStatus, product_image};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::{keys, product_changed, render, rendition_key, upload_key};
use crate::{
    clock, db,
    error::AppResult,
    events::Actor,
    payments::worker::{Environment, to_chrono},
};

/// How long an idle worker waits before looking at the queue again.
const POLL: Duration = Duration::from_millis(100);
/// Images decoded at once per process: decoding is CPU work on the blocking pool.
const CONCURRENCY: usize = 2;
/// How long shutdown waits for running images before leaving them to lease expiry.
const DRAIN: Duration = Duration::from_secs(20);

/// The guard of an attempt's outcome: the image is still in this very attempt.
fn owns_attempt(attempt: &product_image::Model) -> Condition {
    Condition::all()
        .add(product_image::Column::Id.eq(attempt.id))
        .add(product_image::Column::Status.eq(ImageStatus::Processing))
        .add(product_image::Column::Attempts.eq(attempt.attempts))
        .add(product_image::Column::NextAttemptAt.is_null())
}

/// Starts an attempt of image `id` if it is due, or its worker died (in an attempt,
/// untouched for longer than `lease`).
async fn start_attempt<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    lease: chrono::Duration,
    now: DateTime<Utc>,
) -> AppResult<Option<product_image::Model>> {
    let due = Condition::any()
        .add(product_image::Column::NextAttemptAt.lte(now))
        .add(
            Condition::all()
                .add(product_image::Column::NextAttemptAt.is_null())
                .add(product_image::Column::UpdatedAt.lt(now - lease)),
        );
    let rows = product_image::Entity::update_many()
        .col_expr(
            product_image::Column::Attempts,
            Expr::col(product_image::Column::Attempts).add(1),
        )
        .col_expr(
            product_image::Column::NextAttemptAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(product_image::Column::UpdatedAt, Expr::value(now))
        .filter(product_image::Column::Id.eq(id))
        .filter(product_image::Column::Status.eq(ImageStatus::Processing))
        .filter(due)
        .exec_with_returning(db)
        .await?;
    Ok(rows.into_iter().next())
}

/// What became of an attempt.
enum Attempt {
    /// The renditions are stored; the original's size.
    Stored { width: u32, height: u32 },
    /// The upload cannot become an image (why): no retry.
    Unusable(String),
    /// The store failed (why): worth another try.
    Transient(String),
}

/// Reads the upload, renders it and stores the renditions.
async fn attempt(env: &Environment, image: &product_image::Model) -> Attempt {
    let source = match env.media.get(&upload_key(image.id)).await {
        Ok(Some(stored)) => stored.bytes,
        Ok(None) => return Attempt::Unusable("the upload is missing from the media store".into()),
        Err(err) => return Attempt::Transient(format!("{err:#}")),
    };
    let rendered = tokio::task::spawn_blocking(move || render::render(&source)).await;
    let renditions = match rendered {
        Ok(Ok(renditions)) => renditions,
        Ok(Err(why)) => return Attempt::Unusable(why),
        Err(err) => return Attempt::Unusable(format!("decoding stopped: {err}")),
    };
    let (width, height) = (renditions[0].width, renditions[0].height);
    for rendition in renditions {
        let key = rendition_key(image.product_id, image.id, rendition.name);
        if let Err(err) = env.media.put(&key, rendition.bytes.into()).await {
            return Attempt::Transient(format!("{err:#}"));
        }
    }
    Attempt::Stored { width, height }
}

/// Runs one attempt of image `id`, if it is due and nobody else has it.
async fn process(env: &Environment, id: Uuid) -> AppResult<()> {
    let txn = db::begin_write(&env.db).await?;
    let now = clock::now();
    let started = start_attempt(&txn, id, to_chrono(env.config.lease), now).await?;
    txn.commit().await?;
    let Some(image) = started else {
        return not_started(env, id).await;
    };
    let span = tracing::info_span!("image", image_id = %image.id, product_id = %image.product_id, attempt = image.attempts);
    async {
        if image.attempts
            > i32::try_from(env.config.retry_policy().max_attempts).unwrap_or(i32::MAX)
        {
            // Taken over after its worker died during the last attempt (out of memory, say).
            return fail(env, &image, "processing was interrupted too often").await;
        }
        match attempt(env, &image).await {
            Attempt::Stored { width, height } => {
                end(env, &image, End::Ready { width, height }).await
            }
            Attempt::Unusable(why) => fail(env, &image, &why).await,
            Attempt::Transient(why) => transient_failure(env, &image, &why).await,
        }
    }
    .instrument(span)
    .await
}

/// How an image ended: `READY` with the original's size, or `FAILED` with why.
#[derive(Clone, Copy)]
enum End<'a> {
    Ready { width: u32, height: u32 },
    Failed(&'a str),
}

/// Ends `image` if it is still in this very attempt: its row, a new version of the product
/// with its event (`product.image_ready`, or `product.updated` for a failure), then the
/// files it no longer needs. When another worker ended it, or it was deleted meanwhile,
/// nothing is written (and the files this attempt stored go if the image is gone).
async fn end(env: &Environment, image: &product_image::Model, end: End<'_>) -> AppResult<()> {
    let txn = db::begin_write(&env.db).await?;
    let now = clock::now();
    let dimension = |n: u32| Expr::value(Some(i32::try_from(n).unwrap_or(i32::MAX)));
    let (status, width, height, error, change) = match end {
        End::Ready { width, height } => (
            ImageStatus::Ready,
            dimension(width),
            dimension(height),
            None,
            "image_ready",
        ),
        End::Failed(why) => (
            ImageStatus::Failed,
            Expr::value(None::<i32>),
            Expr::value(None::<i32>),
            Some(why.to_owned()),
            "updated",
        ),
    };
    let ended = product_image::Entity::update_many()
        .col_expr(product_image::Column::Status, Expr::value(status))
        .col_expr(product_image::Column::Width, width)
        .col_expr(product_image::Column::Height, height)
        .col_expr(product_image::Column::Error, Expr::value(error))
        .col_expr(product_image::Column::UpdatedAt, Expr::value(now))
        .filter(owns_attempt(image))
        .exec(&txn)
        .await?;
    if ended.rows_affected != 1 {
        txn.rollback().await?;
        return ended_elsewhere(env, image).await;
    }
    let currency = env.currency.as_str();
    product_changed(&txn, image.product_id, change, Actor::WORKER, currency, now).await?;
    txn.commit().await?;
    env.notifier.events_written();
    env.notifier.catalog_changed().await;
    match end {
        End::Ready { width, height } => {
            env.media.delete_all(&[upload_key(image.id)]).await;
            tracing::info!(width, height, "image ready");
            metrics::counter!("images_processed_total", "outcome" => "ready").increment(1);
        }
        End::Failed(why) => {
            env.media.delete_all(&keys(image)).await;
            tracing::warn!(error = why, "image failed");
            metrics::counter!("images_processed_total", "outcome" => "failed").increment(1);
        }
    }
    ack(env, image.id).await;
    Ok(())
}

/// The attempt did not end the image: another worker did, or it was deleted meanwhile (then
/// what this attempt stored must go too).
async fn ended_elsewhere(env: &Environment, image: &product_image::Model) -> AppResult<()> {
    let exists = product_image::Entity::find_by_id(image.id)
        .one(&env.db)
        .await?
        .is_some();
    if !exists {
        env.media.delete_all(&keys(image)).await;
        tracing::info!("the image was deleted while it was processed; its files are removed");
    }
    ack(env, image.id).await;
    Ok(())
}

/// The upload cannot become an image, or attempts ran out: the image `FAILED` (with why),
/// and its files are deleted.
async fn fail(env: &Environment, image: &product_image::Model, why: &str) -> AppResult<()> {
    end(env, image, End::Failed(why)).await
}

/// The store failed: a retry with backoff, or out of attempts, the image fails.
async fn transient_failure(
    env: &Environment,
    image: &product_image::Model,
    why: &str,
) -> AppResult<()> {
    let number = u32::try_from(image.attempts).unwrap_or(u32::MAX);
    let policy = env.config.retry_policy();
    if !policy.retries_after(number) {
        return fail(env, image, why).await;
    }
    let now = clock::now();
    let due = now + to_chrono(policy.delay(number, rand::random()));
    let waiting = product_image::Entity::update_many()
        .col_expr(product_image::Column::NextAttemptAt, Expr::value(Some(due)))
        .col_expr(
            product_image::Column::Error,
            Expr::value(Some(why.to_owned())),
        )
        .col_expr(product_image::Column::UpdatedAt, Expr::value(now))
        .filter(owns_attempt(image))
        .exec(&env.db)
        .await?;
    if waiting.rows_affected != 1 {
        return ended_elsewhere(env, image).await;
    }
    tracing::warn!(error = why, next_attempt_at = %due, "image will be retried");
    if let Err(err) = env.image_queue.retry(image.id, due).await {
        tracing::warn!(error = %err, "could not schedule an image retry; the sweeper will");
    }
    Ok(())
}

/// A delivered job that could not start: waiting for its retry (put it back for then),
/// running elsewhere (leave it to that worker), or ended or gone (forget it).
async fn not_started(env: &Environment, id: Uuid) -> AppResult<()> {
    let current = product_image::Entity::find_by_id(id).one(&env.db).await?;
    match current {
        Some(row) if row.status == ImageStatus::Processing => {
            if let Some(due) = row.next_attempt_at
                && let Err(err) = env.image_queue.retry(id, Ord::max(due, clock::now())).await
            {
                tracing::warn!(error = %err, "could not reschedule an early image job; the sweeper will");
            }
        }
        _ => ack(env, id).await,
    }
    Ok(())
}

async fn ack(env: &Environment, id: Uuid) {
    if let Err(err) = env.image_queue.ack(id).await {
        tracing::warn!(image_id = %id, error = %err, "could not acknowledge an image job; it will be delivered again and ignored");
    }
}

/// Works off the image queue, [`CONCURRENCY`] images at once, until `shutdown`; then lets
/// running ones finish (for a while; after that their leases expire and the jobs return).
pub async fn run(env: Environment, shutdown: CancellationToken) {
    let worker = crate::queue::Worker {
        name: "image",
        concurrency: CONCURRENCY,
        batch: 1,
        lease: env.config.lease,
        poll: POLL,
        drain: DRAIN,
    };
    let queue = env.image_queue.clone();
    crate::queue::work(queue, worker, shutdown, move |ids| {
        let env = env.clone();
        async move {
            for id in ids {
                if let Err(err) = process(&env, id).await {
                    tracing::warn!(image_id = %id, error = ?err, "image attempt failed; its job returns when the lease expires");
                }
            }
        }
    })
    .await;
}

/// Puts back in the image queue what it lost: expired leases, and images that are due (or
/// whose worker died) but missing from it.
pub async fn sweep(env: &Environment) -> AppResult<u64> {
    let config = &env.config;
    crate::queue::sweep::<product_image::Entity>(
        &env.db,
        env.image_queue.as_ref(),
        product_image::Column::Id,
        "images",
        |now| {
            Condition::all()
                .add(product_image::Column::Status.eq(ImageStatus::Processing))
                .add(crate::queue::lost_jobs(
                    product_image::Column::NextAttemptAt,
                    product_image::Column::UpdatedAt,
                    now,
                    config.sweep_interval,
                    config.lease,
                ))
        },
    )
    .await
}
