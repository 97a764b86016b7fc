//! A deployment's own capabilities (`[capabilities] custom` in keyward.toml) are treated like
//! the built-in ones by agents, the no-escalation rules, the CLI, the OpenAPI document and
//! forward auth.

use serde_json::{json, Value};

use crate::helpers::{cli_json, run_cli, spawn_app_with, with_reports, ServerProcess};

#[tokio::test]
async fn agents_take_custom_capabilities_within_the_callers_own() {
    let app = spawn_app_with(with_reports).await;
    let t = app
        .tenant("Acme", "pro", &["keys:write", "reports:read"])
        .await;
    let (_, _, plain_manager) = app
        .agent(
            &t.org,
            "Plain manager",
            &["keys:write", "content:read"],
            None,
        )
        .await;

    // Holding reports:read, a key may give it.
    let r = app
        .post(
            "/v1/agents",
            &t.key,
            json!({"name": "Reports", "capabilities": ["reports:read"]}),
        )
        .await;
    r.expect(201, "");
    assert_eq!(r.body["capabilities"], json!(["reports:read"]));
    let reports_agent = r.body["id"].as_str().unwrap().to_string();
    let shown = app
        .get(&format!("/v1/agents/{reports_agent}"), &t.key)
        .await;
    assert_eq!(shown.body["capabilities"], json!(["reports:read"]));

    // Without it, a key may not: neither create, nor widen, nor manage such an agent's keys.
    let r = app
        .post(
            "/v1/agents",
            &plain_manager,
            json!({"name": "Sneaky", "capabilities": ["content:read", "reports:read"]}),
        )
        .await;
    r.expect(403, "insufficient_capability");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("reports:read"));
    assert!(r
        .header("www-authenticate")
        .contains("scope=\"reports:read\""));
    let r = app
        .post(
            "/v1/agents",
            &plain_manager,
            json!({"name": "Reader", "capabilities": ["content:read"]}),
        )
        .await;
    r.expect(201, "");
    let reader = r.body["id"].as_str().unwrap().to_string();
    app.patch(
        &format!("/v1/agents/{reader}"),
        &plain_manager,
        json!({"capabilities": ["content:read", "reports:read"]}),
    )
    .await
    .expect(403, "insufficient_capability");
    app.post(
        &format!("/v1/agents/{reports_agent}/keys"),
        &plain_manager,
        json!({"name": "Mine now"}),
    )
    .await
    .expect(403, "insufficient_capability");
    // A name this deployment does not know is refused, and the known ones are listed.
    let r = app
        .post(
            "/v1/agents",
            &t.key,
            json!({"name": "Typo", "capabilities": ["report:read"]}),
        )
        .await;
    r.expect(400, "invalid_request");
    assert_eq!(r.body["error"]["field"], "capabilities");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("report:read"), "{message}");
    assert!(message.contains("reports:read"), "{message}");
    assert!(message.contains("content:read"), "{message}");
}

#[tokio::test]
async fn the_openapi_document_lists_the_deployments_capabilities() {
    let app = spawn_app_with(with_reports).await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for schema in ["CreateAgent", "UpdateAgent"] {
        let field = &doc["components"]["schemas"][schema]["properties"]["capabilities"];
        let names: Vec<&str> = field["items"]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema}: {field}"))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(names.contains(&"reports:read"), "{schema}: {names:?}");
        assert!(names.contains(&"keys:verify"), "{schema}: {names:?}");
        let description = field["description"].as_str().unwrap();
        assert!(
            description.contains("`reports:read` (custom): Read reports"),
            "{description}"
        );
    }
    // The verification endpoints are documented too.
    assert!(doc["paths"]["/v1/keys/verify"]["post"].is_object());
    assert!(doc["paths"]["/v1/auth/forward"]["get"].is_object());
    assert!(doc["paths"]["/v1/auth/forward/{path}"]["get"].is_object());
    let verify = &doc["components"]["schemas"]["VerifyView"]["properties"];
    for field in [
        "valid",
        "code",
        "message",
        "key",
        "agent",
        "capabilities",
        "rate_limit",
    ] {
        assert!(verify[field].is_object(), "VerifyView.{field}");
    }

    // Without custom capabilities, only the built-in ones are listed.
    let plain = crate::helpers::spawn_app().await;
    let doc: Value = plain
        .client
        .get(plain.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names =
        &doc["components"]["schemas"]["CreateAgent"]["properties"]["capabilities"]["items"]["enum"];
    assert_eq!(names.as_array().unwrap().len(), crate::helpers::ALL.len());
}

const TOML: &str = r#"
[capabilities]
custom = [{ name = "reports:read", description = "Read reports" }]

[[forward.routes]]
method = "GET"
path_prefix = "/reports"
capability = "reports:read"
"#;

#[tokio::test]
async fn the_cli_and_the_server_take_them_from_keyward_toml() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let config = dir.path().join("custom.toml");
    std::fs::write(&config, TOML).unwrap();
    let config = config.to_str().unwrap();

    cli_json(
        dir.path(),
        &db,
        &["org", "create", "--name", "Acme", "--slug", "acme"],
    );
    // Without the file, the name is unknown: one clear line, exit 1.
    let (code, _, err) = run_cli(
        dir.path(),
        &[
            "--database-url",
            &db,
            "agent",
            "create",
            "--org",
            "acme",
            "--name",
            "Reports",
            "--capabilities",
            "reports:read",
        ],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("reports:read"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let agent = cli_json(
        dir.path(),
        &db,
        &[
            "--config",
            config,
            "agent",
            "create",
            "--org",
            "acme",
            "--name",
            "Reports",
            "--capabilities",
            "reports:read,content:read",
        ],
    );
    assert_eq!(
        agent["capabilities"],
        json!(["content:read", "reports:read"])
    );
    let reports_key = agent["first_key"]["secret"].as_str().unwrap().to_string();
    let plain = cli_json(
        dir.path(),
        &db,
        &[
            "--config",
            config,
            "agent",
            "create",
            "--org",
            "acme",
            "--name",
            "Plain",
            "--capabilities",
            "content:read,keys:verify",
        ],
    );
    let plain_key = plain["first_key"]["secret"].as_str().unwrap().to_string();

    // The server reads the same file: its forward routes and its capabilities.
    let server = ServerProcess::start(dir.path(), &db, &["--config", config], &[]);
    let c = reqwest::Client::new();
    let forward = |key: &str| {
        c.get(server.url("/v1/auth/forward"))
            .bearer_auth(key)
            .header("X-Original-Method", "GET")
            .header("X-Original-URI", "/reports/monthly")
            .send()
    };
    let ok = forward(&reports_key).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()["x-keyward-capabilities"],
        "content:read,reports:read"
    );
    let denied = forward(&plain_key).await.unwrap();
    assert_eq!(denied.status(), 403);
    assert!(denied.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("scope=\"reports:read\""));
    let verified: Value = c
        .post(server.url("/v1/keys/verify"))
        .bearer_auth(&plain_key)
        .json(&json!({"key": reports_key, "capability": "reports:read"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verified["valid"], true, "{verified}");
}
