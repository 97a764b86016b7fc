//! Typed, prefixed, opaque identifiers (`org_…`, `key_…`, …), never sequential.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::base62;

/// Number of random base62 characters after the prefix (about 143 bits).
const RANDOM_LEN: usize = 24;

/// An identifier string did not have the expected prefix or shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind} id (expected {prefix}_ followed by letters and digits)")]
pub struct InvalidId {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            pub fn generate() -> Self {
                let mut s = String::with_capacity($prefix.len() + 1 + RANDOM_LEN);
                s.push_str($prefix);
                s.push('_');
                base62::push_random(&mut s, &mut rand::rng(), RANDOM_LEN);
                Self(s)
            }

            /// Parses an id presented by a client.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                let ok = s
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .is_some_and(|rest| {
                        (1..=64).contains(&rest.len()) && rest.bytes().all(base62::is_base62)
                    });
                if ok {
                    Ok(Self(s.to_string()))
                } else {
                    Err(InvalidId { kind: $kind, prefix: $prefix, value: s.chars().take(80).collect() })
                }
            }

            /// Wraps an id read back from storage, which wrote it.
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(/// An organization (a customer).
    OrgId, "org", "organization");
typed_id!(/// A person who signs in to the dashboard.
    UserId, "usr", "user");
typed_id!(/// A team inside an organization.
    TeamId, "team", "team");
typed_id!(/// An API agent: a named set of capabilities.
    AgentId, "agt", "agent");
typed_id!(/// An API key record (never the secret).
    KeyId, "key", "key");
typed_id!(/// An audit event.
    EventId, "evt", "audit event");
typed_id!(/// A website of the content API.
    WebsiteId, "web", "website");
typed_id!(/// A blog post.
    BlogId, "blg", "blog");
typed_id!(/// A blog category.
    CategoryId, "cat", "category");
typed_id!(/// A blog tag.
    TagId, "tag", "tag");
typed_id!(/// A content generation job.
    GenerationId, "gen", "generation");

/// A [`KeyId`] as a fixed 32-byte value, for maps that are looked up on every request (the
/// rate limiter's, the usage recorder's): the id sits inside the map entry, so a lookup
/// compares it in place instead of following a pointer to a string elsewhere on the heap,
/// which was a cache miss per lookup with thousands of keys in use.
///
/// Ids up to 31 bytes (every generated one is 28) are held as they are, after their length;
/// a longer one is held as the first 31 bytes of its SHA-256 after a marker no length can
/// take, so two different ids never share a value in practice.
///
/// Ordered by those bytes: ids of one length (every generated id) in the order of their text,
/// and the same order on every node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CompactKeyId([u8; 32]);

impl From<&KeyId> for CompactKeyId {
    fn from(id: &KeyId) -> Self {
        use sha2::{Digest, Sha256};
        let id = id.as_str().as_bytes();
        let mut out = [0u8; 32];
        if id.len() < out.len() {
            out[0] = id.len() as u8;
            out[1..=id.len()].copy_from_slice(id);
        } else {
            out[0] = u8::MAX;
            out[1..].copy_from_slice(&Sha256::digest(id)[..31]);
        }
        Self(out)
    }
}

impl CompactKeyId {
    /// The id's text, when it is held as it is (every generated id is); `None` for a long id
    /// held as its digest. Read from the value itself, not from the string it was made of.
    pub fn as_text(&self) -> Option<&str> {
        let len = usize::from(self.0[0]);
        self.0
            .get(1..=len)
            .and_then(|text| std::str::from_utf8(text).ok())
    }
}

impl fmt::Debug for CompactKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0[0] {
            len @ 0..=31 => f.write_str(&String::from_utf8_lossy(&self.0[1..=usize::from(len)])),
            _ => f.write_str("key_(long id)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_key_ids_tell_ids_apart() {
        let a = KeyId::generate();
        let b = KeyId::generate();
        assert_eq!(CompactKeyId::from(&a), CompactKeyId::from(&a.clone()));
        assert_ne!(CompactKeyId::from(&a), CompactKeyId::from(&b));
        assert_eq!(format!("{:?}", CompactKeyId::from(&a)), a.as_str());
        assert_eq!(CompactKeyId::from(&a).as_text(), Some(a.as_str()));
        let long = KeyId::from_stored(format!("key_{}", "x".repeat(60)));
        let longer = KeyId::from_stored(format!("key_{}", "x".repeat(61)));
        assert_ne!(CompactKeyId::from(&long), CompactKeyId::from(&longer));
        assert_eq!(CompactKeyId::from(&long).as_text(), None);
        // A short id can never equal a long one: their first bytes differ.
        let short = KeyId::from_stored("key_x".to_string());
        assert_ne!(CompactKeyId::from(&short), CompactKeyId::from(&long));
    }

    #[test]
    fn ids_round_trip_and_check_their_prefix() {
        let id = KeyId::generate();
        assert!(id.as_str().starts_with("key_"));
        assert_eq!(KeyId::parse(id.as_str()).unwrap(), id);
        assert!(KeyId::parse("agt_abc").is_err());
        assert!(KeyId::parse("key_").is_err());
        assert!(KeyId::parse("key_a-b").is_err());
        assert!(KeyId::parse("1").is_err());
        assert_ne!(KeyId::generate(), KeyId::generate());
    }
}
