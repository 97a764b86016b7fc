//! SPEC §10 with Redis on one node: limits shared through Redis, and what a node does while
//! Redis is down (the local or deny fallback), how it shows it, and how it heals by itself.

use std::time::{Duration, Instant};

use keyward_core::RateLimit;
use keyward_server::limiter::Fallback;
use keyward_server::service::KeyChanges;
use keyward_server::Caller;
use serde_json::Value;

use crate::helpers::{spawn_app_with, TestApp, ALL};

/// A Redis URL on a port where nothing listens.
fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("redis://127.0.0.1:{port}")
}

/// A key allowed `limit` requests per minute.
async fn key_limited_to(app: &TestApp, limit: u64) -> String {
    let t = app.tenant("Acme", "pro", ALL).await;
    app.service
        .update_key(
            &Caller::cli(t.org.clone()),
            &t.key_id,
            KeyChanges {
                rate_limit: Some(Some(RateLimit::new(limit, 60).unwrap())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    t.key
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn metrics(app: &TestApp) -> String {
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    r.text().await.unwrap()
}

/// Polls `/readyz` until its Redis check reads `want`, for at most `within`.
async fn wait_for_redis(app: &TestApp, want: &str, within: Duration) -> (u16, Value) {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = readyz(app).await;
        let seen = body["checks"]["redis"]
            .as_str()
            .or_else(|| (status == 503).then_some("down"))
            .unwrap_or("");
        if seen == want {
            return (status, body);
        }
        assert!(
            Instant::now() < deadline,
            "Redis still not {want} after {within:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_down_with_local_fallback_limits_per_node() {
    let app = spawn_app_with(|c| c.redis_url = Some(closed_port_url())).await;
    let key = key_limited_to(&app, 3).await;
    for i in 0..3 {
        let r = app.get("/v1/whoami", &key).await;
        r.expect(200, "");
        assert_eq!(r.header("x-ratelimit-remaining"), (2 - i).to_string());
    }
    app.get("/v1/whoami", &key)
        .await
        .expect(429, "rate_limited");
    let (status, body) = wait_for_redis(&app, "down", Duration::from_secs(3)).await;
    assert_eq!(status, 200, "still ready: it limits, per node");
    assert_eq!(body["checks"]["storage"], "ok");
    assert!(metrics(&app).await.contains("\nkeyward_redis_up 0\n"));
}

#[tokio::test]
async fn redis_down_with_deny_fallback_answers_503() {
    let app = spawn_app_with(|c| {
        c.redis_url = Some(closed_port_url());
        c.redis_fallback = Fallback::Deny;
    })
    .await;
    let key = key_limited_to(&app, 3).await;
    for _ in 0..3 {
        app.get("/v1/whoami", &key).await.expect(503, "unavailable");
    }
    let (status, _) = wait_for_redis(&app, "down", Duration::from_secs(3)).await;
    assert_eq!(
        status, 503,
        "not ready while every limited request would be refused"
    );
    assert!(metrics(&app).await.contains("\nkeyward_redis_up 0\n"));
}

#[tokio::test]
async fn no_redis_no_redis_check() {
    let app = spawn_app_with(|_| {}).await;
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200);
    assert_eq!(body["checks"], serde_json::json!({"storage": "ok"}));
    assert!(!metrics(&app).await.contains("keyward_redis_up"));
}

/// A `redis-server` of our own, so that it can be stopped and started again.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    /// `None` (and a note) when `redis-server` is not installed.
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        if !redis.restart() {
            eprintln!("skipped: redis-server is not installed");
            return None;
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    fn restart(&mut self) -> bool {
        let Ok(child) = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
        else {
            return false;
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn redis_outage_falls_back_then_heals_by_itself() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let app = spawn_app_with(|c| c.redis_url = Some(redis.url())).await;
    let key = key_limited_to(&app, 2).await;
    app.get("/v1/whoami", &key).await.expect(200, "");
    app.get("/v1/whoami", &key).await.expect(200, "");
    app.get("/v1/whoami", &key)
        .await
        .expect(429, "rate_limited");
    let (status, _) = wait_for_redis(&app, "ok", Duration::from_secs(3)).await;
    assert_eq!(status, 200);
    assert!(metrics(&app).await.contains("\nkeyward_redis_up 1\n"));

    redis.stop();
    // The local limiter has counted nothing for this key: it starts afresh, per node.
    app.get("/v1/whoami", &key).await.expect(200, "");
    wait_for_redis(&app, "down", Duration::from_secs(3)).await;
    assert!(metrics(&app).await.contains("\nkeyward_redis_up 0\n"));

    redis.restart();
    let (status, _) = wait_for_redis(&app, "ok", Duration::from_secs(10)).await;
    assert_eq!(status, 200);
    assert!(metrics(&app).await.contains("\nkeyward_redis_up 1\n"));
    // Back on Redis, which restarted empty: a fresh window there.
    let r = app.get("/v1/whoami", &key).await;
    r.expect(200, "");
    assert_eq!(r.header("x-ratelimit-remaining"), "1");
    app.get("/v1/whoami", &key).await.expect(200, "");
    app.get("/v1/whoami", &key)
        .await
        .expect(429, "rate_limited");
}

/// The fast path alone: two nodes on separate databases (so the change counter cannot carry
/// anything across) hear each other's auth changes through Redis and clear their key caches.
#[tokio::test]
async fn an_auth_change_clears_the_other_nodes_key_cache_through_redis() {
    let Ok(url) = std::env::var("KEYWARD_TEST_REDIS_URL") else {
        eprintln!("skipped: KEYWARD_TEST_REDIS_URL not set");
        return;
    };
    let a = spawn_app_with(|c| c.redis_url = Some(url.clone())).await;
    let b = spawn_app_with(|c| c.redis_url = Some(url.clone())).await;
    let on_a = a.tenant("Acme", "pro", ALL).await;
    let on_b = b.tenant("Beta", "pro", ALL).await;
    // B caches its key, and keeps it past its start-up clears (first watcher poll, first
    // subscription), so that only a message can empty the cache below.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        b.get("/v1/whoami", &on_b.key).await.expect(200, "");
        if b.service.key_cache().entry_count().await > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if b.service.key_cache().entry_count().await > 0 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "B never kept its key cached");
    }
    a.service
        .revoke_key(&Caller::cli(on_a.org.clone()), &on_a.key_id, None)
        .await
        .unwrap();
    let start = Instant::now();
    while b.service.key_cache().entry_count().await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "B's key cache was not cleared by A's change"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Messages sent while a node was cut off from Redis are lost, so it clears its key cache once
/// it has subscribed again.
#[tokio::test]
async fn a_node_clears_its_key_cache_after_resubscribing() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let app = spawn_app_with(|c| c.redis_url = Some(redis.url())).await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let cached = async || {
        app.get("/v1/whoami", &t.key).await.expect(200, "");
        app.service.key_cache().entry_count().await > 0
    };
    // Past the start-up clears (first watcher poll, first subscription).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if cached().await {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if app.service.key_cache().entry_count().await > 0 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the key never stayed cached");
    }
    redis.stop();
    wait_for_redis(&app, "down", Duration::from_secs(3)).await;
    assert!(cached().await, "an outage alone does not clear the cache");
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.service.key_cache().entry_count().await > 0 {
        assert!(
            Instant::now() < deadline,
            "the cache was not cleared after resubscribing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
