//! The dashboard over plain HTTP: first-run setup, sessions, CSRF, throttled sign-in,
//! keys shown once, roles, teams and the audit trail. (The same flows in a real browser are
//! in `browser.rs`.)

use std::time::{Duration, Instant};

use keyward_core::Role;
use keyward_server::service::AuditQuery;
use keyward_server::{Caller, Service};
use keyward_store::usage::{Counts, Increment};
use keyward_store::PageRequest;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;
use secrecy::SecretString;

use crate::helpers::{spawn_app, spawn_app_with, ServerProcess, Tenant, TestApp};
use crate::storage::on_every_backend;

pub const PASSWORD: &str = "correct horse battery";

/// A person with a browser-like cookie jar of one cookie, who never follows redirects, and
/// who remembers every page they were shown.
pub struct Visitor {
    pub base: String,
    client: reqwest::Client,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
    /// Every body received, in order.
    pub seen: Vec<String>,
}

/// One answer.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn location(&self) -> &str {
        self.header("location")
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        self
    }
}

/// The text of the element with this id (`<code id="new-key">kw_…</code>`).
pub fn element_text(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[start..];
    let open = rest.find('>')? + 1;
    let close = rest[open..].find('<')?;
    Some(rest[open..open + close].to_string())
}

fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = html[at..].find('"')?;
    Some(html[at..at + end].to_string())
}

impl Visitor {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_string(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
            csrf: None,
            seen: Vec::new(),
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = match &self.cookie {
            Some(c) => req.header("cookie", c.clone()),
            None => req,
        };
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        for v in headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap().trim().to_string();
            if v.contains("Max-Age=0") {
                self.cookie = None;
            } else {
                self.cookie = Some(pair);
            }
        }
        let text = r.text().await.unwrap();
        if let Some(c) = csrf_of(&text) {
            self.csrf = Some(c);
        }
        self.seen.push(text.clone());
        Page {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self
            .client
            .get(format!("{}{path}", self.base))
            .header("accept", "text/html");
        self.send(req).await
    }

    /// Posts a form as our own pages do: same origin, with the session's CSRF token.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.csrf.clone().unwrap_or_default();
        all.push(("csrf", &csrf));
        let base = self.base.clone();
        self.post_with(
            path,
            &all,
            &[("origin", &base), ("sec-fetch-site", "same-origin")],
        )
        .await
    }

    /// Posts exactly these fields with these extra headers.
    pub async fn post_with(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let body: String = form_body(fields);
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "text/html")
            .body(body);
        for (k, v) in headers {
            req = req.header(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        self.send(req).await
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        self.post_with(
            "/login",
            &[("email", email), ("password", password), ("next", "")],
            &[],
        )
        .await
    }

    /// Signs in and loads the API page (which gives the CSRF token).
    pub async fn signed_in(base: &str, email: &str, password: &str) -> Self {
        let mut v = Visitor::new(base);
        v.sign_in(email, password).await.expect(303);
        v.get("/settings/api").await.expect(200);
        v
    }
}

fn form_body(fields: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The tenant's owner gets a password.
pub async fn owner_email(service: &Service, t: &Tenant) -> String {
    let caller = Caller::cli(t.org.clone());
    let members = service.list_members(&caller).await.unwrap();
    let email = members
        .iter()
        .find(|m| m.member.user.id == t.owner)
        .unwrap()
        .member
        .user
        .email
        .clone();
    service
        .set_password(&email, SecretString::from(PASSWORD.to_string()))
        .await
        .unwrap();
    email
}

async fn actions(service: &Service, t: &Tenant) -> Vec<String> {
    service
        .list_audit_events(
            &Caller::cli(t.org.clone()),
            AuditQuery::default(),
            &PageRequest::all(),
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.action)
        .collect()
}

async fn signed_in_owner(app: &TestApp) -> (Tenant, Visitor) {
    let t = app.tenant("Acme", "pro", &["keys:read"]).await;
    let email = owner_email(&app.service, &t).await;
    let v = Visitor::signed_in(&app.base, &email, PASSWORD).await;
    (t, v)
}

#[tokio::test]
async fn setup_link_is_printed_while_nobody_exists_and_works_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    let server = ServerProcess::start(dir.path(), &db, &[], &[]);
    let line = server
        .first_lines
        .iter()
        .find_map(|l| l.strip_prefix("Setup: "))
        .unwrap_or_else(|| panic!("no Setup line in {:?}", server.first_lines))
        .to_string();
    let prefix = format!("{}/setup?token=", server.base);
    assert!(line.starts_with(&prefix), "{line}");
    let path = &line[server.base.len()..];

    let mut v = Visitor::new(&server.base);
    let form = v.get(path).await;
    form.expect(200);
    assert!(form.text.contains("Create organization"));
    assert!(form.header("content-type").starts_with("text/html"));
    v.get("/setup?token=wrong").await.expect(403);
    v.get("/setup").await.expect(403);

    let token = &line[prefix.len()..];
    let fields = [
        ("token", token),
        ("organization", "Acme <Labs>"),
        ("email", "ada@acme.test"),
        ("password", PASSWORD),
        ("password_confirm", "something else"),
    ];
    let mismatch = v.post_with("/setup", &fields, &[]).await;
    mismatch.expect(400);
    assert!(mismatch.text.contains("not the same"));
    let mut fields = fields;
    fields[4].1 = PASSWORD;
    let done = v.post_with("/setup", &fields, &[]).await;
    done.expect(303);
    assert_eq!(done.location(), "/settings/api?done=welcome");
    assert!(v.cookie.as_deref().unwrap().starts_with("kw_session="));
    let home = v.get("/settings/api").await;
    home.expect(200);
    assert!(home.text.contains("Acme &lt;Labs&gt;"), "names are escaped");
    assert!(home.text.contains("ada@acme.test"));

    // Used once: the page and the form refuse from now on, also with a fresh browser.
    let mut other = Visitor::new(&server.base);
    other.get(path).await.expect(403);
    other.post_with("/setup", &fields, &[]).await.expect(403);
    drop(server);

    // Someone exists now: a restart prints no setup link.
    let again = ServerProcess::start(dir.path(), &db, &[], &[]);
    assert!(
        !again.first_lines.iter().any(|l| l.starts_with("Setup:")),
        "{:?}",
        again.first_lines
    );
    let mut v = Visitor::new(&again.base);
    let login = v.get("/login").await;
    login.expect(200);
    assert!(!login.text.contains("not set up yet"));
}

#[tokio::test]
async fn cross_site_posts_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (t, mut v) = signed_in_owner(&app).await;
    let csrf = v.csrf.clone().unwrap();
    let fields = [
        ("name", "Forged"),
        ("capability", "keys:write"),
        ("csrf", csrf.as_str()),
    ];
    let forged = v
        .post_with(
            "/settings/api/agents",
            &fields,
            &[("origin", "https://evil.example")],
        )
        .await;
    forged.expect(403);
    assert!(forged.header("content-type").starts_with("text/html"));
    assert!(forged.text.contains("Request refused"));
    assert!(!forged.header("x-request-id").is_empty());
    assert!(forged.text.contains(forged.header("x-request-id")));
    v.post_with(
        "/settings/api/agents",
        &fields,
        &[("sec-fetch-site", "cross-site")],
    )
    .await
    .expect(403);
    v.post_with("/settings/api/agents", &fields, &[("origin", "null")])
        .await
        .expect(403);
    // Same origin, but no token or a wrong one (a page elsewhere cannot read ours).
    v.post_with("/settings/api/agents", &fields[..2], &[])
        .await
        .expect(403);
    v.post_with(
        "/settings/api/agents",
        &[
            ("name", "Forged"),
            ("csrf", "0123456789abcdef0123456789abcdef"),
        ],
        &[],
    )
    .await
    .expect(403);
    // Signing someone out or in from another site is refused too.
    v.post_with(
        "/logout",
        &[("csrf", csrf.as_str())],
        &[("origin", "https://evil.example")],
    )
    .await
    .expect(403);
    v.get("/settings/api").await.expect(200);
    Visitor::new(&app.base)
        .post_with(
            "/login",
            &[
                ("email", "x@example.com"),
                ("password", "whatever-whatever"),
            ],
            &[("sec-fetch-site", "cross-site")],
        )
        .await
        .expect(403);

    let agents = app
        .service
        .list_agents(&Caller::cli(t.org.clone()), &PageRequest::all())
        .await
        .unwrap();
    assert_eq!(agents.items.len(), 1, "nothing was created");
    let created = actions(&app.service, &t).await;
    assert_eq!(created.iter().filter(|a| *a == "agent.created").count(), 1);

    // The same form from our own page works.
    let ok = v
        .post(
            "/settings/api/agents",
            &[("name", "Real"), ("capability", "keys:read")],
        )
        .await;
    ok.expect(200);
    assert!(ok.text.contains("New key: Production"));
}

#[tokio::test]
async fn sessions_expire_and_signing_out_ends_them() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", &["keys:read"]).await;
    let email = owner_email(&app.service, &t).await;
    let mut v = Visitor::new(&app.base);
    let signed = v.sign_in(&email, PASSWORD).await;
    signed.expect(303);
    assert_eq!(signed.location(), "/settings/api");
    let cookie = signed.header("set-cookie").to_string();
    for attr in [
        "kw_session=",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attr), "{attr} missing from {cookie}");
    }
    assert!(!cookie.contains("Secure"));
    v.get("/settings/api").await.expect(200);

    // Sessions last `session_hours` (12 by default), measured on the server's clock.
    app.clock.advance(12 * 3_600_000 - 60_000);
    v.get("/settings/audit").await.expect(200);
    app.clock.advance(61_000);
    let expired = v.get("/settings/audit").await;
    expired.expect(303);
    assert_eq!(expired.location(), "/login?next=%2Fsettings%2Faudit");

    // Signing out ends the session on the server: the old cookie no longer works.
    let mut v = Visitor::signed_in(&app.base, &email, PASSWORD).await;
    let stolen = v.cookie.clone();
    let out = v.post("/logout", &[]).await;
    out.expect(303);
    assert_eq!(out.location(), "/login?signed_out=1");
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    assert!(v.cookie.is_none());
    v.cookie = stolen;
    v.get("/settings/api").await.expect(303);

    let mut actions = actions(&app.service, &t).await;
    actions.retain(|a| a == "user.signed_in");
    assert_eq!(actions.len(), 2);
}

#[tokio::test]
async fn secure_cookies_are_marked_for_tls() {
    let app = spawn_app_with(|c| {
        c.dashboard.secure_cookies = true;
        c.dashboard.session_hours = 2;
    })
    .await;
    let t = app.tenant("Acme", "pro", &["keys:read"]).await;
    let email = owner_email(&app.service, &t).await;
    let mut v = Visitor::new(&app.base);
    let signed = v.sign_in(&email, PASSWORD).await;
    let cookie = signed.header("set-cookie");
    assert!(cookie.starts_with("__Host-kw_session="), "{cookie}");
    assert!(cookie.contains("; Secure") && cookie.contains("Max-Age=7200"));
    v.get("/settings/api").await.expect(200);
    app.clock.advance(2 * 3_600_000);
    v.get("/settings/api").await.expect(303);
}

#[tokio::test]
async fn failed_sign_ins_are_slowed_throttled_and_audited() {
    let app = spawn_app_with(|c| {
        c.dashboard.throttle.per_account = 3;
        c.dashboard.throttle.per_ip = 5;
        c.dashboard.throttle.delay_step = Duration::from_millis(150);
    })
    .await;
    let a = app.tenant("Acme", "pro", &["keys:read"]).await;
    let b = app.tenant("Bolt", "pro", &["keys:read"]).await;
    let a_email = owner_email(&app.service, &a).await;
    let b_email = owner_email(&app.service, &b).await;

    // Each failure of an account answers more slowly than the one before.
    let mut v = Visitor::new(&app.base);
    for n in 1..=3_u32 {
        let start = Instant::now();
        let page = v.sign_in(&a_email, "wrong password!").await;
        page.expect(401);
        assert!(page.text.contains("not correct"));
        assert!(start.elapsed() >= Duration::from_millis(150) * n);
    }
    // Now even the right password is refused for this account, without checking it.
    let refused = v.sign_in(&a_email, PASSWORD).await;
    refused.expect(429);
    assert!(refused.text.contains("Too many failed sign-ins"));
    let retry: u64 = refused.header("retry-after").parse().unwrap();
    assert!((1..=900).contains(&retry));
    assert!(v.cookie.is_none());
    // The same client may still sign in to another account: 3 failures < 5 for the address.
    Visitor::new(&app.base)
        .sign_in(&b_email, PASSWORD)
        .await
        .expect(303);

    // Per client address: the real client's, read from X-Forwarded-For of a trusted proxy.
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let mut attacker = Visitor::new(&app.base);
    for i in 0..5 {
        let email = format!("nobody{i}@example.com");
        attacker
            .post_with(
                "/login",
                &[("email", &email), ("password", "guess guess guess")],
                &from("203.0.113.7"),
            )
            .await
            .expect(401);
    }
    attacker
        .post_with(
            "/login",
            &[("email", &b_email), ("password", PASSWORD)],
            &from("203.0.113.7"),
        )
        .await
        .expect(429);
    attacker
        .post_with(
            "/login",
            &[("email", &b_email), ("password", PASSWORD)],
            &from("203.0.113.8"),
        )
        .await
        .expect(303);

    // Audited in the account's organization, with the real client's address.
    Visitor::new(&app.base)
        .post_with(
            "/login",
            &[("email", &b_email), ("password", "not it at all")],
            &from("198.51.100.23"),
        )
        .await
        .expect(401);
    let events = app
        .service
        .list_audit_events(
            &Caller::cli(b.org.clone()),
            AuditQuery {
                action: Some("user.sign_in_failed".into()),
                ..AuditQuery::default()
            },
            &PageRequest::all(),
        )
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1);
    assert_eq!(events.items[0].ip.as_deref(), Some("198.51.100.23"));
    assert_eq!(events.items[0].details["reason"], "wrong_password");
    let a_actions = actions(&app.service, &a).await;
    assert_eq!(
        a_actions
            .iter()
            .filter(|x| *x == "user.sign_in_failed")
            .count(),
        3,
        "throttled attempts check no password and are not audited again"
    );
    assert!(!a_actions.contains(&"user.signed_in".to_string()));

    // The window rolls on.
    app.clock.advance(15 * 60_000 + 1000);
    Visitor::new(&app.base)
        .sign_in(&a_email, PASSWORD)
        .await
        .expect(303);
}

#[tokio::test]
async fn a_raw_key_appears_in_exactly_one_html_response() {
    let app = spawn_app().await;
    let (_t, mut v) = signed_in_owner(&app).await;
    let created = v
        .post(
            "/settings/api/agents",
            &[
                ("name", "Billing"),
                ("description", "Invoices"),
                ("capability", "content:read"),
                ("capability", "keys:read"),
            ],
        )
        .await;
    created.expect(200);
    assert_eq!(created.header("cache-control"), "no-store");
    let first = element_text(&created.text, "new-key").unwrap();
    assert!(first.starts_with("kw_"));
    assert!(created.text.contains("cannot be shown again"));
    let agent_path = created
        .text
        .split("name=\"kw-replace-url\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();

    let made = v
        .post(
            &format!("{agent_path}/keys"),
            &[
                ("name", "CI"),
                ("scope", "all"),
                ("environment", "staging"),
                ("expiry", "30"),
            ],
        )
        .await;
    made.expect(200);
    let second = element_text(&made.text, "new-key").unwrap();
    assert_ne!(first, second);
    let key_id = made
        .text
        .split("id=\"key-")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();

    for path in [
        "/settings/api".to_string(),
        agent_path.clone(),
        format!("{agent_path}?range=1h"),
        format!("{agent_path}?range=30d&key={key_id}"),
        format!("{agent_path}/keys/{key_id}/roll"),
        format!("{agent_path}/keys/{key_id}/revoke"),
        format!("{agent_path}/delete"),
        "/settings/audit".to_string(),
        "/settings/teams".to_string(),
        "/settings/account".to_string(),
    ] {
        v.get(&path).await.expect(200);
    }
    let rolled = v
        .post(
            &format!("{agent_path}/keys/{key_id}/roll"),
            &[("grace_seconds", "3600")],
        )
        .await;
    rolled.expect(200);
    let third = element_text(&rolled.text, "new-key").unwrap();
    assert!(rolled.text.contains("keeps working until"));
    v.get(&agent_path).await.expect(200);
    v.get("/settings/audit").await.expect(200);

    for secret in [&first, &second, &third] {
        let n = v
            .seen
            .iter()
            .filter(|body| body.contains(secret.as_str()))
            .count();
        assert_eq!(n, 1, "a key was shown {n} times");
    }
    // The hint is all the key list shows.
    let page = v.get(&agent_path).await;
    assert!(page.text.contains(&format!("{}…", &second[..7])));
}

#[tokio::test]
async fn members_see_everything_and_change_nothing() {
    let app = spawn_app().await;
    let (t, mut owner) = signed_in_owner(&app).await;
    let added = owner
        .post(
            "/settings/teams/members",
            &[("email", "mia@acme.test"), ("role", "member")],
        )
        .await;
    added.expect(200);
    let link = element_text(&added.text, "sign-in-link").unwrap();
    let path = link.strip_prefix(&app.base).unwrap().to_string();
    assert!(path.starts_with("/login/link?token="));

    let mut mia = Visitor::new(&app.base);
    let form = mia.get(&path).await;
    form.expect(200);
    assert!(form.text.contains("mia@acme.test"));
    let token = path.split("token=").nth(1).unwrap().to_string();
    let short = mia
        .post_with(
            "/login/link",
            &[
                ("token", &token),
                ("password", "short"),
                ("password_confirm", "short"),
            ],
            &[],
        )
        .await;
    short.expect(400);
    assert!(short.text.contains("at least 10 characters"));
    let welcome = mia
        .post_with(
            "/login/link",
            &[
                ("token", &token),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
            &[],
        )
        .await;
    welcome.expect(303);
    // The link worked once.
    Visitor::new(&app.base).get(&path).await.expect(403);

    let home = mia.get("/settings/api").await;
    home.expect(200);
    assert!(home.text.contains("Read-only"));
    assert!(!home.text.contains("Create an agent"));
    let agent_path = format!("/settings/api/agents/{}", t.agent);
    let agent_page = mia.get(&agent_path).await;
    agent_page.expect(200);
    assert!(!agent_page.text.contains("Generate a new key"));
    assert!(agent_page.text.contains("disabled"));
    mia.get("/settings/audit").await.expect(200);
    mia.get("/settings/teams").await.expect(200);

    // The server refuses, whatever the page shows.
    let refused = mia
        .post(
            "/settings/api/agents",
            &[("name", "Sneaky"), ("capability", "keys:write")],
        )
        .await;
    refused.expect(403);
    assert!(refused
        .text
        .contains("Your role can see this but not change it"));
    mia.post(
        &format!("{agent_path}/capabilities"),
        &[("capability", "keys:write")],
    )
    .await
    .expect(403);
    mia.post(&format!("{agent_path}/keys/{}/revoke", t.key_id), &[])
        .await
        .expect(403);
    mia.get(&format!("{agent_path}/keys/{}/revoke", t.key_id))
        .await
        .expect(403);
    mia.post(&format!("{agent_path}/delete"), &[])
        .await
        .expect(403);
    mia.post(
        "/settings/teams/members",
        &[("email", "eve@acme.test"), ("role", "owner")],
    )
    .await
    .expect(403);
    mia.post("/settings/teams", &[("name", "Shadow")])
        .await
        .expect(403);

    let caller = Caller::cli(t.org.clone());
    let agents = app
        .service
        .list_agents(&caller, &PageRequest::all())
        .await
        .unwrap();
    assert_eq!(agents.items.len(), 1);
    assert_eq!(
        agents.items[0].agent.capabilities.names(),
        vec!["keys:read"]
    );
    let key = app.service.get_key(&caller, &t.key_id).await.unwrap();
    assert!(key.revoked_at.is_none());
    assert_eq!(app.service.list_members(&caller).await.unwrap().len(), 2);
    let log = actions(&app.service, &t).await;
    for a in ["member.added", "user.password_changed", "user.signed_in"] {
        assert!(log.contains(&a.to_string()), "{a} missing from {log:?}");
    }
}

#[tokio::test]
async fn teams_and_members_are_managed_and_audited() {
    let app = spawn_app().await;
    let (t, mut v) = signed_in_owner(&app).await;
    v.post("/settings/teams", &[("name", "Editorial")])
        .await
        .expect(303);
    v.post("/settings/teams", &[("name", "Editorial")])
        .await
        .expect(409);
    let added = v
        .post(
            "/settings/teams/members",
            &[("email", "Ben@Acme.test"), ("role", "admin")],
        )
        .await;
    added.expect(200);
    assert!(added.text.contains("ben@acme.test"));
    let caller = Caller::cli(t.org.clone());
    let team = app.service.list_teams(&caller).await.unwrap()[0].id.clone();
    let ben = app
        .service
        .find_member_by_email(&caller, "ben@acme.test")
        .await
        .unwrap()
        .user
        .id;
    v.post(
        &format!("/settings/teams/{team}/members"),
        &[("user", ben.as_str())],
    )
    .await
    .expect(303);
    let page = v.get("/settings/teams").await;
    assert!(page.text.contains("Editorial"));
    v.post(
        &format!("/settings/teams/members/{ben}/role"),
        &[("role", "member")],
    )
    .await
    .expect(303);
    // The last owner stays an owner.
    let me = t.owner.clone();
    let last = v
        .post(
            &format!("/settings/teams/members/{me}/role"),
            &[("role", "admin")],
        )
        .await;
    last.expect(409);
    assert!(last.text.contains("at least one owner"));
    v.post(&format!("/settings/teams/{team}/members/{ben}/remove"), &[])
        .await
        .expect(303);
    v.get(&format!("/settings/teams/members/{ben}/remove"))
        .await
        .expect(200);
    v.post(&format!("/settings/teams/members/{ben}/remove"), &[])
        .await
        .expect(303);
    assert_eq!(app.service.list_members(&caller).await.unwrap().len(), 1);

    let log = actions(&app.service, &t).await;
    for a in [
        "team.created",
        "member.added",
        "team.member_added",
        "member.role_changed",
        "team.member_removed",
        "member.removed",
    ] {
        assert!(log.contains(&a.to_string()), "{a} missing from {log:?}");
    }
    // The audit page shows and filters them.
    let filtered = v.get("/settings/audit?action=member.role_changed").await;
    filtered.expect(200);
    assert!(filtered.text.contains("member.role_changed"));
    assert!(!filtered.text.contains("class=\"action\">team.created<"));
    assert!(filtered.text.contains("ben@acme.test") || filtered.text.contains(ben.as_str()));
}

#[tokio::test]
async fn people_change_their_own_password() {
    let app = spawn_app().await;
    let (t, mut v) = signed_in_owner(&app).await;
    let email = owner_email(&app.service, &t).await;
    let mut elsewhere = Visitor::signed_in(&app.base, &email, PASSWORD).await;
    let new = "an even better passphrase";
    let wrong = v
        .post(
            "/settings/account/password",
            &[
                ("current_password", "not my password"),
                ("new_password", new),
                ("new_password_confirm", new),
            ],
        )
        .await;
    wrong.expect(400);
    assert!(wrong.text.contains("current password is not correct"));
    v.post(
        "/settings/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", new),
            ("new_password_confirm", "different"),
        ],
    )
    .await
    .expect(400);
    let done = v
        .post(
            "/settings/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", new),
                ("new_password_confirm", new),
            ],
        )
        .await;
    done.expect(303);
    v.get("/settings/account?done=password").await.expect(200);
    // Other sessions end; the old password no longer works; the new one does.
    elsewhere.get("/settings/api").await.expect(303);
    Visitor::new(&app.base)
        .sign_in(&email, PASSWORD)
        .await
        .expect(401);
    Visitor::new(&app.base)
        .sign_in(&email, new)
        .await
        .expect(303);
    assert!(actions(&app.service, &t)
        .await
        .contains(&"user.password_changed".to_string()));
}

#[tokio::test]
async fn dashboard_errors_are_pages_and_the_api_keeps_json() {
    let app = spawn_app().await;
    let mut anon = Visitor::new(&app.base);
    let root = anon.get("/").await;
    root.expect(303);
    assert_eq!(root.location(), "/login");
    let gated = anon.get("/settings/api/agents/agt_x?range=1h").await;
    gated.expect(303);
    assert_eq!(
        gated.location(),
        "/login?next=%2Fsettings%2Fapi%2Fagents%2Fagt_x%3Frange%3D1h"
    );
    let login = anon.get("/login?next=%2Fsettings%2Faudit").await;
    login.expect(200);
    assert!(login.text.contains("not set up yet"));
    assert!(login.text.contains("value=\"/settings/audit\""));
    let evil = anon.get("/login?next=//evil.example").await;
    assert!(evil.text.contains("value=\"/settings/api\""));

    let (t, mut v) = signed_in_owner(&app).await;
    app.service
        .create_agent(
            &Caller::cli(t.org.clone()),
            keyward_server::service::NewAgent {
                name: "<script>alert(1)</script>".into(),
                description: Some("<b>bold</b> & \"quoted\"".into()),
                capabilities: vec!["keys:read".into()],
            },
        )
        .await
        .unwrap();
    let list = v.get("/settings/api").await;
    assert!(list.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!list.text.contains("<script>alert"));
    assert!(!list.text.contains("<b>bold</b>"));
    let csp = list.header("content-security-policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert_eq!(list.header("x-frame-options"), "DENY");

    let missing = v.get("/settings/api/agents/agt_doesnotexist").await;
    missing.expect(404);
    assert!(missing.header("content-type").starts_with("text/html"));
    let id = missing.header("x-request-id").to_string();
    assert!(!id.is_empty() && missing.text.contains(&id));
    assert!(missing.text.contains("Page not found"));
    let unknown = v.get("/no/such/page").await;
    unknown.expect(404);
    assert!(unknown.header("content-type").starts_with("text/html"));
    let signed_root = v.get("/").await;
    assert_eq!(signed_root.location(), "/settings/api");

    // /v1 keeps its JSON shape, for browsers too.
    let api = v.get("/v1/nope").await;
    api.expect(404);
    assert!(api.header("content-type").starts_with("application/json"));
    assert!(api.text.contains("\"code\":\"not_found\""));
    let plain = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(plain.status(), 404);
    assert!(plain.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));

    // Assets come from the binary, with validators.
    let css = v.get("/assets/dashboard.css").await;
    css.expect(200);
    assert!(css.header("content-type").starts_with("text/css"));
    assert!(!css.header("etag").is_empty());
    v.get("/assets/dashboard.js").await.expect(200);
}

#[tokio::test]
async fn usage_charts_show_requests_errors_and_rate_limits() {
    let app = spawn_app().await;
    let (t, mut v) = signed_in_owner(&app).await;
    let now = app.service.now();
    let minute = now - now % 60_000;
    let batch = vec![
        Increment {
            org: t.org.clone(),
            agent: t.agent.clone(),
            key: t.key_id.clone(),
            minute,
            counts: Counts {
                requests: 12,
                success: 9,
                client_errors: 2,
                rate_limited: 1,
                server_errors: 0,
            },
        },
        Increment {
            org: t.org.clone(),
            agent: t.agent.clone(),
            key: t.key_id.clone(),
            minute: minute - 5 * 60_000,
            counts: Counts {
                requests: 4,
                success: 4,
                ..Counts::default()
            },
        },
    ];
    let mut tx = app.service.store().begin().await.unwrap();
    keyward_store::usage::add(&mut tx, &batch).await.unwrap();
    keyward_store::commit(tx).await.unwrap();

    let path = format!("/settings/api/agents/{}", t.agent);
    for (range, bars) in [("1h", 60), ("24h", 24), ("30d", 30)] {
        let page = v.get(&format!("{path}?range={range}")).await;
        page.expect(200);
        assert!(page
            .text
            .contains("16 requests in total, 2 errors, 1 rate-limited."));
        assert_eq!(page.text.matches("class=\"bar\"").count(), bars, "{range}");
        assert!(page.text.contains("<svg class=\"chart\""));
    }
    let one_key = v.get(&format!("{path}?range=1h&key={}", t.key_id)).await;
    assert!(one_key.text.contains("Usage of key Main") || one_key.text.contains("of key"));
    assert!(one_key.text.contains("16 requests in total"));
    let empty = app.tenant("Quiet", "pro", &["keys:read"]).await;
    let email = owner_email(&app.service, &empty).await;
    let mut q = Visitor::signed_in(&app.base, &email, PASSWORD).await;
    let page = q
        .get(&format!("/settings/api/agents/{}", empty.agent))
        .await;
    assert!(page.text.contains("No requests in this period"));
    assert!(page.text.contains("Never"));
}

/// The dashboard's storage on every backend: setup, sessions, links, throttling, roles.
#[tokio::test]
async fn dashboard_storage_on_every_backend() {
    on_every_backend(
        "dashboard_storage_on_every_backend",
        |service, clock| async move {
            use keyward_server::service::{Client, FirstRun, SignInRefusal};
            let client = Client {
                ip: Some("192.0.2.1".into()),
                user_agent: Some("test".into()),
            };
            let token = service.issue_setup_token().await.unwrap().unwrap();
            assert!(service.setup_open(&token).await.unwrap());
            let opened = service
                .complete_setup(
                    &token,
                    FirstRun {
                        organization: "First".into(),
                        email: "first@example.com".into(),
                        password: SecretString::from(PASSWORD.to_string()),
                    },
                    &client,
                )
                .await
                .unwrap();
            assert!(service.issue_setup_token().await.unwrap().is_none());
            assert!(!service.setup_open(&token).await.unwrap());
            use secrecy::ExposeSecret;
            let session = service
                .session(opened.token.expose_secret())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(session.role, Role::Owner);

            let pw = || SecretString::from(PASSWORD.to_string());
            let wrong = || SecretString::from("wrong wrong wrong".to_string());
            for _ in 0..5 {
                let r = service
                    .sign_in("first@example.com", wrong(), &client)
                    .await
                    .unwrap();
                assert_eq!(r.unwrap_err(), SignInRefusal::Invalid);
            }
            let r = service
                .sign_in("first@example.com", pw(), &client)
                .await
                .unwrap();
            assert!(matches!(r, Err(SignInRefusal::Throttled { .. })));
            clock.advance(16 * 60_000);
            let again = service
                .sign_in("FIRST@example.com ", pw(), &client)
                .await
                .unwrap()
                .unwrap();

            let caller = again.session.caller(&client);
            let added = service
                .add_member(&caller, "second@example.com", Role::Member)
                .await
                .unwrap();
            let link = added.link_token.unwrap();
            let (user, org) = service
                .sign_in_link(link.expose_secret())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (user.email.as_str(), org.name.as_str()),
                ("second@example.com", "First")
            );
            let second = service
                .redeem_sign_in_link(link.expose_secret(), pw(), &client)
                .await
                .unwrap();
            assert!(service
                .redeem_sign_in_link(link.expose_secret(), pw(), &client)
                .await
                .is_err());
            assert_eq!(second.session.role, Role::Member);
            service
                .change_role(&caller, &second.session.user.id, Role::Admin)
                .await
                .unwrap();
            let seen = service
                .session(second.token.expose_secret())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                seen.role,
                Role::Admin,
                "roles apply to live sessions at once"
            );
            service
                .remove_member(&caller, &second.session.user.id)
                .await
                .unwrap();
            assert!(service
                .session(second.token.expose_secret())
                .await
                .unwrap()
                .is_none());

            service.sign_out(&again.session).await.unwrap();
            assert!(service
                .session(again.token.expose_secret())
                .await
                .unwrap()
                .is_none());
            clock.advance(13 * 3_600_000);
            assert!(service
                .session(opened.token.expose_secret())
                .await
                .unwrap()
                .is_none());

            let log: Vec<String> = service
                .list_audit_events(
                    &Caller::cli(session.org.id.clone()),
                    AuditQuery::default(),
                    &PageRequest::all(),
                )
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|e| e.action)
                .collect();
            for a in [
                "org.created",
                "member.added",
                "user.signed_in",
                "user.sign_in_failed",
                "user.password_changed",
                "member.role_changed",
                "member.removed",
            ] {
                assert!(log.contains(&a.to_string()), "{a} missing from {log:?}");
            }
        },
    )
    .await;
}

#[tokio::test]
async fn custom_capabilities_and_any_rate_limit_from_the_dashboard() {
    let app = spawn_app_with(|c| {
        c.capabilities =
            keyward_core::CapabilityCatalog::with_custom([("reports:read", "Read reports")])
                .unwrap();
    })
    .await;
    let (t, mut v) = signed_in_owner(&app).await;
    let page = v.get("/settings/api").await;
    assert!(page.text.contains("reports:read") && page.text.contains("Read reports"));
    assert!(page.text.contains("custom"));
    let created = v
        .post(
            "/settings/api/agents",
            &[("name", "Reports"), ("capability", "reports:read")],
        )
        .await;
    created.expect(200);
    let path = created
        .text
        .split("name=\"kw-replace-url\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();

    // People in the dashboard may set any rate limit, also above the plan's 100 per minute.
    let made = v
        .post(
            &format!("{path}/keys"),
            &[
                ("name", "Fast"),
                ("rate_limit", "1000000"),
                ("rate_window", "1"),
            ],
        )
        .await;
    made.expect(200);
    assert!(made.text.contains("1000000/s"));
    let caller = Caller::cli(t.org.clone());
    let keys = app
        .service
        .list_keys(&caller, None, &PageRequest::all())
        .await
        .unwrap();
    let fast = keys.items.iter().find(|k| k.name == "Fast").unwrap();
    assert_eq!(fast.rate_limit.unwrap().limit, 1_000_000);
    assert_eq!(fast.rate_limit.unwrap().window_seconds, 1);

    // A refused form comes back with its message and the values typed.
    let refused = v
        .post(
            &format!("{path}/keys"),
            &[("name", "Keep me"), ("scope", "team"), ("team", "")],
        )
        .await;
    refused.expect(400);
    assert!(refused
        .text
        .contains("Choose the team for a team-scoped key."));
    assert!(refused.text.contains("value=\"Keep me\""));

    // Form-only paths send a typed address or a reload to their page.
    let back = v.get("/settings/api/agents").await;
    back.expect(303);
    assert_eq!(back.location(), "/settings/api");
    let back = v.get(&format!("{path}/keys")).await;
    assert_eq!(back.location(), path);
    let out = v.get("/logout").await;
    out.expect(200);
    assert!(out.text.contains("Sign out?"));
    v.get("/settings/api").await.expect(200);
}
