//! Plans and rate-limit arithmetic.

use serde::{Deserialize, Serialize};

/// At most `limit` requests in any `window_seconds` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub limit: u64,
    pub window_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRateLimit {
    #[error("the limit must be between 1 and 1000000000")]
    Limit,
    #[error("the window must be between 1 second and 30 days")]
    Window,
}

impl RateLimit {
    pub fn new(limit: u64, window_seconds: u64) -> Result<Self, InvalidRateLimit> {
        if !(1..=1_000_000_000).contains(&limit) {
            return Err(InvalidRateLimit::Limit);
        }
        if !(1..=30 * 86_400).contains(&window_seconds) {
            return Err(InvalidRateLimit::Window);
        }
        Ok(Self {
            limit,
            window_seconds,
        })
    }

    /// Whether this rate (limit per window) is at or below `other`'s.
    pub fn is_at_most(&self, other: &RateLimit) -> bool {
        // Cross-multiplied to compare rates without floating point; both sides fit in u128.
        u128::from(self.limit) * u128::from(other.window_seconds)
            <= u128::from(other.limit) * u128::from(self.window_seconds)
    }
}

/// What a plan allows an organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub name: String,
    pub api_access: bool,
    pub rate_limit: RateLimit,
    /// Most active keys the organization may hold; `None` is unlimited.
    pub max_keys: Option<u64>,
}

impl Plan {
    /// The built-in plans: `free` (no API access), `pro` and `enterprise`.
    pub fn built_in() -> Vec<Plan> {
        vec![
            Plan {
                name: "free".into(),
                api_access: false,
                rate_limit: RateLimit {
                    limit: 10,
                    window_seconds: 60,
                },
                max_keys: Some(10),
            },
            Plan {
                name: "pro".into(),
                api_access: true,
                rate_limit: RateLimit {
                    limit: 100,
                    window_seconds: 60,
                },
                max_keys: Some(1000),
            },
            Plan {
                name: "enterprise".into(),
                api_access: true,
                rate_limit: RateLimit {
                    limit: 1000,
                    window_seconds: 60,
                },
                max_keys: None,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_rates_not_numbers() {
        let plan = RateLimit::new(100, 60).unwrap();
        assert!(RateLimit::new(100, 60).unwrap().is_at_most(&plan));
        assert!(RateLimit::new(10, 6).unwrap().is_at_most(&plan));
        assert!(RateLimit::new(1000, 600).unwrap().is_at_most(&plan));
        assert!(!RateLimit::new(101, 60).unwrap().is_at_most(&plan));
        assert!(!RateLimit::new(2, 1).unwrap().is_at_most(&plan));
        assert!(RateLimit::new(0, 60).is_err());
        assert!(RateLimit::new(1, 0).is_err());
    }
}
