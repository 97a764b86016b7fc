//! In-process cost of `GET /v1/whoami` through the whole application (the gate, the key
//! check, the rate limiter, the usage count and the answer), without the network: what
//! keyward adds to a request, apart from what every HTTP server pays to hyper and the kernel.
//!
//! Keys rotate in order, as in the HTTP benchmark, over 10 000 and over 100 000 keys: with
//! that many, a key's state has left the processor's caches by its next turn, and waiting for
//! memory is most of the cost. One key asked for again and again, its state always cached,
//! is the floor. Run with `cargo bench -p keyward-server --bench gate`.
//!
//! What it measures: the cached path only (every key is found once before measuring; a
//! cached key stays for at least ten minutes, longer than any run of this benchmark), on the
//! benchmark plan's limit, far above what is sent, so the limiter's approximate mode (limits
//! above 10 000 per window) as in the HTTP benchmark; the built-in plans' exact mode is not
//! measured here. No flusher runs: usage stays counted in each key's cell, which holds at
//! most the minutes since the benchmark started.

#![allow(clippy::expect_used)]

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use criterion::{criterion_group, criterion_main, Criterion};
use keyward_core::{ApiKey, Plan, RateLimit};
use keyward_server::http::{AppState, Shared};
use keyward_server::limiter::{Limiter, LocalLimiter};
use keyward_server::Config;
use keyward_store::keys::{self, KeyRecord};
use tower::ServiceExt;

mod common;

/// The allocator the `keyward` binary runs with, so that allocations cost here what they cost
/// there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The application over a fresh store with `count` keys on a plan whose limit is never
/// reached, and the keys' headers.
async fn fixture(count: usize) -> (tempfile::TempDir, AppState, Vec<String>) {
    let mut config = Config::default();
    config.plans.insert(
        "bench".into(),
        Plan {
            name: "bench".into(),
            api_access: true,
            rate_limit: RateLimit::new(1_000_000_000, 60).expect("a valid limit"),
            max_keys: None,
        },
    );
    let common::Setup {
        dir,
        service,
        org,
        agent,
    } = common::setup(config, "bench", "Load").await;
    let mut headers = Vec::with_capacity(count);
    let mut tx = service.store().begin().await.expect("begin");
    for i in 0..count {
        let secret = ApiKey::generate(&service.config().key_prefix);
        let name = format!("seed-{i}");
        let record = KeyRecord::seeded(&org.id, &agent.agent.id, name, &secret, service.now());
        keys::insert(&mut tx, &record).await.expect("insert");
        headers.push(format!("Bearer {}", secret.expose()));
    }
    keyward_store::commit(tx).await.expect("commit");
    let state = AppState::new(Shared {
        service,
        recorder: Default::default(),
        metrics: Default::default(),
        limiter: Arc::new(Limiter::local(Arc::new(LocalLimiter::default()))),
        openapi: Arc::default(),
        jobs_waiting: Arc::default(),
    });
    (dir, state, headers)
}

async fn whoami<S>(app: &S, authorization: &str)
where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    let request = Request::get("/v1/whoami")
        .header(header::AUTHORIZATION, authorization)
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    black_box(response);
}

fn gate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("whoami through the gate");
    for count in [10_000, 100_000] {
        let (_dir, state, headers) = rt.block_on(fixture(count));
        let app = keyward_server::http::Application::new(state).at(None);
        // Every key found once, so that what is measured is the cached path.
        rt.block_on(async {
            for h in &headers {
                whoami(&app, h).await;
            }
        });
        if count == 10_000 {
            group.bench_function("one key, always cached", |b| {
                b.to_async(&rt).iter(|| whoami(&app, &headers[0]))
            });
        }
        let mut next = 0;
        group.bench_function(format!("{count} keys in rotation"), |b| {
            b.to_async(&rt).iter(|| {
                next = (next + 1) % headers.len();
                whoami(&app, &headers[next])
            })
        });
    }
    group.finish();
}

criterion_group!(benches, gate);
criterion_main!(benches);
