//! Authenticating requests with an API key, in the order of SPEC §3.
//!
//! Keys in the query of any `/v1` path are refused first (by [`super::observed`]); then
//! [`admit`] finds the key and puts it before the rate limiter and [`answer`] runs the handler
//! (or answers 429), adds the rate-limit headers and counts the request. `authenticate`
//! composes the two as the layer of every routed `/v1` key route, before the handler and so
//! before any body is read; the gate composes them for `GET /v1/whoami` and
//! `GET /v1/auth/forward` (see [`super::gate`]). [`Auth`] then checks the capability the
//! handler needs.

use std::marker::PhantomData;
use std::net::IpAddr;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::Route;
use bytes::Bytes;
use keyward_core::key::check_format;
use keyward_core::ratelimit::Decision;
use keyward_core::{KeyHash, RateLimit, UnixMillis};
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tower::ServiceExt;

use super::error::ApiError;
use super::extract::ClientInfo;
use super::limit_headers;
use super::AppState;
use crate::limiter::RateLimiter;
use crate::recorder::Outcome;
use crate::service::{AuthFailure, Principal};
use crate::Caller;

/// Query parameter names that carry a key in the URL, where it would end up in logs.
const KEY_QUERY_PARAMS: &[&str] = &["api_key", "apikey", "key", "access_token"];

/// Whether a query string has a parameter named like a key, whatever its value.
pub fn query_has_key(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes())
        .any(|(name, _)| KEY_QUERY_PARAMS.contains(&name.as_ref()))
}

/// The refusal of a key in a URL's query (ours, or the original request's in forward auth),
/// counted in the metrics.
pub fn refuse_key_in_query(state: &AppState) -> Response {
    state.metrics.auth_failure("key_in_query");
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "key_in_query",
        "API keys must not be sent in the URL, where they end up in logs. Send the key in the \
         'Authorization: Bearer <key>' or 'X-API-Key' header, and revoke any key that was sent in a URL.",
    )
    .into_response()
}

/// A static name: compared with the request's header names, never built per request.
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The presented credential, or the §3 error for how it was presented.
pub fn credential(headers: &HeaderMap) -> Result<&str, ApiError> {
    let conflicting = || {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "conflicting_credentials",
            "The request carries more than one different credential. Send the key once, in one header.",
        )
    };
    // One pass over the few headers a request has, comparing names, instead of two lookups
    // that each hash a name (hyper bounds the number of headers).
    let (mut authorization, mut x_api_key) = (None, None);
    for (name, value) in headers {
        let seen = if name == header::AUTHORIZATION {
            &mut authorization
        } else if name == X_API_KEY {
            &mut x_api_key
        } else {
            continue;
        };
        if seen.replace(value).is_some() {
            return Err(conflicting());
        }
    }

    // Ok(token) for "Bearer <token>" (scheme in any case); Err(()) for any other scheme.
    let bearer = authorization.map(|v| {
        // `to_str` admits visible ASCII, spaces and tabs only: ASCII trimming is enough.
        let v = v.to_str().map_err(|_| ())?.trim_ascii();
        // Split at the first space or tab, found byte by byte: both are ASCII, so the two
        // sides are whole text. (`split_once` with a set of characters decodes each one.)
        let (scheme, token) = match v.bytes().position(|b| b == b' ' || b == b'\t') {
            Some(at) => (&v[..at], &v[at + 1..]),
            None => (v, ""),
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            Ok(token.trim_ascii())
        } else {
            Err(())
        }
    });
    // A non-UTF-8 X-API-Key cannot be a key: it stays as text that fails the format check.
    let header_key = x_api_key.map(|v| v.to_str().map(str::trim_ascii).unwrap_or("\u{fffd}"));

    if let (Some(Ok(token)), Some(key)) = (&bearer, &header_key) {
        // Both are the client's own; compared in constant time all the same, as every secret is.
        if !bool::from(token.as_bytes().ct_eq(key.as_bytes())) {
            return Err(conflicting());
        }
    }
    match (bearer, header_key) {
        (None, None) => Err(ApiError::missing_key()),
        (Some(Err(())), _) => Err(ApiError::invalid_scheme()),
        (Some(Ok(token)), _) => Ok(token),
        (None, Some(key)) => Ok(key),
    }
}

/// Authenticates the request's key and puts the [`Principal`] in its extensions.
pub async fn authenticate(state: AppState, mut req: Request, next: Route) -> Response {
    let admission = match admit(&state, req.headers()).await {
        Ok(admission) => admission,
        Err(refusal) => return refusal.into_response(),
    };
    answer(&state, admission, |principal| async move {
        req.extensions_mut().insert(principal);
        match next.oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    })
    .await
}

/// A request's key, found and put before the rate limiter.
pub struct Admission {
    principal: Arc<Principal>,
    decision: Decision,
    limit: RateLimit,
    now: UnixMillis,
    /// The key's hash and the hints its cache entry gave: see [`crate::cache::Hints`],
    /// brought up to date by [`answer`]. `None` when the key came from storage: its entry,
    /// if the cache kept one, is filled on its next hit, so that a cache that keeps nothing
    /// (while the change watcher is unconfirmed) is not written to on every request.
    digest: [u8; 32],
    hints: Option<crate::cache::Hints>,
}

impl Admission {
    /// When the request was admitted: the time its answer is given as of.
    pub fn now(&self) -> UnixMillis {
        self.now
    }
}

/// Checks the request's credential and key and puts the key before the rate limiter, or
/// gives the §3 refusal. Only the key's SHA-256 leaves this function: the secret is
/// neither copied nor kept.
pub async fn admit(state: &AppState, headers: &HeaderMap) -> Result<Admission, ApiError> {
    admit_prefetching(state, headers, Instant::now(), |_| ()).await
}

/// [`admit`], calling `prefetch` with the key as soon as it is found, before the limiter
/// runs: the gate asks there for the memory its answer reads, so that the wait overlaps the
/// limiter's (see [`keyward_core::hint`]). `arrived` is when the request came, read from the
/// monotonic clock: the key cache judges its entries' age by it.
pub async fn admit_prefetching(
    state: &AppState,
    headers: &HeaderMap,
    arrived: Instant,
    prefetch: impl FnOnce(&Principal),
) -> Result<Admission, ApiError> {
    let checked = match credential(headers) {
        Ok(token) => match check_format(&state.service.config().key_prefix, token) {
            Ok(()) => Ok(KeyHash::digest(token)),
            Err(reason) => Err(ApiError::auth(AuthFailure::Malformed(reason))),
        },
        Err(e) => Err(e),
    };
    let digest = match checked {
        Ok(digest) => digest,
        Err(e) => {
            state.metrics.auth_failure(e.code);
            return Err(e);
        }
    };
    // One reading of the clock for the key's status, the limiter and the usage counts.
    let now = state.service.now();
    let (found, now, hints) = match state.service.authenticate_cached(&digest, now, arrived) {
        Some((found, hints)) => (found, now, Some(hints)),
        // A miss asks storage: boxed, so that the lookup's large state is made only when
        // needed instead of being carried and moved by every request. The lookup may take a
        // while; the limiter must see the time after it, not a time other requests of the
        // key have already passed.
        None => (
            Box::pin(state.service.authenticate_digest(&digest)).await,
            state.service.now(),
            None,
        ),
    };
    let principal = match found {
        Ok(Ok(principal)) => {
            principal.prefetch_state(now);
            prefetch(&principal);
            principal
        }
        Ok(Err(failure)) => {
            let e = ApiError::auth(failure);
            state.metrics.auth_failure(e.code);
            return Err(e);
        }
        Err(e) => return Err(ApiError::from(e)),
    };
    let (decision, limit) = consume_at(state, &principal, now).await?;
    Ok(Admission {
        principal,
        decision,
        limit,
        now,
        digest,
        hints,
    })
}

/// What a key route's handler answers with.
pub enum Answered {
    /// Any answer; the rate-limit headers are added to what it has.
    Response(Response),
    /// A JSON body and nothing else: its headers, the content type with the rate-limit
    /// headers, are made in one step ([`limit_headers::json`]).
    Json(Bytes),
}

impl From<Response> for Answered {
    fn from(response: Response) -> Self {
        Answered::Response(response)
    }
}

impl IntoResponse for Answered {
    fn into_response(self) -> Response {
        match self {
            Answered::Response(response) => response,
            Answered::Json(body) => {
                let mut response = Response::new(body.into());
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, limit_headers::JSON.clone());
                response
            }
        }
    }
}

/// Answers an admitted request with `handler`, or with 429 if the limiter refused it; then
/// adds the rate-limit headers and counts the request's usage.
pub async fn answer<F, Fut>(state: &AppState, admission: Admission, handler: F) -> Response
where
    F: FnOnce(Arc<Principal>) -> Fut,
    Fut: std::future::Future,
    Fut::Output: Into<Answered>,
{
    let Admission {
        principal,
        decision,
        limit,
        now,
        digest,
        hints,
    } = admission;
    let answered = if decision.allowed {
        handler(principal.clone()).await.into()
    } else {
        state.metrics.rate_limited();
        Answered::Response(rate_limited(&decision, limit).into_response())
    };
    let response = match answered {
        Answered::Json(body) => limit_headers::json(body, &decision, limit, now),
        Answered::Response(mut response) => {
            limit_headers::write(response.headers_mut(), &decision, limit, now);
            response
        }
    };
    let outcome = Outcome::of_status(response.status().as_u16());
    state.recorder.record(&principal.usage, now, outcome);
    // After the handler, which may have rendered the key's `whoami` answer.
    if let Some(hints) = hints {
        let current = principal.hints();
        if current != hints {
            state
                .service
                .key_cache()
                .update_hints(&digest, &principal, current);
        }
    }
    response
}

/// Puts one request of an authenticated key before the rate limiter: the decision (counted
/// if admitted), the limit it was made under and when. The verify API uses this for the key
/// it checks, so a checked key is limited exactly as a request with it would be.
pub async fn consume(
    state: &AppState,
    principal: &Principal,
) -> Result<(Decision, RateLimit, UnixMillis), ApiError> {
    let now = state.service.now();
    let (decision, limit) = consume_at(state, principal, now).await?;
    Ok((decision, limit, now))
}

/// [`consume`] at a time the caller read.
async fn consume_at(
    state: &AppState,
    principal: &Principal,
    now: UnixMillis,
) -> Result<(Decision, RateLimit), ApiError> {
    let limit = principal.standing().limit;
    let key = &principal.key.id;
    let decided = match state.limiter.decide_locally(
        &principal.limiter_slot,
        principal.compact_id,
        limit,
        now,
    ) {
        Some(decision) => Ok(decision),
        // Redis: boxed, so that its request's state is not carried by every check.
        None => Box::pin(state.limiter.check(key, limit, now)).await,
    };
    match decided {
        Ok(decision) => Ok((decision, limit)),
        Err(e) => {
            // The limiter logs its own state changes once; one line per request would flood.
            tracing::debug!(error = %e, "rate limiter unavailable");
            Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The rate limiter is unavailable; try again shortly.",
            ))
        }
    }
}

/// The 429 for a refused decision.
pub fn rate_limited(decision: &Decision, limit: RateLimit) -> ApiError {
    let retry_after = decision.retry_after_secs.unwrap_or(1).max(1);
    ApiError::rate_limited(limit.limit, limit.window_seconds, retry_after)
}

/// A capability a handler needs; `None` for endpoints any valid key may call.
pub trait Need {
    const CAPABILITY: Option<&'static str>;
}

macro_rules! need {
    ($($name:ident => $cap:expr),* $(,)?) => {$(
        #[derive(Debug)]
        pub struct $name;
        impl Need for $name {
            const CAPABILITY: Option<&'static str> = $cap;
        }
    )*};
}

need! {
    AnyKey => None,
    KeysRead => Some("keys:read"),
    KeysWrite => Some("keys:write"),
    AuditRead => Some("audit:read"),
    ContentRead => Some("content:read"),
    ContentWrite => Some("content:write"),
    AccountRead => Some("account:read"),
    Generate => Some("generate"),
    KeysVerify => Some("keys:verify"),
}

/// An authenticated key holding the capability `N`.
pub struct Auth<N> {
    pub principal: Arc<Principal>,
    /// The client's address and user agent, kept as found: turned into text only when a
    /// handler asks for the caller (read-only endpoints such as `whoami` never do).
    client_ip: Option<IpAddr>,
    user_agent: Option<HeaderValue>,
    _need: PhantomData<N>,
}

impl<N> Auth<N> {
    /// The service-layer caller this key acts as.
    pub fn caller(&self) -> Caller {
        let user_agent = self
            .user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(ClientInfo::user_agent_text);
        self.principal
            .caller(self.client_ip.map(|ip| ip.to_string()), user_agent)
    }
}

impl<N: Need> FromRequestParts<AppState> for Auth<N> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(principal) = parts.extensions.get::<Arc<Principal>>().cloned() else {
            tracing::error!("a key-protected route is missing the authentication layer");
            return Err(ApiError::internal());
        };
        if let Some(cap) = N::CAPABILITY {
            if !principal.capabilities.grants(cap) {
                return Err(ApiError::insufficient_capability(cap));
            }
        }
        Ok(Auth {
            principal,
            client_ip: ClientInfo::ip_of(parts, state),
            user_agent: parts.headers.get(header::USER_AGENT).cloned(),
            _need: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn code(pairs: &[(&str, &str)]) -> &'static str {
        match credential(&headers(pairs)) {
            Ok(_) => "ok",
            Err(e) => e.code,
        }
    }

    #[test]
    fn credential_rules_in_order() {
        assert_eq!(code(&[]), "missing_api_key");
        assert_eq!(code(&[("authorization", "Bearer abc")]), "ok");
        assert_eq!(code(&[("authorization", "bearer abc")]), "ok");
        assert_eq!(code(&[("x-api-key", "abc")]), "ok");
        assert_eq!(
            code(&[("authorization", "Bearer abc"), ("x-api-key", "abc")]),
            "ok"
        );
        assert_eq!(
            code(&[("authorization", "Bearer abc"), ("x-api-key", "abd")]),
            "conflicting_credentials"
        );
        assert_eq!(
            code(&[("x-api-key", "a"), ("x-api-key", "a")]),
            "conflicting_credentials"
        );
        assert_eq!(
            code(&[("authorization", "Bearer a"), ("authorization", "Bearer a")]),
            "conflicting_credentials"
        );
        assert_eq!(
            code(&[("accept", "*/*"), ("X-Api-Key", "abc"), ("user-agent", "t")]),
            "ok"
        );
        assert_eq!(
            code(&[("authorization", "Basic Zm9v"), ("x-api-key", "abc")]),
            "invalid_authorization_scheme"
        );
        assert_eq!(
            code(&[("authorization", "kw_abc")]),
            "invalid_authorization_scheme"
        );
        assert_eq!(
            credential(&headers(&[("authorization", "Bearer ")])).unwrap(),
            ""
        );
        // Split at the first space or tab; the token is trimmed of spaces and tabs around it.
        assert_eq!(
            credential(&headers(&[("authorization", "bEaReR\t  kw_x \t")])).unwrap(),
            "kw_x"
        );
        // A non-breaking space is not a separator: the value is not ASCII, so not Bearer.
        assert_eq!(
            code(&[("authorization", "Bearer\u{a0}kw_x")]),
            "invalid_authorization_scheme"
        );
    }
}
