//! Middleware from an async function, without boxing.
//!
//! axum's `from_fn` boxes each request's future and wraps the service behind it in another
//! box; on the key-checking path, with three such layers, those allocations were a
//! measurable share of a request's CPU time (docs/BENCHMARKS.md). A [`LeanLayer`] calls a
//! plain `async fn(state, request, next)` whose future is used as it is, so the only cost
//! left is the clone of the service behind it, which every tower middleware pays.

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};

use axum::response::Response;
use futures_util::future::{FutureExt, Map};
use tower::{Layer, Service};

/// Wraps each route with `f(state, request, next)`.
#[derive(Clone)]
pub struct LeanLayer<St, F> {
    state: St,
    f: F,
}

impl<St, F> LeanLayer<St, F> {
    pub fn new(state: St, f: F) -> Self {
        Self { state, f }
    }
}

impl<S, St: Clone, F: Clone> Layer<S> for LeanLayer<St, F> {
    type Service = LeanService<S, St, F>;

    fn layer(&self, inner: S) -> Self::Service {
        LeanService {
            inner,
            state: self.state.clone(),
            f: self.f.clone(),
        }
    }
}

#[derive(Clone)]
pub struct LeanService<S, St, F> {
    inner: S,
    state: St,
    f: F,
}

impl<S, St, F, Fut, R> Service<R> for LeanService<S, St, F>
where
    S: Clone,
    St: Clone,
    F: Fn(St, R, S) -> Fut,
    Fut: Future<Output = Response>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Map<Fut, fn(Response) -> Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The service behind is driven with `oneshot`, which waits for its readiness.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        (self.f)(self.state.clone(), req, self.inner.clone()).map(Ok)
    }
}
