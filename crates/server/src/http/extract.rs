//! Extractors that answer in the one error shape: JSON bodies, queries, client details.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::request_id::{payload_too_large, unsupported_media_type};
use super::AppState;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// A JSON request body. Wrong content type → 415, too large → 413, anything that does not
/// parse → 400 naming the field.
pub struct Json<T>(pub T);

/// Like [`Json`], but an empty body means `T::default()` (for optional bodies such as revoke).
pub struct JsonOrEmpty<T>(pub T);

async fn read_body(req: Request) -> Result<(bool, Bytes), ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let mime = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| payload_too_large())?;
    Ok((is_json, bytes))
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.to_string();
        // "missing field `name`" is reported at the parent; name the field itself.
        let field = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(|f| {
                if path == "." {
                    f.to_string()
                } else {
                    format!("{path}.{f}")
                }
            })
            .unwrap_or_else(|| {
                if path == "." {
                    "body".to_string()
                } else {
                    path
                }
            });
        match inner.classify() {
            // Not JSON at all: no field to name (the path would be a placeholder like "?").
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::invalid(
                    "body",
                    format!("The request body is not valid JSON: {message}."),
                )
            }
            _ => ApiError::invalid(
                &field,
                format!("Invalid value for {field}: {}.", strip_position(&message)),
            ),
        }
    })
}

/// serde_json appends " at line 1 column 20"; the field name says more.
fn strip_position(message: &str) -> &str {
    message.find(" at line ").map_or(message, |i| &message[..i])
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let (is_json, bytes) = read_body(req).await?;
        if !is_json {
            return Err(unsupported_media_type());
        }
        parse(&bytes).map(Json)
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for JsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let (is_json, bytes) = read_body(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonOrEmpty(T::default()));
        }
        if !is_json {
            return Err(unsupported_media_type());
        }
        parse(&bytes).map(JsonOrEmpty)
    }
}

/// Query parameters, with errors naming the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|err| {
                let field = err.path().to_string();
                ApiError::invalid(
                    &field,
                    format!("Invalid query parameter {field}: {}.", err.into_inner()),
                )
            })
    }
}

/// Where a request came from, for the audit log.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(ClientInfo::user_agent_text);
        Ok(ClientInfo {
            ip: ClientInfo::ip_of(parts, state).map(|ip| ip.to_string()),
            user_agent,
        })
    }
}

impl ClientInfo {
    /// The client's address (see [`client_ip`]); `None` without a connection (in tests).
    pub fn ip_of(parts: &Parts, state: &AppState) -> Option<IpAddr> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
        Some(client_ip(
            peer,
            &parts.headers,
            &state.service.config().trusted_proxies,
        ))
    }

    /// A user agent as kept in the audit log: its first 256 characters.
    pub fn user_agent_text(v: &str) -> String {
        v.chars().take(256).collect()
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// A JSON answer with a strong `ETag`; `If-None-Match` with that tag (or `*`) gets a 304.
pub fn etagged<T: serde::Serialize>(headers: &HeaderMap, body: &T) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    use sha2::Digest;

    let Ok(bytes) = serde_json::to_vec(body) else {
        return ApiError::internal().into_response();
    };
    let digest = sha2::Sha256::digest(&bytes);
    let tag = format!("\"{}\"", hex::encode(&digest[..16]));
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| {
            candidate == "*"
                || candidate == tag
                || candidate.strip_prefix("W/") == Some(tag.as_str())
        });
    let etag = HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"\""));
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::ETAG, etag),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted: Vec<ipnet::IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 127.0.0.1".parse().unwrap());
        assert_eq!(
            client_ip("127.0.0.1".parse().unwrap(), &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip("198.51.100.1".parse().unwrap(), &h, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
    }
}
