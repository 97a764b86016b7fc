//! The ceiling: a bare axum hello-world on the same runtime keyward uses.
//! Prints `Listening on http://ADDR` like `keyward serve`. It answers `/v1/whoami` too, so that
//! it can be driven with exactly the requests keyward gets (the same path, script and keys).

use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_string());
    let hello = get(|| async { "Hello, World!" });
    let app = Router::new()
        .route("/", hello.clone())
        .route("/v1/whoami", hello);
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    println!("Listening on http://{}", listener.local_addr().expect("addr"));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .expect("serve");
}
