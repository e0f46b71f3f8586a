//! Prometheus metrics: HTTP requests by route and status (count and latency), payment
//! attempts and outcomes, and, computed at each scrape, orders by status and queue depth.

use std::{sync::OnceLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use entity::{OrderStatus, order};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::{ActiveEnum, ColumnTrait, EntityTrait, Iterable, QuerySelect};

use crate::state::AppState;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of `event_relay_delay_seconds`: fine where the delivery targets are (tens of
/// milliseconds).
const RELAY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The process-wide recorder (installed once, however many apps a process starts).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".into()),
                LATENCY_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("event_relay_delay_seconds".into()),
                    RELAY_BUCKETS,
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (e.g. by an embedding test): then
        // this handle still renders what this process records through it.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Middleware: counts and times every request under its route pattern (not its raw path,
/// so ids do not explode the label set).
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Counts one payment attempt's outcome: `succeeded`, `declined`, `transient`.
pub fn payment_attempt(outcome: &'static str) {
    metrics::counter!("payment_attempts_total", "outcome" => outcome).increment(1);
}

/// Counts an admin's stock adjustment by its reason.
pub fn stock_adjusted(reason: entity::MovementReason) {
    use sea_orm::ActiveEnum;
    metrics::counter!("stock_adjustments_total", "reason" => reason.to_value()).increment(1);
}

/// Counts a refund reaching an end (`succeeded`, `failed`); a succeeded one adds its
/// amount, in minor units, to the money refunded.
pub fn refund_finished(outcome: &'static str, amount_cents: i64) {
    metrics::counter!("refunds_total", "outcome" => outcome).increment(1);
    if outcome == "succeeded" {
        metrics::counter!("refunded_amount_cents_total")
            .increment(u64::try_from(amount_cents).unwrap_or(0));
    }
}

/// Counts one refund attempt's outcome: `succeeded`, `transient`.
pub fn refund_attempt(outcome: &'static str) {
    metrics::counter!("refund_attempts_total", "outcome" => outcome).increment(1);
}

/// Counts a payment reaching an end: `succeeded`, `failed`, `cancelled`.
pub fn payment_finished(status: &'static str) {
    metrics::counter!("payments_finished_total", "status" => status).increment(1);
}

/// Prometheus metrics (text exposition format): requests by route and status, payment
/// attempts and outcomes, orders by status, queue depth.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn render(State(state): State<AppState>) -> Response {
    let counts: Result<Vec<(OrderStatus, i64)>, _> = order::Entity::find()
        .select_only()
        .column(order::Column::Status)
        .column_as(order::Column::Id.count(), "n")
        .group_by(order::Column::Status)
        .into_tuple()
        .all(&state.db)
        .await;
    match counts {
        Ok(counts) => {
            for status in OrderStatus::iter() {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("orders", "status" => status.to_value()).set(n as f64);
            }
        }
        Err(err) => tracing::warn!(error = %err, "metrics: cannot count orders"),
    }
    for (gauge, queue) in [
        ("payment_queue_jobs", &state.queue),
        ("refund_queue_jobs", &state.refund_queue),
        ("image_queue_jobs", &state.image_queue),
    ] {
        match queue.counts().await {
            Ok(counts) => {
                for (name, n) in [
                    ("ready", counts.ready),
                    ("delayed", counts.delayed),
                    ("processing", counts.processing),
                    ("dead", counts.dead),
                ] {
                    metrics::gauge!(gauge, "state" => name).set(n as f64);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, queue = gauge, "metrics: cannot read the queue")
            }
        }
    }
    let mut response = handle().render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
