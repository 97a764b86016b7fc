//! Capabilities: what an agent's keys may do.
//!
//! The built-in catalog is fixed; a deployment may add its own names. Two capabilities imply
//! another (`content:write` ⊇ `content:read`, `keys:write` ⊇ `keys:read`), and every subset
//! rule in the product ("no key gains power") goes through [`CapabilitySet::missing_from`].

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A capability name such as `content:read`: 1–64 characters of `a-z 0-9 : _ - .`, starting
/// with a letter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Capability(String);

impl Capability {
    pub const CONTENT_READ: &'static str = "content:read";
    pub const CONTENT_WRITE: &'static str = "content:write";
    pub const GENERATE: &'static str = "generate";
    pub const ACCOUNT_READ: &'static str = "account:read";
    pub const KEYS_READ: &'static str = "keys:read";
    pub const KEYS_WRITE: &'static str = "keys:write";
    pub const KEYS_VERIFY: &'static str = "keys:verify";
    pub const AUDIT_READ: &'static str = "audit:read";

    /// Checks the shape of a name; whether it is known is the catalog's question.
    pub fn parse_name(name: &str) -> Result<Self, CapabilityError> {
        let ok_shape = (1..=64).contains(&name.len())
            && name.as_bytes()[0].is_ascii_lowercase()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":_-.".contains(&b));
        if ok_shape {
            Ok(Self(name.to_string()))
        } else {
            Err(CapabilityError::BadName(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The capability that also grants the one named `name`, if any. On a name, not a
    /// `Capability`: [`CapabilitySet::grants`] asks it about any name, on the request path,
    /// and a `Capability` would be a copy of it.
    fn implied_by(name: &str) -> Option<&'static str> {
        match name {
            Self::CONTENT_READ => Some(Self::CONTENT_WRITE),
            Self::KEYS_READ => Some(Self::KEYS_WRITE),
            _ => None,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("{0:?} is not a valid capability name (use lowercase letters, digits and : _ - .)")]
    BadName(String),
    #[error("unknown capability {0:?}")]
    Unknown(String),
    #[error("{0:?} is a built-in capability and cannot be declared again")]
    Duplicate(String),
}

/// One entry of the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CapabilityInfo {
    pub name: Capability,
    pub description: String,
    pub built_in: bool,
}

/// The capabilities a deployment knows: the built-in ones plus its own.
#[derive(Clone, Debug)]
pub struct CapabilityCatalog {
    entries: Vec<CapabilityInfo>,
}

const BUILT_IN: &[(&str, &str)] = &[
    (Capability::CONTENT_READ, "Read websites, published blogs, categories and tags"),
    (
        Capability::CONTENT_WRITE,
        "Everything content:read grants; create and change websites, blogs, categories and tags; read drafts",
    ),
    (Capability::GENERATE, "Submit content generation and read its status and result"),
    (Capability::ACCOUNT_READ, "Read the organization, its plan and usage figures"),
    (Capability::KEYS_READ, "List agents, keys (hints only) and teams"),
    (
        Capability::KEYS_WRITE,
        "Everything keys:read grants; create, change and delete agents; create, change, revoke and roll keys",
    ),
    (Capability::KEYS_VERIFY, "Check other keys of the organization with the verify API"),
    (Capability::AUDIT_READ, "Read the audit log"),
];

impl Default for CapabilityCatalog {
    fn default() -> Self {
        Self {
            entries: BUILT_IN
                .iter()
                .map(|(name, description)| CapabilityInfo {
                    name: Capability(name.to_string()),
                    description: description.to_string(),
                    built_in: true,
                })
                .collect(),
        }
    }
}

impl CapabilityCatalog {
    /// The built-in catalog extended with a deployment's own `(name, description)` pairs.
    pub fn with_custom<'a>(
        custom: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, CapabilityError> {
        let mut catalog = Self::default();
        for (name, description) in custom {
            let name = Capability::parse_name(name)?;
            if catalog.get(name.as_str()).is_some() {
                return Err(CapabilityError::Duplicate(name.0));
            }
            catalog.entries.push(CapabilityInfo {
                name,
                description: description.to_string(),
                built_in: false,
            });
        }
        Ok(catalog)
    }

    pub fn entries(&self) -> &[CapabilityInfo] {
        &self.entries
    }

    fn get(&self, name: &str) -> Option<&CapabilityInfo> {
        self.entries.iter().find(|e| e.name.as_str() == name)
    }

    /// Parses a known capability name.
    pub fn parse(&self, name: &str) -> Result<Capability, CapabilityError> {
        let cap = Capability::parse_name(name)?;
        match self.get(cap.as_str()) {
            Some(info) => Ok(info.name.clone()),
            None => Err(CapabilityError::Unknown(name.to_string())),
        }
    }

    /// Parses a list of names into a set, refusing unknown ones.
    pub fn parse_set<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<CapabilitySet, CapabilityError> {
        names
            .into_iter()
            .map(|n| self.parse(n.trim()))
            .collect::<Result<BTreeSet<_>, _>>()
            .map(CapabilitySet)
    }

    /// Every capability of the catalog.
    pub fn all(&self) -> CapabilitySet {
        CapabilitySet(self.entries.iter().map(|e| e.name.clone()).collect())
    }
}

/// A set of capabilities, kept sorted so it serializes the same way every time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CapabilitySet(BTreeSet<Capability>);

impl CapabilitySet {
    /// Rebuilds a set from stored names without consulting a catalog: a capability removed
    /// from the configuration stays on the agent (and keeps working) until someone edits it.
    pub fn from_stored<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self(
            names
                .into_iter()
                .filter_map(|n| Capability::parse_name(n).ok())
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = &Capability> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether this set grants `name`, directly or through an implying capability.
    pub fn grants(&self, name: &str) -> bool {
        self.0.iter().any(|c| c.as_str() == name)
            || Capability::implied_by(name)
                .is_some_and(|stronger| self.0.iter().any(|c| c.as_str() == stronger))
    }

    /// The first capability of `self` that `holder` does not grant, if any.
    ///
    /// `None` means `self` is within `holder`: a holder of `holder` may create or manage
    /// something that has `self` without gaining power.
    pub fn missing_from(&self, holder: &CapabilitySet) -> Option<&Capability> {
        self.0.iter().find(|c| !holder.grants(c.as_str()))
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|c| c.0.clone()).collect()
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Capability::parse_name(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> CapabilitySet {
        CapabilityCatalog::default()
            .parse_set(names.iter().copied())
            .unwrap()
    }

    #[test]
    fn write_implies_read() {
        let w = set(&["content:write"]);
        assert!(w.grants("content:read"));
        assert!(w.grants("content:write"));
        assert!(!set(&["content:read"]).grants("content:write"));
        assert!(set(&["keys:write"]).grants("keys:read"));
        assert!(!set(&["keys:write"]).grants("keys:verify"));
    }

    #[test]
    fn subset_rules_follow_implication() {
        assert_eq!(
            set(&["content:read"]).missing_from(&set(&["content:write"])),
            None
        );
        assert_eq!(
            set(&["content:write"])
                .missing_from(&set(&["content:read"]))
                .map(|c| c.as_str()),
            Some("content:write")
        );
        assert_eq!(set(&[]).missing_from(&set(&[])), None);
        assert_eq!(
            set(&["keys:read", "audit:read"])
                .missing_from(&set(&["keys:write"]))
                .map(|c| c.as_str()),
            Some("audit:read")
        );
    }

    #[test]
    fn unknown_and_bad_names_are_refused() {
        let c = CapabilityCatalog::default();
        assert_eq!(
            c.parse("reports:read"),
            Err(CapabilityError::Unknown("reports:read".into()))
        );
        assert!(matches!(
            c.parse("Content:Read"),
            Err(CapabilityError::BadName(_))
        ));
        let custom = CapabilityCatalog::with_custom([("reports:read", "Read reports")]).unwrap();
        assert!(custom.parse("reports:read").is_ok());
        assert!(CapabilityCatalog::with_custom([("keys:read", "again")]).is_err());
    }
}
