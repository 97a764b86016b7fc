//! API keys: `{prefix}_{random}{checksum}`.
//!
//! `random` is 32 base62 characters from a CSPRNG; `checksum` is the CRC-32 (IEEE) of
//! `{prefix}_{random}` written as 6 big-endian base62 digits. A key can be judged malformed
//! from its text alone, before any storage lookup.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::base62;

/// Length of the random part of a key.
pub const RANDOM_LEN: usize = 32;
/// Length of the checksum part of a key.
pub const CHECKSUM_LEN: usize = 6;
/// Length of everything after `{prefix}_`.
pub const BODY_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;

/// ID prefixes (see [`crate::id`]) a key prefix may not take, so a key is never mistaken for an id.
pub const RESERVED_PREFIXES: &[&str] = &[
    "org", "agt", "key", "web", "blg", "cat", "tag", "gen", "evt", "team", "usr", "ses", "inv",
];

/// A deployment's key prefix: 2–8 lowercase ASCII letters, not a reserved id prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

/// Why a key prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPrefix {
    #[error("a key prefix must be 2 to 8 lowercase ASCII letters, got {0:?}")]
    Shape(String),
    #[error("{0:?} is an id prefix and cannot be a key prefix")]
    Reserved(String),
}

impl KeyPrefix {
    pub fn parse(s: &str) -> Result<Self, InvalidPrefix> {
        if !(2..=8).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(InvalidPrefix::Shape(s.to_string()));
        }
        if RESERVED_PREFIXES.contains(&s) {
            return Err(InvalidPrefix::Reserved(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Total length of a key with this prefix.
    pub fn key_len(&self) -> usize {
        self.0.len() + 1 + BODY_LEN
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        Self("kw".to_string())
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The precise reason a presented key is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedKey {
    #[error("the API key is empty")]
    Empty,
    #[error("the API key does not start with this deployment's prefix")]
    WrongPrefix,
    #[error("the API key has the wrong length")]
    WrongLength,
    #[error("the API key contains a character outside 0-9, A-Z and a-z")]
    BadCharacter,
    #[error("the API key's checksum does not match; it was probably mistyped or truncated")]
    BadChecksum,
}

/// A raw API key. The secret is only reachable through [`ApiKey::expose`]; `Debug` redacts it.
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl ApiKey {
    /// Generates a fresh key from the thread-local CSPRNG.
    pub fn generate(prefix: &KeyPrefix) -> Self {
        Self::generate_with(prefix, &mut rand::rng())
    }

    /// Generates a key from `rng`, which must be a CSPRNG outside of tests.
    pub fn generate_with<R: rand::Rng + ?Sized>(prefix: &KeyPrefix, rng: &mut R) -> Self {
        let mut s = String::with_capacity(prefix.key_len());
        s.push_str(prefix.as_str());
        s.push('_');
        base62::push_random(&mut s, rng, RANDOM_LEN);
        let sum = checksum(s.as_bytes());
        s.push_str(&sum);
        Self(SecretString::from(s))
    }

    /// Parses a presented key, deciding from its text alone whether it is well-formed.
    pub fn parse(prefix: &KeyPrefix, presented: &str) -> Result<Self, MalformedKey> {
        check_format(prefix, presented)?;
        Ok(Self(SecretString::from(presented.to_string())))
    }

    /// The raw key. Call only to show it once to its creator.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The SHA-256 of the key, the only form ever stored.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.expose())
    }

    /// The display hint: prefix, first 4 and last 4 characters of the rest, joined by `…`.
    pub fn hint(&self) -> String {
        hint_of(self.expose())
    }
}

/// Checks the format of a presented key without copying it.
pub fn check_format(prefix: &KeyPrefix, presented: &str) -> Result<(), MalformedKey> {
    if presented.is_empty() {
        return Err(MalformedKey::Empty);
    }
    let bytes = presented.as_bytes();
    let p = prefix.as_str().as_bytes();
    let head_len = p.len() + 1;
    // Decide the prefix first so a key of another deployment gets the clearest reason.
    if bytes.len() < head_len || &bytes[..p.len()] != p || bytes[p.len()] != b'_' {
        return Err(MalformedKey::WrongPrefix);
    }
    if bytes.len() != head_len + BODY_LEN {
        return Err(MalformedKey::WrongLength);
    }
    let body = &bytes[head_len..];
    // Every byte is looked at (no early exit), which lets the check run on many at once.
    if !body.iter().fold(true, |ok, &b| ok & base62::is_base62(b)) {
        return Err(MalformedKey::BadCharacter);
    }
    let (signed, sum) = bytes.split_at(head_len + RANDOM_LEN);
    let mut expected = [0u8; CHECKSUM_LEN];
    base62::encode_padded_into(u64::from(crc32fast::hash(signed)), &mut expected);
    if expected != sum {
        return Err(MalformedKey::BadChecksum);
    }
    Ok(())
}

/// `text` with everything shaped like an API key (`{2–8 lowercase letters}_{38 base62}`)
/// replaced by `[redacted key]`. Error messages pass through this: a client that sends its key
/// in the wrong place must not see it echoed (or have it stored by whatever logs the answer).
pub fn redact_keys(text: &str) -> std::borrow::Cow<'_, str> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let looks_like_key = |w: &str| {
        w.split_once('_').is_some_and(|(prefix, rest)| {
            (2..=8).contains(&prefix.len())
                && prefix.bytes().all(|b| b.is_ascii_lowercase())
                && rest.len() == BODY_LEN
                && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    };
    if !text.split(|c: char| !is_word(c)).any(looks_like_key) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once('\0')) {
        if is_word(c) {
            word.push(c);
            continue;
        }
        out.push_str(if looks_like_key(&word) {
            "[redacted key]"
        } else {
            &word
        });
        word.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The 6-character checksum of `{prefix}_{random}`.
fn checksum(signed: &[u8]) -> String {
    base62::encode_padded(u64::from(crc32fast::hash(signed)), CHECKSUM_LEN)
}

/// The display hint of a raw key (see [`ApiKey::hint`]).
fn hint_of(raw: &str) -> String {
    match raw.split_once('_') {
        Some((prefix, rest)) if rest.len() >= 8 && rest.is_ascii() => {
            format!("{prefix}_{}\u{2026}{}", &rest[..4], &rest[rest.len() - 4..])
        }
        _ => "\u{2026}".to_string(),
    }
}

/// Lowercase hex SHA-256 of a full key string: `printf %s "$KEY" | sha256sum`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(String);

impl KeyHash {
    pub fn of(raw: &str) -> Self {
        Self(hex::encode(Self::digest(raw)))
    }

    /// The raw SHA-256 of a key: the form caches use (no allocation, no hex).
    pub fn digest(raw: &str) -> [u8; 32] {
        Sha256::digest(raw.as_bytes()).into()
    }

    /// The stored (hex) form of a digest.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        Self(hex::encode(digest))
    }

    /// The digest of this hash, if it is well-formed hex.
    pub fn to_digest(&self) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.0, &mut out).ok()?;
        Some(out)
    }

    /// Wraps a hash read back from storage.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hashes are not secret, but a short form keeps logs readable.
        write!(f, "KeyHash({}…)", &self.0[..self.0.len().min(12)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kw() -> KeyPrefix {
        KeyPrefix::default()
    }

    #[test]
    fn generated_key_has_the_documented_shape() {
        let key = ApiKey::generate(&kw());
        let raw = key.expose();
        assert_eq!(raw.len(), 3 + 38);
        assert!(raw.starts_with("kw_"));
        assert!(ApiKey::parse(&kw(), raw).is_ok());
    }

    #[test]
    fn hash_is_lowercase_hex_sha256_of_the_whole_key() {
        // printf %s abc | sha256sum
        assert_eq!(
            KeyHash::of("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hint_shows_prefix_and_four_characters_each_side() {
        let key = ApiKey::generate(&kw());
        let raw = key.expose();
        let hint = key.hint();
        assert_eq!(
            hint,
            format!("kw_{}\u{2026}{}", &raw[3..7], &raw[raw.len() - 4..])
        );
    }

    #[test]
    fn each_malformation_has_its_reason() {
        let key = ApiKey::generate(&kw());
        let raw = key.expose();
        assert_eq!(ApiKey::parse(&kw(), "").unwrap_err(), MalformedKey::Empty);
        assert_eq!(
            ApiKey::parse(&kw(), &raw.replacen("kw_", "xy_", 1)).unwrap_err(),
            MalformedKey::WrongPrefix
        );
        assert_eq!(
            ApiKey::parse(&kw(), &raw[..raw.len() - 1]).unwrap_err(),
            MalformedKey::WrongLength
        );
        let mut bad = raw.to_string();
        bad.replace_range(5..6, "-");
        assert_eq!(
            ApiKey::parse(&kw(), &bad).unwrap_err(),
            MalformedKey::BadCharacter
        );
        let mut swapped = raw.to_string();
        let c = if &raw[5..6] == "a" { "b" } else { "a" };
        swapped.replace_range(5..6, c);
        assert_eq!(
            ApiKey::parse(&kw(), &swapped).unwrap_err(),
            MalformedKey::BadChecksum
        );
    }

    #[test]
    fn keys_in_text_are_redacted() {
        let key = ApiKey::generate(&kw());
        let text = format!("invalid type: string \"{}\", expected u64", key.expose());
        let redacted = redact_keys(&text);
        assert!(!redacted.contains(&key.expose()[3..]));
        assert_eq!(
            redacted,
            "invalid type: string \"[redacted key]\", expected u64"
        );
        assert_eq!(redact_keys("no key here, key_abc"), "no key here, key_abc");
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(KeyPrefix::parse("kw").is_ok());
        assert!(KeyPrefix::parse("acmecorp").is_ok());
        assert!(KeyPrefix::parse("k").is_err());
        assert!(KeyPrefix::parse("toolongxx").is_err());
        assert!(KeyPrefix::parse("Kw").is_err());
        assert!(KeyPrefix::parse("k9").is_err());
        assert_eq!(
            KeyPrefix::parse("key").unwrap_err(),
            InvalidPrefix::Reserved("key".into())
        );
        assert!(KeyPrefix::parse("org").is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = ApiKey::generate(&kw());
        assert!(!format!("{key:?}").contains(&key.expose()[3..]));
    }

    fn arb_prefix() -> impl Strategy<Value = KeyPrefix> {
        "[a-z]{2,8}".prop_filter_map("reserved", |s| KeyPrefix::parse(&s).ok())
    }

    proptest! {
        #[test]
        fn every_generated_key_parses(prefix in arb_prefix(), seed in any::<u64>()) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let key = ApiKey::generate_with(&prefix, &mut rng);
            prop_assert!(ApiKey::parse(&prefix, key.expose()).is_ok());
        }

        #[test]
        fn one_changed_character_is_malformed(seed in any::<u64>(), pos in 0usize..41, ch in any::<char>()) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let key = ApiKey::generate_with(&kw(), &mut rng);
            let raw: Vec<char> = key.expose().chars().collect();
            prop_assume!(raw[pos] != ch);
            let mut changed = raw.clone();
            changed[pos] = ch;
            let changed: String = changed.into_iter().collect();
            prop_assert!(ApiKey::parse(&kw(), &changed).is_err());
        }

        #[test]
        fn one_added_character_is_malformed(seed in any::<u64>(), pos in 0usize..42, ch in any::<char>()) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let key = ApiKey::generate_with(&kw(), &mut rng);
            let mut changed: Vec<char> = key.expose().chars().collect();
            changed.insert(pos, ch);
            let changed: String = changed.into_iter().collect();
            prop_assert!(ApiKey::parse(&kw(), &changed).is_err());
        }

        #[test]
        fn one_removed_character_is_malformed(seed in any::<u64>(), pos in 0usize..41) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let key = ApiKey::generate_with(&kw(), &mut rng);
            let mut changed: Vec<char> = key.expose().chars().collect();
            changed.remove(pos);
            let changed: String = changed.into_iter().collect();
            prop_assert!(ApiKey::parse(&kw(), &changed).is_err());
        }

        #[test]
        fn hints_reveal_at_most_eight_secret_characters(seed in any::<u64>()) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let key = ApiKey::generate_with(&kw(), &mut rng);
            let hint = key.hint();
            let secret_part = &key.expose()[3..];
            let shown: usize = hint.trim_start_matches("kw_").chars().filter(|c| *c != '\u{2026}').count();
            prop_assert!(shown <= 8);
            // And no run of 9 consecutive secret characters appears in the hint.
            for w in secret_part.as_bytes().windows(9) {
                prop_assert!(!hint.as_bytes().windows(9).any(|h| h == w));
            }
        }
    }
}
