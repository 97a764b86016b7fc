//! Operations endpoints: no key needed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.service.store().ping().await {
        axum::Json(json!({"status": "ready", "checks": {"storage": "ok"}})).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Storage is not reachable.",
        )
        .into_response()
    }
}

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
    let body = state.metrics.render(&[(
        "keyward_generation_jobs",
        "Content generation jobs by state.",
        samples,
    )]);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
