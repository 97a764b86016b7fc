//! SPEC §3 over HTTP: every row of the authentication table, in order, with its edge cases.

use reqwest::Method;

use crate::helpers::{spawn_app, ALL};

#[tokio::test]
async fn a_valid_key_in_either_header_authenticates() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let r = app.get("/v1/whoami", &t.key).await;
    r.expect(200, "");
    assert_eq!(r.body["key"]["id"], t.key_id.as_str());
    assert_eq!(r.body["organization"]["id"], t.org.as_str());
    assert_eq!(r.body["plan"]["name"], "pro");
    assert!(r.body["key"].get("secret").is_none());
    assert!(!r.text.contains(&t.key), "whoami never echoes the secret");

    let r = app
        .client
        .get(app.url("/v1/whoami"))
        .header("X-API-Key", &t.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(app.url("/v1/whoami"))
        .header("Authorization", format!("bearer {}", t.key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the scheme is case-insensitive");
    let r = app
        .client
        .get(app.url("/v1/whoami"))
        .header("Authorization", format!("Bearer {}", t.key))
        .header("X-API-Key", &t.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the same key in both headers is fine");
}

async fn raw(
    app: &crate::helpers::TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> crate::helpers::Reply {
    let mut req = app.client.get(app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    crate::helpers::Reply::from(req.send().await.unwrap()).await
}

#[tokio::test]
async fn keys_in_the_query_are_refused_whatever_their_value() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    for name in ["api_key", "apikey", "key", "access_token"] {
        let r = raw(
            &app,
            &format!("/v1/whoami?{name}=whatever"),
            &[("Authorization", &format!("Bearer {}", t.key))],
        )
        .await;
        r.expect(400, "key_in_query");
        let r = raw(&app, &format!("/v1/agents?limit=5&{name}="), &[]).await;
        r.expect(400, "key_in_query");
    }
    // Also on paths that do not exist.
    raw(&app, "/v1/nope?api_key=x", &[])
        .await
        .expect(400, "key_in_query");
    // Only those exact names.
    let r = raw(
        &app,
        "/v1/whoami?keys=1&API_KEY=2",
        &[("X-API-Key", &t.key)],
    )
    .await;
    r.expect(200, "");
}

#[tokio::test]
async fn conflicting_credentials() {
    let app = spawn_app().await;
    let a = app.tenant("A", "pro", ALL).await;
    let b = app.tenant("B", "pro", ALL).await;
    let r = raw(
        &app,
        "/v1/whoami",
        &[
            ("Authorization", &format!("Bearer {}", a.key)),
            ("X-API-Key", &b.key),
        ],
    )
    .await;
    r.expect(400, "conflicting_credentials");
    // A repeated header, even with the same value.
    let r = app
        .client
        .get(app.url("/v1/whoami"))
        .header("X-API-Key", &a.key)
        .header("X-API-Key", &a.key)
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::from(r)
        .await
        .expect(400, "conflicting_credentials");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.append(
        "authorization",
        format!("Bearer {}", a.key).parse().unwrap(),
    );
    headers.append(
        "authorization",
        format!("Bearer {}", a.key).parse().unwrap(),
    );
    let r = app
        .client
        .get(app.url("/v1/whoami"))
        .headers(headers)
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::from(r)
        .await
        .expect(400, "conflicting_credentials");
}

#[tokio::test]
async fn missing_key_has_the_bare_challenge() {
    let app = spawn_app().await;
    let r = raw(&app, "/v1/whoami", &[]).await;
    r.expect(401, "missing_api_key");
    assert_eq!(r.header("www-authenticate"), "Bearer realm=\"keyward\"");
}

#[tokio::test]
async fn other_schemes_and_bare_keys_are_refused() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    for value in [
        "Basic dXNlcjpwYXNz".to_string(),
        t.key.clone(),
        "Token abc".to_string(),
        format!("Bearer{}", t.key),
    ] {
        let r = raw(&app, "/v1/whoami", &[("Authorization", &value)]).await;
        r.expect(401, "invalid_authorization_scheme");
        assert_eq!(
            r.header("www-authenticate"),
            "Bearer realm=\"keyward\", error=\"invalid_token\""
        );
    }
    // Also when a valid X-API-Key comes along.
    let r = raw(
        &app,
        "/v1/whoami",
        &[
            ("Authorization", "Basic dXNlcjpwYXNz"),
            ("X-API-Key", &t.key),
        ],
    )
    .await;
    r.expect(401, "invalid_authorization_scheme");
}

#[tokio::test]
async fn malformed_keys_are_refused_without_storage() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let mut flipped = t.key.clone().into_bytes();
    let i = 10;
    flipped[i] = if flipped[i] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    let cases = [
        "Bearer ".to_string(),
        "Bearer".to_string(),
        format!("Bearer {}", &t.key[..t.key.len() - 1]),
        format!("Bearer {}x", t.key),
        format!("Bearer {flipped}"),
        format!("Bearer xx{}", &t.key[2..]),
        "Bearer kw_!!!!".to_string(),
    ];
    for value in cases {
        let r = raw(&app, "/v1/whoami", &[("Authorization", &value)]).await;
        r.expect(401, "malformed_api_key");
        assert_eq!(
            r.header("www-authenticate"),
            "Bearer realm=\"keyward\", error=\"invalid_token\""
        );
    }
    let r = raw(&app, "/v1/whoami", &[("X-API-Key", "")]).await;
    r.expect(401, "malformed_api_key");
}

#[tokio::test]
async fn unknown_revoked_and_expired_keys() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let unknown = keyward_core::ApiKey::generate(&keyward_core::KeyPrefix::default());
    let r = app.get("/v1/whoami", unknown.expose()).await;
    r.expect(401, "invalid_api_key");
    assert_eq!(
        r.header("www-authenticate"),
        "Bearer realm=\"keyward\", error=\"invalid_token\""
    );

    // Expiry at its boundary: valid while now < expires_at.
    let created = app
        .post(
            &format!("/v1/agents/{}/keys", t.agent),
            &t.key,
            serde_json::json!({"name": "short", "expires_in": 60}),
        )
        .await;
    created.expect(201, "");
    let short = created.body["secret"].as_str().unwrap().to_string();
    let expires_at = app
        .service
        .get_key(
            &keyward_server::Caller::cli(t.org.clone()),
            &keyward_core::KeyId::parse(created.body["id"].as_str().unwrap()).unwrap(),
        )
        .await
        .unwrap()
        .expires_at
        .unwrap();
    app.clock.advance(expires_at - app.service.now() - 50);
    app.get("/v1/whoami", &short).await.expect(200, "");
    app.clock.advance(expires_at - app.service.now());
    let r = app.get("/v1/whoami", &short).await;
    r.expect(401, "expired_api_key");
    assert_eq!(
        r.header("www-authenticate"),
        "Bearer realm=\"keyward\", error=\"invalid_token\""
    );

    // Revocation takes effect on the very next request.
    app.post(
        &format!("/v1/keys/{}/revoke", t.key_id),
        &t.key,
        serde_json::json!({"reason": "test"}),
    )
    .await
    .expect(200, "");
    app.get("/v1/whoami", &t.key)
        .await
        .expect(401, "revoked_api_key");
}

#[tokio::test]
async fn a_deleted_agents_keys_are_revoked() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (agent, _, key) = app.agent(&t.org, "Doomed", &["content:read"], None).await;
    app.delete(&format!("/v1/agents/{agent}"), &t.key)
        .await
        .expect(204, "");
    app.get("/v1/whoami", &key)
        .await
        .expect(401, "revoked_api_key");
}

#[tokio::test]
async fn a_plan_without_api_access_is_refused() {
    let app = spawn_app().await;
    let t = app.tenant("Freebie", "free", ALL).await;
    app.get("/v1/whoami", &t.key)
        .await
        .expect(403, "plan_without_api_access");
}

#[tokio::test]
async fn a_missing_capability_names_itself() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", &["content:read"]).await;
    let r = app.get("/v1/agents", &t.key).await;
    r.expect(403, "insufficient_capability");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("keys:read"));
    assert_eq!(
        r.header("www-authenticate"),
        "Bearer realm=\"keyward\", error=\"insufficient_scope\", scope=\"keys:read\""
    );
    // whoami needs no capability.
    app.get("/v1/whoami", &t.key).await.expect(200, "");
}

#[tokio::test]
async fn the_checks_run_in_order() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", &[]).await;
    // key_in_query beats a missing key; conflicting beats missing; scheme beats malformed.
    raw(&app, "/v1/agents?api_key=1", &[])
        .await
        .expect(400, "key_in_query");
    raw(
        &app,
        "/v1/agents?key=1",
        &[("Authorization", "Basic x"), ("X-API-Key", "kw_x")],
    )
    .await
    .expect(400, "key_in_query");
    raw(
        &app,
        "/v1/agents",
        &[("X-API-Key", "a"), ("Authorization", "Bearer b")],
    )
    .await
    .expect(400, "conflicting_credentials");
    // Authentication answers before the body is read: bad JSON from an unknown key is a 401.
    let r = app
        .client
        .post(app.url("/v1/agents"))
        .header("X-API-Key", "kw_nope")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::from(r)
        .await
        .expect(401, "malformed_api_key");
    // ... and a missing capability before a bad body too.
    let r = app
        .client
        .post(app.url("/v1/agents"))
        .bearer_auth(&t.key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::from(r)
        .await
        .expect(403, "insufficient_capability");
}

#[tokio::test]
async fn every_error_has_the_one_shape() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    app.get("/nope", &t.key).await.expect(404, "not_found");
    app.get("/v1/nope", &t.key).await.expect(404, "not_found");
    app.get("/v1/keys/key_doesnotexist", &t.key)
        .await
        .expect(404, "not_found");
    app.get("/v1/keys/not-an-id", &t.key)
        .await
        .expect(404, "not_found");
    let r = app
        .req(Method::DELETE, "/v1/whoami", &t.key)
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::from(r)
        .await
        .expect(405, "method_not_allowed");
    let r = app
        .req(Method::PUT, "/healthz", &t.key)
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::from(r)
        .await
        .expect(405, "method_not_allowed");
    // Bad JSON, wrong types, unknown fields, missing fields: 400 with the field, never 422.
    let r = app
        .req(Method::POST, "/v1/agents", &t.key)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::from(r)
        .await
        .expect(400, "invalid_request");
    let r = app
        .post(
            "/v1/agents",
            &t.key,
            serde_json::json!({"name": 5, "capabilities": []}),
        )
        .await;
    r.expect(400, "invalid_request");
    assert_eq!(r.body["error"]["field"], "name");
    let r = app
        .post(
            "/v1/agents",
            &t.key,
            serde_json::json!({"capabilities": []}),
        )
        .await;
    r.expect(400, "invalid_request");
    assert_eq!(r.body["error"]["field"], "name");
    let r = app
        .post(
            "/v1/agents",
            &t.key,
            serde_json::json!({"name": "x", "capabilities": [], "color": "red"}),
        )
        .await;
    r.expect(400, "invalid_request");
    let r = app
        .post(
            "/v1/agents",
            &t.key,
            serde_json::json!({"name": "x", "capabilities": ["root"]}),
        )
        .await;
    r.expect(400, "invalid_request");
    assert_eq!(r.body["error"]["field"], "capabilities");
    let r = app.get("/v1/agents?limit=0", &t.key).await;
    r.expect(400, "invalid_request");
    assert_eq!(r.body["error"]["field"], "limit");
    app.get("/v1/agents?limit=101", &t.key)
        .await
        .expect(400, "invalid_request");
    app.get("/v1/agents?limit=abc", &t.key)
        .await
        .expect(400, "invalid_request");
    let r = app.get("/v1/agents?cursor=garbage", &t.key).await;
    r.expect(400, "invalid_request");
    assert_eq!(r.body["error"]["field"], "cursor");
    // Wrong media type and oversized bodies.
    let r = app
        .req(Method::POST, "/v1/agents", &t.key)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::from(r)
        .await
        .expect(415, "unsupported_media_type");
    let big = format!(
        "{{\"name\": \"{}\", \"capabilities\": []}}",
        "x".repeat(1024 * 1024 + 10)
    );
    let r = app
        .req(Method::POST, "/v1/agents", &t.key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::from(r)
        .await
        .expect(413, "payload_too_large");
}

#[tokio::test]
async fn request_ids_are_echoed_only_when_safe() {
    let app = spawn_app().await;
    let r = raw(&app, "/healthz", &[("X-Request-Id", "abc.DEF_123-x")]).await;
    assert_eq!(r.header("x-request-id"), "abc.DEF_123-x");
    let r = raw(&app, "/healthz", &[("X-Request-Id", "has space")]).await;
    assert!(!r.header("x-request-id").is_empty());
    assert_ne!(r.header("x-request-id"), "has space");
    let key_like = keyward_core::ApiKey::generate(&keyward_core::KeyPrefix::default());
    let r = raw(&app, "/healthz", &[("X-Request-Id", key_like.expose())]).await;
    assert_ne!(
        r.header("x-request-id"),
        key_like.expose(),
        "a key sent as a request id is never echoed"
    );
    let long = "a".repeat(65);
    let r = raw(&app, "/v1/whoami", &[("X-Request-Id", &long)]).await;
    assert_ne!(r.header("x-request-id"), long);
    assert_eq!(r.body["error"]["request_id"], r.header("x-request-id"));
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let r = raw(&app, "/healthz", &[]).await;
    assert_eq!(r.status, 200);
    let r = raw(&app, "/readyz", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["checks"]["storage"], "ok");
}

#[tokio::test]
async fn metrics_count_by_matched_route_never_raw_paths() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    app.get("/v1/whoami", &t.key).await.expect(200, "");
    app.get(&format!("/v1/keys/{}", t.key_id), &t.key)
        .await
        .expect(200, "");
    app.get("/v1/whoami", "kw_nope")
        .await
        .expect(401, "malformed_api_key");
    app.get("/some/random/path/123", &t.key)
        .await
        .expect(404, "not_found");
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(
        text.contains(
            "keyward_http_requests_total{method=\"GET\",route=\"/v1/whoami\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("route=\"/v1/keys/{id}\""), "{text}");
    assert!(
        text.contains("route=\"unmatched\",status=\"404\""),
        "{text}"
    );
    assert!(
        !text.contains("/some/random"),
        "raw paths never become labels"
    );
    assert!(!text.contains(t.key_id.as_str()));
    assert!(
        text.contains("keyward_auth_failures_total{code=\"malformed_api_key\"} 1"),
        "{text}"
    );
    assert!(text.contains("keyward_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = spawn_app().await;
    let r = raw(&app, "/openapi.json", &[]).await;
    assert_eq!(r.status, 200);
    let doc = &r.body;
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/v1/whoami", "get"),
        ("/v1/agents", "post"),
        ("/v1/agents/{id}/keys", "post"),
        ("/v1/keys/{id}/roll", "post"),
        ("/v1/keys/{id}/revoke", "post"),
        ("/v1/blogs", "get"),
        ("/v1/blogs/{id}", "delete"),
        ("/v1/generations", "post"),
        ("/v1/usage", "get"),
        ("/v1/account", "get"),
        ("/v1/audit-events", "get"),
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["name"],
        "X-API-Key"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "operation ids are unique");
}

#[tokio::test]
async fn the_key_cache_stays_bounded_under_a_flood_of_unknown_keys() {
    let app = crate::helpers::spawn_app_with(|c| c.key_cache_capacity = 200).await;
    let t = app.tenant("Acme", "pro", ALL).await;
    app.get("/v1/whoami", &t.key).await.expect(200, "");
    let prefix = keyward_core::KeyPrefix::default();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = app.client.clone();
        let url = app.url("/v1/whoami");
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..250 {
                let unknown = keyward_core::ApiKey::generate(&prefix);
                let r = client
                    .get(&url)
                    .bearer_auth(unknown.expose())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 401);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(app.service.key_cache().capacity(), 200);
    let held = app.service.key_cache().entry_count().await;
    assert!(
        held <= 200,
        "the cache holds {held} entries, over its capacity of 200"
    );
    // The hot key still works (and a repeated unknown key is answered from the cache).
    app.get("/v1/whoami", &t.key).await.expect(200, "");
}

#[tokio::test]
async fn a_key_sent_in_the_wrong_place_is_never_echoed_in_an_error() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let secret_part = t.key[3..].to_string();
    let cases = [
        format!("{{\"grace_seconds\": \"{}\"}}", t.key),
        format!("{{\"{}\": 1}}", t.key),
    ];
    for body in cases {
        let r = app
            .req(Method::POST, &format!("/v1/keys/{}/roll", t.key_id), &t.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let r = crate::helpers::Reply::from(r).await;
        r.expect(400, "invalid_request");
        assert!(
            !r.text.contains(&secret_part),
            "the key was echoed: {}",
            r.text
        );
    }
}
