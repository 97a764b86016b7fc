//! The one error shape of SPEC §3, for every error on every endpoint.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::{AuthFailure, ServiceError};

/// An error answer. Rendering adds the request id (see `request_id`).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    /// Most messages are fixed text; only those made per error are owned (and only those can
    /// quote what a client sent).
    pub message: Cow<'static, str>,
    pub field: Option<String>,
    pub www_authenticate: Option<Cow<'static, str>>,
    pub retry_after: Option<u64>,
}

/// What an error response carries until the gate writes its body ([`super::request_id::finish`]).
#[derive(Debug, Clone)]
pub struct ErrorInfo(pub ApiError);

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    status: u16,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

const REALM: &str = "Bearer realm=\"keyward\"";
/// [`REALM`] with the `invalid_token` error: every refused key's challenge.
const INVALID_TOKEN: &str = "Bearer realm=\"keyward\", error=\"invalid_token\"";

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            www_authenticate: None,
            retry_after: None,
        }
    }

    pub fn invalid(field: &str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field: Some(field.to_string()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "The requested resource does not exist.",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side. Try again; if it keeps happening, report the request id.",
        )
    }

    /// A 401 with the `invalid_token` challenge.
    fn unauthorized(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            www_authenticate: Some(INVALID_TOKEN.into()),
            ..Self::new(StatusCode::UNAUTHORIZED, code, message)
        }
    }

    pub fn missing_key() -> Self {
        Self {
            www_authenticate: Some(REALM.into()),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "No API key was sent. Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
            )
        }
    }

    pub fn invalid_scheme() -> Self {
        Self::unauthorized(
            "invalid_authorization_scheme",
            "The Authorization header must be 'Bearer <key>'. Other schemes, and a bare key, are not accepted.",
        )
    }

    pub fn insufficient_capability(capability: &str) -> Self {
        Self {
            www_authenticate: Some(
                format!("{REALM}, error=\"insufficient_scope\", scope=\"{capability}\"").into(),
            ),
            ..Self::new(
                StatusCode::FORBIDDEN,
                "insufficient_capability",
                format!(
                    "This key's agent lacks the capability {capability}, which this request needs."
                ),
            )
        }
    }

    pub fn auth(failure: AuthFailure) -> Self {
        match failure {
            AuthFailure::Malformed(reason) => {
                Self::unauthorized("malformed_api_key", malformed_message(reason))
            }
            AuthFailure::Invalid => Self::unauthorized("invalid_api_key", "The API key is not valid. Check that it was copied from this deployment."),
            AuthFailure::Revoked => Self::unauthorized("revoked_api_key", "The API key has been revoked. Create a new key."),
            AuthFailure::Expired => Self::unauthorized("expired_api_key", "The API key has expired. Create or roll to a new key."),
            AuthFailure::PlanWithoutApiAccess => Self::new(
                StatusCode::FORBIDDEN,
                "plan_without_api_access",
                "Your organization's plan does not include API access. Upgrade the plan to use the API.",
            ),
        }
    }

    pub fn rate_limited(limit: u64, window_seconds: u64, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "Rate limit exceeded: this key may make {limit} requests per {window_seconds} seconds. Retry in {retry_after} seconds."
                ),
            )
        }
    }

    /// The JSON body for this error with `request_id`.
    pub fn body(&self, request_id: &str) -> Vec<u8> {
        if let (Cow::Borrowed(message), None) = (&self.message, &self.field) {
            if !needs_json_escape(request_id) {
                return fixed_body(self.code, message, self.status.as_u16(), request_id);
            }
        }
        self.rendered_body(request_id)
    }

    /// [`ApiError::body`] through the serializer, whatever the error holds.
    fn rendered_body(&self, request_id: &str) -> Vec<u8> {
        // Messages may quote what the client sent (a value of the wrong type, an unknown
        // field): a key sent in the wrong place is never echoed back.
        let message = match &self.message {
            // Fixed text of ours, which quotes nothing: nothing to look for.
            Cow::Borrowed(message) => Cow::Borrowed(*message),
            Cow::Owned(message) => keyward_core::key::redact_keys(message),
        };
        let field = self.field.as_deref().map(keyward_core::key::redact_keys);
        serde_json::to_vec(&Body {
            error: Inner {
                code: self.code,
                message: &message,
                status: self.status.as_u16(),
                request_id,
                field: field.as_deref(),
            },
        })
        .unwrap_or_default()
    }

    /// The answer's status and headers, with no body yet.
    pub(super) fn head(&self) -> Response {
        let mut response = self.status.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let challenge = match &self.www_authenticate {
            // The fixed challenges are valid header values: taken as they are.
            Some(Cow::Borrowed(v)) => Some(HeaderValue::from_static(v)),
            Some(Cow::Owned(v)) => HeaderValue::from_str(v).ok(),
            None => None,
        };
        if let Some(v) = challenge {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Whether `text` has a byte that JSON must escape inside a string.
fn needs_json_escape(text: &str) -> bool {
    text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// How many errors of fixed text each thread keeps the body of. There are about thirty such
/// messages, all `'static`; one past the last kept is rendered each time, as before.
const FIXED_BODIES: usize = 48;

/// The body of an error of fixed text and no field: everything before the request id's value
/// is the same for every answer of that error, so each thread renders it once, through the
/// serializer (so it is exactly what [`ApiError::rendered_body`] writes), and then only
/// appends the id. A refused key, which a flood of bad keys repeats at the rate of the
/// server, then costs no serialization. The id must need no escaping.
fn fixed_body(code: &'static str, message: &'static str, status: u16, request_id: &str) -> Vec<u8> {
    type Kept = Vec<((&'static str, &'static str, u16), Box<[u8]>)>;
    thread_local! {
        static KEPT: std::cell::RefCell<Kept> = const { std::cell::RefCell::new(Vec::new()) };
    }
    const END: &[u8] = b"\"}}";
    // Fixed texts are told apart by where they are and how long: both are `'static`, never
    // moved, so the same place and length is the same text.
    let same = |(c, m, s): &(&'static str, &'static str, u16)| {
        std::ptr::eq(*c, code) && std::ptr::eq(*m, message) && *s == status
    };
    let with_prefix = |prefix: &[u8]| {
        let mut body = Vec::with_capacity(prefix.len() + request_id.len() + END.len());
        body.extend_from_slice(prefix);
        body.extend_from_slice(request_id.as_bytes());
        body.extend_from_slice(END);
        body
    };
    let render_prefix = || {
        let mut whole = serde_json::to_vec(&Body {
            error: Inner {
                code,
                message,
                status,
                request_id: "",
                field: None,
            },
        })
        .unwrap_or_default();
        whole.truncate(whole.len().saturating_sub(END.len()));
        whole.into_boxed_slice()
    };
    KEPT.with(|kept| {
        let Ok(mut kept) = kept.try_borrow_mut() else {
            return with_prefix(&render_prefix());
        };
        if let Some((_, prefix)) = kept.iter().find(|(k, _)| same(k)) {
            return with_prefix(prefix);
        }
        let prefix = render_prefix();
        let body = with_prefix(&prefix);
        if kept.len() < FIXED_BODIES {
            kept.push(((code, message, status), prefix));
        }
        body
    })
}

/// The message for a malformed key, one for each reason, made once: a flood of malformed
/// keys then costs no formatting, and the fixed text no search for keys.
fn malformed_message(reason: keyward_core::MalformedKey) -> Cow<'static, str> {
    use keyward_core::MalformedKey::*;
    let sentence = || {
        format!("The API key is malformed: {reason}. Copy the whole key exactly as it was shown.")
    };
    static MADE: [std::sync::OnceLock<String>; 5] = [const { std::sync::OnceLock::new() }; 5];
    let index = match reason {
        Empty => 0,
        WrongPrefix => 1,
        WrongLength => 2,
        BadCharacter => 3,
        BadChecksum => 4,
    };
    Cow::Borrowed(MADE[index].get_or_init(sentence).as_str())
}

/// The answer without its body: [`super::request_id::finish`] writes it, with the request id,
/// from the [`ErrorInfo`] the answer carries.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.head();
        response.extensions_mut().insert(ErrorInfo(self));
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(_) => ApiError::not_found(),
            ServiceError::Invalid { field, message } => {
                ApiError::invalid(&field, capitalize(&message))
            }
            ServiceError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", capitalize(&m))
            }
            ServiceError::KeyLimitReached(m) => {
                ApiError::new(StatusCode::CONFLICT, "key_limit_reached", capitalize(&m))
            }
            ServiceError::InsufficientCapability(cap) => ApiError::insufficient_capability(&cap),
            ServiceError::Forbidden(m) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", capitalize(&m))
            }
            ServiceError::Internal(err) => {
                tracing::error!(error = ?err, "internal error");
                ApiError::internal()
            }
        }
    }
}

/// Service messages are lowercase fragments; API messages are sentences.
fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    out.extend(chars);
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(e: ApiError) -> Option<String> {
        e.into_response()
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap_or_default().to_string())
    }

    #[test]
    fn refusals_carry_their_challenges() {
        assert_eq!(challenge(ApiError::missing_key()).as_deref(), Some(REALM));
        let invalid = format!("{REALM}, error=\"invalid_token\"");
        for failure in [
            AuthFailure::Invalid,
            AuthFailure::Revoked,
            AuthFailure::Expired,
        ] {
            assert_eq!(challenge(ApiError::auth(failure)), Some(invalid.clone()));
        }
        assert_eq!(
            challenge(ApiError::insufficient_capability("keys:write")).as_deref(),
            Some("Bearer realm=\"keyward\", error=\"insufficient_scope\", scope=\"keys:write\"")
        );
        assert_eq!(challenge(ApiError::not_found()), None);
    }

    #[test]
    fn a_malformed_keys_message_names_its_reason() {
        use keyward_core::MalformedKey::*;
        for reason in [Empty, WrongPrefix, WrongLength, BadCharacter, BadChecksum] {
            assert_eq!(
                malformed_message(reason),
                format!(
                    "The API key is malformed: {reason}. Copy the whole key exactly as it was shown."
                )
            );
        }
    }

    /// A fixed error's body, made from the kept prefix, is byte for byte the serializer's,
    /// the first time and every time after; ids that need escaping, a field or a message
    /// made per error take the serializer's way.
    #[test]
    fn fixed_bodies_are_the_serializers_own() {
        let errors = [
            ApiError::auth(AuthFailure::Invalid),
            ApiError::auth(AuthFailure::Revoked),
            ApiError::auth(AuthFailure::Malformed(
                keyward_core::MalformedKey::BadChecksum,
            )),
            ApiError::missing_key(),
            ApiError::not_found(),
            ApiError::internal(),
            ApiError::invalid("name", "The name is too long."),
            ApiError::new(StatusCode::BAD_REQUEST, "x", format!("made {}", 1)),
        ];
        for id in [
            "req_AbC123",
            "req_other",
            "a \"quoted\" id",
            "back\\slash",
            "",
        ] {
            for e in &errors {
                for _ in 0..3 {
                    let body = e.body(id);
                    assert_eq!(body, e.rendered_body(id), "{} {id:?}", e.code);
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(v["error"]["request_id"], id);
                    assert_eq!(v["error"]["code"], e.code);
                }
            }
        }
        // The same text under another code or status is another body.
        let a = ApiError::new(StatusCode::BAD_REQUEST, "one", "Same text.");
        let b = ApiError::new(StatusCode::CONFLICT, "one", "Same text.");
        assert_ne!(a.body("r"), b.body("r"));
        assert_eq!(b.body("r"), b.rendered_body("r"));
    }

    #[test]
    fn only_messages_made_per_error_are_searched_for_keys() {
        let key = format!("kw_{}", "a".repeat(keyward_core::key::BODY_LEN));
        let body = ApiError::invalid("name", format!("Unknown value {key}.")).body("req_1");
        let body = String::from_utf8(body).unwrap_or_default();
        assert!(!body.contains(&key), "{body}");
        assert!(body.contains("\"request_id\":\"req_1\""), "{body}");
    }
}
