//! The ceiling: a bare axum hello-world on the same runtime keyward uses.
//! Prints `Listening on http://ADDR` like `keyward serve`. It answers `/v1/whoami` too, so that
//! it can be driven with exactly the requests keyward gets (the same path, script and keys).
//!
//! `/v1/whoami-shaped` is a reference, not the ceiling: a fixed answer with the headers and
//! body size of keyward's `whoami` (the rate-limit headers, a request id and a 710-byte JSON
//! body), so that the cost of sending that answer can be told apart from the cost of
//! checking the key.

use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_string());
    let hello = get(|| async { "Hello, World!" });
    let app = Router::new()
        .route("/", hello.clone())
        .route("/v1/whoami", hello)
        .route("/v1/whoami-shaped", get(|| async { shaped() }));
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    println!("Listening on http://{}", listener.local_addr().expect("addr"));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .expect("serve");
}

/// A `whoami` answer's shape: its headers, and a body of its size with ids of their length.
fn shaped() -> Response {
    const BODY: &str = concat!(
        r#"{"key":{"id":"key_zG5p9FbiXgxZkGkjWakb76p2","agent_id":"agt_zb28bf917TRrBEU7eDDwCqGH","#,
        r#""organization_id":"org_JxjxSBSx1GQWQUJe94jersgR","name":"seed-1","hint":"kw_PHFS…hqzw","#,
        r#""team_id":null,"owner_id":null,"environment":"development","status":"active","#,
        r#""rate_limit":null,"created_at":"2026-11-22T07:56:20.895Z","expires_at":null,"#,
        r#""revoked_at":null,"last_used_at":"2026-11-22T07:58:24.331Z","rolled_from":null,"#,
        r#""rolled_to":null},"agent":{"id":"agt_zb28bf917TRrBEU7eDDwCqGH","name":"Load","#,
        r#""capabilities":["content:read"]},"organization":{"id":"org_JxjxSBSx1GQWQUJe94jersgR","#,
        r#""name":"Bench","slug":"bench"},"plan":{"name":"bench","rate_limit":{"limit":1000000000,"#,
        r#""window_seconds":60}},"capabilities":["content:read"]}"#
    );
    let headers = [
        ("content-type", "application/json"),
        ("x-ratelimit-limit", "1000000000"),
        ("x-ratelimit-remaining", "999999999"),
        ("x-ratelimit-reset", "1795334364665"),
        ("ratelimit-policy", "\"default\";q=1000000000;w=60"),
        ("ratelimit", "\"default\";r=999999999;t=61"),
        ("x-request-id", "req_YgE7kGlEl2tmKbcp23xObq"),
    ];
    let mut response = BODY.into_response();
    for (name, value) in headers {
        response.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}
