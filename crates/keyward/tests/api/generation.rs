//! Content generation jobs over HTTP, with the built-in offline generator.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp, ALL};

async fn wait_for_job(app: &TestApp, key: &str, id: &str, until: &[&str]) -> Value {
    let start = Instant::now();
    loop {
        let r = app.get(&format!("/v1/generations/{id}"), key).await;
        r.expect(200, "");
        if until.contains(&r.body["status"].as_str().unwrap())
            || start.elapsed() > Duration::from_secs(20)
        {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_job_is_queued_run_and_saved_as_a_draft() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let site = app
        .post(
            "/v1/websites",
            &t.key,
            json!({"name": "Acme blog", "domain": "blog.acme.test"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post("/v1/generations", &t.key, json!({"website_id": site, "topic": "API key rotation", "keywords": ["security", "grace period"], "tone": "friendly", "length": "short"}))
        .await;
    r.expect(202, "");
    assert_eq!(r.body["status"], "queued");
    assert!(r.body["id"].as_str().unwrap().starts_with("gen_"));
    let id = r.body["id"].as_str().unwrap().to_string();
    let done = wait_for_job(&app, &t.key, &id, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let blog = &done["blog"];
    assert_eq!(blog["status"], "draft");
    assert_eq!(blog["website_id"], site.as_str());
    assert!(blog["body"].as_str().unwrap().contains("## "));
    assert!(blog["body"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("grace period"));
    assert_eq!(
        blog["author"],
        json!({"type": "key", "id": t.key_id.as_str()})
    );
    // The draft is a real blog: a draft by id for content:write, hidden from the public list.
    app.get(
        &format!("/v1/blogs/{}", blog["id"].as_str().unwrap()),
        &t.key,
    )
    .await
    .expect(200, "");
    assert_eq!(
        app.get("/v1/blogs", &t.key).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // The same topic again gets a slug of its own.
    let again = app
        .post(
            "/v1/generations",
            &t.key,
            json!({"website_id": site, "topic": "API key rotation", "length": "short"}),
        )
        .await;
    let again = wait_for_job(
        &app,
        &t.key,
        again.body["id"].as_str().unwrap(),
        &["succeeded", "failed"],
    )
    .await;
    assert_eq!(again["status"], "succeeded");
    assert_ne!(again["blog"]["slug"], blog["slug"]);
    let audit = app
        .get("/v1/audit-events?action=generation.created", &t.key)
        .await;
    assert_eq!(audit.body["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn generation_input_and_access_are_checked() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let other = app.tenant("Other", "pro", ALL).await;
    let site = app
        .post(
            "/v1/websites",
            &t.key,
            json!({"name": "Site", "domain": "site.test"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other_site = app
        .post(
            "/v1/websites",
            &other.key,
            json!({"name": "Other", "domain": "other.test"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (body, field) in [
        (json!({"topic": "x"}), "website_id"),
        (json!({"website_id": site}), "topic"),
        (json!({"website_id": site, "topic": ""}), "topic"),
        (
            json!({"website_id": site, "topic": "x", "length": "epic"}),
            "length",
        ),
        (
            json!({"website_id": other_site, "topic": "x"}),
            "website_id",
        ),
    ] {
        let r = app.post("/v1/generations", &t.key, body).await;
        r.expect(400, "invalid_request");
        assert_eq!(r.body["error"]["field"], field);
    }
    let (_, _, reader) = app.agent(&t.org, "Reader", &["content:read"], None).await;
    app.post(
        "/v1/generations",
        &reader,
        json!({"website_id": site, "topic": "x"}),
    )
    .await
    .expect(403, "insufficient_capability");
    let job = app
        .post(
            "/v1/generations",
            &t.key,
            json!({"website_id": site, "topic": "x"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.get(&format!("/v1/generations/{job}"), &other.key)
        .await
        .expect(404, "not_found");
    app.get("/v1/generations/gen_nothere", &t.key)
        .await
        .expect(404, "not_found");
}

/// A stand-in for an OpenAI-compatible server: stalls while `stall` is set, then answers.
async fn fake_llm(
    stall: std::sync::Arc<std::sync::atomic::AtomicBool>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    use axum::routing::post;
    use std::sync::atomic::Ordering;
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |axum::Json(body): axum::Json<Value>| {
            let stall = stall.clone();
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                assert_eq!(body["model"], "test-model");
                while stall.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                axum::Json(json!({
                    "id": "chatcmpl-1", "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant",
                        "content": "# Surviving restarts\n\nJobs are durable.\n\n## Why\n\nBecause they are stored."}, "finish_reason": "stop"}]
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn a_running_job_survives_kill_9_and_succeeds_after_restart() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use crate::helpers::{cli_json, ServerProcess};

    let stall = Arc::new(AtomicBool::new(true));
    let hits = Arc::new(AtomicUsize::new(0));
    let base_url = fake_llm(stall.clone(), hits.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keyward.toml"),
        format!("[generator]\nkind = \"openai\"\nbase_url = \"{base_url}\"\nmodel = \"test-model\"\ntimeout_seconds = 120\n"),
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.path().join("keyward.db").display());
    cli_json(
        dir.path(),
        &db,
        &["org", "create", "--name", "Durable", "--slug", "durable"],
    );
    let agent = cli_json(
        dir.path(),
        &db,
        &[
            "agent",
            "create",
            "--org",
            "durable",
            "--name",
            "Writer",
            "--capabilities",
            "generate,content:write",
        ],
    );
    let key = agent["first_key"]["secret"].as_str().unwrap().to_string();
    let c = reqwest::Client::new();

    let mut server = ServerProcess::start(dir.path(), &db, &[], &[]);
    let site: Value = c
        .post(server.url("/v1/websites"))
        .bearer_auth(&key)
        .json(&json!({"name": "S", "domain": "s.test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job: Value = c
        .post(server.url("/v1/generations"))
        .bearer_auth(&key)
        .json(&json!({"website_id": site["id"], "topic": "Surviving restarts"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let j: Value = c
            .get(server.url(&format!("/v1/generations/{id}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if j["status"] == "running" && hits.load(Ordering::SeqCst) > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the job never started: {j}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill9();
    stall.store(false, Ordering::SeqCst);

    let server = ServerProcess::start(dir.path(), &db, &[], &[]);
    let start = Instant::now();
    let done = loop {
        let j: Value = c
            .get(server.url(&format!("/v1/generations/{id}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if j["status"] == "succeeded" || j["status"] == "failed" {
            break j;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the job did not finish after the restart: {j}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["blog"]["title"], "Surviving restarts");
    assert_eq!(
        done["attempts"], 2,
        "claimed once before the crash and once after"
    );
    let blogs: Value = c
        .get(server.url("/v1/blogs?status=any"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        blogs["data"].as_array().unwrap().len(),
        1,
        "exactly one draft"
    );
}
