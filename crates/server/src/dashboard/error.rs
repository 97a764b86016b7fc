//! Dashboard errors are pages for people, not the JSON of `/v1`.
//!
//! A [`PageError`] becomes a bare response carrying the error in its extensions; the
//! [`error_pages`] layer then draws the page, with the request id the outermost layer
//! assigned, so a person can quote it.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout::{html_response, public_page};
use crate::http::request_id::RequestId;
use crate::service::ServiceError;

#[derive(Debug, Clone)]
pub enum PageError {
    /// No live session: off to the sign-in page, then back to `next`.
    SignIn {
        next: String,
    },
    NotFound,
    /// The person's role does not allow the change, or the thing is not theirs to change.
    Forbidden(String),
    /// A cross-site or token-less form post.
    Csrf,
    BadRequest(String),
    Conflict(String),
    Internal,
}

impl From<ServiceError> for PageError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(_) => PageError::NotFound,
            ServiceError::Invalid { message, .. } => PageError::BadRequest(sentence(&message)),
            ServiceError::Conflict(m) | ServiceError::KeyLimitReached(m) => {
                PageError::Conflict(sentence(&m))
            }
            ServiceError::InsufficientCapability(_) => PageError::Forbidden(
                "Your role can see this but not change it. Ask an owner or an admin of your organization."
                    .into(),
            ),
            ServiceError::Forbidden(m) => PageError::Forbidden(sentence(&m)),
            ServiceError::Internal(err) => {
                tracing::error!(error = ?err, "internal error in the dashboard");
                PageError::Internal
            }
        }
    }
}

/// Service messages are lowercase fragments; pages show sentences.
pub fn sentence(s: &str) -> String {
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

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::SignIn { .. } => StatusCode::SEE_OTHER,
            PageError::NotFound => StatusCode::NOT_FOUND,
            PageError::Forbidden(_) | PageError::Csrf => StatusCode::FORBIDDEN,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Conflict(_) => StatusCode::CONFLICT,
            PageError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The page for this error.
    pub fn render(&self, request_id: &str) -> Response {
        let (title, message): (&str, String) = match self {
            PageError::SignIn { .. } => return self.clone().into_response(),
            PageError::NotFound => (
                "Page not found",
                "There is nothing here. It may have been deleted, or the link is wrong.".into(),
            ),
            PageError::Forbidden(m) => ("Not allowed", m.clone()),
            PageError::Csrf => (
                "Request refused",
                "This form was not sent from a keyward page, so nothing was changed. Go back, reload the page and try again.".into(),
            ),
            PageError::BadRequest(m) => ("That did not work", m.clone()),
            PageError::Conflict(m) => ("That did not work", m.clone()),
            PageError::Internal => (
                "Something went wrong",
                "Something went wrong on our side and nothing was changed. Try again; if it keeps happening, report the request id below.".into(),
            ),
        };
        html_response(
            self.status(),
            public_page(
                title,
                html! {
                    h1 { (title) }
                    p { (message) }
                    p class="actions" {
                        a class="button primary" href="/settings/api" { "Back to the dashboard" }
                    }
                    p class="muted small" { "Request id: " code { (request_id) } }
                },
            ),
        )
    }
}

/// What a [`PageError`] leaves on its response for [`error_pages`].
#[derive(Clone, Debug)]
struct PageErrorInfo(PageError);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let PageError::SignIn { next } = &self {
            let target = format!(
                "/login?next={}",
                form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            );
            let mut r = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&target) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        let mut r = self.status().into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r.extensions_mut().insert(PageErrorInfo(self));
        r
    }
}

/// Draws the page of any [`PageError`] raised below, with this request's id.
pub async fn error_pages(req: Request, next: Next) -> Response {
    let id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.as_str().to_string())
        .unwrap_or_default();
    let mut response = next.run(req).await;
    match response.extensions_mut().remove::<PageErrorInfo>() {
        Some(PageErrorInfo(e)) => {
            let mut page = e.render(&id);
            // Keep headers set on the way out (security headers, cookies).
            for (k, v) in response.headers() {
                if k != header::CONTENT_LENGTH && !page.headers().contains_key(k) {
                    page.headers_mut().insert(k.clone(), v.clone());
                }
            }
            page
        }
        None => response,
    }
}

/// The answer to a path that does not exist, as a page.
pub fn not_found_page(request_id: &str) -> Response {
    PageError::NotFound.render(request_id)
}
