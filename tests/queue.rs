//! The queue contract, checked against both implementations: the in-process queue and the
//! Redis queue (under a key prefix of its own; skipped without Redis unless
//! `SHOP_TEST_REQUIRE_EXTERNAL=1`).

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use shop::queue::{JobQueue, MemoryQueue, QueueCounts, RedisQueue};
use uuid::Uuid;

macro_rules! both_queues {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(std::sync::Arc::new(shop::queue::MemoryQueue::new())).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(queue) = super::redis_queue().await {
                        super::$name(queue).await;
                    }
                }
            )*
        }
    };
}

both_queues!(
    enqueue_is_idempotent_and_reserve_is_fifo,
    delayed_jobs_wait_until_due,
    retry_and_bury_move_leased_jobs,
    expired_leases_return_jobs_to_ready,
    dead_jobs_can_be_taken_back,
);

async fn redis_queue() -> Option<Arc<dyn JobQueue>> {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let required =
        std::env::var("SHOP_TEST_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1" || v == "true");
    let pool = match tokio::time::timeout(
        Duration::from_secs(3),
        shop::redis_client::connect_once(&url, 2),
    )
    .await
    {
        Ok(Ok(pool)) => pool,
        other => {
            assert!(
                !required,
                "Redis is required but unreachable at {url}: {other:?}"
            );
            eprintln!("Redis unreachable at {url}: Redis queue tests skipped");
            return None;
        }
    };
    let prefix = format!("test-{}", Uuid::new_v4().simple());
    Some(Arc::new(RedisQueue::new(pool, &prefix, "jobs")))
}

const LEASE: Duration = Duration::from_secs(30);

async fn enqueue_is_idempotent_and_reserve_is_fifo(queue: Arc<dyn JobQueue>) {
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let now = Utc::now();
    assert!(queue.enqueue(a, now).await.unwrap());
    assert!(queue.enqueue(b, now).await.unwrap());
    assert!(!queue.enqueue(a, now).await.unwrap(), "already queued");
    assert!(queue.enqueue(c, now).await.unwrap());
    assert_eq!(queue.counts().await.unwrap().ready, 3);

    assert_eq!(queue.reserve(2, LEASE).await.unwrap(), [a, b]);
    assert!(
        !queue.enqueue(a, now).await.unwrap(),
        "leased jobs are still queued"
    );
    assert_eq!(queue.reserve(5, LEASE).await.unwrap(), [c]);
    assert!(queue.reserve(5, LEASE).await.unwrap().is_empty());
    assert_eq!(
        queue.counts().await.unwrap(),
        QueueCounts {
            ready: 0,
            delayed: 0,
            processing: 3,
            dead: 0
        }
    );
    for id in [a, b, c] {
        queue.ack(id).await.unwrap();
    }
    assert_eq!(queue.counts().await.unwrap(), QueueCounts::default());
    assert!(
        queue.enqueue(a, now).await.unwrap(),
        "acked jobs can be queued again"
    );
}

async fn delayed_jobs_wait_until_due(queue: Arc<dyn JobQueue>) {
    let (soon, later) = (Uuid::now_v7(), Uuid::now_v7());
    let now = Utc::now();
    queue
        .enqueue(later, now + chrono::Duration::hours(1))
        .await
        .unwrap();
    queue
        .enqueue(soon, now + chrono::Duration::milliseconds(150))
        .await
        .unwrap();
    assert_eq!(queue.counts().await.unwrap().delayed, 2);
    assert!(queue.reserve(10, LEASE).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(queue.reserve(10, LEASE).await.unwrap(), [soon]);
    assert_eq!(queue.counts().await.unwrap().delayed, 1);
}

async fn retry_and_bury_move_leased_jobs(queue: Arc<dyn JobQueue>) {
    let (retried, buried) = (Uuid::now_v7(), Uuid::now_v7());
    let now = Utc::now();
    queue.enqueue(retried, now).await.unwrap();
    queue.enqueue(buried, now).await.unwrap();
    assert_eq!(queue.reserve(2, LEASE).await.unwrap().len(), 2);

    queue
        .retry(retried, now + chrono::Duration::milliseconds(100))
        .await
        .unwrap();
    queue.bury(buried, "gave up: provider down").await.unwrap();
    assert_eq!(
        queue.counts().await.unwrap(),
        QueueCounts {
            ready: 0,
            delayed: 1,
            processing: 0,
            dead: 1
        }
    );
    let dead = queue.dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, buried);
    assert_eq!(dead[0].error, "gave up: provider down");
    assert!(
        !queue.enqueue(retried, now).await.unwrap(),
        "a delayed retry is still queued"
    );

    assert!(
        queue.reserve(10, LEASE).await.unwrap().is_empty(),
        "not due yet"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(queue.reserve(10, LEASE).await.unwrap(), [retried]);
}

async fn expired_leases_return_jobs_to_ready(queue: Arc<dyn JobQueue>) {
    let (lost, kept) = (Uuid::now_v7(), Uuid::now_v7());
    let now = Utc::now();
    queue.enqueue(lost, now).await.unwrap();
    assert_eq!(
        queue.reserve(1, Duration::from_millis(100)).await.unwrap(),
        [lost]
    );
    queue.enqueue(kept, now).await.unwrap();
    assert_eq!(queue.reserve(1, LEASE).await.unwrap(), [kept]);

    assert_eq!(
        queue.requeue_expired().await.unwrap(),
        0,
        "leases still valid"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(queue.requeue_expired().await.unwrap(), 1);
    assert_eq!(
        queue.counts().await.unwrap(),
        QueueCounts {
            ready: 1,
            delayed: 0,
            processing: 1,
            dead: 0
        }
    );
    assert_eq!(queue.reserve(5, LEASE).await.unwrap(), [lost]);
}

async fn dead_jobs_can_be_taken_back(queue: Arc<dyn JobQueue>) {
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for id in &ids {
        queue.enqueue(*id, Utc::now()).await.unwrap();
    }
    queue.reserve(3, LEASE).await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        queue.bury(*id, &format!("error {i}")).await.unwrap();
    }
    let dead = queue.dead_jobs(2).await.unwrap();
    assert_eq!(
        dead.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[2], ids[1]],
        "newest first"
    );
    // One dead job is found by its id, with its error.
    let found = queue.dead_job(ids[0]).await.unwrap().expect("a dead job");
    assert_eq!((found.id, found.error.as_str()), (ids[0], "error 0"));
    assert_eq!(queue.dead_job(Uuid::now_v7()).await.unwrap(), None);
    assert!(queue.remove_dead(ids[1]).await.unwrap());
    assert!(!queue.remove_dead(ids[1]).await.unwrap());
    assert_eq!(queue.dead_job(ids[1]).await.unwrap(), None);
    assert_eq!(queue.counts().await.unwrap().dead, 2);
    assert!(queue.enqueue(ids[1], Utc::now()).await.unwrap());
}

#[tokio::test]
async fn memory_queue_wakes_a_waiting_worker() {
    let queue = Arc::new(MemoryQueue::new());
    let waiter = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            queue.wait_for_work(Duration::from_secs(10)).await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    queue.enqueue(Uuid::now_v7(), Utc::now()).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(waited < Duration::from_secs(5));
}
