//! Operations endpoints: no key needed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

/// The process answers.
#[utoipa::path(
    operation_id = "healthz",get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = Object)))]
async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Storage is reachable, and so is Redis when it is configured. A node whose Redis is down
/// stays ready with the local fallback (it still limits, per node) and is not ready with
/// `redis_fallback = "deny"` (it would refuse every limited request).
#[utoipa::path(
    operation_id = "readyz",get, path = "/readyz", tag = "operations", responses((status = 200, description = "Ready", body = Object), (status = 503, description = "Storage unreachable, or Redis with the deny fallback", body = crate::http::openapi::ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Response {
    if !state.service.store().ping().await {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Storage is not reachable.",
        )
        .into_response();
    }
    if !state.limiter.ready() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Redis is not reachable.",
        )
        .into_response();
    }
    let mut checks = json!({"storage": "ok"});
    if let Some(up) = state.limiter.redis_up() {
        checks["redis"] = json!(if up { "ok" } else { "down" });
    }
    axum::Json(json!({"status": "ready", "checks": checks})).into_response()
}

/// Prometheus text: requests and latency by matched route and status, authentication
/// failures by code, rate-limit rejections, generation jobs by state.
#[utoipa::path(
    operation_id = "metrics",get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> Response {
    // Job counts come from storage, so every node reports the same queue.
    let jobs = match state.service.store().read().await {
        Ok(mut conn) => keyward_store::jobs::count_by_status(&mut conn)
            .await
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let mut samples: Vec<(String, f64)> = Vec::new();
    for s in ["queued", "running", "succeeded", "failed"] {
        let n = jobs
            .iter()
            .find(|(status, _)| status == s)
            .map_or(0, |(_, n)| *n);
        samples.push((format!("state=\"{s}\""), n as f64));
    }
    let mut gauges = vec![(
        "keyward_generation_jobs",
        "Content generation jobs by state.",
        samples,
    )];
    if let Some(up) = state.limiter.redis_up() {
        gauges.push((
            "keyward_redis_up",
            "1 while Redis (shared rate limits) is reachable, 0 while limiting falls back.",
            vec![(String::new(), f64::from(u8::from(up)))],
        ));
    }
    let body = state.metrics.render(&gauges);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// This document.
#[utoipa::path(
    operation_id = "openapi_json",get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn openapi_json(State(state): State<AppState>) -> Response {
    let body = state.openapi.get().cloned().unwrap_or_default();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
