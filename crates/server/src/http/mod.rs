//! The HTTP server: routers per area, composed here with the middleware stack.

pub mod auth;
pub mod error;
pub mod extract;
pub mod lean;
pub mod openapi;
mod ops;
pub mod request_id;
mod v1;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::metrics::Metrics;
use crate::recorder::UsageRecorder;
use crate::Service;
pub use error::ApiError;

/// What every handler can reach. One `Arc`: middleware and extractors clone the state for
/// every request, so a clone must cost one reference count, not one per part.
#[derive(Clone)]
pub struct AppState(std::sync::Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(std::sync::Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub service: Service,
    pub recorder: UsageRecorder,
    pub metrics: Metrics,
    pub limiter: std::sync::Arc<crate::limiter::Limiter>,
    /// The OpenAPI document, rendered once when the router is built.
    pub openapi: std::sync::Arc<std::sync::OnceLock<String>>,
    /// Wakes the generation worker when a job is queued.
    pub jobs_waiting: std::sync::Arc<tokio::sync::Notify>,
}

/// The whole application router.
///
/// Layers run outside-in in this order, for these reasons:
/// 1. `request_id` is outermost so that every response, including panics and errors made by
///    the layers below, gets an `X-Request-Id` and an error body in the one shape;
/// 2. `CatchPanicLayer` turns a panic into a bare 500 that layer 1 then dresses;
/// 3. `SetSensitiveRequestHeaders` marks credentials (and forward auth's original URL)
///    before anything can log headers;
/// 4. `TraceLayer` logs method, matched route and status — never the query string, which
///    may carry a key that `reject_keys_in_query` is about to refuse;
/// 5. `observe` refuses keys in the query of every `/v1` path (known or not) and records
///    each answer in the metrics under its matched route (it runs inside the router, where
///    the matched route is known);
/// 6. each key route authenticates; the dashboard's routes have their own layers (see
///    [`crate::dashboard`]).
pub fn router(state: AppState) -> Router {
    let api = v1::router(state.clone());
    let (routes, mut doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/v1", api)
        .merge(ops::router())
        .split_for_parts();
    openapi::describe_capabilities(&mut doc, &state.service.config().capabilities);
    let _ = state.openapi.set(doc.to_json().unwrap_or_default());
    routes
        .merge(crate::dashboard::router())
        .fallback(not_found)
        .method_not_allowed_fallback(|| async { request_id::method_not_allowed() })
        // Around every route and the fallback, so unknown `/v1` paths refuse keys in the
        // query too.
        .layer(lean::LeanLayer::new(state.clone(), observe))
        .with_state(state)
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", |p| p.as_str());
            let request_id = req
                .extensions()
                .get::<request_id::RequestId>()
                .map_or("", |r| r.as_str());
            // Debug level: at the default `info` the span costs nothing per request; 5xx answers
            // are logged with their request id by the request-id layer.
            tracing::debug_span!("request", method = %req.method(), route, request_id)
        }))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            header::HeaderName::from_static("x-api-key"),
            // Forward auth: the original URL, which may carry a key that is about to be refused.
            header::HeaderName::from_static("x-original-uri"),
            header::HeaderName::from_static("x-forwarded-uri"),
        ]))
        .layer(CatchPanicLayer::new())
        .layer(request_id::RequestIdLayer)
}

/// Unknown paths: a page for browsers outside `/v1`, the JSON error everywhere else.
async fn not_found(req: Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let wants_html = !req.uri().path().starts_with("/v1")
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
    if wants_html {
        let id = req
            .extensions()
            .get::<request_id::RequestId>()
            .map_or("", |r| r.as_str());
        crate::dashboard::not_found_page(id)
    } else {
        ApiError::not_found().into_response()
    }
}

/// Refuses a key in the query of any `/v1` path, and records the answer's status and
/// latency under the matched route.
async fn observe(
    state: AppState,
    req: Request,
    next: axum::routing::Route,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use tower::ServiceExt;
    let start = std::time::Instant::now();
    let method = req.method().clone();
    // An `Arc` inside: cloning it allocates nothing.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let path = req.uri().path();
    let under_v1 = path == "/v1" || path.starts_with("/v1/");
    let response = if under_v1 && req.uri().query().is_some_and(auth::query_has_key) {
        state.metrics.auth_failure("key_in_query");
        auth::key_in_query().into_response()
    } else {
        match next.oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    };
    state.metrics.observe_request(
        method.as_str(),
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        start.elapsed(),
    );
    response
}
