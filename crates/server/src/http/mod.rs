//! The HTTP server: routers per area, composed here with the middleware stack.

mod arena;
pub mod auth;
pub mod error;
pub mod extract;
mod gate;
pub mod lean;
mod limit_headers;
pub mod openapi;
mod ops;
pub mod request_id;
mod serve;
mod v1;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::response::Response;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::metrics::Metrics;
use crate::recorder::UsageRecorder;
use crate::Service;
pub use error::ApiError;
pub use serve::serve;

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

/// The whole application: the router behind the gate.
///
/// In the order a request meets them:
/// 1. the [`gate`] gives it an id, marks credentials sensitive before anything can log
///    headers, opens its debug span (method, matched route, request id — never the query
///    string, which may carry a key about to be refused) and catches panics; on the way out
///    it writes every error body in the one shape and `X-Request-Id` on every response. It
///    answers `GET /v1/whoami` and `GET /v1/auth/forward` itself, through the same steps as
///    below;
/// 2. the router picks the route (or the fallback);
/// 3. `observe` refuses keys in the query of every `/v1` path (known or not) and records each
///    answer in the metrics under its matched route (it runs inside the router, where the
///    matched route is known);
/// 4. each key route authenticates; the dashboard's routes have their own layers (see
///    [`crate::dashboard`]).
///
/// The router is built once; [`Application::at`] puts the gate in front of it for one
/// connection.
#[derive(Clone)]
pub struct Application {
    state: AppState,
    routes: Router,
}

impl Application {
    pub fn new(state: AppState) -> Self {
        Self {
            routes: router(state.clone()),
            state,
        }
    }

    /// The service for the requests of one connection from `peer` (`None` without a
    /// connection, as when tests and benchmarks call the application in-process). Routed
    /// requests get the peer's address as [`axum::extract::ConnectInfo`], where the audit
    /// log and the sign-in limits read the client's address. Requests come with any body:
    /// hyper's as it is from a connection, whose body only a routed request needs as axum's.
    pub fn at<B>(
        &self,
        peer: Option<SocketAddr>,
    ) -> impl tower::Service<
        axum::http::Request<B>,
        Response = Response,
        Error = Infallible,
        Future = impl Future<Output = Result<Response, Infallible>> + Send,
    > + Clone
           + Send
           + Sync
           + 'static
    where
        B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        use tower::Layer;
        let connection = gate::Connection {
            state: self.state.clone(),
            peer,
        };
        lean::LeanLayer::new(connection, gate::gate::<B>).layer(self.routes.clone())
    }
}

/// The routes, each with the `observe` layer.
fn router(state: AppState) -> Router {
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

/// The router's layer around every route: [`observed`] under the matched route.
async fn observe(state: AppState, req: Request, next: axum::routing::Route) -> Response {
    use tower::ServiceExt;
    // An `Arc` inside: cloning it allocates nothing.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::Span::current().record("route", route);
    }
    observed(&state, req, route, |req, _| async move {
        match next.oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    })
    .await
}

/// Refuses a key in the query of any `/v1` path, else answers with `answer` (given the
/// request and when it arrived); records the answer's status and latency under `route`
/// either way.
async fn observed<B, F, Fut>(
    state: &AppState,
    req: axum::http::Request<B>,
    route: &str,
    answer: F,
) -> Response
where
    F: FnOnce(axum::http::Request<B>, std::time::Instant) -> Fut,
    Fut: Future<Output = Response>,
{
    let start = std::time::Instant::now();
    let method = crate::metrics::method_label(req.method().as_str());
    let path = req.uri().path();
    let under_v1 = path == "/v1" || path.starts_with("/v1/");
    let response = if under_v1 && req.uri().query().is_some_and(auth::query_has_key) {
        auth::refuse_key_in_query(state)
    } else {
        answer(req, start).await
    };
    state
        .metrics
        .observe_request(method, route, response.status().as_u16(), start.elapsed());
    response
}
