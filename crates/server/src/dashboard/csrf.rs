//! Cross-site request forgery: two independent checks on every state-changing request.
//!
//! 1. [`refuse_cross_site`] runs on every dashboard route: a `POST` whose `Sec-Fetch-Site`
//!    says it came from another site, or whose `Origin` is not this host, is refused before
//!    any handler runs. Browsers set both headers themselves; pages cannot forge them.
//! 2. [`SignedForm`] is the only way a signed-in handler reads a form, and it refuses one
//!    whose `csrf` field is not the session's own random token (a synchronizer token, which a
//!    page on another site cannot read). This covers clients that send neither header.
//!
//! The session cookie is also `SameSite=Lax`, so browsers do not even send it with a
//! cross-site `POST`.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::PageError;
use super::session::SignedIn;
use crate::http::AppState;
use crate::service::tokens_match;

/// Largest form accepted.
const MAX_FORM: usize = 64 * 1024;

/// Whether the request's own headers say it came from another site.
pub fn is_cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    if let Some(site) = fetch_site {
        // `none`: typed in the address bar or a bookmark; `same-origin`: our own pages.
        if site != "same-origin" && site != "none" {
            return true;
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return true;
        };
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin.split_once("://").map(|(_, rest)| rest);
        return match (origin_host, host) {
            (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
            // `Origin: null` (sandboxed frames, some redirects) or no Host: refuse.
            _ => true,
        };
    }
    false
}

/// Refuses state-changing requests that come from another site.
pub async fn refuse_cross_site(req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && is_cross_site(req.headers()) {
        tracing::warn!(path = %req.uri().path(), "refused a cross-site request to the dashboard");
        return PageError::Csrf.into_response();
    }
    next.run(req).await
}

/// A form's fields, in order; a name may repeat (checkboxes).
#[derive(Clone, Debug, Default)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`, trimmed; `None` when missing or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The first value of `name` exactly as sent (passwords are not trimmed).
    pub fn raw(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has(&self, name: &str, value: &str) -> bool {
        self.0.iter().any(|(k, v)| k == name && v == value)
    }
}

async fn read_form(req: Request) -> Result<FormData, PageError> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(PageError::BadRequest(
            "This page expects a form submission.".into(),
        ));
    }
    let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM)
        .await
        .map_err(|_| PageError::BadRequest("The form is too large.".into()))?;
    Ok(FormData::parse(&bytes))
}

/// A form posted by a signed-in person, with its CSRF token checked.
pub struct SignedForm {
    pub signed: SignedIn,
    pub form: FormData,
}

impl FromRequest<AppState> for SignedForm {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let (mut parts, body) = req.into_parts();
        let signed = SignedIn::from_request_parts(&mut parts, state)
            .await
            .map_err(|e| match e {
                // A post without a session goes to sign-in, and back to the page, not the post.
                PageError::SignIn { .. } => PageError::SignIn {
                    next: "/settings/api".into(),
                },
                other => other,
            })?;
        let form = read_form(Request::from_parts(parts, body)).await?;
        if !tokens_match(form.raw("csrf"), signed.csrf()) {
            tracing::warn!("refused a dashboard form without the session's CSRF token");
            return Err(PageError::Csrf);
        }
        Ok(SignedForm { signed, form })
    }
}

/// A form posted without a session (setup, sign-in, sign-in links); guarded by
/// [`refuse_cross_site`] only.
pub struct PublicForm(pub FormData);

impl<S: Send + Sync> FromRequest<S> for PublicForm {
    type Rejection = PageError;

    async fn from_request(req: Request, _: &S) -> Result<Self, PageError> {
        read_form(req).await.map(PublicForm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        assert!(!is_cross_site(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(!is_cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(is_cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ])));
        assert!(is_cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ])));
        assert!(is_cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "same-site"),
        ])));
        assert!(is_cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null"),
        ])));
    }

    #[test]
    fn forms_keep_repeated_fields() {
        let f = FormData::parse(b"cap=a&cap=b&name=+x+&empty=");
        assert_eq!(f.all("cap"), vec!["a", "b"]);
        assert_eq!(f.get("name"), Some("x"));
        assert_eq!(f.get("empty"), None);
        assert!(f.has("cap", "b"));
    }
}
