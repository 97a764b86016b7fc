//! `GET /v1/auth/forward` over HTTP, as nginx (`X-Original-*`), Traefik (`X-Forwarded-*`) and
//! Envoy (the original path after ours) call it.

use keyward_core::{ForwardRule, ForwardRules, RateLimit};
use keyward_server::{Caller, Config};
use serde_json::Value;

use crate::helpers::{
    key_for, spawn_app_with, unknown_key, with_reports, Reply, Tenant, TestApp, ALL,
};
use crate::usage::{totals, wait_for_usage};

/// The rules the tests run under: first match wins, no default.
pub fn rules(config: &mut Config) {
    with_reports(config);
    let cap = |n: &str| config.capabilities.parse(n).unwrap();
    config.forward = ForwardRules::new(
        vec![
            ForwardRule::new(Some("GET"), "/reports", cap("reports:read")).unwrap(),
            ForwardRule::new(None, "/reports", cap("content:write")).unwrap(),
            ForwardRule::new(None, "/admin/", cap("keys:write")).unwrap(),
            ForwardRule::new(Some("DELETE"), "/", cap("keys:write")).unwrap(),
            ForwardRule::new(None, "/public", cap("content:read")).unwrap(),
        ],
        None,
    );
}

#[derive(Clone, Copy, Debug)]
enum Proxy {
    Nginx,
    Traefik,
}

/// Asks keyward as `proxy` would about `method uri` with the client's `key` (Bearer).
async fn ask(app: &TestApp, proxy: Proxy, method: &str, uri: &str, key: Option<&str>) -> Reply {
    let (m, u) = match proxy {
        Proxy::Nginx => ("X-Original-Method", "X-Original-URI"),
        Proxy::Traefik => ("X-Forwarded-Method", "X-Forwarded-Uri"),
    };
    let mut req = app
        .client
        .get(app.url("/v1/auth/forward"))
        .header(m, method)
        .header(u, uri);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    Reply::from(req.send().await.unwrap()).await
}

/// What the refusals of §3 after the key's format need: Acme (on `pro`), an organization on a
/// plan without API access, and a revoked and an expired key of Acme's agent `Gone`, which
/// has `capability` (the clock is moved past the expiry).
struct Refusals {
    t: Tenant,
    free: Tenant,
    gone: keyward_core::AgentId,
    revoked: String,
    expired: String,
}

async fn refusals(app: &TestApp, capability: &str) -> Refusals {
    let t = app.tenant("Acme", "pro", ALL).await;
    let free = app.tenant("Free", "free", ALL).await;
    let (gone, revoked_id, revoked) = app.agent(&t.org, "Gone", &[capability], None).await;
    app.service
        .revoke_key(&Caller::cli(t.org.clone()), &revoked_id, None)
        .await
        .unwrap();
    let (_, expired) = key_for(app, &t.org, &gone, Some(app.service.now() + 1_000), None).await;
    app.clock.advance(2_000);
    Refusals {
        t,
        free,
        gone,
        revoked,
        expired,
    }
}

/// A refusal: the §3 shape, and the same body in `X-Keyward-Error` for nginx.
#[track_caller]
fn refused(r: &Reply, status: u16, code: &str) {
    r.expect(status, code);
    let copied: Value = serde_json::from_str(r.header("x-keyward-error")).unwrap();
    assert_eq!(copied, r.body, "X-Keyward-Error carries the body");
}

#[tokio::test]
async fn a_valid_key_passes_with_its_identity_in_headers() {
    let app = spawn_app_with(rules).await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (agent, key_id, key) = app
        .agent(&t.org, "Reports", &["reports:read", "content:read"], None)
        .await;
    for proxy in [Proxy::Nginx, Proxy::Traefik] {
        let r = ask(&app, proxy, "GET", "/reports/2026?page=2", Some(&key)).await;
        r.expect(200, "");
        assert_eq!(r.text, "", "no body on 200");
        assert_eq!(r.header("x-keyward-key-id"), key_id.as_str());
        assert_eq!(r.header("x-keyward-agent-id"), agent.as_str());
        assert_eq!(r.header("x-keyward-org-id"), t.org.as_str());
        assert!(r.headers.contains_key("x-keyward-team-id"));
        assert_eq!(r.header("x-keyward-team-id"), "", "all teams: empty");
        assert_eq!(
            r.header("x-keyward-capabilities"),
            "content:read,reports:read"
        );
        assert_eq!(r.header("x-ratelimit-limit"), "100");
        assert!(r.header("ratelimit-policy").contains("q=100;w=60"));
        assert!(r.header("x-request-id").starts_with("req_"));
        assert!(r.headers.get("x-keyward-error").is_none());
    }
    // X-API-Key works as on any endpoint, and the window counts every check.
    let r = Reply::from(
        app.client
            .get(app.url("/v1/auth/forward"))
            .header("X-API-Key", &key)
            .header("X-Original-Method", "GET")
            .header("X-Original-URI", "/reports")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(200, "");
    assert_eq!(r.header("x-ratelimit-remaining"), "97");

    // A team-scoped key names its team.
    let red = app.team(&t.org, "Red").await;
    let (_, _, red_key) = app
        .agent(&t.org, "Red", &["content:read"], Some(&red))
        .await;
    let r = ask(&app, Proxy::Nginx, "GET", "/public", Some(&red_key)).await;
    r.expect(200, "");
    assert_eq!(r.header("x-keyward-team-id"), red.as_str());
}

#[tokio::test]
async fn route_rules_first_match_wins_and_no_match_is_denied() {
    let app = spawn_app_with(rules).await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (_, _, reader) = app.agent(&t.org, "Reader", &["content:read"], None).await;
    let (_, _, reports) = app.agent(&t.org, "Reports", &["reports:read"], None).await;

    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        // (method, uri, key, capability it needs, None = no rule)
        ("GET", "/reports", "reports", Some("reports:read")),
        ("HEAD", "/reports/1", "reports", Some("reports:read")),
        ("GET", "/reports-old", "reports", Some("reports:read")),
        ("POST", "/reports", "reports", Some("content:write")),
        ("GET", "/admin/users", "reports", Some("keys:write")),
        ("DELETE", "/public/1", "reader", Some("keys:write")),
        ("GET", "/public/1", "reader", Some("content:read")),
        ("GET", "/public/../reports", "reader", Some("reports:read")),
        ("GET", "/%72eports", "reader", Some("reports:read")),
        ("GET", "//reports", "reader", Some("reports:read")),
        ("GET", "/admin", "reader", None),
        ("GET", "/", "reader", None),
        ("PUT", "/other", "reports", None),
    ];
    for &(method, uri, who, needs) in cases {
        let key = if who == "reader" { &reader } else { &reports };
        let holds = |cap: &str| {
            let caps: &[&str] = if who == "reader" {
                &["content:read"]
            } else {
                &["reports:read"]
            };
            caps.contains(&cap)
        };
        for proxy in [Proxy::Nginx, Proxy::Traefik] {
            let r = ask(&app, proxy, method, uri, Some(key)).await;
            match needs {
                Some(cap) if holds(cap) => {
                    r.expect(200, "");
                }
                Some(cap) => {
                    refused(&r, 403, "insufficient_capability");
                    assert!(
                        r.body["error"]["message"].as_str().unwrap().contains(cap),
                        "{method} {uri}: {}",
                        r.text
                    );
                    assert_eq!(
                        r.header("www-authenticate"),
                        format!(
                            "Bearer realm=\"keyward\", error=\"insufficient_scope\", scope=\"{cap}\""
                        )
                    );
                }
                None => refused(&r, 403, "forbidden"),
            }
            // Every check that reached the limiter carries the rate-limit headers.
            assert!(
                !r.header("x-ratelimit-remaining").is_empty(),
                "{method} {uri}"
            );
        }
    }
    // The key holding everything passes the reports rule for writes too.
    let r = ask(&app, Proxy::Traefik, "PATCH", "/reports/1", Some(&t.key)).await;
    r.expect(200, "");
}

#[tokio::test]
async fn a_default_capability_covers_what_no_rule_matches() {
    let app = spawn_app_with(|c| {
        rules(c);
        let rules = c.forward.rules().to_vec();
        let default = c.capabilities.parse("content:read").unwrap();
        c.forward = ForwardRules::new(rules, Some(default));
    })
    .await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (_, _, reader) = app.agent(&t.org, "Reader", &["content:read"], None).await;
    let (_, _, verifier) = app.agent(&t.org, "Verifier", &["keys:verify"], None).await;
    ask(&app, Proxy::Nginx, "GET", "/anything/else", Some(&reader))
        .await
        .expect(200, "");
    let r = ask(&app, Proxy::Nginx, "GET", "/anything/else", Some(&verifier)).await;
    refused(&r, 403, "insufficient_capability");
    assert!(r
        .header("www-authenticate")
        .contains("scope=\"content:read\""));
    // Rules still come first.
    refused(
        &ask(&app, Proxy::Nginx, "GET", "/reports", Some(&reader)).await,
        403,
        "insufficient_capability",
    );
}

#[tokio::test]
async fn every_refusal_of_section_3_with_its_status_headers_and_body() {
    let app = spawn_app_with(rules).await;
    let Refusals {
        t,
        free,
        revoked,
        expired,
        ..
    } = refusals(&app, "content:read").await;
    let unknown = unknown_key();
    let realm = "Bearer realm=\"keyward\"";
    let invalid_token = "Bearer realm=\"keyward\", error=\"invalid_token\"";

    for proxy in [Proxy::Nginx, Proxy::Traefik] {
        // A key in the original URL is refused first, whether or not a key header is sent.
        for uri in [
            "/public?api_key=x",
            "/public?a=1&apikey=",
            "/public?key=1",
            "/public?access_token=t",
        ] {
            refused(
                &ask(&app, proxy, "GET", uri, None).await,
                400,
                "key_in_query",
            );
            refused(
                &ask(&app, proxy, "GET", uri, Some(&t.key)).await,
                400,
                "key_in_query",
            );
        }
        let r = ask(&app, proxy, "GET", "/public", None).await;
        refused(&r, 401, "missing_api_key");
        assert_eq!(r.header("www-authenticate"), realm);
        assert!(
            r.headers.get("x-ratelimit-limit").is_none(),
            "never reached the limiter"
        );
        for (key, code) in [
            ("kw_short", "malformed_api_key"),
            ("", "malformed_api_key"),
            (unknown.as_str(), "invalid_api_key"),
            (revoked.as_str(), "revoked_api_key"),
            (expired.as_str(), "expired_api_key"),
        ] {
            let r = ask(&app, proxy, "GET", "/public", Some(key)).await;
            refused(&r, 401, code);
            assert_eq!(r.header("www-authenticate"), invalid_token, "{code}");
            assert!(!r.text.contains(key) || key.is_empty());
        }
        let r = ask(&app, proxy, "GET", "/public", Some(&free.key)).await;
        refused(&r, 403, "plan_without_api_access");
    }

    let headers = |pairs: &[(&str, &str)]| {
        let mut req = app
            .client
            .get(app.url("/v1/auth/forward"))
            .header("X-Original-Method", "GET")
            .header("X-Original-URI", "/public");
        for (k, v) in pairs {
            req = req.header(*k, *v);
        }
        req
    };
    let basic = format!("Basic {}", t.key);
    let bearer = format!("Bearer {}", t.key);
    let r = Reply::from(headers(&[("Authorization", &basic)]).send().await.unwrap()).await;
    refused(&r, 401, "invalid_authorization_scheme");
    assert_eq!(r.header("www-authenticate"), invalid_token);
    let r = Reply::from(
        headers(&[("Authorization", &bearer), ("X-API-Key", &unknown)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    refused(&r, 400, "conflicting_credentials");

    // The original request must be named, and unambiguously.
    let r = Reply::from(
        app.client
            .get(app.url("/v1/auth/forward"))
            .bearer_auth(&t.key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    refused(&r, 400, "invalid_request");
    assert_eq!(r.body["error"]["field"], "X-Original-URI");
    let r = Reply::from(
        headers(&[
            ("Authorization", &bearer),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/reports"),
        ])
        .send()
        .await
        .unwrap(),
    )
    .await;
    refused(&r, 400, "invalid_request");
    let r = Reply::from(
        headers(&[
            ("Authorization", &bearer),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/public"),
        ])
        .send()
        .await
        .unwrap(),
    )
    .await;
    r.expect(200, "");
}

#[tokio::test]
async fn forward_auth_consumes_the_rate_limit_and_counts_usage() {
    let app = spawn_app_with(rules).await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (agent, _, _) = app.agent(&t.org, "Limited", &["content:read"], None).await;
    let (key_id, key) = key_for(
        &app,
        &t.org,
        &agent,
        None,
        Some(RateLimit::new(3, 60).unwrap()),
    )
    .await;
    let r = ask(&app, Proxy::Nginx, "GET", "/public", Some(&key)).await;
    r.expect(200, "");
    assert_eq!(r.header("x-ratelimit-remaining"), "2");
    let r = ask(&app, Proxy::Traefik, "GET", "/reports", Some(&key)).await;
    refused(&r, 403, "insufficient_capability");
    assert_eq!(r.header("x-ratelimit-remaining"), "1", "a 403 counts too");
    app.get("/v1/whoami", &key).await.expect(200, "");
    let r = ask(&app, Proxy::Nginx, "GET", "/public", Some(&key)).await;
    refused(&r, 429, "rate_limited");
    let retry: u64 = r.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(r.header("x-ratelimit-remaining"), "0");
    // Refused before authentication: not counted.
    ask(&app, Proxy::Nginx, "GET", "/public?api_key=1", Some(&key)).await;

    let body = wait_for_usage(
        &app,
        &t.key,
        &format!("key_id={key_id}&granularity=minute"),
        4,
    )
    .await;
    assert_eq!(totals(&body), (4, 2, 1, 1));
}

#[tokio::test]
async fn envoy_appends_the_original_path_and_keeps_the_method() {
    let app = spawn_app_with(rules).await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (_, key_id, reports) = app.agent(&t.org, "Reports", &["reports:read"], None).await;
    let envoy = |method: reqwest::Method, path: &str, key: &str| {
        app.client
            .request(method, app.url(&format!("/v1/auth/forward{path}")))
            .bearer_auth(key)
    };
    let r = Reply::from(
        envoy(reqwest::Method::GET, "/reports/1?page=2", &reports)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(200, "");
    assert_eq!(r.header("x-keyward-key-id"), key_id.as_str());
    // The method is the original one: a POST to /reports needs content:write.
    let r = Reply::from(
        envoy(reqwest::Method::POST, "/reports/1", &reports)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(403, "insufficient_capability");
    assert!(r.header("www-authenticate").contains("content:write"));
    // Headers cannot pick another path here.
    let r = Reply::from(
        envoy(reqwest::Method::GET, "/admin/x", &reports)
            .header("X-Original-URI", "/reports")
            .header("X-Original-Method", "GET")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(403, "insufficient_capability");
    let r = Reply::from(
        envoy(reqwest::Method::GET, "/", &reports)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(403, "forbidden");
    let r = Reply::from(
        envoy(reqwest::Method::GET, "/reports?access_token=x", &reports)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(400, "key_in_query");
    let r = Reply::from(
        app.client
            .delete(app.url("/v1/auth/forward/reports"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    refused(&r, 401, "missing_api_key");
}

/// `GET /v1/auth/forward` is answered by the gate without the router, `HEAD` through the
/// routed layers: for each kind of answer both give the same status and the same headers,
/// values included (but the request id, the window's count and the date), and the same
/// error in `X-Keyward-Error`.
#[tokio::test]
async fn the_gate_answers_exactly_as_the_routed_layers_do() {
    let app = spawn_app_with(rules).await;
    let Refusals {
        t,
        free,
        gone: agent,
        revoked,
        expired,
    } = refusals(&app, "reports:read").await;
    let (_, _, reports) = app.agent(&t.org, "Reports", &["reports:read"], None).await;
    let (_, single) = key_for(
        &app,
        &t.org,
        &agent,
        None,
        Some(RateLimit::new(2, 60).unwrap()),
    )
    .await;
    let send = |method: reqwest::Method, headers: &[(&str, &str)]| {
        let mut req = app.client.request(method, app.url("/v1/auth/forward"));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        async move { Reply::from(req.send().await.unwrap()).await }
    };
    // `loose` leaves out what may tick over between two requests: the window's reset and
    // the seconds to wait, in the headers and in the 429's message.
    let comparable = |r: &Reply, loose: bool| {
        let varying: &[&str] = if loose {
            &["retry-after", "x-ratelimit-reset"]
        } else {
            &[]
        };
        let mut headers: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "x-request-id" | "date" | "x-ratelimit-remaining" | "ratelimit"
                ) && !varying.contains(&name.as_str())
            })
            .map(|(name, value)| {
                let value = value.to_str().unwrap().to_string();
                let value = match name.as_str() {
                    // The same error, but for the request id inside it.
                    "x-keyward-error" => {
                        let mut e: Value = serde_json::from_str(&value).unwrap();
                        e["error"]["request_id"] = Value::Null;
                        if loose {
                            e["error"]["message"] = Value::Null;
                        }
                        e.to_string()
                    }
                    _ => value,
                };
                (name.as_str().to_string(), value)
            })
            .collect();
        headers.sort();
        (r.status, headers)
    };
    let bearer = |key: &str| format!("Bearer {key}");
    let (reports_auth, unknown_auth) = (bearer(&reports), bearer(&unknown_key()));
    let (revoked_auth, expired_auth, free_auth) =
        (bearer(&revoked), bearer(&expired), bearer(&free.key));
    let nginx = |uri: &'static str| [("X-Original-Method", "GET"), ("X-Original-URI", uri)];
    let with = |auth: &str, uri: &'static str| {
        let mut headers = vec![("Authorization", auth.to_string())];
        headers.extend(nginx(uri).map(|(n, v)| (n, v.to_string())));
        headers
    };
    let cases: Vec<Vec<(&str, String)>> = vec![
        with(&reports_auth, "/reports/1"),
        with(&reports_auth, "/admin/x"),
        with(&reports_auth, "/nowhere"),
        with(&reports_auth, "/reports?api_key=x"),
        nginx("/reports").map(|(n, v)| (n, v.to_string())).to_vec(),
        with("Bearer kw_short", "/reports"),
        with(&unknown_auth, "/reports"),
        with(&revoked_auth, "/reports"),
        with(&expired_auth, "/reports"),
        with(&free_auth, "/reports"),
        with("Basic Zm9vOmJhcg==", "/reports"),
        {
            let mut h = with(&reports_auth, "/reports");
            h.push(("X-API-Key", unknown_key()));
            h
        },
        // The original request missing, or told two ways that disagree.
        vec![("Authorization", reports_auth.clone())],
        {
            let mut h = with(&reports_auth, "/reports");
            h.push(("X-Forwarded-Uri", "/admin/x".to_string()));
            h.push(("X-Forwarded-Method", "GET".to_string()));
            h
        },
    ];
    for headers in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let direct = send(reqwest::Method::GET, &headers).await;
        let routed = send(reqwest::Method::HEAD, &headers).await;
        assert_eq!(
            comparable(&direct, false),
            comparable(&routed, false),
            "{headers:?}"
        );
        assert!(direct.headers.contains_key("x-request-id"));
    }
    // The window of two: both pass alike, then both answer 429 alike.
    let single_auth = bearer(&single);
    let single = with(&single_auth, "/reports/1");
    let single: Vec<(&str, &str)> = single.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let pass = send(reqwest::Method::GET, &single).await;
    let routed_pass = send(reqwest::Method::HEAD, &single).await;
    pass.expect(200, "");
    assert_eq!(comparable(&pass, true), comparable(&routed_pass, true));
    let limited = send(reqwest::Method::GET, &single).await;
    let routed_limited = send(reqwest::Method::HEAD, &single).await;
    refused(&limited, 429, "rate_limited");
    assert_eq!(
        comparable(&limited, true),
        comparable(&routed_limited, true)
    );
}
