//! Spawning the application and seeding tenants for tests.

use keyward_core::{AgentId, KeyId, OrgId, Role, TeamId, UserId};
use keyward_server::service::{NewAgent, NewOrg};
use keyward_server::{Application, Caller, Clock, Config, Service};
use keyward_store::Store;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

/// A running server with its own database.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub service: Service,
    pub clock: Clock,
    pub db_path: std::path::PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// An organization with one agent and its first key.
pub struct Tenant {
    pub org: OrgId,
    pub agent: AgentId,
    pub key_id: KeyId,
    pub key: String,
    pub owner: UserId,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("keyward.db");
    let store = Store::connect(&format!("sqlite://{}", db_path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let clock = Clock::adjustable();
    let mut config = Config {
        clock: clock.clone(),
        ..Config::default()
    };
    tweak(&mut config);
    let app = Application::build("127.0.0.1:0", store.clone(), config.clone())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    // The server's own service: changes made through it reach the server's key cache at once,
    // exactly as changes made through the API do.
    let service = app.service().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    TestApp {
        base,
        client: reqwest::Client::new(),
        service,
        clock,
        db_path,
        shutdown: Some(tx),
        handle: Some(handle),
        _dir: dir,
    }
}

impl TestApp {
    /// Stops the server gracefully (flushing what it holds in memory).
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the key as a Bearer token.
    pub fn req(&self, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        Reply::from(self.req(Method::GET, path, key).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        Reply::from(
            self.req(Method::POST, path, key)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Reply {
        Reply::from(
            self.req(Method::PATCH, path, key)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn delete(&self, path: &str, key: &str) -> Reply {
        Reply::from(self.req(Method::DELETE, path, key).send().await.unwrap()).await
    }

    /// A new organization on `plan` with an agent holding `caps` and an owner.
    pub async fn tenant(&self, name: &str, plan: &str, caps: &[&str]) -> Tenant {
        tenant(&self.service, name, plan, caps).await
    }

    /// Creates another agent in `org` and returns its first key.
    pub async fn agent(
        &self,
        org: &OrgId,
        name: &str,
        caps: &[&str],
        team: Option<&TeamId>,
    ) -> (AgentId, KeyId, String) {
        let caller = Caller::cli(org.clone());
        let created = self
            .service
            .create_agent(
                &caller,
                NewAgent {
                    name: name.into(),
                    description: None,
                    capabilities: caps.iter().map(|c| c.to_string()).collect(),
                },
            )
            .await
            .unwrap();
        if let Some(team) = team {
            // Replace the all-teams first key with a team-scoped one.
            self.service
                .revoke_key(&caller, &created.first_key.record.id, None)
                .await
                .unwrap();
            let key = self
                .service
                .create_key(
                    &caller,
                    &created.agent.id,
                    keyward_server::service::NewKey {
                        name: "Team key".into(),
                        team: Some(team.clone()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            return (
                created.agent.id,
                key.record.id,
                key.secret.expose().to_string(),
            );
        }
        (
            created.agent.id,
            created.first_key.record.id,
            created.first_key.secret.expose().to_string(),
        )
    }

    pub async fn team(&self, org: &OrgId, name: &str) -> TeamId {
        self.service
            .create_team(&Caller::cli(org.clone()), name)
            .await
            .unwrap()
            .id
    }
}

pub async fn tenant(service: &Service, name: &str, plan: &str, caps: &[&str]) -> Tenant {
    let org = service
        .create_org(NewOrg {
            name: name.into(),
            slug: None,
            plan: plan.into(),
        })
        .await
        .unwrap();
    let caller = Caller::cli(org.id.clone());
    let email = format!("owner@{}.example.com", org.slug);
    let owner = service
        .create_user(&caller, &email, Role::Owner, None)
        .await
        .unwrap();
    let created = service
        .create_agent(
            &caller,
            NewAgent {
                name: "Main".into(),
                description: None,
                capabilities: caps.iter().map(|c| c.to_string()).collect(),
            },
        )
        .await
        .unwrap();
    Tenant {
        org: org.id,
        agent: created.agent.id,
        key_id: created.first_key.record.id,
        key: created.first_key.secret.expose().to_string(),
        owner: owner.user.id,
    }
}

/// Every capability of the built-in catalog.
pub const ALL: &[&str] = &[
    "content:read",
    "content:write",
    "generate",
    "account:read",
    "keys:read",
    "keys:write",
    "keys:verify",
    "audit:read",
];

/// A response read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub async fn from(r: reqwest::Response) -> Self {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts the status and, for errors, the one error shape with this code.
    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        if status >= 400 {
            assert_eq!(self.code(), code, "body: {}", self.text);
            let e = &self.body["error"];
            assert_eq!(e["status"], status, "{}", self.text);
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{}",
                self.text
            );
            let rid = e["request_id"].as_str().unwrap();
            assert_eq!(
                rid,
                self.header("x-request-id"),
                "error body and header carry the same request id"
            );
            assert!(self.header("content-type").starts_with("application/json"));
        }
        self
    }
}

/// A fresh PostgreSQL database for one test, or `None` (and a note) when none is configured.
pub async fn postgres_store(test: &str) -> Option<Store> {
    let url = postgres_url(test).await?;
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    Some(store)
}

/// A fresh SQLite store in a temporary directory (kept alive by the returned guard).
pub async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

/// The `keyward` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keyward")
}

/// A `keyward serve` process. Its stdout lines are copied to `stdout_log`; stderr goes to
/// `stderr_log`. Killed on drop.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub base: String,
    pub stdout_log: std::path::PathBuf,
    pub stderr_log: std::path::PathBuf,
    pub first_lines: Vec<String>,
}

impl ServerProcess {
    /// Starts `keyward serve --listen 127.0.0.1:0` on `database_url` and waits for its
    /// "Listening on" line (no sleeps: the line is the readiness signal).
    pub fn start(
        dir: &std::path::Path,
        database_url: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        use std::io::{BufRead, Write};
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let stdout_log = dir.join(format!("server-{n}.out"));
        let stderr_log = dir.join(format!("server-{n}.err"));
        let mut cmd = std::process::Command::new(bin());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .args(extra)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("KEYWARD_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the keyward binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log_path = stdout_log.clone();
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(log_path).unwrap();
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = writeln!(log, "{line}");
                let _ = log.flush();
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "keyward serve printed nothing; stderr: {}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                )
            });
        let base = first
            .strip_prefix("Listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        let mut first_lines = vec![first];
        while let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            first_lines.push(line);
        }
        Self {
            child,
            base,
            stdout_log,
            stderr_log,
            first_lines,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI with `args` (and `stdin`), returning (exit code, stdout, stderr).
pub fn run_cli(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("KEYWARD_CONFIG")
        .env_remove("KEYWARD_DATABASE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the CLI and parses its `--json` output, failing the test on a non-zero exit.
pub fn cli_json(dir: &std::path::Path, db: &str, args: &[&str]) -> Value {
    let mut all = vec!["--database-url", db, "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = run_cli(dir, &all, None);
    assert_eq!(code, 0, "keyward {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not one JSON document ({e}): {out}"))
}

/// A PostgreSQL URL for a fresh database, or `None` when none is configured.
pub async fn postgres_url(test: &str) -> Option<String> {
    let Ok(base) = std::env::var("KEYWARD_TEST_POSTGRES_URL") else {
        eprintln!("skipped on PostgreSQL ({test}): KEYWARD_TEST_POSTGRES_URL is not set");
        return None;
    };
    let admin = Store::connect(&base)
        .await
        .expect("KEYWARD_TEST_POSTGRES_URL is set but PostgreSQL is not reachable");
    let name = format!("kw_test_{}", KeyId::generate().as_str()[4..].to_lowercase());
    admin
        .execute_admin(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    admin.close().await;
    Some(match base.rfind('/') {
        Some(i) if i > "postgres://".len() => format!("{}/{name}", &base[..i]),
        _ => format!("{base}/{name}"),
    })
}

/// A deployment with its own capability `reports:read` beside the built-in ones.
pub fn with_reports(config: &mut Config) {
    config.capabilities =
        keyward_core::CapabilityCatalog::with_custom([("reports:read", "Read reports")]).unwrap();
}

/// A well-formed key (right prefix, length and checksum) that no deployment issued.
pub fn unknown_key() -> String {
    keyward_core::ApiKey::generate(&keyward_core::KeyPrefix::default())
        .expose()
        .to_string()
}

/// Creates a key for `agent` as the operator, with an optional expiry and rate limit.
pub async fn key_for(
    app: &TestApp,
    org: &OrgId,
    agent: &AgentId,
    expires_at: Option<i64>,
    rate_limit: Option<keyward_core::RateLimit>,
) -> (KeyId, String) {
    let created = app
        .service
        .create_key(
            &Caller::cli(org.clone()),
            agent,
            keyward_server::service::NewKey {
                name: "Extra".into(),
                expires_at,
                rate_limit,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (created.record.id, created.secret.expose().to_string())
}
