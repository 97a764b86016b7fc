//! The outermost service: what every request passes before and after the router.
//!
//! It gives each request its id, marks credentials as sensitive before anything could log
//! them, opens the request's debug span, turns a panic anywhere below into the one error
//! shape, and writes error bodies and `X-Request-Id` on the way out ([`request_id::finish`]).
//!
//! Two routes skip the router: `GET /v1/whoami`, the key check that API gateways and clients
//! call on every request, and `GET /v1/auth/forward`, which a reverse proxy calls before
//! every request it lets through (docs/BENCHMARKS.md). They go through the same steps as a
//! routed key request — [`super::observed`] (keys in the query refused, metrics) and
//! [`auth::admit`]/[`auth::answer`] (credential, key, rate limit, headers, usage), with
//! forward auth's own steps around them ([`v1::forward::direct`]) — composed directly instead
//! of through the router's nested, boxed layers, whose moves and clones of the request cost
//! more than the key check itself. Every other request, `HEAD` of either included, is routed.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::Poll;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::http::{header, HeaderMap, HeaderName, Method};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceExt;

use super::{auth, observed, request_id, v1, ApiError, AppState};
use crate::service::Principal;

// The routes answered without the router, as the metrics label them.
const WHOAMI: &str = crate::metrics::DIRECT_ROUTE;
const FORWARD: &str = v1::forward::PATH;

/// A request the gate answers itself.
#[derive(Clone, Copy)]
enum Direct {
    Whoami,
    Forward,
}

impl Direct {
    fn of<B>(req: &Request<B>) -> Option<Direct> {
        if req.method() != Method::GET {
            return None;
        }
        match req.uri().path() {
            WHOAMI => Some(Direct::Whoami),
            FORWARD => Some(Direct::Forward),
            _ => None,
        }
    }

    /// The route's template, as the router would have matched it.
    fn route(self) -> &'static str {
        match self {
            Direct::Whoami => WHOAMI,
            Direct::Forward => FORWARD,
        }
    }
}

/// Headers that carry a credential, or (forward auth) the original URL, which may carry a key
/// that is about to be refused.
static SENSITIVE: [HeaderName; 5] = [
    header::AUTHORIZATION,
    header::COOKIE,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("x-original-uri"),
    HeaderName::from_static("x-forwarded-uri"),
];

/// What the gate holds for one connection: the application's state and the peer's address.
#[derive(Clone)]
pub struct Connection {
    pub state: AppState,
    pub peer: Option<SocketAddr>,
}

/// The gate around `app` (see the module documentation); used with [`super::lean::LeanLayer`].
pub async fn gate<B>(connection: Connection, mut req: Request<B>, app: Router) -> Response
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let Connection { state, peer } = connection;
    // For the debug log only; the metrics time the answer in `observed`.
    let start = tracing::enabled!(tracing::Level::DEBUG).then(std::time::Instant::now);
    let id = request_id::id_of(req.headers());
    mark_sensitive(req.headers_mut());
    // Disabled at the default `info` level, where it costs one check of a static flag.
    let span = tracing::debug_span!(
        "request",
        method = %req.method(),
        route = tracing::field::Empty,
        request_id = id.as_str(),
    );
    let direct = Direct::of(&req);
    if let Some(route) = direct {
        span.record("route", route.route());
    }
    let answered = async {
        if let Some(route) = direct {
            let (state, id) = (&state, &id);
            observed(state, req, route.route(), |req, arrived| async move {
                match route {
                    Direct::Whoami => whoami(state, req.headers(), arrived, id).await,
                    Direct::Forward => v1::forward::direct(state, req.headers(), arrived, id).await,
                }
            })
            .await
        } else {
            // Only here is the body wrapped as axum's: the direct routes read none.
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(id.clone());
            if let Some(peer) = peer {
                req.extensions_mut().insert(ConnectInfo(peer));
            }
            match app.oneshot(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    };
    // Pinned where it is and polled in place: wrapping it in adapters would move the whole
    // future (every nested step's state) once per layer.
    let caught = {
        let answered = std::pin::pin!(answered);
        catch_panics(&span, answered).await
    };
    let response = match caught {
        Ok(response) => response,
        Err(panic) => {
            // A panic's message is ours, but may quote a value a client sent: keys are masked.
            let message = keyward_core::key::redact_keys(panic_message(&*panic));
            tracing::error!(request_id = %id.as_str(), panic = %message, "a request panicked");
            ApiError::internal().into_response()
        }
    };
    if let Some(start) = start {
        span.in_scope(|| {
            tracing::debug!(
                status = response.status().as_u16(),
                latency_us = start.elapsed().as_micros() as u64,
                "answered"
            )
        });
    }
    request_id::finish(response, id)
}

/// `GET /v1/whoami`, as the router would answer it; a refusal with its body written at once
/// ([`request_id::refusal`]).
async fn whoami(
    state: &AppState,
    headers: &HeaderMap,
    arrived: std::time::Instant,
    id: &request_id::RequestId,
) -> Response {
    let prefetch = Principal::prefetch_whoami;
    let admission = match auth::admit_prefetching(state, headers, arrived, prefetch).await {
        Ok(admission) => admission,
        Err(refusal) => return request_id::refusal(refusal, id),
    };
    let now = admission.now();
    auth::answer(state, admission, |principal| async move {
        v1::whoami::answer(&principal, now)
    })
    .await
}

/// Polls `future` inside `span`, turning a panic into an `Err` instead of unwinding through
/// the connection.
fn catch_panics<'a, F: Future>(
    span: &'a tracing::Span,
    mut future: Pin<&'a mut F>,
) -> impl Future<Output = Result<F::Output, Box<dyn Any + Send>>> + 'a {
    std::future::poll_fn(move |cx| {
        let _entered = span.enter();
        // Once it panicked the future is never polled again: no broken state is observed.
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    })
}

fn mark_sensitive(headers: &mut HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if SENSITIVE.contains(name) {
            value.set_sensitive(true);
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_caught_with_its_message() {
        let span = tracing::Span::none();
        let future = std::pin::pin!(async {
            tokio::task::yield_now().await;
            panic!("boom")
        });
        let panic = catch_panics(&span, future)
            .await
            .expect_err("the panic is caught");
        assert_eq!(panic_message(&*panic), "boom");
        let fine = std::pin::pin!(async { 7 });
        assert_eq!(catch_panics(&span, fine).await.ok(), Some(7));
    }

    #[test]
    fn a_panic_message_is_read_from_either_kind_of_payload() {
        let literal = std::panic::catch_unwind(|| panic!("boom")).expect_err("panics");
        assert_eq!(panic_message(&*literal), "boom");
        let formatted =
            std::panic::catch_unwind(|| panic!("{} {}", "boom", 2)).expect_err("panics");
        assert_eq!(panic_message(&*formatted), "boom 2");
    }

    #[test]
    fn credentials_are_marked_sensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        headers.insert("x-api-key", "x".parse().unwrap());
        headers.insert(header::ACCEPT, "*/*".parse().unwrap());
        mark_sensitive(&mut headers);
        assert!(headers[header::AUTHORIZATION].is_sensitive());
        assert!(headers["x-api-key"].is_sensitive());
        assert!(!headers[header::ACCEPT].is_sensitive());
    }
}
