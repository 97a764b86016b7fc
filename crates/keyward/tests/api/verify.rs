//! `POST /v1/keys/verify`: another service checks a key its client presented, and hears what a
//! request with that key would get (SPEC §3, §4, §6).

use keyward_core::RateLimit;
use keyward_server::Caller;
use serde_json::{json, Value};

use crate::helpers::{key_for, spawn_app_with, unknown_key, with_reports, Reply, TestApp, ALL};
use crate::usage::{totals, wait_for_usage};

async fn verify(app: &TestApp, caller: &str, body: Value) -> Reply {
    let r = app.post("/v1/keys/verify", caller, body).await;
    r.expect(200, "");
    r
}

/// A refusal that reveals nothing about the checked key.
#[track_caller]
fn assert_blind(r: &Reply, code: &str) {
    assert_eq!(r.body["valid"], false, "{}", r.text);
    assert_eq!(r.body["code"], code, "{}", r.text);
    assert!(
        r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.text
    );
    assert_eq!(r.body["key"], Value::Null, "{}", r.text);
    assert_eq!(r.body["agent"], Value::Null, "{}", r.text);
    assert_eq!(r.body["capabilities"], json!([]), "{}", r.text);
    assert_eq!(r.body["rate_limit"], Value::Null, "{}", r.text);
}

#[tokio::test]
async fn a_valid_key_with_its_agent_capabilities_and_window() {
    let app = spawn_app_with(with_reports).await;
    let t = app.tenant("Acme", "pro", &["keys:verify"]).await;
    let (agent, key_id, key) = app
        .agent(&t.org, "Reports", &["content:read", "reports:read"], None)
        .await;

    let r = verify(&app, &t.key, json!({"key": key})).await;
    assert_eq!(r.body["valid"], true);
    assert_eq!(r.body["code"], "valid");
    assert_eq!(r.body["message"], Value::Null);
    assert_eq!(r.body["key"]["id"], key_id.as_str());
    assert_eq!(r.body["key"]["status"], "active");
    assert!(r.body["key"].get("secret").is_none());
    assert_eq!(
        r.body["agent"],
        json!({"id": agent.as_str(), "name": "Reports", "capabilities": ["content:read", "reports:read"]})
    );
    assert_eq!(
        r.body["capabilities"],
        json!(["content:read", "reports:read"])
    );
    assert_eq!(r.body["rate_limit"]["limit"], 100);
    assert_eq!(r.body["rate_limit"]["remaining"], 99);
    let reset = r.body["rate_limit"]["reset"].as_i64().unwrap();
    assert!((reset - (app.service.now() + 60_000)).abs() < 2_000);
    assert!(!r.text.contains(&key), "the checked key is never echoed");
    // The caller's own window is in the headers, the checked key's in the body.
    assert_eq!(r.header("x-ratelimit-remaining"), "99");

    // A custom capability counts like a built-in one, and implied ones are granted.
    let r = verify(
        &app,
        &t.key,
        json!({"key": key, "capability": "reports:read"}),
    )
    .await;
    assert_eq!(
        (r.body["valid"].clone(), r.body["code"].clone()),
        (json!(true), json!("valid"))
    );
    let r = verify(
        &app,
        &t.key,
        json!({"key": key, "capability": "content:read"}),
    )
    .await;
    assert_eq!(r.body["valid"], true);
}

#[tokio::test]
async fn a_missing_capability_is_named_custom_or_built_in() {
    let app = spawn_app_with(with_reports).await;
    let t = app.tenant("Acme", "pro", &["keys:verify"]).await;
    let (_, _, reader) = app.agent(&t.org, "Reader", &["content:read"], None).await;

    for cap in ["reports:read", "content:write", "billing:read"] {
        let r = verify(&app, &t.key, json!({"key": reader, "capability": cap})).await;
        assert_eq!(r.body["valid"], false, "{}", r.text);
        assert_eq!(r.body["code"], "insufficient_capability");
        assert!(
            r.body["message"].as_str().unwrap().contains(cap),
            "the message names {cap}: {}",
            r.text
        );
        // The key is real: what it is and may do is shown, and its window was reached.
        assert_eq!(r.body["capabilities"], json!(["content:read"]));
        assert!(r.body["key"]["id"].is_string());
        assert!(r.body["rate_limit"]["remaining"].is_u64());
    }
    // Not even a capability name: the caller's mistake, a 400 that does not repeat it.
    let r = app
        .post(
            "/v1/keys/verify",
            &t.key,
            json!({"key": reader, "capability": "Reports Read"}),
        )
        .await;
    r.expect(400, "invalid_request");
    assert_eq!(r.body["error"]["field"], "capability");
    assert!(!r.text.contains("Reports Read"));
    assert!(!r.text.contains(&reader));
}

#[tokio::test]
async fn malformed_unknown_revoked_and_expired_keys() {
    let app = spawn_app_with(with_reports).await;
    let t = app.tenant("Acme", "pro", &["keys:verify"]).await;
    let caller = Caller::cli(t.org.clone());

    let r = verify(&app, &t.key, json!({"key": "kw_not_a_key"})).await;
    assert_blind(&r, "malformed_api_key");
    let r = verify(&app, &t.key, json!({"key": ""})).await;
    assert_blind(&r, "malformed_api_key");
    let mut typo = t.key.clone();
    typo.pop();
    typo.push(if t.key.ends_with('A') { 'B' } else { 'A' });
    assert_blind(
        &verify(&app, &t.key, json!({"key": typo})).await,
        "malformed_api_key",
    );
    let r = verify(&app, &t.key, json!({"key": unknown_key()})).await;
    assert_blind(&r, "invalid_api_key");

    let (agent, revoked_id, revoked) = app.agent(&t.org, "Gone", &["content:read"], None).await;
    app.service
        .revoke_key(&caller, &revoked_id, Some("leaked"))
        .await
        .unwrap();
    let r = verify(&app, &t.key, json!({"key": revoked})).await;
    assert_eq!(r.body["valid"], false);
    assert_eq!(r.body["code"], "revoked_api_key");
    // Our own organization's key: what it was is shown, but it may do nothing now.
    assert_eq!(r.body["key"]["id"], revoked_id.as_str());
    assert_eq!(r.body["key"]["status"], "revoked");
    assert_eq!(r.body["agent"]["id"], agent.as_str());
    assert_eq!(r.body["capabilities"], json!([]));
    assert_eq!(r.body["rate_limit"], Value::Null);

    let now = app.service.now();
    let (expiring_id, expiring) = key_for(&app, &t.org, &agent, Some(now + 60_000), None).await;
    assert_eq!(
        verify(&app, &t.key, json!({"key": expiring})).await.body["code"],
        "valid"
    );
    app.clock.advance(61_000);
    let r = verify(&app, &t.key, json!({"key": expiring})).await;
    assert_eq!(r.body["code"], "expired_api_key");
    assert_eq!(r.body["key"]["id"], expiring_id.as_str());
    assert_eq!(r.body["key"]["status"], "expired");

    // A deleted agent's keys are revoked.
    let (gone_agent, _, gone) = app.agent(&t.org, "Deleted", &["content:read"], None).await;
    app.service
        .delete_agent(&caller, &gone_agent)
        .await
        .unwrap();
    assert_eq!(
        verify(&app, &t.key, json!({"key": gone})).await.body["code"],
        "revoked_api_key"
    );
}

#[tokio::test]
async fn keys_of_other_organizations_are_invalid_and_reveal_nothing() {
    let app = spawn_app_with(with_reports).await;
    let t = app.tenant("Acme", "pro", &["keys:verify"]).await;
    let other = app.tenant("Other", "pro", ALL).await;
    let free = app.tenant("Freeloader", "free", ALL).await;
    let (o_agent, o_revoked_id, o_revoked) = app
        .agent(&other.org, "Revoked", &["content:read"], None)
        .await;
    app.service
        .revoke_key(&Caller::cli(other.org.clone()), &o_revoked_id, None)
        .await
        .unwrap();
    let (_, o_expired) = key_for(
        &app,
        &other.org,
        &o_agent,
        Some(app.service.now() + 1_000),
        None,
    )
    .await;
    // A limit of one: if a verification consumed it, the key's own request would be a 429.
    let (_, o_single) = key_for(
        &app,
        &other.org,
        &o_agent,
        None,
        Some(RateLimit::new(1, 60).unwrap()),
    )
    .await;
    app.clock.advance(2_000);

    for key in [&other.key, &o_revoked, &o_expired, &o_single, &free.key] {
        for body in [
            json!({"key": key}),
            json!({"key": key, "capability": "content:read"}),
        ] {
            let r = verify(&app, &t.key, body).await;
            assert_blind(&r, "invalid_api_key");
            assert!(!r.text.contains(other.org.as_str()));
            assert!(!r.text.contains(free.org.as_str()));
        }
    }
    // The other organization's plan without API access stays its own business: its key is
    // simply unknown here, and its own calls are refused for the plan.
    app.get("/v1/whoami", &free.key)
        .await
        .expect(403, "plan_without_api_access");
    let r = app
        .post("/v1/keys/verify", &free.key, json!({"key": t.key}))
        .await;
    r.expect(403, "plan_without_api_access");
    // Nothing of the other organization's key was consumed.
    app.get("/v1/whoami", &o_single).await.expect(200, "");
}

#[tokio::test]
async fn a_team_scoped_caller_checks_only_its_team_keys() {
    let app = spawn_app_with(with_reports).await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let red = app.team(&t.org, "Red").await;
    let blue = app.team(&t.org, "Blue").await;
    let (_, _, red_verifier) = app
        .agent(&t.org, "Red verifier", &["keys:verify"], Some(&red))
        .await;
    let (_, red_key_id, red_key) = app
        .agent(&t.org, "Red app", &["content:read"], Some(&red))
        .await;
    let (_, _, blue_key) = app
        .agent(&t.org, "Blue app", &["content:read"], Some(&blue))
        .await;

    let r = verify(&app, &red_verifier, json!({"key": red_key})).await;
    assert_eq!(r.body["valid"], true);
    assert_eq!(r.body["key"]["id"], red_key_id.as_str());
    assert_eq!(r.body["key"]["team_id"], red.as_str());
    for outside in [&blue_key, &t.key] {
        assert_blind(
            &verify(&app, &red_verifier, json!({"key": outside})).await,
            "invalid_api_key",
        );
    }
    // An organization-wide verifier sees every key of the organization.
    let r = verify(&app, &t.key, json!({"key": blue_key})).await;
    assert_eq!(r.body["valid"], true);
}

#[tokio::test]
async fn the_caller_needs_keys_verify_and_a_key_of_its_own() {
    let app = spawn_app_with(with_reports).await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (_, _, manager) = app
        .agent(&t.org, "Manager", &["keys:write", "content:write"], None)
        .await;
    let r = app
        .post("/v1/keys/verify", &manager, json!({"key": t.key}))
        .await;
    r.expect(403, "insufficient_capability");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("keys:verify"));
    assert_eq!(
        r.header("www-authenticate"),
        "Bearer realm=\"keyward\", error=\"insufficient_scope\", scope=\"keys:verify\""
    );
    assert!(!r.text.contains(&t.key));

    let r = app
        .client
        .post(app.url("/v1/keys/verify"))
        .json(&json!({"key": t.key}))
        .send()
        .await
        .unwrap();
    let r = Reply::from(r).await;
    r.expect(401, "missing_api_key");
    assert!(!r.text.contains(&t.key));

    // Bad bodies: 400 naming the field, never repeating the key.
    for (body, field) in [
        (format!("{{\"key\": \"{}\", \"extra\": 1}}", t.key), "extra"),
        ("{\"capability\": \"content:read\"}".to_string(), "key"),
        (format!("{{\"key\": \"{}\"", t.key), "body"),
        ("{\"key\": 12}".to_string(), "key"),
    ] {
        let r = Reply::from(
            app.req(reqwest::Method::POST, "/v1/keys/verify", &t.key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap(),
        )
        .await;
        r.expect(400, "invalid_request");
        assert!(
            r.body["error"]["field"].as_str().unwrap().contains(field),
            "{body}: {}",
            r.text
        );
        assert!(!r.text.contains(&t.key), "{}", r.text);
    }
}

#[tokio::test]
async fn the_checked_key_rate_limit_is_consumed_and_shared_with_its_requests() {
    let app = spawn_app_with(with_reports).await;
    let t = app.tenant("Acme", "pro", &["keys:verify"]).await;
    let (agent, _, _) = app.agent(&t.org, "Limited", &["content:read"], None).await;
    let (_, limited) = key_for(
        &app,
        &t.org,
        &agent,
        None,
        Some(RateLimit::new(3, 60).unwrap()),
    )
    .await;

    for remaining in [2, 1] {
        let r = verify(&app, &t.key, json!({"key": limited})).await;
        assert_eq!(r.body["valid"], true);
        assert_eq!(r.body["rate_limit"]["limit"], 3);
        assert_eq!(r.body["rate_limit"]["remaining"], remaining);
    }
    // One left: a request with the key takes it ...
    let own = app.get("/v1/whoami", &limited).await;
    own.expect(200, "");
    assert_eq!(own.header("x-ratelimit-remaining"), "0");
    // ... so the next verification says what the next request would hear.
    let r = verify(&app, &t.key, json!({"key": limited})).await;
    assert_eq!(r.body["valid"], false);
    assert_eq!(r.body["code"], "rate_limited");
    assert!(r.body["message"].as_str().unwrap().contains("Retry in"));
    assert_eq!(r.body["rate_limit"]["remaining"], 0);
    assert_eq!(r.body["capabilities"], json!(["content:read"]));
    app.get("/v1/whoami", &limited)
        .await
        .expect(429, "rate_limited");
    // The window moves on for verifications as for requests.
    app.clock.advance(61_000);
    let r = verify(
        &app,
        &t.key,
        json!({"key": limited, "capability": "content:read"}),
    )
    .await;
    assert_eq!(r.body["code"], "valid");
    assert_eq!(r.body["rate_limit"]["remaining"], 2);
}

#[tokio::test]
async fn the_checked_key_usage_is_counted() {
    let app = spawn_app_with(with_reports).await;
    let t = app
        .tenant("Acme", "pro", &["keys:verify", "account:read"])
        .await;
    let (agent, _, _) = app.agent(&t.org, "Counted", &["content:read"], None).await;
    let (counted_id, counted) = key_for(
        &app,
        &t.org,
        &agent,
        None,
        Some(RateLimit::new(5, 60).unwrap()),
    )
    .await;

    for _ in 0..3 {
        verify(&app, &t.key, json!({"key": counted})).await;
    }
    let r = verify(
        &app,
        &t.key,
        json!({"key": counted, "capability": "reports:read"}),
    )
    .await;
    assert_eq!(r.body["code"], "insufficient_capability");
    verify(&app, &t.key, json!({"key": counted})).await;
    // The sixth is over the limit: counted as rate limited.
    let r = verify(&app, &t.key, json!({"key": counted})).await;
    assert_eq!(r.body["code"], "rate_limited");

    let body = wait_for_usage(
        &app,
        &t.key,
        &format!("key_id={counted_id}&granularity=minute"),
        6,
    )
    .await;
    assert_eq!(totals(&body), (6, 4, 1, 1), "requests, success, 4xx, 429");
    let seen = app.get(&format!("/v1/keys/{counted_id}"), &t.key).await;
    // keys:read is not held by the verifier: 403, so read it as the operator would.
    seen.expect(403, "insufficient_capability");
    let record = app
        .service
        .get_key(&Caller::cli(t.org.clone()), &counted_id)
        .await
        .unwrap();
    assert!(record.last_used_at.is_some(), "last_used_at moves too");
}

/// Every answer is a 200, so `/metrics` counts them by the code answered: an operator sees
/// how many of the keys their services checked passed, and why the others did not.
#[tokio::test]
async fn metrics_count_verifications_by_the_code_answered() {
    let app = spawn_app_with(with_reports).await;
    let t = app.tenant("Acme", "pro", &["keys:verify"]).await;
    let (_, _, reader) = app.agent(&t.org, "Reader", &["content:read"], None).await;
    for body in [
        json!({"key": reader}),
        json!({"key": reader}),
        json!({"key": reader, "capability": "reports:read"}),
        json!({"key": "kw_not_a_key"}),
        json!({"key": unknown_key()}),
    ] {
        verify(&app, &t.key, body).await;
    }
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (code, n) in [
        ("valid", 2),
        ("insufficient_capability", 1),
        ("malformed_api_key", 1),
        ("invalid_api_key", 1),
    ] {
        let line = format!("keyward_verifications_total{{code=\"{code}\"}} {n}\n");
        assert!(text.contains(&line), "no {line:?} in {text}");
    }
    assert_eq!(
        text.matches("keyward_verifications_total{").count(),
        4,
        "only the codes answered: {text}"
    );
    assert!(
        !text.contains(&reader),
        "a checked key never becomes a label"
    );
}
