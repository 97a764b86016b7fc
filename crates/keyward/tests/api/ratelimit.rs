//! SPEC §4 over HTTP: a true rolling window per key, its headers, and 429s.

use keyward_core::RateLimit;
use keyward_server::service::KeyChanges;
use keyward_server::Caller;

use crate::helpers::{spawn_app, TestApp, ALL};

/// A key of a new agent with the given override (set as an operator, so any rate is allowed).
async fn limited_key(
    app: &TestApp,
    org: &keyward_core::OrgId,
    name: &str,
    limit: u64,
    window: u64,
) -> String {
    let (_, id, key) = app.agent(org, name, &["content:read"], None).await;
    app.service
        .update_key(
            &Caller::cli(org.clone()),
            &id,
            KeyChanges {
                rate_limit: Some(Some(RateLimit::new(limit, window).unwrap())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    key
}

#[tokio::test]
async fn admits_exactly_the_limit_then_429s_with_headers() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let key = limited_key(&app, &t.org, "Five", 5, 60).await;
    for i in 0..5u64 {
        let r = app.get("/v1/whoami", &key).await;
        r.expect(200, "");
        assert_eq!(r.header("x-ratelimit-limit"), "5");
        assert_eq!(r.header("x-ratelimit-remaining"), (4 - i).to_string());
        assert_eq!(r.header("ratelimit-policy"), "\"default\";q=5;w=60");
        assert_eq!(
            r.header("ratelimit"),
            format!("\"default\";r={};t=60", 4 - i)
        );
        let reset: i64 = r.header("x-ratelimit-reset").parse().unwrap();
        assert!(
            (reset - (app.service.now() + 60_000)).abs() < 2_000,
            "reset is the oldest counted request + window, in ms"
        );
    }
    let r = app.get("/v1/whoami", &key).await;
    r.expect(429, "rate_limited");
    assert_eq!(r.header("x-ratelimit-remaining"), "0");
    let retry: u64 = r.header("retry-after").parse().unwrap();
    let t_secs: u64 = r
        .header("ratelimit")
        .rsplit("t=")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry >= 1 && retry >= t_secs,
        "Retry-After {retry} is never earlier than t={t_secs}"
    );
    assert!(retry <= 60);
    // A 429 is not counted: after the window the full limit is back.
    app.clock.advance(60_001);
    for _ in 0..5 {
        app.get("/v1/whoami", &key).await.expect(200, "");
    }
    // The plan's limit applies without an override (pro: 100 per 60 s).
    let r = app.get("/v1/whoami", &t.key).await;
    assert_eq!(r.header("x-ratelimit-limit"), "100");
    assert_eq!(r.header("ratelimit-policy"), "\"default\";q=100;w=60");
}

#[tokio::test]
async fn the_window_rolls_rather_than_resets() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let key = limited_key(&app, &t.org, "Ten", 10, 2).await;
    let start = app.service.now();
    for _ in 0..5 {
        app.get("/v1/whoami", &key).await.expect(200, "");
    }
    app.clock.advance(1_200);
    for _ in 0..5 {
        app.get("/v1/whoami", &key).await.expect(200, "");
    }
    app.get("/v1/whoami", &key)
        .await
        .expect(429, "rate_limited");
    // At t = 2.1 s the first five have left the window: exactly five more are admitted.
    app.clock.advance(900);
    let mut last = None;
    for _ in 0..5 {
        let r = app.get("/v1/whoami", &key).await;
        r.expect(200, "");
        last = Some(r);
    }
    let last = last.unwrap();
    let reset: i64 = last.header("x-ratelimit-reset").parse().unwrap();
    // The oldest counted request is one of those at t = 1.2 s: it leaves at 1.2 s + 2 s.
    assert!(
        (reset - (start + 1_200 + 2_000)).abs() < 100,
        "reset {reset} vs {}",
        start + 3_200
    );
    let r = app.get("/v1/whoami", &key).await;
    r.expect(429, "rate_limited");
    assert_eq!(
        r.header("x-ratelimit-reset"),
        last.header("x-ratelimit-reset")
    );
}

#[tokio::test]
async fn every_request_that_reaches_the_limiter_counts_and_401s_never_do() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let key = limited_key(&app, &t.org, "Three", 3, 60).await;
    // A 403 and a 404 after authentication count, and carry the headers.
    let r = app.get("/v1/agents", &key).await;
    r.expect(403, "insufficient_capability");
    assert_eq!(r.header("x-ratelimit-remaining"), "2");
    let r = app.get("/v1/websites/web_missing", &key).await;
    r.expect(404, "not_found");
    assert_eq!(r.header("x-ratelimit-remaining"), "1");
    // Refusals before authentication never count against a key.
    for _ in 0..5 {
        let r = app.get(&format!("/v1/whoami?api_key={key}"), &key).await;
        r.expect(400, "key_in_query");
        assert_eq!(r.header("x-ratelimit-limit"), "");
    }
    let r = app.get("/v1/whoami", &key).await;
    r.expect(200, "");
    assert_eq!(r.header("x-ratelimit-remaining"), "0");
}

#[tokio::test]
async fn concurrent_requests_never_exceed_the_limit() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let key = limited_key(&app, &t.org, "Twenty", 20, 60).await;
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let client = app.client.clone();
        let url = app.url("/v1/whoami");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut admitted = 0;
    let mut limited = 0;
    for task in tasks {
        match task.await.unwrap() {
            200 => admitted += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(admitted, 20);
    assert_eq!(limited, 40);
}

#[tokio::test]
async fn keys_may_not_raise_their_rate_above_the_plan_but_operators_may() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let r = app.post(&format!("/v1/agents/{}/keys", t.agent), &t.key, serde_json::json!({"name": "fast", "rate_limit": {"limit": 1000, "window_seconds": 60}})).await;
    r.expect(400, "invalid_request");
    assert_eq!(r.body["error"]["field"], "rate_limit");
    let r = app
        .post(
            &format!("/v1/agents/{}/keys", t.agent),
            &t.key,
            serde_json::json!({"name": "slow", "rate_limit": {"limit": 10, "window_seconds": 60}}),
        )
        .await;
    r.expect(201, "");
    let slow = r.body["secret"].as_str().unwrap().to_string();
    assert_eq!(
        app.get("/v1/whoami", &slow)
            .await
            .header("x-ratelimit-limit"),
        "10"
    );
    let fast = limited_key(&app, &t.org, "Fast", 5000, 60).await;
    assert_eq!(
        app.get("/v1/whoami", &fast)
            .await
            .header("x-ratelimit-limit"),
        "5000"
    );
}

/// JSON answers get their headers from a map laid out once per limit (content type, the
/// rate-limit headers, a slot for the request id): each header appears once, with this
/// request's values, and the request id is filled in (the client's own when acceptable).
#[tokio::test]
async fn laid_out_answers_carry_each_header_once_with_this_requests_values() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let key = limited_key(&app, &t.org, "Three", 3, 60).await;
    let mut ids = Vec::new();
    for (i, path) in ["/v1/whoami", "/v1/blogs", "/v1/whoami"].iter().enumerate() {
        let r = app.get(path, &key).await;
        r.expect(200, "");
        for name in [
            "content-type",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "ratelimit-policy",
            "ratelimit",
            "x-request-id",
        ] {
            assert_eq!(r.headers.get_all(name).iter().count(), 1, "{path}: {name}");
        }
        assert_eq!(r.header("content-type"), "application/json");
        let remaining = (2 - i).to_string();
        assert_eq!(r.header("x-ratelimit-remaining"), remaining, "{path}");
        assert!(r
            .header("ratelimit")
            .starts_with(&format!("\"default\";r={remaining};t=")));
        assert_eq!(r.header("ratelimit-policy"), "\"default\";q=3;w=60");
        assert!(r.header("x-request-id").starts_with("req_"), "{path}");
        ids.push(r.header("x-request-id").to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "a new id for every request");

    let r = app
        .client
        .get(app.url("/v1/whoami"))
        .header("Authorization", format!("Bearer {key}"))
        .header("X-Request-Id", "trace-42")
        .send()
        .await
        .unwrap();
    let r = crate::helpers::Reply::from(r).await;
    r.expect(429, "rate_limited");
    assert_eq!(r.headers.get_all("x-request-id").iter().count(), 1);
    assert_eq!(r.header("x-request-id"), "trace-42");
    assert_eq!(r.header("x-ratelimit-remaining"), "0");
}
