//! Usage analytics and the account over HTTP.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{spawn_app, TestApp, ALL};

pub fn totals(body: &Value) -> (i64, i64, i64, i64) {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0, 0, 0), |acc, p| {
            (
                acc.0 + p["requests"].as_i64().unwrap(),
                acc.1 + p["success"].as_i64().unwrap(),
                acc.2 + p["client_errors"].as_i64().unwrap(),
                acc.3 + p["rate_limited"].as_i64().unwrap(),
            )
        })
}

/// Polls the usage endpoint until the counts (flushed about every second) reach `want`.
pub async fn wait_for_usage(app: &TestApp, key: &str, query: &str, want: i64) -> Value {
    let start = Instant::now();
    loop {
        let r = app.get(&format!("/v1/usage?{query}"), key).await;
        r.expect(200, "");
        if totals(&r.body).0 >= want || start.elapsed() > Duration::from_secs(5) {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_usage_series_matches_the_requests_sent() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (agent, counted_id, counted) = app.agent(&t.org, "Counted", &["content:read"], None).await;
    for _ in 0..7 {
        app.get("/v1/whoami", &counted).await.expect(200, "");
    }
    for _ in 0..3 {
        app.get("/v1/agents", &counted)
            .await
            .expect(403, "insufficient_capability");
    }
    app.get("/v1/websites/web_nothere", &counted)
        .await
        .expect(404, "not_found");
    // Refused before authentication: never counted against a key.
    app.get("/v1/whoami?api_key=x", &counted)
        .await
        .expect(400, "key_in_query");

    let body = wait_for_usage(
        &app,
        &t.key,
        &format!("key_id={counted_id}&granularity=minute"),
        11,
    )
    .await;
    assert_eq!(body["granularity"], "minute");
    assert_eq!(totals(&body), (11, 7, 4, 0));
    assert_eq!(
        body["data"].as_array().unwrap().len(),
        60,
        "an hour of minutes by default, zero-filled"
    );

    let by_agent = app
        .get(
            &format!("/v1/usage?agent_id={agent}&granularity=hour&group_by=key"),
            &t.key,
        )
        .await;
    by_agent.expect(200, "");
    assert_eq!(totals(&by_agent.body).0, 11);
    let keys = by_agent.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["key_id"], counted_id.as_str());
    assert_eq!(by_agent.body["data"].as_array().unwrap().len(), 24);
    let days = app
        .get(
            &format!("/v1/usage?key_id={counted_id}&granularity=day"),
            &t.key,
        )
        .await;
    assert_eq!(totals(&days.body).0, 11);
    assert_eq!(days.body["data"].as_array().unwrap().len(), 30);

    // last_used_at is kept within a minute of true.
    let key = app.get(&format!("/v1/keys/{counted_id}"), &t.key).await;
    let used =
        keyward_server::views::parse_rfc3339(key.body["last_used_at"].as_str().unwrap()).unwrap();
    assert!((app.service.now() - used).abs() < 60_000);

    // The account counts this month's requests of the whole organization.
    let account = app.get("/v1/account", &t.key).await;
    account.expect(200, "");
    assert_eq!(account.body["organization"]["id"], t.org.as_str());
    assert_eq!(account.body["plan"]["name"], "pro");
    assert_eq!(account.body["plan"]["rate_limit"]["limit"], 100);
    assert!(
        account.body["usage"]["requests_this_month"]
            .as_i64()
            .unwrap()
            >= 11
    );
}

#[tokio::test]
async fn usage_queries_are_validated_and_scoped() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let other = app.tenant("Other", "pro", ALL).await;
    app.get("/v1/usage", &t.key)
        .await
        .expect(400, "invalid_request");
    app.get(
        &format!("/v1/usage?key_id={}&agent_id={}", t.key_id, t.agent),
        &t.key,
    )
    .await
    .expect(400, "invalid_request");
    app.get(
        &format!("/v1/usage?key_id={}&granularity=week", t.key_id),
        &t.key,
    )
    .await
    .expect(400, "invalid_request");
    app.get(
        &format!(
            "/v1/usage?key_id={}&granularity=minute&from=2020-01-01T00:00:00Z",
            t.key_id
        ),
        &t.key,
    )
    .await
    .expect(400, "invalid_request");
    app.get(
        &format!(
            "/v1/usage?key_id={}&from=2030-01-01T00:00:00Z&to=2029-01-01T00:00:00Z",
            t.key_id
        ),
        &t.key,
    )
    .await
    .expect(400, "invalid_request");
    app.get(
        &format!("/v1/usage?key_id={}&from=yesterday", t.key_id),
        &t.key,
    )
    .await
    .expect(400, "invalid_request");
    app.get(&format!("/v1/usage?key_id={}", other.key_id), &t.key)
        .await
        .expect(404, "not_found");
    app.get(&format!("/v1/usage?agent_id={}", other.agent), &t.key)
        .await
        .expect(404, "not_found");
    let (_, _, no_account) = app
        .agent(&t.org, "NoAccount", &["content:read"], None)
        .await;
    app.get("/v1/account", &no_account)
        .await
        .expect(403, "insufficient_capability");
    // A team-scoped key reads only its own usage.
    let red = app.team(&t.org, "Red").await;
    let (_, red_id, red_key) = app
        .agent(&t.org, "Red", &["account:read"], Some(&red))
        .await;
    app.get(&format!("/v1/usage?key_id={red_id}"), &red_key)
        .await
        .expect(200, "");
    app.get(&format!("/v1/usage?key_id={}", t.key_id), &red_key)
        .await
        .expect(404, "not_found");
}
