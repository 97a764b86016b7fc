//! The session cookie and the signed-in person every dashboard page starts from.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use keyward_core::Role;
use secrecy::{ExposeSecret, SecretString};

use super::error::PageError;
use crate::config::DashboardConfig;
use crate::http::extract::ClientInfo;
use crate::http::AppState;
use crate::service::{Client, Session};
use crate::Caller;

/// The cookie's name. Behind TLS it gets the `__Host-` prefix, which browsers accept only
/// with `Secure`, `Path=/` and no `Domain`, so no other site or subdomain can plant it.
pub fn cookie_name(config: &DashboardConfig) -> &'static str {
    if config.secure_cookies {
        "__Host-kw_session"
    } else {
        "kw_session"
    }
}

/// `Set-Cookie` for a new session: `HttpOnly` (no script reads it), `SameSite=Lax` (not sent
/// with cross-site posts), `Secure` when configured, and as long-lived as the session.
pub fn session_cookie(config: &DashboardConfig, token: &SecretString) -> HeaderValue {
    let mut value = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        cookie_name(config),
        token.expose_secret(),
        u64::from(config.session_hours) * 3600
    );
    if config.secure_cookies {
        value.push_str("; Secure");
    }
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(config: &DashboardConfig) -> HeaderValue {
    let mut value = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
        cookie_name(config)
    );
    if config.secure_cookies {
        value.push_str("; Secure");
    }
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""))
}

/// The session token from the request's cookies, if any.
pub fn session_token(headers: &HeaderMap, config: &DashboardConfig) -> Option<String> {
    let name = cookie_name(config);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// A signed-in person and where their request came from. Pages without a live session
/// send the browser to `/login`, and come back afterwards.
#[derive(Clone, Debug)]
pub struct SignedIn {
    pub session: Session,
    pub client: Client,
    /// `http(s)://host` as the browser reached us, for links shown in pages.
    pub origin: String,
}

impl SignedIn {
    pub fn caller(&self) -> Caller {
        self.session.caller(&self.client)
    }

    pub fn can_manage(&self) -> bool {
        self.session.role.can_manage()
    }

    pub fn role(&self) -> Role {
        self.session.role
    }

    pub fn csrf(&self) -> &str {
        &self.session.csrf_token
    }
}

/// Where the request came from, for sessions and the audit log.
pub fn client_from(info: ClientInfo) -> Client {
    Client {
        ip: info.ip,
        user_agent: info.user_agent,
    }
}

async fn client_of(parts: &mut Parts, state: &AppState) -> Client {
    client_from(
        ClientInfo::from_request_parts(parts, state)
            .await
            .unwrap_or_default(),
    )
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let config = &state.service.config().dashboard;
        let next = parts
            .uri
            .path_and_query()
            .map_or("/settings/api".to_string(), |p| p.as_str().to_string());
        let Some(token) = session_token(&parts.headers, config) else {
            return Err(PageError::SignIn { next });
        };
        let Some(session) = state.service.session(&token).await? else {
            return Err(PageError::SignIn { next });
        };
        let client = client_of(parts, state).await;
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let scheme = if config.secure_cookies {
            "https"
        } else {
            "http"
        };
        Ok(SignedIn {
            session,
            client,
            origin: format!("{scheme}://{host}"),
        })
    }
}

/// A signed-in person if there is one (for `/` and `/login`).
pub struct MaybeSignedIn(pub Option<SignedIn>);

impl FromRequestParts<AppState> for MaybeSignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        match SignedIn::from_request_parts(parts, state).await {
            Ok(s) => Ok(MaybeSignedIn(Some(s))),
            Err(PageError::SignIn { .. }) => Ok(MaybeSignedIn(None)),
            Err(e) => Err(e),
        }
    }
}

/// A path to return to after signing in: only this site's own paths, never `//host`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.starts_with("/logout")
                && n.len() <= 512
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/settings/api".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_carry_the_right_attributes() {
        let mut c = DashboardConfig::default();
        let token = SecretString::from("abc".to_string());
        let v = session_cookie(&c, &token);
        let v = v.to_str().unwrap();
        assert!(v.starts_with("kw_session=abc;"));
        assert!(v.contains("HttpOnly") && v.contains("SameSite=Lax"));
        assert!(v.contains("Max-Age=43200"));
        assert!(!v.contains("Secure"));
        c.secure_cookies = true;
        let v = session_cookie(&c, &token);
        let v = v.to_str().unwrap();
        assert!(v.starts_with("__Host-kw_session=abc;") && v.contains("; Secure"));
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/settings/audit?x=1")),
            "/settings/audit?x=1"
        );
        assert_eq!(safe_next(Some("//evil.example")), "/settings/api");
        assert_eq!(safe_next(Some("https://evil.example")), "/settings/api");
        assert_eq!(safe_next(Some("/\\evil.example")), "/settings/api");
        assert_eq!(safe_next(None), "/settings/api");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let c = DashboardConfig::default();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; kw_session=tok; b=2".parse().unwrap());
        assert_eq!(session_token(&h, &c).as_deref(), Some("tok"));
    }
}
