//! Forward-auth route rules: which capability a request that a reverse proxy (nginx, Traefik,
//! Envoy) asks keyward about needs, from `[[forward.routes]]` in `keyward.toml`.
//!
//! Rules are tried in order and the first match wins. A rule matches when its method (if any)
//! is the request's and its `path_prefix` is a plain string prefix of the request's
//! *normalized* path (see [`normalize_path`]): `/reports` matches `/reports`, `/reports/1`
//! and also `/reports-old`; end a prefix with `/` to match only below it. A rule for `GET`
//! also matches `HEAD`, which servers answer as a `GET` without a body. When no rule matches,
//! the default capability applies if one is configured; otherwise the request is denied.

use std::fmt;

use crate::capability::Capability;

/// One `[[forward.routes]]` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardRule {
    method: Option<String>,
    path_prefix: String,
    capability: Capability,
}

/// Why a rule was refused; the settings loader says which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardRuleError {
    #[error("method {0:?} is not an HTTP method in capitals, like GET")]
    Method(String),
    #[error("path_prefix {0:?} must start with /")]
    NotAbsolute(String),
    #[error("path_prefix {0:?} must not hold a query, a fragment, spaces or control characters")]
    BadCharacters(String),
    #[error(
        "path_prefix {given:?} is not in normal form (write it as {normal:?}): request paths \
         are percent-decoded, and their '.', '..' and empty segments removed, before matching"
    )]
    NotNormal { given: String, normal: String },
}

impl ForwardRule {
    /// A rule; `method` must be capitals (`GET`), `path_prefix` a normalized absolute path.
    pub fn new(
        method: Option<&str>,
        path_prefix: &str,
        capability: Capability,
    ) -> Result<Self, ForwardRuleError> {
        if let Some(m) = method {
            if m.is_empty() || m.len() > 32 || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(ForwardRuleError::Method(m.to_string()));
            }
        }
        if !path_prefix.starts_with('/') {
            return Err(ForwardRuleError::NotAbsolute(path_prefix.to_string()));
        }
        if path_prefix
            .chars()
            .any(|c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
        {
            return Err(ForwardRuleError::BadCharacters(path_prefix.to_string()));
        }
        let normal = normalize_path(path_prefix);
        if normal != path_prefix {
            return Err(ForwardRuleError::NotNormal {
                given: path_prefix.to_string(),
                normal,
            });
        }
        Ok(Self {
            method: method.map(str::to_string),
            path_prefix: path_prefix.to_string(),
            capability,
        })
    }

    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    pub fn capability(&self) -> &Capability {
        &self.capability
    }

    /// Whether this rule applies to `method` (capitals) and the normalized `path`.
    fn matches(&self, method: &str, path: &str) -> bool {
        let method_ok = match self.method.as_deref() {
            None => true,
            Some("GET") => method == "GET" || method == "HEAD",
            Some(m) => m == method,
        };
        method_ok && path.starts_with(&self.path_prefix)
    }
}

impl fmt::Display for ForwardRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {}",
            self.method.as_deref().unwrap_or("*"),
            self.path_prefix,
            self.capability
        )
    }
}

/// The rules of a deployment and its optional default capability.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardRules {
    rules: Vec<ForwardRule>,
    default_capability: Option<Capability>,
}

/// What a proxied request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement<'a> {
    /// The first matching rule's capability, or the default one.
    Capability(&'a Capability),
    /// No rule matches and there is no default: deny.
    NoRoute,
}

impl ForwardRules {
    pub fn new(rules: Vec<ForwardRule>, default_capability: Option<Capability>) -> Self {
        Self {
            rules,
            default_capability,
        }
    }

    pub fn rules(&self) -> &[ForwardRule] {
        &self.rules
    }

    pub fn default_capability(&self) -> Option<&Capability> {
        self.default_capability.as_ref()
    }

    /// The capability a request with `method` and the raw `path` (not yet normalized, no
    /// query) needs: the first matching rule's, else the default, else [`Requirement::NoRoute`].
    pub fn requirement(&self, method: &str, path: &str) -> Requirement<'_> {
        let method = method.to_ascii_uppercase();
        let path = normalize_path(path);
        self.rules
            .iter()
            .find(|r| r.matches(&method, &path))
            .map(|r| &r.capability)
            .or(self.default_capability.as_ref())
            .map_or(Requirement::NoRoute, Requirement::Capability)
    }
}

/// A request path as a server behind the proxy is likely to understand it, so that a rule
/// cannot be dodged by spelling a path differently: percent-escapes are decoded (`%2F`
/// becomes `/`, `%2e%2e` becomes `..`), then empty segments (`//`) and `.` segments are
/// dropped and `..` removes the segment before it (never going above `/`). A trailing slash
/// is kept. Invalid escapes stay as written; decoded bytes that are not UTF-8 become U+FFFD.
pub fn normalize_path(raw: &str) -> String {
    let decoded = percent_decode(raw);
    let trailing_slash = decoded.ends_with('/')
        || decoded.ends_with("/.")
        || decoded.ends_with("/..")
        || decoded == "."
        || decoded == "..";
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes.get(i), bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(b'%'), Some(&h), Some(&l)) => hex_value(h).zip(hex_value(l)),
            _ => None,
        };
        match decoded {
            Some((h, l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(name: &str) -> Capability {
        Capability::parse_name(name).unwrap()
    }

    fn rules(default: Option<&str>) -> ForwardRules {
        ForwardRules::new(
            vec![
                ForwardRule::new(Some("GET"), "/reports", cap("reports:read")).unwrap(),
                ForwardRule::new(None, "/reports", cap("reports:write")).unwrap(),
                ForwardRule::new(None, "/admin/", cap("admin")).unwrap(),
            ],
            default.map(cap),
        )
    }

    fn need<'a>(r: &'a ForwardRules, method: &str, path: &str) -> Option<&'a str> {
        match r.requirement(method, path) {
            Requirement::Capability(c) => Some(c.as_str()),
            Requirement::NoRoute => None,
        }
    }

    #[test]
    fn first_match_wins_by_method_and_prefix() {
        let r = rules(None);
        assert_eq!(need(&r, "GET", "/reports/1"), Some("reports:read"));
        assert_eq!(need(&r, "HEAD", "/reports"), Some("reports:read"));
        assert_eq!(need(&r, "get", "/reports"), Some("reports:read"));
        assert_eq!(need(&r, "POST", "/reports/1"), Some("reports:write"));
        assert_eq!(need(&r, "GET", "/reports-old"), Some("reports:read"));
        assert_eq!(need(&r, "GET", "/admin/users"), Some("admin"));
        assert_eq!(need(&r, "GET", "/admin"), None, "the prefix is /admin/");
        assert_eq!(need(&r, "GET", "/"), None);
        let with_default = rules(Some("content:read"));
        assert_eq!(need(&with_default, "GET", "/other"), Some("content:read"));
        assert_eq!(need(&with_default, "GET", "/reports"), Some("reports:read"));
    }

    #[test]
    fn a_path_cannot_dodge_a_rule_by_spelling() {
        let r = rules(None);
        for path in [
            "/%72eports",
            "//reports",
            "/./reports",
            "/public/../reports",
            "/public/%2e%2e/reports",
            "/public%2F..%2Freports",
            "/../../reports",
        ] {
            assert_eq!(need(&r, "GET", path), Some("reports:read"), "{path}");
        }
        assert_eq!(need(&r, "GET", "/admin/x/../"), Some("admin"));
        assert_eq!(need(&r, "GET", "/admin/."), Some("admin"));
    }

    #[test]
    fn normal_form() {
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("/a//b/"), "/a/b/");
        assert_eq!(normalize_path("/a/b/.."), "/a/");
        assert_eq!(normalize_path("/a/%zz"), "/a/%zz");
        assert_eq!(normalize_path("/a/%"), "/a/%");
        assert_eq!(normalize_path("/%ff"), "/\u{fffd}");
    }

    #[test]
    fn bad_rules_are_refused() {
        let c = cap("reports:read");
        assert!(matches!(
            ForwardRule::new(Some("get"), "/r", c.clone()),
            Err(ForwardRuleError::Method(_))
        ));
        assert!(matches!(
            ForwardRule::new(None, "reports", c.clone()),
            Err(ForwardRuleError::NotAbsolute(_))
        ));
        assert!(matches!(
            ForwardRule::new(None, "/r?x=1", c.clone()),
            Err(ForwardRuleError::BadCharacters(_))
        ));
        assert!(matches!(
            ForwardRule::new(None, "/a//b", c.clone()),
            Err(ForwardRuleError::NotNormal { .. })
        ));
        assert!(matches!(
            ForwardRule::new(None, "/%72eports", c.clone()),
            Err(ForwardRuleError::NotNormal { .. })
        ));
        assert!(ForwardRule::new(None, "/", c).is_ok());
    }
}
