//! The dashboard's only assets, compiled into the binary.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::Digest;

const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");
const FAVICON: &str = include_str!("../../assets/favicon.svg");

/// Serves `body` with an `ETag`; browsers revalidate and get a `304` while it is unchanged.
fn asset(headers: &HeaderMap, body: &'static str, content_type: &'static str) -> Response {
    let digest = sha2::Sha256::digest(body.as_bytes());
    let tag = format!("\"{}\"", hex::encode(&digest[..12]));
    let etag = HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"\""));
    let cache = HeaderValue::from_static("no-cache");
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    if unchanged {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

pub async fn css(headers: HeaderMap) -> Response {
    asset(&headers, CSS, "text/css; charset=utf-8")
}

pub async fn js(headers: HeaderMap) -> Response {
    asset(&headers, JS, "text/javascript; charset=utf-8")
}

pub async fn favicon(headers: HeaderMap) -> Response {
    asset(&headers, FAVICON, "image/svg+xml")
}
