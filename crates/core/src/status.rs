//! A key's status, derived from its record and the current time.

use serde::Serialize;

use crate::UnixMillis;

/// How long before expiry a key is shown as `expiring`.
pub const EXPIRING_WINDOW_MS: i64 = 7 * 86_400 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    /// Expires within 7 days, or rolled and in its grace period.
    Expiring,
    Expired,
    Revoked,
}

impl KeyStatus {
    /// A key is valid while `now < expires_at`; revocation wins over everything.
    pub fn of(
        revoked_at: Option<UnixMillis>,
        expires_at: Option<UnixMillis>,
        rolled: bool,
        now: UnixMillis,
    ) -> Self {
        if revoked_at.is_some() {
            return KeyStatus::Revoked;
        }
        match expires_at {
            Some(at) if now >= at => KeyStatus::Expired,
            Some(_) if rolled => KeyStatus::Expiring,
            Some(at) if at - now <= EXPIRING_WINDOW_MS => KeyStatus::Expiring,
            _ => KeyStatus::Active,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Expiring => "expiring",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        }
    }

    /// Whether a request with the key may pass authentication.
    pub fn is_usable(self) -> bool {
        matches!(self, KeyStatus::Active | KeyStatus::Expiring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_boundary_is_exclusive() {
        assert_eq!(
            KeyStatus::of(None, Some(1000), false, 999),
            KeyStatus::Expiring
        );
        assert_eq!(
            KeyStatus::of(None, Some(1000), false, 1000),
            KeyStatus::Expired
        );
        assert_eq!(KeyStatus::of(Some(5), None, false, 0), KeyStatus::Revoked);
        assert_eq!(KeyStatus::of(None, None, false, 0), KeyStatus::Active);
        assert_eq!(
            KeyStatus::of(None, Some(EXPIRING_WINDOW_MS * 2), false, 0),
            KeyStatus::Active
        );
        assert_eq!(
            KeyStatus::of(None, Some(EXPIRING_WINDOW_MS * 2), true, 0),
            KeyStatus::Expiring
        );
    }
}
