//! SPEC §10: two `keyward serve` processes on one PostgreSQL and one Redis behave as one
//! deployment — rate limits are global, a revocation or capability change through one node is
//! enforced by the other within a second, and queued jobs run exactly once.
//!
//! Needs KEYWARD_TEST_POSTGRES_URL and KEYWARD_TEST_REDIS_URL; says so and passes without.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{cli_json, postgres_url, ServerProcess};

/// The SPEC §10 bound.
const WITHIN: Duration = Duration::from_secs(1);

struct Nodes {
    a: ServerProcess,
    b: ServerProcess,
    db: String,
    dir: tempfile::TempDir,
    c: reqwest::Client,
}

impl Nodes {
    async fn start(test: &str) -> Option<Self> {
        let Ok(redis) = std::env::var("KEYWARD_TEST_REDIS_URL") else {
            eprintln!("skipped ({test}): KEYWARD_TEST_REDIS_URL not set");
            return None;
        };
        let db = postgres_url(test).await?;
        let dir = tempfile::tempdir().unwrap();
        cli_json(
            dir.path(),
            &db,
            &["org", "create", "--name", "Acme", "--slug", "acme"],
        );
        let env = [("KEYWARD_REDIS_URL", redis.as_str())];
        let a = ServerProcess::start(dir.path(), &db, &[], &env);
        let b = ServerProcess::start(dir.path(), &db, &[], &env);
        Some(Self {
            a,
            b,
            db,
            dir,
            c: reqwest::Client::new(),
        })
    }

    /// A new agent with `caps` (made with the CLI); its id and first key.
    fn agent(&self, name: &str, caps: &str) -> (String, String) {
        let agent = cli_json(
            self.dir.path(),
            &self.db,
            &[
                "agent",
                "create",
                "--org",
                "acme",
                "--name",
                name,
                "--capabilities",
                caps,
            ],
        );
        (
            agent["id"].as_str().unwrap().to_string(),
            agent["first_key"]["secret"].as_str().unwrap().to_string(),
        )
    }

    /// A key of agent `agent` limited to `rate` (like `5/1m`); its id and secret.
    fn key(&self, agent: &str, name: &str, rate: &str) -> (String, String) {
        let key = cli_json(
            self.dir.path(),
            &self.db,
            &[
                "key",
                "create",
                "--agent",
                agent,
                "--org",
                "acme",
                "--name",
                name,
                "--rate-limit",
                rate,
            ],
        );
        (
            key["id"].as_str().unwrap().to_string(),
            key["secret"].as_str().unwrap().to_string(),
        )
    }

    async fn status(&self, node: &ServerProcess, path: &str, key: &str) -> u16 {
        self.c
            .get(node.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Polls `node` until `path` answers `want`; how long that took, at most [`WITHIN`].
    async fn enforced_within(
        &self,
        node: &ServerProcess,
        path: &str,
        key: &str,
        want: u16,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if self.status(node, path, key).await == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < WITHIN,
                "{path} did not answer {want} within {WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_burst_split_across_two_nodes_admits_exactly_the_limit() {
    let Some(nodes) = Nodes::start("two nodes: burst").await else {
        return;
    };
    nodes.agent("Reader", "content:read");
    for (i, (rate, limit)) in [("5/1m", 5), ("20/30s", 20), ("64/10s", 64)]
        .into_iter()
        .enumerate()
    {
        let (_, key) = nodes.key("Reader", &format!("k{i}"), rate);
        let urls: Vec<String> = (0..3 * limit)
            .map(|n| {
                let node = if n % 2 == 0 { &nodes.a } else { &nodes.b };
                node.url("/v1/whoami")
            })
            .collect();
        let tasks: Vec<_> = urls
            .into_iter()
            .map(|url| {
                let (c, key) = (nodes.c.clone(), key.clone());
                tokio::spawn(async move {
                    c.get(url)
                        .bearer_auth(key)
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            match t.await.unwrap() {
                200 => admitted += 1,
                429 => {}
                other => panic!("unexpected status {other}"),
            }
        }
        assert_eq!(admitted, limit, "{rate} across two nodes");
    }
}

#[tokio::test]
async fn a_revocation_through_one_node_is_enforced_by_the_other_within_a_second() {
    let Some(nodes) = Nodes::start("two nodes: revocation").await else {
        return;
    };
    let (_, admin) = nodes.agent("Admin", "keys:write,content:write");
    nodes.agent("Reader", "content:read");
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let (id, key) = nodes.key("Reader", &format!("k{i}"), "1000/1m");
        // Known (and cached) by node B before the change.
        assert_eq!(nodes.status(&nodes.b, "/v1/whoami", &key).await, 200);
        let revoked = nodes
            .c
            .post(nodes.a.url(&format!("/v1/keys/{id}/revoke")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), 200);
        slowest = slowest.max(
            nodes
                .enforced_within(&nodes.b, "/v1/whoami", &key, 401)
                .await,
        );
    }
    eprintln!("revocation through A enforced by B after at most {slowest:?}");
}

#[tokio::test]
async fn a_capability_change_through_one_node_is_enforced_by_the_other_within_a_second() {
    let Some(nodes) = Nodes::start("two nodes: capabilities").await else {
        return;
    };
    let (_, admin) = nodes.agent("Admin", "keys:write,content:write");
    let (reader, key) = nodes.agent("Reader", "content:read,keys:read");
    let mut slowest = Duration::ZERO;
    for round in 0..3 {
        assert_eq!(nodes.status(&nodes.b, "/v1/websites", &key).await, 200);
        let changed = nodes
            .c
            .patch(nodes.a.url(&format!("/v1/agents/{reader}")))
            .bearer_auth(&admin)
            .json(&json!({"capabilities": ["keys:read"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 200, "round {round}");
        slowest = slowest.max(
            nodes
                .enforced_within(&nodes.b, "/v1/websites", &key, 403)
                .await,
        );
        let restored = nodes
            .c
            .patch(nodes.a.url(&format!("/v1/agents/{reader}")))
            .bearer_auth(&admin)
            .json(&json!({"capabilities": ["content:read", "keys:read"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(restored.status(), 200);
        slowest = slowest.max(
            nodes
                .enforced_within(&nodes.b, "/v1/websites", &key, 200)
                .await,
        );
    }
    eprintln!("capability change through A enforced by B after at most {slowest:?}");
}

#[tokio::test]
async fn queued_jobs_run_exactly_once_with_two_nodes() {
    let Some(nodes) = Nodes::start("two nodes: jobs").await else {
        return;
    };
    let (_, key) = nodes.agent("Writer", "generate,content:write,content:read");
    let c = &nodes.c;
    let site: Value = c
        .post(nodes.a.url("/v1/websites"))
        .bearer_auth(&key)
        .json(&json!({"name": "S", "domain": "s.test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { &nodes.a } else { &nodes.b };
        let job: Value = c
            .post(node.url("/v1/generations"))
            .bearer_auth(&key)
            .json(&json!({"website_id": site["id"], "topic": format!("Topic {i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let start = Instant::now();
    for id in &ids {
        let done = loop {
            let j: Value = c
                .get(nodes.b.url(&format!("/v1/generations/{id}")))
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
            assert!(start.elapsed() < Duration::from_secs(60), "not done: {j}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["attempts"], 1, "claimed by exactly one node: {done}");
    }
    let blogs: Value = c
        .get(nodes.a.url("/v1/blogs?status=any"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = blogs["data"].as_array().unwrap();
    assert_eq!(items.len(), 10, "one draft per job: {blogs}");
}

#[tokio::test]
async fn killing_one_node_under_load_loses_nothing_committed_and_the_other_keeps_answering() {
    let Some(mut nodes) = Nodes::start("kill -9 of one node under load").await else {
        return;
    };
    let (agent, admin) = nodes.agent("Admin", "keys:write,keys:read,audit:read");
    let (_, load_key) = nodes.key(&agent, "load", "1000000/1m");
    // Load on both nodes for the whole test; node B must answer every one of its requests.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for (node, url) in [
        ("a", nodes.a.url("/v1/whoami")),
        ("b", nodes.b.url("/v1/whoami")),
    ] {
        let (c, key, stop) = (nodes.c.clone(), load_key.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c.get(&url).bearer_auth(&key).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (node, ok, failed)
        }));
    }
    // Changes through node A, each answered 2xx (so committed), then A dies at once.
    let mut created = Vec::new();
    for i in 0..5 {
        let r: Value = nodes
            .c
            .post(nodes.a.url(&format!("/v1/agents/{agent}/keys")))
            .bearer_auth(&admin)
            .json(&json!({"name": format!("k{i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created.push((
            r["id"].as_str().unwrap().to_string(),
            r["secret"].as_str().unwrap().to_string(),
        ));
    }
    let revoked = nodes
        .c
        .post(nodes.a.url(&format!("/v1/keys/{}/revoke", created[0].0)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    nodes.a.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        let (node, ok, failed) = task.await.unwrap();
        assert!(ok > 0, "node {node} answered nothing");
        if node == "b" {
            assert_eq!(
                failed, 0,
                "node B failed {failed} of its requests while node A died"
            );
        }
    }
    // Everything committed through A is there, as seen by B.
    assert_eq!(
        nodes.status(&nodes.b, "/v1/whoami", &created[0].1).await,
        401
    );
    for (_, secret) in &created[1..] {
        assert_eq!(nodes.status(&nodes.b, "/v1/whoami", secret).await, 200);
    }
    let audit: Value = nodes
        .c
        .get(nodes.b.url("/v1/audit-events?limit=100"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "key.revoked").count(), 1);
    assert!(
        actions.iter().filter(|a| **a == "key.created").count() >= 6,
        "{actions:?}"
    );
}
