//! The nginx recipe of docs/INTEGRATIONS.md (docs/examples/nginx.conf, verbatim) with a real
//! nginx between a client and a small upstream, keyward answering its `auth_request`s.
//!
//! Runs when `KEYWARD_TEST_NGINX` names an nginx binary (e.g. /usr/sbin/nginx); says it was
//! skipped otherwise.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyward_core::{ForwardRule, ForwardRules};
use keyward_server::{Caller, Config};
use reqwest::header::HeaderMap;

use crate::helpers::{key_for, spawn_app_with, unknown_key, with_reports, Reply, ALL};

pub const RECIPE: &str = include_str!("../../../../docs/examples/nginx.conf");

/// `/reports` needs `reports:read`; anything else `content:read`.
fn rules(config: &mut Config) {
    with_reports(config);
    let cap = |n: &str| config.capabilities.parse(n).unwrap();
    config.forward = ForwardRules::new(
        vec![ForwardRule::new(None, "/reports", cap("reports:read")).unwrap()],
        Some(cap("content:read")),
    );
}

/// What the upstream API received: one entry per request.
type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// A small API that records the path and headers of every request it gets.
async fn upstream() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let record = record.clone();
        async move {
            let path = req.uri().to_string();
            record
                .lock()
                .unwrap()
                .push((path.clone(), req.headers().clone()));
            format!("upstream saw {path}")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

/// A foreground nginx (no daemon, one process) with everything in its own directory.
struct Nginx {
    child: std::process::Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(binary: &Path, keyward_port: u16, upstream_port: u16) -> Self {
        let port = free_port();
        let recipe = RECIPE
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{keyward_port}"))
            .replace("127.0.0.1:9000", &format!("127.0.0.1:{upstream_port}"))
            .replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"));
        Self::start_recipe(binary, &recipe, port).await
    }

    /// Runs nginx in the foreground with `recipe` (an `http` block's contents) listening on `port`.
    async fn start_recipe(binary: &Path, recipe: &str, port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log notice;\nevents {{ worker_connections 256; }}\n\
             http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/client_body;\n    \
             proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
             uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n{recipe}\n}}\n"
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let child = std::process::Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let mut nginx = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        nginx.wait_until_listening().await;
        nginx
    }

    /// nginx in the foreground has no readiness signal on a pipe, but it writes its pid file
    /// only after its listening socket is open: from then on connections queue until it
    /// accepts them.
    async fn wait_until_listening(&mut self) {
        let pid = self.dir.path().join("nginx.pid");
        let start = Instant::now();
        while !pid.exists() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("nginx exited ({status}): {}", self.error_log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not start: {}",
                self.error_log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nginx_binary() -> Option<PathBuf> {
    match std::env::var_os("KEYWARD_TEST_NGINX") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            eprintln!(
                "skipped: KEYWARD_TEST_NGINX not set (e.g. KEYWARD_TEST_NGINX=/usr/sbin/nginx)"
            );
            None
        }
    }
}

/// keyward's refusal as the client gets it through nginx: status, body, content type and the
/// request id of the body in `X-Request-Id`.
#[track_caller]
fn refused_through_nginx(r: &Reply, status: u16, code: &str) {
    r.expect(status, code);
}

#[tokio::test]
async fn nginx_auth_request_lets_valid_keys_through_and_passes_keywards_refusals() {
    let Some(binary) = nginx_binary() else {
        return;
    };
    let app = spawn_app_with(rules).await;
    let keyward_port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let (upstream_port, seen) = upstream().await;
    let nginx = Nginx::start(&binary, keyward_port, upstream_port).await;
    let c = reqwest::Client::new();
    let get = |path: &str| c.get(nginx.url(path));

    let t = app.tenant("Acme", "pro", ALL).await;
    let caller = Caller::cli(t.org.clone());
    let (agent, reader_id, reader) = app.agent(&t.org, "Reader", &["content:read"], None).await;
    let (_, reporter_id, reporter) = app
        .agent(&t.org, "Reporter", &["content:read", "reports:read"], None)
        .await;

    // A valid key reaches the API with who it is, and without the key. Headers a client sends
    // under keyward's names are replaced or dropped.
    let r = Reply::from(
        get("/hello?page=2")
            .bearer_auth(&reader)
            .header("X-Keyward-Team-Id", "team_forged")
            .header("X-Keyward-Capabilities", "keys:write")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{} / {}", r.text, nginx.error_log());
    assert_eq!(r.text, "upstream saw /hello?page=2");
    assert_eq!(r.header("x-ratelimit-limit"), "100");
    assert_eq!(r.header("x-ratelimit-remaining"), "99");
    assert!(r.header("ratelimit-policy").contains("q=100;w=60"));
    {
        let seen = seen.lock().unwrap();
        let (path, h) = seen.last().unwrap();
        assert_eq!(path, "/hello?page=2");
        assert_eq!(h["x-keyward-key-id"], reader_id.as_str());
        assert_eq!(h["x-keyward-agent-id"], agent.as_str());
        assert_eq!(h["x-keyward-org-id"], t.org.as_str());
        assert_eq!(h["x-keyward-capabilities"], "content:read");
        assert!(
            h.get("x-keyward-team-id").is_none(),
            "all teams: no team header"
        );
        assert!(h.get("authorization").is_none(), "the key stays at nginx");
        assert!(h.get("x-api-key").is_none());
    }
    let r = Reply::from(
        get("/reports/2026")
            .header("X-API-Key", &reporter)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    {
        let seen = seen.lock().unwrap();
        let (_, h) = seen.last().unwrap();
        assert_eq!(h["x-keyward-key-id"], reporter_id.as_str());
        assert_eq!(h["x-keyward-capabilities"], "content:read,reports:read");
        assert!(h.get("x-api-key").is_none(), "the key stays at nginx");
        assert!(h.get("authorization").is_none());
    }
    // A team-scoped key names its team.
    let red = app.team(&t.org, "Red").await;
    let (_, _, red_key) = app
        .agent(&t.org, "Red", &["content:read"], Some(&red))
        .await;
    let r = Reply::from(get("/hello").bearer_auth(&red_key).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        seen.lock().unwrap().last().unwrap().1["x-keyward-team-id"],
        red.as_str()
    );
    let reached = seen.lock().unwrap().len();

    // Refusals: keyward's status, JSON body and headers, and the API never sees them.
    let r = Reply::from(get("/hello").send().await.unwrap()).await;
    refused_through_nginx(&r, 401, "missing_api_key");
    assert_eq!(
        r.headers
            .get_all("www-authenticate")
            .iter()
            .collect::<Vec<_>>(),
        vec!["Bearer realm=\"keyward\""]
    );
    let invalid_token = "Bearer realm=\"keyward\", error=\"invalid_token\"";
    let (revoked_id, revoked) = key_for(&app, &t.org, &agent, None, None).await;
    app.service
        .revoke_key(&caller, &revoked_id, None)
        .await
        .unwrap();
    let unknown = unknown_key();
    for (key, code) in [
        ("kw_typo", "malformed_api_key"),
        (unknown.as_str(), "invalid_api_key"),
        (revoked.as_str(), "revoked_api_key"),
    ] {
        let r = Reply::from(get("/hello").bearer_auth(key).send().await.unwrap()).await;
        refused_through_nginx(&r, 401, code);
        assert_eq!(
            r.headers
                .get_all("www-authenticate")
                .iter()
                .collect::<Vec<_>>(),
            vec![invalid_token],
            "{code}"
        );
    }
    let r = Reply::from(
        get("/hello")
            .header("Authorization", format!("Basic {reader}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    refused_through_nginx(&r, 401, "invalid_authorization_scheme");
    // 400s become 500s inside auth_request; the recipe restores keyward's answer.
    let r = Reply::from(get("/hello?api_key=x").send().await.unwrap()).await;
    refused_through_nginx(&r, 400, "key_in_query");
    let r = Reply::from(
        get("/hello")
            .bearer_auth(&reader)
            .header("X-API-Key", &reporter)
            .send()
            .await
            .unwrap(),
    )
    .await;
    refused_through_nginx(&r, 400, "conflicting_credentials");
    // A client cannot make keyward look at another path with Traefik's headers.
    let r = Reply::from(
        get("/reports")
            .bearer_auth(&reader)
            .header("X-Forwarded-Uri", "/hello")
            .header("X-Forwarded-Method", "GET")
            .send()
            .await
            .unwrap(),
    )
    .await;
    refused_through_nginx(&r, 403, "insufficient_capability");
    // Lacking the route's capability: 403 with the RFC 6750 challenge naming it.
    let r = Reply::from(get("/reports/1").bearer_auth(&reader).send().await.unwrap()).await;
    refused_through_nginx(&r, 403, "insufficient_capability");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("reports:read"));
    assert_eq!(
        r.header("www-authenticate"),
        "Bearer realm=\"keyward\", error=\"insufficient_scope\", scope=\"reports:read\""
    );
    assert!(
        !r.header("x-ratelimit-remaining").is_empty(),
        "a 403 counts"
    );
    let free = app.tenant("Free", "free", ALL).await;
    let r = Reply::from(get("/hello").bearer_auth(&free.key).send().await.unwrap()).await;
    refused_through_nginx(&r, 403, "plan_without_api_access");
    assert_eq!(
        seen.lock().unwrap().len(),
        reached,
        "no refusal reached the API"
    );

    // Expiry is enforced at the boundary.
    let (_, expiring) = key_for(&app, &t.org, &agent, Some(app.service.now() + 30_000), None).await;
    let r = Reply::from(get("/hello").bearer_auth(&expiring).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    app.clock.advance(31_000);
    let r = Reply::from(get("/hello").bearer_auth(&expiring).send().await.unwrap()).await;
    refused_through_nginx(&r, 401, "expired_api_key");

    // Plan pro: 100 requests per 60 s; the 101st is a 429 with Retry-After.
    let (limited_id, limited) = key_for(&app, &t.org, &agent, None, None).await;
    for i in 0..100u32 {
        let r = get("/hello").bearer_auth(&limited).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {}", i + 1);
    }
    let r = Reply::from(get("/hello").bearer_auth(&limited).send().await.unwrap()).await;
    refused_through_nginx(&r, 429, "rate_limited");
    let retry: u64 = r.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.header("x-ratelimit-remaining"), "0");
    assert_eq!(r.header("x-ratelimit-limit"), "100");

    // A revocation is enforced on the very next request.
    let (live_id, live) = key_for(&app, &t.org, &agent, None, None).await;
    let r = get("/hello").bearer_auth(&live).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let revoke = app
        .post(
            &format!("/v1/keys/{live_id}/revoke"),
            &t.key,
            serde_json::json!({"reason": "leaked"}),
        )
        .await;
    revoke.expect(200, "");
    let r = Reply::from(get("/hello").bearer_auth(&live).send().await.unwrap()).await;
    refused_through_nginx(&r, 401, "revoked_api_key");

    // The keys that went through nginx are counted like any request.
    let usage = crate::usage::wait_for_usage(
        &app,
        &t.key,
        &format!("key_id={limited_id}&granularity=minute"),
        101,
    )
    .await;
    assert_eq!(crate::usage::totals(&usage), (101, 100, 0, 1));
}

/// The load-balancer configuration of docs/DEPLOY.md, run as written (TLS and the public
/// name aside) in front of two keyward nodes: requests reach both, and when one node dies
/// nginx's retries keep every request answered.
#[tokio::test]
async fn the_deploy_load_balancer_spreads_requests_and_survives_a_node() {
    let Some(binary) = nginx_binary() else { return };
    let deploy = include_str!("../../../../docs/DEPLOY.md");
    let block = deploy
        .split("## nginx\n\n```nginx\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/DEPLOY.md has an nginx block");
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("keyward.db").display());
    crate::helpers::cli_json(
        dir.path(),
        &db,
        &["org", "create", "--name", "Acme", "--slug", "acme"],
    );
    let agent = crate::helpers::cli_json(
        dir.path(),
        &db,
        &[
            "agent",
            "create",
            "--org",
            "acme",
            "--name",
            "Lb",
            "--capabilities",
            "content:read",
        ],
    );
    let key = agent["first_key"]["secret"].as_str().unwrap().to_string();
    let mut a = crate::helpers::ServerProcess::start(dir.path(), &db, &[], &[]);
    let b = crate::helpers::ServerProcess::start(dir.path(), &db, &[], &[]);
    let port = free_port();
    let recipe: String = block
        .replace("10.0.0.21:8080", a.base.trim_start_matches("http://"))
        .replace("10.0.0.22:8080", b.base.trim_start_matches("http://"))
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port};"))
        .lines()
        .filter(|l| !l.contains("server_name") && !l.contains("ssl_certificate"))
        .collect::<Vec<_>>()
        .join("\n");
    let nginx = Nginx::start_recipe(&binary, &recipe, port).await;
    let c = reqwest::Client::new();
    for _ in 0..20 {
        let r = c
            .get(nginx.url("/v1/whoami"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", nginx.error_log());
    }
    let served = |node: &crate::helpers::ServerProcess| {
        let (c, url) = (c.clone(), node.url("/metrics"));
        async move {
            let text = c.get(url).send().await.unwrap().text().await.unwrap();
            text.lines()
                .filter(|l| l.starts_with("keyward_http_requests_total{method=\"GET\",route=\"/v1/whoami\",status=\"200\"}"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>()
        }
    };
    let (on_a, on_b) = (served(&a).await, served(&b).await);
    assert_eq!(on_a + on_b, 20);
    assert!(on_a > 0 && on_b > 0, "both nodes served: {on_a} and {on_b}");
    // /metrics is not for the public.
    assert_eq!(
        c.get(nginx.url("/metrics")).send().await.unwrap().status(),
        403
    );
    a.kill9();
    for _ in 0..20 {
        let r = c
            .get(nginx.url("/v1/whoami"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "a request failed after a node died: {}",
            nginx.error_log()
        );
    }
}
