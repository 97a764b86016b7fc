//! The command line, and the server as a separate process: the CLI and the server agree,
//! a revocation from another process is enforced within a second, and nothing committed is
//! lost to `kill -9`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{cli_json, postgres_url, run_cli, ServerProcess};

fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("keyward.db").display())
}

/// An organization, an agent with every capability and its first key, made with the CLI.
fn seed(dir: &std::path::Path, db: &str, slug: &str) -> (Value, Value) {
    let org = cli_json(
        dir,
        db,
        &[
            "org",
            "create",
            "--name",
            &format!("Org {slug}"),
            "--slug",
            slug,
        ],
    );
    let agent = cli_json(
        dir,
        db,
        &[
            "agent",
            "create",
            "--org",
            slug,
            "--name",
            "Admin",
            "--capabilities",
            "keys:write,audit:read,content:write,keys:read",
        ],
    );
    (org, agent)
}

#[tokio::test]
async fn cli_json_is_exactly_the_http_body() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let (org, agent) = seed(dir.path(), &db, "acme");
    assert_eq!(org["slug"], "acme");
    assert_eq!(org["plan"], "pro");
    assert!(org["id"].as_str().unwrap().starts_with("org_"));
    let key = agent["first_key"]["secret"].as_str().unwrap().to_string();
    assert_eq!(agent["first_key"]["name"], "Production");

    let team = cli_json(
        dir.path(),
        &db,
        &["team", "create", "--org", "acme", "--name", "Red"],
    );
    let created = cli_json(
        dir.path(),
        &db,
        &[
            "key",
            "create",
            "--agent",
            "Admin",
            "--name",
            "CI",
            "--team",
            "Red",
            "--environment",
            "staging",
            "--expires-in",
            "30d",
            "--rate-limit",
            "500/1m",
        ],
    );
    assert_eq!(created["team_id"], team["id"]);
    assert_eq!(
        created["rate_limit"],
        json!({"limit": 500, "window_seconds": 60})
    );
    assert!(created["secret"].as_str().unwrap().starts_with("kw_"));
    let key_id = created["id"].as_str().unwrap().to_string();

    let server = ServerProcess::start(dir.path(), &db, &[], &[]);
    let client = reqwest::Client::new();
    let http: Value = client
        .get(server.url(&format!("/v1/keys/{key_id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut from_cli = created.clone();
    from_cli.as_object_mut().unwrap().remove("secret");
    assert_eq!(
        http, from_cli,
        "the CLI printed the same key object the API answers"
    );

    let listed = cli_json(
        dir.path(),
        &db,
        &["key", "list", "--org", "acme", "--agent", "Admin"],
    );
    let http_list: Value = client
        .get(server.url(&format!(
            "/v1/agents/{}/keys",
            agent["id"].as_str().unwrap()
        )))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed, http_list,
        "the whole list body, pagination included"
    );
    let paged = cli_json(
        dir.path(),
        &db,
        &["key", "list", "--org", "acme", "--limit", "1"],
    );
    assert_eq!(paged["pagination"]["limit"], 1);
    assert_eq!(paged["pagination"]["has_more"], true);
    let cursor = paged["pagination"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let second = cli_json(
        dir.path(),
        &db,
        &[
            "key", "list", "--org", "acme", "--limit", "1", "--cursor", &cursor,
        ],
    );
    assert_ne!(second["data"][0]["id"], paged["data"][0]["id"]);
    assert!(
        !listed.to_string().contains(&key),
        "lists never hold secrets"
    );

    let updated = cli_json(
        dir.path(),
        &db,
        &[
            "key",
            "update",
            &key_id,
            "--name",
            "CI-2",
            "--rate-limit",
            "none",
        ],
    );
    assert_eq!(updated["name"], "CI-2");
    assert_eq!(updated["rate_limit"], json!(null));
    let rolled = cli_json(dir.path(), &db, &["key", "roll", &key_id, "--grace", "0s"]);
    assert_eq!(rolled["old_key"]["id"], key_id.as_str());
    assert_eq!(rolled["new_key"]["rolled_from"], key_id.as_str());
    let revoked = cli_json(
        dir.path(),
        &db,
        &[
            "key",
            "revoke",
            rolled["new_key"]["id"].as_str().unwrap(),
            "--reason",
            "done",
        ],
    );
    assert_eq!(revoked["status"], "revoked");
    let agents = cli_json(dir.path(), &db, &["agent", "list", "--org", "acme"]);
    assert_eq!(agents["data"][0]["name"], "Admin");
    let orgs = cli_json(dir.path(), &db, &["org", "list"]);
    assert_eq!(orgs["data"][0]["slug"], "acme");
    let moved = cli_json(
        dir.path(),
        &db,
        &["org", "update", "acme", "--plan", "enterprise"],
    );
    assert_eq!(moved["plan"], "enterprise");

    // The CLI's actions are in the audit log as the cli actor.
    let audit: Value = client
        .get(server.url("/v1/audit-events?action=org.plan_changed"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        audit["data"][0]["actor"],
        json!({"type": "cli", "id": "cli"})
    );
    assert_eq!(
        audit["data"][0]["details"],
        json!({"before": "pro", "after": "enterprise"})
    );
}

#[tokio::test]
async fn human_output_marks_the_key_as_shown_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    seed(dir.path(), &db, "acme");
    let (code, out, _) = run_cli(
        dir.path(),
        &[
            "--database-url",
            &db,
            "key",
            "create",
            "--org",
            "acme",
            "--agent",
            "Admin",
            "--name",
            "laptop",
        ],
        None,
    );
    assert_eq!(code, 0);
    assert!(out.contains("kw_"));
    assert!(out.contains("shown once"), "{out}");
}

#[tokio::test]
async fn exit_codes_and_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    seed(dir.path(), &db, "one");
    seed(dir.path(), &db, "two");
    // Usage errors: 2.
    assert_eq!(run_cli(dir.path(), &["org", "create"], None).0, 2);
    assert_eq!(
        run_cli(
            dir.path(),
            &["--database-url", &db, "org", "frobnicate"],
            None
        )
        .0,
        2
    );
    assert_eq!(
        run_cli(
            dir.path(),
            &[
                "--database-url",
                &db,
                "key",
                "create",
                "--agent",
                "Admin",
                "--name",
                "x",
                "--expires-in",
                "soon"
            ],
            None
        )
        .0,
        2
    );
    let (code, _, err) = run_cli(
        dir.path(),
        &[
            "--database-url",
            &db,
            "key",
            "create",
            "--agent",
            "Admin",
            "--name",
            "x",
        ],
        None,
    );
    assert_eq!(
        code, 2,
        "an agent name used by two organizations is ambiguous: {err}"
    );
    assert!(err.contains("--org"));
    // Other failures: 1, with one clear line.
    let (code, _, err) = run_cli(
        dir.path(),
        &["--database-url", &db, "agent", "list", "--org", "nope"],
        None,
    );
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    let (code, _, err) = run_cli(
        dir.path(),
        &[
            "--database-url",
            &db,
            "org",
            "create",
            "--name",
            "x",
            "--plan",
            "platinum",
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("platinum"), "{err}");
    // Passwords come from stdin when it is not a terminal, and must be long enough.
    let (code, out, err) = run_cli(
        dir.path(),
        &[
            "--database-url",
            &db,
            "--json",
            "user",
            "create",
            "--org",
            "one",
            "--email",
            "Ada@Example.com",
            "--role",
            "admin",
        ],
        Some("correct horse battery\n"),
    );
    assert_eq!(code, 0, "{err}");
    let user: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["role"], "admin");
    let (code, _, err) = run_cli(
        dir.path(),
        &[
            "--database-url",
            &db,
            "user",
            "set-password",
            "ada@example.com",
        ],
        Some("short\n"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("10"), "{err}");
    let (code, _, _) = run_cli(
        dir.path(),
        &[
            "--database-url",
            &db,
            "user",
            "set-password",
            "ada@example.com",
        ],
        Some("a much longer password\n"),
    );
    assert_eq!(code, 0);
}

#[tokio::test]
async fn configuration_errors_name_the_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keyward.toml"),
        "listen = \"127.0.0.1:0\"\nlisten_port = 9\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(dir.path(), &["org", "list"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("listen_port") && err.contains("keyward.toml"),
        "{err}"
    );
    // The prefix from the file is used by every command: CLI and server agree.
    std::fs::write(dir.path().join("keyward.toml"), "key_prefix = \"acme\"\n").unwrap();
    let db = sqlite_url(dir.path());
    let (_, agent) = seed(dir.path(), &db, "acme");
    let key = agent["first_key"]["secret"].as_str().unwrap();
    assert!(key.starts_with("acme_"), "{key}");
    let server = ServerProcess::start(dir.path(), &db, &[], &[]);
    let r = reqwest::Client::new()
        .get(server.url("/v1/whoami"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Polls `GET /v1/whoami` until it answers `want` or `deadline` passes; returns the time taken.
async fn wait_for_status(base: &str, key: &str, want: u16, deadline: Duration) -> Option<Duration> {
    let client = reqwest::Client::new();
    let start = Instant::now();
    while start.elapsed() < deadline {
        let status = client
            .get(format!("{base}/v1/whoami"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status();
        if status.as_u16() == want {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn revocation_from_another_process(db: &str, dir: &std::path::Path) {
    let (_, agent) = seed(dir, db, "acme");
    let key = agent["first_key"]["secret"].as_str().unwrap().to_string();
    let key_id = agent["first_key"]["id"].as_str().unwrap().to_string();
    let server = ServerProcess::start(dir, db, &[], &[]);
    assert!(
        wait_for_status(&server.base, &key, 200, Duration::from_secs(1))
            .await
            .is_some()
    );
    cli_json(dir, db, &["key", "revoke", &key_id]);
    let took = wait_for_status(&server.base, &key, 401, Duration::from_secs(1)).await;
    assert!(
        took.is_some(),
        "a key revoked by another process must be refused within one second"
    );
}

#[tokio::test]
async fn a_key_revoked_from_the_cli_is_refused_by_the_running_server_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    revocation_from_another_process(&sqlite_url(dir.path()), dir.path()).await;
    if let Some(pg) = postgres_url("cli revocation").await {
        let dir = tempfile::tempdir().unwrap();
        revocation_from_another_process(&pg, dir.path()).await;
    }
}

async fn durability(db: &str, dir: &std::path::Path) {
    let (_, agent) = seed(dir, db, "acme");
    let admin = agent["first_key"]["secret"].as_str().unwrap().to_string();
    let agent_id = agent["id"].as_str().unwrap().to_string();
    let mut server = ServerProcess::start(dir, db, &[], &[]);
    let client = reqwest::Client::new();
    let mut keys = Vec::new();
    for i in 0..5 {
        let r: Value = client
            .post(server.url(&format!("/v1/agents/{agent_id}/keys")))
            .bearer_auth(&admin)
            .json(&json!({"name": format!("k{i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        keys.push((
            r["id"].as_str().unwrap().to_string(),
            r["secret"].as_str().unwrap().to_string(),
        ));
    }
    let revoked = client
        .post(server.url(&format!("/v1/keys/{}/revoke", keys[0].0)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    server.kill9();

    let server = ServerProcess::start(dir, db, &[], &[]);
    let status = |k: String| {
        let client = client.clone();
        let url = server.url("/v1/whoami");
        async move {
            client
                .get(url)
                .bearer_auth(k)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status(keys[0].1.clone()).await,
        401,
        "the revocation survived kill -9"
    );
    for (_, secret) in &keys[1..] {
        assert_eq!(
            status(secret.clone()).await,
            200,
            "a created key survived kill -9"
        );
    }
    let audit: Value = client
        .get(server.url("/v1/audit-events?action=key.revoked"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        audit["data"].as_array().unwrap().len(),
        1,
        "the audit event survived kill -9"
    );
}

#[tokio::test]
async fn nothing_committed_is_lost_to_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    durability(&sqlite_url(dir.path()), dir.path()).await;
    if let Some(pg) = postgres_url("kill -9 durability").await {
        let dir = tempfile::tempdir().unwrap();
        durability(&pg, dir.path()).await;
    }
}

#[tokio::test]
async fn serve_demo_prints_a_working_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let server = ServerProcess::start(dir.path(), &db, &["--demo"], &[]);
    let sign_in = server
        .first_lines
        .iter()
        .find(|l| l.starts_with("Demo sign-in: "))
        .expect("sign-in line");
    assert!(sign_in.contains("@"));
    let key_line = server
        .first_lines
        .iter()
        .find(|l| l.starts_with("Demo API key (shown once): "))
        .expect("key line");
    let key = key_line.trim_start_matches("Demo API key (shown once): ");
    let who: Value = reqwest::Client::new()
        .get(server.url("/v1/whoami"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["plan"]["name"], "pro");
    assert_eq!(who["capabilities"].as_array().unwrap().len(), 8);
    // Demo content: two websites (one of the demo team), blogs, some of them drafts.
    let c = reqwest::Client::new();
    let get = |path: &str| {
        let c = c.clone();
        let url = server.url(path);
        let key = key.to_string();
        async move {
            c.get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let sites = get("/v1/websites").await;
    assert_eq!(sites["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        sites["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["team_id"].is_string())
            .count(),
        1
    );
    let published = get("/v1/blogs?limit=100").await["data"]
        .as_array()
        .unwrap()
        .len();
    let all = get("/v1/blogs?status=any&limit=100").await["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(all, 12);
    assert!(
        published >= 6 && published < all,
        "{published} published of {all}"
    );
    assert!(!get("/v1/categories").await["data"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(!get("/v1/tags").await["data"].as_array().unwrap().is_empty());
    drop(server);
    // On a store with data, --demo loads nothing and says so.
    let again = ServerProcess::start(dir.path(), &db, &["--demo"], &[]);
    assert!(
        again.first_lines.iter().any(|l| l.contains("not loaded")),
        "{:?}",
        again.first_lines
    );
    assert!(!again.first_lines.iter().any(|l| l.contains("kw_")));
}

#[tokio::test]
async fn dev_seed_keys_writes_working_keys_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let (_, agent) = seed(dir.path(), &db, "acme");
    let out = dir.path().join("keys.txt");
    let seeded = cli_json(
        dir.path(),
        &db,
        &[
            "dev",
            "seed-keys",
            "--org",
            "acme",
            "--agent",
            "Admin",
            "--count",
            "7",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(seeded["seeded"], 7);
    let keys: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(keys.len(), 7);
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), 7, "every seeded key is new");
    let server = ServerProcess::start(dir.path(), &db, &[], &[]);
    let client = reqwest::Client::new();
    let mut names = Vec::new();
    for key in &keys {
        let me: Value = client
            .get(format!("{}/v1/whoami", server.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["key"]["status"], "active");
        assert_eq!(me["key"]["agent_id"], agent["id"]);
        names.push(me["key"]["name"].as_str().unwrap().to_string());
    }
    assert_eq!(
        names,
        (1..=7).map(|i| format!("seed-{i}")).collect::<Vec<_>>()
    );
    // The secrets are in the file and nowhere in the store (its file or its log).
    for file in ["keyward.db", "keyward.db-wal"] {
        let stored = std::fs::read(dir.path().join(file)).unwrap_or_default();
        for key in &keys {
            assert!(!stored.windows(key.len()).any(|w| w == key.as_bytes()));
        }
    }
}

/// A command or a server that ends cleanly leaves no SQLite write-ahead log to read back: its
/// content is in the database file and the log is empty or gone, so the next process to open
/// the file reads nothing more (a seeded million keys left a log of 45 MB that every start-up
/// read, 0.13 s).
#[tokio::test]
async fn a_clean_exit_leaves_no_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let (_, agent) = seed(dir.path(), &db, "acme");
    let log = dir.path().join("keyward.db-wal");
    let log_len = || std::fs::metadata(&log).map_or(0, |m| m.len());
    assert_eq!(log_len(), 0, "the CLI left its log behind");
    let mut server = ServerProcess::start(dir.path(), &db, &[], &[]);
    let key = agent["first_key"]["secret"].as_str().unwrap();
    let me = reqwest::Client::new()
        .get(server.url("/v1/whoami"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert!(log_len() > 0, "a running server writes through its log");
    assert!(server.terminate().success());
    assert_eq!(log_len(), 0, "the server left its log behind");
}
