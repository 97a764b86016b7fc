//! The agent and key lifecycle over HTTP.

use serde_json::json;

use crate::helpers::{spawn_app, ALL};

#[tokio::test]
async fn agent_create_returns_its_production_key_once() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let r = app.post("/v1/agents", &t.key, json!({"name": "Billing", "description": "Bills", "capabilities": ["content:read", "generate"]})).await;
    r.expect(201, "");
    assert!(r.body["id"].as_str().unwrap().starts_with("agt_"));
    assert_eq!(r.body["capabilities"], json!(["content:read", "generate"]));
    let first = &r.body["first_key"];
    assert_eq!(first["name"], "Production");
    assert_eq!(first["environment"], "production");
    assert_eq!(first["status"], "active");
    let secret = first["secret"].as_str().unwrap();
    assert!(secret.starts_with("kw_") && secret.len() == 41);
    let hint = first["hint"].as_str().unwrap();
    assert_eq!(
        hint,
        format!(
            "kw_{}\u{2026}{}",
            &secret[3..7],
            &secret[secret.len() - 4..]
        )
    );
    // The first key works and knows its agent.
    let who = app.get("/v1/whoami", secret).await;
    who.expect(200, "");
    assert_eq!(who.body["agent"]["name"], "Billing");
    assert_eq!(
        who.body["capabilities"],
        json!(["content:read", "generate"])
    );
    // The secret is never shown again.
    let agent_id = r.body["id"].as_str().unwrap();
    let list = app
        .get(&format!("/v1/agents/{agent_id}/keys"), &t.key)
        .await;
    list.expect(200, "");
    assert!(!list.text.contains(secret));
    assert_eq!(list.body["data"][0]["hint"], hint);
    let one = app
        .get(
            &format!("/v1/keys/{}", first["id"].as_str().unwrap()),
            &t.key,
        )
        .await;
    assert!(!one.text.contains(secret));
    assert!(one.body.get("secret").is_none());
}

#[tokio::test]
async fn key_create_update_and_list() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let team = app.team(&t.org, "Editorial").await;
    let path = format!("/v1/agents/{}/keys", t.agent);
    let r = app
        .post(
            &path,
            &t.key,
            json!({"name": "CI", "team_id": team.as_str(), "environment": "staging", "expires_in": 3600,
                   "rate_limit": {"limit": 10, "window_seconds": 60}, "owner_id": t.owner.as_str()}),
        )
        .await;
    r.expect(201, "");
    assert_eq!(r.body["team_id"], team.as_str());
    assert_eq!(r.body["environment"], "staging");
    assert_eq!(r.body["owner_id"], t.owner.as_str());
    assert_eq!(
        r.body["rate_limit"],
        json!({"limit": 10, "window_seconds": 60})
    );
    assert_eq!(r.body["status"], "expiring", "expires within 7 days");
    let id = r.body["id"].as_str().unwrap().to_string();

    let r = app
        .patch(
            &format!("/v1/keys/{id}"),
            &t.key,
            json!({"name": "CI runner", "rate_limit": null, "expires_at": null}),
        )
        .await;
    r.expect(200, "");
    assert_eq!(r.body["name"], "CI runner");
    assert_eq!(r.body["rate_limit"], json!(null));
    assert_eq!(r.body["expires_at"], json!(null));
    assert_eq!(r.body["status"], "active");

    let r = app
        .patch(
            &format!("/v1/keys/{id}"),
            &t.key,
            json!({"expires_at": "2000-01-01T00:00:00Z"}),
        )
        .await;
    r.expect(400, "invalid_request");
    assert_eq!(r.body["error"]["field"], "expires_at");
    // Through the API a key may not exceed its plan's rate (pro: 100 per 60 s).
    let r = app
        .patch(
            &format!("/v1/keys/{id}"),
            &t.key,
            json!({"rate_limit": {"limit": 101, "window_seconds": 60}}),
        )
        .await;
    r.expect(400, "invalid_request");
    assert_eq!(r.body["error"]["field"], "rate_limit");
    app.patch(
        &format!("/v1/keys/{id}"),
        &t.key,
        json!({"rate_limit": {"limit": 1, "window_seconds": 1}}),
    )
    .await
    .expect(200, "");

    // Bad inputs change nothing.
    let before = app
        .get(&format!("/v1/agents/{}/keys?limit=100", t.agent), &t.key)
        .await;
    for body in [
        json!({"name": ""}),
        json!({"name": "x", "expires_in": 10, "expires_at": "2030-01-01T00:00:00Z"}),
        json!({"name": "x", "team_id": "team_nope"}),
        json!({"name": "x", "owner_id": "usr_nope"}),
        json!({"name": "x", "expires_at": "yesterday"}),
        json!({"name": "x", "rate_limit": {"limit": 0, "window_seconds": 60}}),
    ] {
        app.post(&path, &t.key, body)
            .await
            .expect(400, "invalid_request");
    }
    let after = app
        .get(&format!("/v1/agents/{}/keys?limit=100", t.agent), &t.key)
        .await;
    assert_eq!(before.body["data"], after.body["data"]);

    // Pagination edges: one page exactly, then more.
    let r = app
        .get(&format!("/v1/agents/{}/keys?limit=2", t.agent), &t.key)
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["pagination"]["has_more"], false);
    assert_eq!(r.body["pagination"]["next_cursor"], json!(null));
    let r = app
        .get(&format!("/v1/agents/{}/keys?limit=1", t.agent), &t.key)
        .await;
    assert_eq!(r.body["pagination"]["has_more"], true);
    let cursor = r.body["pagination"]["next_cursor"].as_str().unwrap();
    let r = app
        .get(
            &format!("/v1/agents/{}/keys?limit=1&cursor={cursor}", t.agent),
            &t.key,
        )
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["pagination"]["next_cursor"], json!(null));

    let teams = app.get("/v1/teams", &t.key).await;
    teams.expect(200, "");
    assert_eq!(teams.body["data"][0]["name"], "Editorial");
}

#[tokio::test]
async fn revoke_is_immediate_idempotent_and_audited() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (_, victim_id, victim) = app.agent(&t.org, "Victim", &["content:read"], None).await;
    app.get("/v1/whoami", &victim).await.expect(200, "");
    let r = app
        .post(
            &format!("/v1/keys/{victim_id}/revoke"),
            &t.key,
            json!({"reason": "leaked"}),
        )
        .await;
    r.expect(200, "");
    assert_eq!(r.body["status"], "revoked");
    app.get("/v1/whoami", &victim)
        .await
        .expect(401, "revoked_api_key");
    // Again: 200, nothing changes. An empty body is fine.
    let again = app
        .req(
            reqwest::Method::POST,
            &format!("/v1/keys/{victim_id}/revoke"),
            &t.key,
        )
        .send()
        .await
        .unwrap();
    let again = crate::helpers::Reply::from(again).await;
    again.expect(200, "");
    assert_eq!(again.body["revoked_at"], r.body["revoked_at"]);
    // Revoked keys cannot be rolled or have their expiry changed.
    app.post(&format!("/v1/keys/{victim_id}/roll"), &t.key, json!({}))
        .await
        .expect(409, "conflict");
    app.patch(
        &format!("/v1/keys/{victim_id}"),
        &t.key,
        json!({"expires_at": "2099-01-01T00:00:00Z"}),
    )
    .await
    .expect(409, "conflict");

    let audit = app
        .get(
            &format!("/v1/audit-events?action=key.revoked&target_id={victim_id}"),
            &t.key,
        )
        .await;
    audit.expect(200, "");
    let events = audit.body["data"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["actor"],
        json!({"type": "key", "id": t.key_id.as_str()})
    );
    assert_eq!(
        events[0]["target"],
        json!({"type": "key", "id": victim_id.as_str()})
    );
    assert_eq!(events[0]["details"]["reason"], "leaked");
    assert_eq!(events[0]["ip"], "127.0.0.1");
    assert!(events[0]["id"].as_str().unwrap().starts_with("evt_"));
}

#[tokio::test]
async fn roll_with_grace_keeps_the_old_key_until_it_ends() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (_, old_id, old) = app.agent(&t.org, "Roller", &["content:read"], None).await;
    let r = app
        .post(
            &format!("/v1/keys/{old_id}/roll"),
            &t.key,
            json!({"grace_seconds": 120}),
        )
        .await;
    r.expect(200, "");
    let new = r.body["new_key"]["secret"].as_str().unwrap().to_string();
    assert_eq!(r.body["new_key"]["rolled_from"], old_id.as_str());
    assert_eq!(r.body["new_key"]["name"], "Production");
    assert_eq!(r.body["old_key"]["rolled_to"], r.body["new_key"]["id"]);
    assert_eq!(r.body["old_key"]["status"], "expiring");
    assert!(r.body["old_key"].get("secret").is_none());
    app.get("/v1/whoami", &old).await.expect(200, "");
    app.get("/v1/whoami", &new).await.expect(200, "");
    // Already rolled: 409.
    app.post(&format!("/v1/keys/{old_id}/roll"), &t.key, json!({}))
        .await
        .expect(409, "conflict");
    app.clock.advance(120_000);
    app.get("/v1/whoami", &old)
        .await
        .expect(401, "expired_api_key");
    app.get("/v1/whoami", &new).await.expect(200, "");
    // Expired: 409.
    app.post(&format!("/v1/keys/{old_id}/roll"), &t.key, json!({}))
        .await
        .expect(409, "conflict");
}

#[tokio::test]
async fn roll_without_grace_ends_the_old_key_now() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (_, old_id, old) = app.agent(&t.org, "Roller", &["content:read"], None).await;
    let r = app
        .post(
            &format!("/v1/keys/{old_id}/roll"),
            &t.key,
            json!({"grace_seconds": 0}),
        )
        .await;
    r.expect(200, "");
    app.get("/v1/whoami", &old)
        .await
        .expect(401, "expired_api_key");
    app.get("/v1/whoami", r.body["new_key"]["secret"].as_str().unwrap())
        .await
        .expect(200, "");
    // The default grace is a day.
    let (_, id2, _) = app.agent(&t.org, "Roller2", &["content:read"], None).await;
    let r = app
        .post(&format!("/v1/keys/{id2}/roll"), &t.key, json!({}))
        .await;
    let expires =
        keyward_server::views::parse_rfc3339(r.body["old_key"]["expires_at"].as_str().unwrap())
            .unwrap();
    assert!((expires - app.service.now() - 86_400_000).abs() < 5_000);
}

#[tokio::test]
async fn capability_changes_apply_to_every_key_at_once() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (agent, _, key) = app.agent(&t.org, "Reader", &["keys:read"], None).await;
    app.get("/v1/teams", &key).await.expect(200, "");
    let r = app
        .patch(
            &format!("/v1/agents/{agent}"),
            &t.key,
            json!({"capabilities": ["content:read"]}),
        )
        .await;
    r.expect(200, "");
    app.get("/v1/teams", &key)
        .await
        .expect(403, "insufficient_capability");
    let audit = app
        .get(
            &format!("/v1/audit-events?action=agent.updated&target_id={agent}"),
            &t.key,
        )
        .await;
    let details = &audit.body["data"][0]["details"];
    assert_eq!(details["before"]["capabilities"], json!(["keys:read"]));
    assert_eq!(details["after"]["capabilities"], json!(["content:read"]));
}

#[tokio::test]
async fn plan_key_limit_answers_key_limit_reached() {
    let app = spawn_app_with_small_plan().await;
    let t = app.tenant("Tiny", "tiny", ALL).await;
    let path = format!("/v1/agents/{}/keys", t.agent);
    app.post(&path, &t.key, json!({"name": "second"}))
        .await
        .expect(201, "");
    app.post(&path, &t.key, json!({"name": "third"}))
        .await
        .expect(409, "key_limit_reached");
    app.post(
        "/v1/agents",
        &t.key,
        json!({"name": "Other", "capabilities": []}),
    )
    .await
    .expect(409, "key_limit_reached");
    // The failed agent creation left nothing behind.
    let agents = app.get("/v1/agents", &t.key).await;
    assert_eq!(agents.body["data"].as_array().unwrap().len(), 1);
}

async fn spawn_app_with_small_plan() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|c| {
        c.plans.insert(
            "tiny".into(),
            keyward_core::Plan {
                name: "tiny".into(),
                api_access: true,
                rate_limit: keyward_core::RateLimit {
                    limit: 100,
                    window_seconds: 60,
                },
                max_keys: Some(2),
            },
        );
    })
    .await
}

#[tokio::test]
async fn last_used_is_recorded_off_the_request_path() {
    let mut app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    app.get("/v1/whoami", &t.key).await.expect(200, "");
    app.stop().await; // a graceful stop flushes what is held in memory
    let key = app
        .service
        .get_key(&keyward_server::Caller::cli(t.org.clone()), &t.key_id)
        .await
        .unwrap();
    let used = key.last_used_at.expect("last_used_at is set");
    assert!((app.service.now() - used).abs() < 60_000);
}
