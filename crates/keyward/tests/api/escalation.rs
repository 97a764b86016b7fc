//! SPEC §5: no key gains power through the management API, and nothing crosses a tenant.

use serde_json::json;

use crate::helpers::{spawn_app, ALL};

const MANAGER: &[&str] = &["keys:write", "content:write"];

#[tokio::test]
async fn a_key_cannot_create_or_widen_an_agent_beyond_itself() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (_, _, manager) = app.agent(&t.org, "Manager", MANAGER, None).await;

    let r = app
        .post(
            "/v1/agents",
            &manager,
            json!({"name": "Root", "capabilities": ["keys:write", "audit:read"]}),
        )
        .await;
    r.expect(403, "insufficient_capability");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("audit:read"));
    assert_eq!(
        r.header("www-authenticate"),
        "Bearer realm=\"keyward\", error=\"insufficient_scope\", scope=\"audit:read\""
    );
    // Within its power (content:write implies content:read): fine.
    let ok = app
        .post(
            "/v1/agents",
            &manager,
            json!({"name": "Reader", "capabilities": ["content:read", "keys:read"]}),
        )
        .await;
    ok.expect(201, "");
    let reader = ok.body["id"].as_str().unwrap().to_string();
    // Widening beyond itself is refused and changes nothing.
    app.patch(
        &format!("/v1/agents/{reader}"),
        &manager,
        json!({"capabilities": ["generate"]}),
    )
    .await
    .expect(403, "insufficient_capability");
    let still = app.get(&format!("/v1/agents/{reader}"), &t.key).await;
    assert_eq!(
        still.body["capabilities"],
        json!(["content:read", "keys:read"])
    );
}

#[tokio::test]
async fn a_key_cannot_manage_keys_or_agents_more_capable_than_itself() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (_, _, manager) = app.agent(&t.org, "Manager", MANAGER, None).await;
    // The tenant's own agent has every capability: more than the manager.
    let root_agent = t.agent.to_string();
    let root_key = t.key_id.to_string();
    app.post(
        &format!("/v1/agents/{root_agent}/keys"),
        &manager,
        json!({"name": "mine now"}),
    )
    .await
    .expect(403, "insufficient_capability");
    app.post(&format!("/v1/keys/{root_key}/roll"), &manager, json!({}))
        .await
        .expect(403, "insufficient_capability");
    app.post(&format!("/v1/keys/{root_key}/revoke"), &manager, json!({}))
        .await
        .expect(403, "insufficient_capability");
    app.patch(
        &format!("/v1/keys/{root_key}"),
        &manager,
        json!({"name": "pwned"}),
    )
    .await
    .expect(403, "insufficient_capability");
    app.patch(
        &format!("/v1/agents/{root_agent}"),
        &manager,
        json!({"name": "pwned"}),
    )
    .await
    .expect(403, "insufficient_capability");
    app.delete(&format!("/v1/agents/{root_agent}"), &manager)
        .await
        .expect(403, "insufficient_capability");
    // Nothing changed.
    app.get("/v1/whoami", &t.key).await.expect(200, "");
    let key = app.get(&format!("/v1/keys/{root_key}"), &t.key).await;
    assert_eq!(key.body["name"], "Production");
    assert_eq!(key.body["rolled_to"], json!(null));
    // A read-only key cannot write at all.
    let (_, _, reader) = app.agent(&t.org, "Reader", &["keys:read"], None).await;
    app.post(
        "/v1/agents",
        &reader,
        json!({"name": "x", "capabilities": []}),
    )
    .await
    .expect(403, "insufficient_capability");
    app.post(&format!("/v1/keys/{root_key}/revoke"), &reader, json!({}))
        .await
        .expect(403, "insufficient_capability");
    // And neither can the audit log be read without audit:read.
    app.get("/v1/audit-events", &manager)
        .await
        .expect(403, "insufficient_capability");
}

#[tokio::test]
async fn a_team_scoped_key_acts_only_inside_its_team() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let red = app.team(&t.org, "Red").await;
    let blue = app.team(&t.org, "Blue").await;
    let (red_agent, red_key_id, red_key) = app
        .agent(
            &t.org,
            "Red ops",
            &["keys:write", "audit:read", "content:read"],
            Some(&red),
        )
        .await;
    let (_, blue_key_id, _) = app
        .agent(&t.org, "Blue ops", &["content:read"], Some(&blue))
        .await;

    // Sees only its own team and its team's keys.
    let teams = app.get("/v1/teams", &red_key).await;
    assert_eq!(teams.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(teams.body["data"][0]["id"], red.as_str());
    app.get(&format!("/v1/keys/{blue_key_id}"), &red_key)
        .await
        .expect(404, "not_found");
    app.get(&format!("/v1/keys/{}", t.key_id), &red_key)
        .await
        .expect(404, "not_found");
    app.post(
        &format!("/v1/keys/{blue_key_id}/revoke"),
        &red_key,
        json!({}),
    )
    .await
    .expect(404, "not_found");
    app.post(&format!("/v1/keys/{blue_key_id}/roll"), &red_key, json!({}))
        .await
        .expect(404, "not_found");
    let listed = app
        .get(&format!("/v1/agents/{red_agent}/keys"), &red_key)
        .await;
    for k in listed.body["data"].as_array().unwrap() {
        assert_eq!(k["team_id"], red.as_str());
    }
    let _ = red_key_id;

    // New keys land in its team; another team, or all teams, is refused.
    let made = app
        .post(
            &format!("/v1/agents/{red_agent}/keys"),
            &red_key,
            json!({"name": "more"}),
        )
        .await;
    made.expect(201, "");
    assert_eq!(made.body["team_id"], red.as_str());
    let r = app
        .post(
            &format!("/v1/agents/{red_agent}/keys"),
            &red_key,
            json!({"name": "x", "team_id": blue.as_str()}),
        )
        .await;
    r.expect(400, "invalid_request");
    assert_eq!(r.body["error"]["field"], "team_id");

    // The organization's audit log is not its to read.
    app.get("/v1/audit-events", &red_key)
        .await
        .expect(403, "forbidden");
    // An agent with keys outside the team cannot be changed from inside it.
    let (shared_agent, _, _) = app.agent(&t.org, "Shared", &["content:read"], None).await;
    app.patch(
        &format!("/v1/agents/{shared_agent}"),
        &red_key,
        json!({"name": "mine"}),
    )
    .await
    .expect(403, "forbidden");
    app.delete(&format!("/v1/agents/{shared_agent}"), &red_key)
        .await
        .expect(403, "forbidden");
}

#[tokio::test]
async fn nothing_reaches_another_organization() {
    let app = spawn_app().await;
    let a = app.tenant("Alpha", "pro", ALL).await;
    let b = app.tenant("Beta", "pro", ALL).await;
    let (b_agent, b_key_id, b_key) = (b.agent.to_string(), b.key_id.to_string(), b.key.clone());
    app.get(&format!("/v1/agents/{b_agent}"), &a.key)
        .await
        .expect(404, "not_found");
    app.patch(
        &format!("/v1/agents/{b_agent}"),
        &a.key,
        json!({"name": "x"}),
    )
    .await
    .expect(404, "not_found");
    app.delete(&format!("/v1/agents/{b_agent}"), &a.key)
        .await
        .expect(404, "not_found");
    app.get(&format!("/v1/agents/{b_agent}/keys"), &a.key)
        .await
        .expect(404, "not_found");
    app.post(
        &format!("/v1/agents/{b_agent}/keys"),
        &a.key,
        json!({"name": "x"}),
    )
    .await
    .expect(404, "not_found");
    app.get(&format!("/v1/keys/{b_key_id}"), &a.key)
        .await
        .expect(404, "not_found");
    app.patch(
        &format!("/v1/keys/{b_key_id}"),
        &a.key,
        json!({"name": "x"}),
    )
    .await
    .expect(404, "not_found");
    app.post(&format!("/v1/keys/{b_key_id}/revoke"), &a.key, json!({}))
        .await
        .expect(404, "not_found");
    app.post(&format!("/v1/keys/{b_key_id}/roll"), &a.key, json!({}))
        .await
        .expect(404, "not_found");
    // B's team and owner are not A's to use.
    let b_team = app.team(&b.org, "B team").await;
    let r = app
        .post(
            &format!("/v1/agents/{}/keys", a.agent),
            &a.key,
            json!({"name": "x", "team_id": b_team.as_str()}),
        )
        .await;
    r.expect(400, "invalid_request");
    let r = app
        .post(
            &format!("/v1/agents/{}/keys", a.agent),
            &a.key,
            json!({"name": "x", "owner_id": b.owner.as_str()}),
        )
        .await;
    r.expect(400, "invalid_request");
    // Lists and the audit log hold only A's things.
    let agents = app.get("/v1/agents", &a.key).await;
    assert!(agents.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["organization_id"] == a.org.as_str()));
    let audit = app
        .get(&format!("/v1/audit-events?target_id={b_key_id}"), &a.key)
        .await;
    assert_eq!(audit.body["data"].as_array().unwrap().len(), 0);
    // B is untouched.
    app.get("/v1/whoami", &b_key).await.expect(200, "");
}
