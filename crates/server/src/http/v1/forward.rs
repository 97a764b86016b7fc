//! `GET /v1/auth/forward`: forward auth for reverse proxies (nginx `auth_request`, Traefik
//! `forwardAuth`, Envoy `ext_authz` over HTTP). The proxy sends no key of its own: keyward
//! checks the client's `Authorization`/`X-API-Key` exactly as SPEC §3 checks a request to
//! keyward (same order, errors and `WWW-Authenticate`), consumes the key's rate limit, counts
//! its usage, and requires the capability the `[[forward.routes]]` rules give the original
//! method and path.
//!
//! The original request is read from, in this order of layers:
//! 1. [`target`]: `X-Original-Method` + `X-Original-URI` (nginx) or `X-Forwarded-Method` +
//!    `X-Forwarded-Uri` (Traefik) on `/v1/auth/forward`; on `/v1/auth/forward/<path>` (Envoy,
//!    whose `path_prefix` puts the original path after ours) the request's own method, path
//!    suffix and query. A key in the original query is refused here, first, as §3 orders.
//! 2. `authenticate`, the same layer every key route runs: credentials, key, rate limit,
//!    rate-limit headers and usage.
//! 3. the handler: route rules, capability, identity headers.
//!
//! [`error_header`] wraps all three and copies an error's JSON body into `X-Keyward-Error`,
//! because nginx's `auth_request` drops the subrequest's body and can only pass headers on.
//!
//! `GET /v1/auth/forward`, which a proxy calls before every request it lets through, is
//! answered by the gate without the router ([`direct`]): the same steps in the same order,
//! composed directly (see [`crate::http::gate`]). The Envoy form, and any other method, is
//! routed through the layers above.

use std::time::Instant;

use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use keyward_core::forward::Requirement;

use crate::http::auth::{self, query_has_key, refuse_key_in_query, AnyKey, Auth};
use crate::http::error::ErrorInfo;
use crate::http::request_id::RequestId;
use crate::http::{ApiError, AppState};
use crate::service::Principal;
use crate::views::ForwardIdentity;

/// The endpoint's path, as the router sees it and the metrics label it; the Envoy form
/// appends the original path to it.
pub const PATH: &str = "/v1/auth/forward";

/// The original request a proxy asks about.
#[derive(Clone, Debug)]
pub struct ForwardTarget {
    pub method: String,
    /// The path as sent, without the query; rules match its normalized form.
    pub path: String,
}

/// Reads the original request (see the module documentation) into a [`ForwardTarget`].
pub async fn target(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let full_path = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().path().to_string(), |u| u.path().to_string());
    let found = match full_path.strip_prefix(PATH) {
        Some(suffix) if suffix.starts_with('/') => Ok((
            req.method().as_str().to_string(),
            suffix.to_string(),
            req.uri().query().map(str::to_string),
        )),
        _ => from_headers(req.headers()).map(|(method, path, query)| {
            (
                method.to_string(),
                path.to_string(),
                query.map(str::to_string),
            )
        }),
    };
    let (method, path, query) = match found {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    if query.as_deref().is_some_and(query_has_key) {
        return refuse_key_in_query(&state);
    }
    req.extensions_mut().insert(ForwardTarget { method, path });
    next.run(req).await
}

/// The headers a proxy describes the original request in, nginx's before Traefik's, with
/// the names errors give them.
static ORIGINAL: [(HeaderName, &str); 4] = [
    (
        HeaderName::from_static("x-original-method"),
        "X-Original-Method",
    ),
    (
        HeaderName::from_static("x-forwarded-method"),
        "X-Forwarded-Method",
    ),
    (HeaderName::from_static("x-original-uri"), "X-Original-URI"),
    (
        HeaderName::from_static("x-forwarded-uri"),
        "X-Forwarded-Uri",
    ),
];

/// Each of [`ORIGINAL`]'s headers: its first value, and whether it came more than once.
type Described<'h> = [(Option<&'h HeaderValue>, bool); 4];

/// The method, path and query of the original request from nginx's or Traefik's headers.
fn from_headers(headers: &HeaderMap) -> Result<(&str, &str, Option<&str>), ApiError> {
    // One pass over the request's few headers, comparing names (as the credential's does),
    // instead of four lookups that each hash a name.
    let mut found: Described = [(None, false); 4];
    for (name, value) in headers {
        if let Some(i) = ORIGINAL.iter().position(|(n, _)| n == name) {
            let (first, repeated) = &mut found[i];
            match first {
                Some(_) => *repeated = true,
                None => *first = Some(value),
            }
        }
    }
    let method = agreed(&found, 0, 1)?;
    let uri = agreed(&found, 2, 3)?;
    let (Some(method), Some(uri)) = (method, uri) else {
        return Err(ApiError::invalid(
            "X-Original-URI",
            "Forward auth needs the original request: X-Original-Method and X-Original-URI \
             (nginx), or X-Forwarded-Method and X-Forwarded-Uri (Traefik); for Envoy, append \
             the original path to /v1/auth/forward.",
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ApiError::invalid(
            "X-Original-Method",
            "The original method must be an HTTP method such as GET.",
        ));
    }
    let (path, query) = split_uri(uri).ok_or_else(|| {
        ApiError::invalid(
            "X-Original-URI",
            "The original URI must be a path such as /reports?page=2, or an absolute http(s) URL.",
        )
    })?;
    Ok((method, path, query))
}

/// The value of the nginx header or the Traefik one. Both may be present only with the same
/// value: otherwise a client could send the other proxy's header itself and pick the path the
/// rules see, so an ambiguous request is refused.
fn agreed<'h>(
    found: &Described<'h>,
    nginx: usize,
    traefik: usize,
) -> Result<Option<&'h str>, ApiError> {
    let one = |i: usize| -> Result<Option<&'h str>, ApiError> {
        let (name, (first, repeated)) = (ORIGINAL[i].1, found[i]);
        if repeated {
            return Err(ApiError::invalid(
                name,
                format!("{name} is sent more than once."),
            ));
        }
        first
            .map(|v| {
                v.to_str().map(str::trim).map_err(|_| {
                    ApiError::invalid(name, format!("{name} must be visible ASCII text."))
                })
            })
            .transpose()
    };
    match (one(nginx)?, one(traefik)?) {
        (Some(a), Some(b)) if a != b => Err(ApiError::invalid(
            ORIGINAL[nginx].1,
            format!(
                "{} and {} disagree; send the original request in one of them.",
                ORIGINAL[nginx].1, ORIGINAL[traefik].1
            ),
        )),
        (a, b) => Ok(a.or(b)),
    }
}

/// Splits `/path?query#fragment` (or `http://host/path?query`) into path and query.
fn split_uri(uri: &str) -> Option<(&str, Option<&str>)> {
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    let uri = if lower.starts_with("http://") || lower.starts_with("https://") {
        let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
        match after_scheme.find(['/', '?', '#']) {
            Some(i) if after_scheme[i..].starts_with('/') => &after_scheme[i..],
            Some(_) | None => return None,
        }
    } else {
        uri
    };
    if !uri.starts_with('/') {
        return None;
    }
    let uri = uri.split_once('#').map_or(uri, |(before, _)| before);
    Some(match uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (uri, None),
    })
}

/// Copies an error answer's body into `X-Keyward-Error` (non-ASCII escaped, so it is a valid
/// header value that is still the same JSON), for proxies that pass on headers but not bodies.
pub async fn error_header(req: Request, next: Next) -> Response {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.as_str().to_string())
        .unwrap_or_default();
    let mut response = next.run(req).await;
    copy_error(&mut response, &request_id);
    response
}

/// What [`error_header`] adds: an error answer's body, as its request id will write it, in
/// `X-Keyward-Error`.
fn copy_error(response: &mut Response, request_id: &str) {
    let body = response
        .extensions()
        .get::<ErrorInfo>()
        .map(|ErrorInfo(e)| ascii_json(&e.body(request_id)));
    if let Some(v) = body.and_then(|b| HeaderValue::from_str(&b).ok()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-keyward-error"), v);
    }
}

/// `GET /v1/auth/forward` (nginx, Traefik) as the gate answers it, without the router: the
/// routed layers' steps in their order — the original request read from the headers (a key
/// in its query refused), the client's key admitted, the rules and capability decided, the
/// rate-limit headers and usage, and an error's body copied into `X-Keyward-Error`. `arrived`
/// is when the request came (the key cache judges its entries' age by it).
pub async fn direct(
    state: &AppState,
    headers: &HeaderMap,
    arrived: Instant,
    request_id: &RequestId,
) -> Response {
    let mut response = match from_headers(headers) {
        Err(e) => e.into_response(),
        Ok((_, _, Some(query))) if query_has_key(query) => refuse_key_in_query(state),
        Ok((method, path, _)) => {
            match auth::admit_prefetching(state, headers, arrived, |_| ()).await {
                Err(refusal) => refusal.into_response(),
                Ok(admission) => {
                    auth::answer(state, admission, |principal| async move {
                        decide(state, &principal, method, path)
                    })
                    .await
                }
            }
        }
    };
    copy_error(&mut response, request_id.as_str());
    response
}

/// JSON text with every non-ASCII character written as a `\u` escape: still the same JSON.
fn ascii_json(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// `GET /v1/auth/forward` (nginx, Traefik).
#[utoipa::path(
    operation_id = "forward_auth",
    get,
    path = "/auth/forward",
    tag = "verification",
    summary = "Forward auth for nginx auth_request and Traefik forwardAuth: may the proxied request pass?",
    description = "The proxy sends the client's own `Authorization` or `X-API-Key` and the original \
        request in `X-Original-Method` + `X-Original-URI` (nginx) or `X-Forwarded-Method` + \
        `X-Forwarded-Uri` (Traefik); both pairs may be present only if they agree. The key is \
        checked exactly as SPEC §3 checks a request (a key in the original query is 400 \
        `key_in_query`), its rate limit is consumed and its usage counted, and the capability \
        comes from the first `[[forward.routes]]` rule of keyward.toml matching the method and \
        path (or `[forward] default_capability`; with neither, 403 `forbidden`). \
        Allowed: 200 with the identity and rate-limit headers and no body. Refused: the §3 \
        status, headers and JSON body, which is also copied into `X-Keyward-Error` for nginx. \
        Envoy's ext_authz appends the original path instead: `/v1/auth/forward/{path}`.",
    params(
        ("X-Original-Method" = Option<String>, Header, description = "nginx: the original method"),
        ("X-Original-URI" = Option<String>, Header, description = "nginx: the original path and query"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "Traefik: the original method"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "Traefik: the original path and query"),
    ),
    responses(
        (status = 200, description = "Allowed: the identity is in the headers; no body.",
            headers(
                ("X-Keyward-Key-Id" = String, description = "The key's id"),
                ("X-Keyward-Agent-Id" = String, description = "The key's agent"),
                ("X-Keyward-Org-Id" = String, description = "The key's organization"),
                ("X-Keyward-Team-Id" = String, description = "The key's team; empty when the key is for all teams"),
                ("X-Keyward-Capabilities" = String, description = "The agent's capabilities, comma-separated"),
                ("X-RateLimit-Remaining" = u64, description = "Requests left in the key's window (SPEC §4; the other rate-limit headers too)"),
            )),
        crate::http::openapi::Errors
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn check(
    State(state): State<AppState>,
    auth: Auth<AnyKey>,
    Extension(target): Extension<ForwardTarget>,
) -> Response {
    decide(&state, &auth.principal, &target.method, &target.path)
}

/// `/v1/auth/forward/{path}`, any method (Envoy).
#[utoipa::path(
    operation_id = "forward_auth_envoy",
    get,
    path = "/v1/auth/forward/{path}",
    tag = "verification",
    summary = "Forward auth for Envoy ext_authz (HTTP): the original path follows /v1/auth/forward",
    description = "Envoy's ext_authz HTTP service with `path_prefix: /v1/auth/forward` sends the \
        original method, the original path and query after that prefix, and the client's \
        `Authorization` (and `X-API-Key` when allowed). Any method is accepted: it is the \
        original request's. Otherwise exactly `GET /v1/auth/forward`; the X-Original-* and \
        X-Forwarded-* headers are ignored here.",
    params(("path" = String, Path, description = "The original request's path, after its leading /")),
    responses(
        (status = 200, description = "Allowed: the identity is in the X-Keyward-* headers, as for GET /v1/auth/forward; no body."),
        crate::http::openapi::Errors
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn check_envoy(
    State(state): State<AppState>,
    auth: Auth<AnyKey>,
    Extension(target): Extension<ForwardTarget>,
) -> Response {
    decide(&state, &auth.principal, &target.method, &target.path)
}

/// The answer for an admitted key: the capability the rules require of `method path`, then
/// the identity headers.
fn decide(state: &AppState, p: &Principal, method: &str, path: &str) -> Response {
    let rules = &state.service.config().forward;
    let capability = match rules.requirement(method, path) {
        Requirement::NoRoute => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "No forward route rule matches this request's method and path, and no \
                 default_capability is configured, so keyward does not let it through.",
            )
            .into_response()
        }
        Requirement::Capability(c) => c,
    };
    if !p.capabilities.grants(capability.as_str()) {
        return ApiError::insufficient_capability(capability.as_str()).into_response();
    }
    // Room for these five, the five rate-limit headers and the request id: never regrown.
    let mut headers = HeaderMap::with_capacity(11);
    let identity = p.forwarded.get_or_init(|| ForwardIdentity::new(p));
    for (name, value) in identity.headers() {
        headers.insert(name.clone(), value.clone());
    }
    (StatusCode::OK, headers).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_into_path_and_query() {
        assert_eq!(split_uri("/a/b?x=1#f"), Some(("/a/b", Some("x=1"))));
        assert_eq!(split_uri("/a"), Some(("/a", None)));
        assert_eq!(
            split_uri("https://api.example.com/r?key=1"),
            Some(("/r", Some("key=1")))
        );
        assert_eq!(split_uri("HTTP://h/"), Some(("/", None)));
        assert_eq!(split_uri("http://h"), None);
        assert_eq!(split_uri("*"), None);
        assert_eq!(split_uri("reports"), None);
    }

    #[test]
    fn error_bodies_become_ascii_header_values() {
        let s = ascii_json("{\"m\":\"caf\u{e9} \u{1F600}\"}".as_bytes());
        assert_eq!(s, "{\"m\":\"caf\\u00e9 \\ud83d\\ude00\"}");
        assert!(HeaderValue::from_str(&s).is_ok());
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["m"], "caf\u{e9} \u{1F600}");
    }

    #[test]
    fn nginx_and_traefik_headers_must_agree() {
        let mut h = HeaderMap::new();
        h.insert("x-original-uri", "/a".parse().unwrap());
        h.insert("x-original-method", "GET".parse().unwrap());
        assert_eq!(from_headers(&h).unwrap().1, "/a");
        h.insert("x-forwarded-uri", "/a".parse().unwrap());
        h.insert("x-forwarded-method", "GET".parse().unwrap());
        assert!(from_headers(&h).is_ok());
        h.insert("x-forwarded-uri", "/b".parse().unwrap());
        assert_eq!(from_headers(&h).unwrap_err().code, "invalid_request");
        let mut only_traefik = HeaderMap::new();
        only_traefik.insert("x-forwarded-uri", "/t?x=1".parse().unwrap());
        only_traefik.insert("x-forwarded-method", "POST".parse().unwrap());
        assert_eq!(
            from_headers(&only_traefik).unwrap(),
            ("POST", "/t", Some("x=1"))
        );
        assert!(from_headers(&HeaderMap::new()).is_err());
    }

    #[test]
    fn a_repeated_or_unreadable_original_header_is_refused_by_name() {
        let field = |pairs: &[(&str, &[u8])]| {
            let mut h = HeaderMap::new();
            for (name, value) in pairs {
                h.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_bytes(value).unwrap(),
                );
            }
            let e = from_headers(&h).unwrap_err();
            (e.field.clone(), e.message.into_owned())
        };
        let (f, m) = field(&[
            ("x-original-method", b"GET"),
            ("x-original-uri", b"/a"),
            ("x-original-uri", b"/b"),
        ]);
        assert_eq!(f.as_deref(), Some("X-Original-URI"));
        assert_eq!(m, "X-Original-URI is sent more than once.");
        // The same value twice is still twice.
        let (f, _) = field(&[
            ("x-forwarded-method", b"GET"),
            ("x-forwarded-method", b"GET"),
            ("x-forwarded-uri", b"/a"),
        ]);
        assert_eq!(f.as_deref(), Some("X-Forwarded-Method"));
        let (f, m) = field(&[
            ("x-original-method", b"GET"),
            ("x-original-uri", b"/caf\xe9"),
        ]);
        assert_eq!(f.as_deref(), Some("X-Original-URI"));
        assert_eq!(m, "X-Original-URI must be visible ASCII text.");
        // The method is judged before the URI, nginx's header before Traefik's.
        let (f, _) = field(&[
            ("x-forwarded-uri", b"/a"),
            ("x-forwarded-uri", b"/a"),
            ("x-forwarded-method", b"GET"),
            ("x-forwarded-method", b"GET"),
            ("x-original-method", b"GET"),
            ("x-original-method", b"GET"),
        ]);
        assert_eq!(f.as_deref(), Some("X-Original-Method"));
    }
}
