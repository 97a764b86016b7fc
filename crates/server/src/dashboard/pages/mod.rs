//! The dashboard's pages, by area.

pub mod api;
pub mod audit;
pub mod auth;
pub mod teams;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::csrf::FormData;

/// A `303 See Other` to `path` (after a form, so reloading does not post it again).
pub fn see_other(path: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(path) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The query string's fields.
pub fn query(raw: Option<String>) -> FormData {
    FormData::parse(raw.unwrap_or_default().as_bytes())
}

/// Adds a `Set-Cookie` header to a response.
pub fn with_cookie(mut r: Response, cookie: HeaderValue) -> Response {
    r.headers_mut().append(header::SET_COOKIE, cookie);
    r
}

/// Percent-encodes a value for a query string.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
