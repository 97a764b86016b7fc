//! A raw key appears once, in the response that created it: never in logs, traces, error
//! messages, audit records or the database.

use serde_json::{json, Value};

use crate::helpers::{cli_json, postgres_url, ServerProcess};

/// Runs the whole lifecycle against a server logging at trace level and returns every raw
/// key it saw, with the server still running.
async fn lifecycle(dir: &std::path::Path, db: &str) -> (Vec<String>, ServerProcess) {
    cli_json(
        dir,
        db,
        &["org", "create", "--name", "Secretive", "--slug", "sec"],
    );
    let agent = cli_json(
        dir,
        db,
        &[
            "agent",
            "create",
            "--org",
            "sec",
            "--name",
            "Admin",
            "--capabilities",
            "keys:write,audit:read,keys:verify",
        ],
    );
    let admin = agent["first_key"]["secret"].as_str().unwrap().to_string();
    let agent_id = agent["id"].as_str().unwrap().to_string();
    let server = ServerProcess::start(dir, db, &[], &[("RUST_LOG", "trace")]);
    let c = reqwest::Client::new();
    let mut keys = vec![admin.clone()];

    let made: Value = c
        .post(server.url(&format!("/v1/agents/{agent_id}/keys")))
        .bearer_auth(&admin)
        .json(&json!({"name": "second"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = made["secret"].as_str().unwrap().to_string();
    keys.push(second.clone());
    let other: Value = c
        .post(server.url("/v1/agents"))
        .bearer_auth(&admin)
        .json(&json!({"name": "Other", "capabilities": ["keys:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    keys.push(other["first_key"]["secret"].as_str().unwrap().to_string());
    let rolled: Value = c
        .post(server.url(&format!("/v1/keys/{}/roll", made["id"].as_str().unwrap())))
        .bearer_auth(&admin)
        .json(&json!({"grace_seconds": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rolled_secret = rolled["new_key"]["secret"].as_str().unwrap().to_string();
    keys.push(rolled_secret.clone());
    // Use every key, well and badly: expired, revoked, in the query, in conflicting headers,
    // with a typo, in a bad body.
    for k in &keys {
        c.get(server.url("/v1/whoami"))
            .bearer_auth(k)
            .send()
            .await
            .unwrap();
        c.get(server.url(&format!("/v1/whoami?api_key={k}")))
            .send()
            .await
            .unwrap();
        c.get(server.url("/v1/whoami"))
            .bearer_auth(k)
            .header("X-API-Key", "kw_other")
            .send()
            .await
            .unwrap();
        c.get(server.url("/v1/whoami"))
            .header("Authorization", format!("Basic {k}"))
            .send()
            .await
            .unwrap();
        c.get(server.url("/v1/whoami"))
            .bearer_auth(format!("{k}x"))
            .send()
            .await
            .unwrap();
        c.post(server.url("/v1/agents"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(format!("{{\"name\": \"{k}\""))
            .send()
            .await
            .unwrap();
        // The verify API and forward auth see keys too, well and badly formed.
        for body in [
            format!("{{\"key\": \"{k}\", \"capability\": \"audit:read\"}}"),
            format!("{{\"key\": \"{k}x\"}}"),
            format!("{{\"key\": \"{k}\", \"capability\": \"Not A Name\"}}"),
            format!("{{\"key\": \"{k}\", \"extra\": true}}"),
            format!("{{\"key\": \"{k}\""),
        ] {
            let answer = c
                .post(server.url("/v1/keys/verify"))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                !answer.contains(&k[3..]),
                "the verify API echoed a key: {answer}"
            );
        }
        for uri in ["/reports".to_string(), format!("/reports?api_key={k}")] {
            let r = c
                .get(server.url("/v1/auth/forward"))
                .bearer_auth(k)
                .header("X-Original-Method", "GET")
                .header("X-Original-URI", uri)
                .send()
                .await
                .unwrap();
            let headers = format!("{:?}", r.headers());
            let answer = r.text().await.unwrap();
            assert!(!answer.contains(&k[3..]) && !headers.contains(&k[3..]));
        }
        c.get(server.url(&format!("/v1/auth/forward/reports?key={k}")))
            .bearer_auth(k)
            .send()
            .await
            .unwrap();
    }
    c.post(server.url(&format!(
        "/v1/keys/{}/revoke",
        rolled["new_key"]["id"].as_str().unwrap()
    )))
    .bearer_auth(&admin)
    .json(&json!({"reason": "cleanup"}))
    .send()
    .await
    .unwrap();
    c.get(server.url("/v1/whoami"))
        .bearer_auth(&rolled_secret)
        .send()
        .await
        .unwrap();
    let audit = c
        .get(server.url("/v1/audit-events?limit=100"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for k in &keys {
        assert!(!audit.contains(k.as_str()), "the audit log holds a raw key");
        assert!(
            !audit.contains(&k[3..]),
            "the audit log holds a raw key's secret part"
        );
    }
    (keys, server)
}

fn assert_absent(keys: &[String], haystack: &[u8], what: &str) {
    for k in keys {
        let secret_part = &k.as_bytes()[3..];
        assert!(
            !haystack
                .windows(secret_part.len())
                .any(|w| w == secret_part),
            "a raw key was found in {what}"
        );
    }
}

#[tokio::test]
async fn raw_keys_never_reach_logs_or_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("keyward.db");
    let db = format!("sqlite://{}", db_path.display());
    let (keys, mut server) = lifecycle(dir.path(), &db).await;
    // Read the database and its WAL while the server still has them open.
    let mut wal = db_path.clone().into_os_string();
    wal.push("-wal");
    let wal_bytes = std::fs::read(&wal).unwrap_or_default();
    assert!(!wal_bytes.is_empty() || std::fs::metadata(&db_path).is_ok());
    assert_absent(
        &keys,
        &std::fs::read(&db_path).unwrap(),
        "the SQLite database",
    );
    assert_absent(&keys, &wal_bytes, "the SQLite write-ahead log");
    server.terminate();
    let stderr = std::fs::read(&server.stderr_log).unwrap();
    assert!(stderr.len() > 1000, "trace logging was on and wrote plenty");
    assert_absent(&keys, &stderr, "the server's stderr (RUST_LOG=trace)");
    assert_absent(
        &keys,
        &std::fs::read(&server.stdout_log).unwrap(),
        "the server's stdout",
    );
    assert_absent(
        &keys,
        &std::fs::read(&db_path).unwrap(),
        "the SQLite database after shutdown",
    );

    if let Some(pg) = postgres_url("raw keys in a pg_dump").await {
        let dir = tempfile::tempdir().unwrap();
        let (keys, mut server) = lifecycle(dir.path(), &pg).await;
        server.terminate();
        let dump = std::process::Command::new("pg_dump")
            .arg(&pg)
            .output()
            .expect("pg_dump is installed");
        assert!(
            dump.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&dump.stderr)
        );
        assert!(String::from_utf8_lossy(&dump.stdout).contains("api_keys"));
        assert_absent(&keys, &dump.stdout, "a pg_dump of the database");
        assert_absent(
            &keys,
            &std::fs::read(&server.stderr_log).unwrap(),
            "the server's stderr on PostgreSQL",
        );
    }
}
