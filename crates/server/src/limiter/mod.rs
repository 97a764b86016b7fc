//! Per-key rate limiting (SPEC §4) behind one trait, so that the in-process limiter and a
//! shared one (Redis, for a limit that holds across nodes) are interchangeable.
//!
//! The arithmetic lives in [`keyward_core::ratelimit`]; this module decides where the state
//! lives. Callers see only [`RateLimiter::check`] and must not assume the state is local: it may
//! be on another machine, slow, or unreachable ([`LimiterError::Unavailable`]).

use std::future::Future;
use std::sync::Arc;

use keyward_core::ratelimit::Decision;
use keyward_core::{KeyId, RateLimit, UnixMillis};

pub mod conformance;
mod local;

pub use local::{LimiterStats, LocalLimiter, DEFAULT_MAX_KEYS};

/// Decides whether a key's request may pass, counting it if so.
///
/// Implementations must be atomic per key: concurrent checks of one key never admit more than
/// the limit between them. [`conformance`] holds the behaviour every implementation must show.
pub trait RateLimiter: Send + Sync {
    /// Decides a request of `key` at `now` under `limit` and counts it if admitted. `limit` is
    /// passed on every call (plans and overrides change), not stored with the key.
    fn check(
        &self,
        key: &KeyId,
        limit: RateLimit,
        now: UnixMillis,
    ) -> impl Future<Output = Result<Decision, LimiterError>> + Send;
}

impl<L: RateLimiter> RateLimiter for Arc<L> {
    fn check(
        &self,
        key: &KeyId,
        limit: RateLimit,
        now: UnixMillis,
    ) -> impl Future<Output = Result<Decision, LimiterError>> + Send {
        (**self).check(key, limit, now)
    }
}

/// Why a limiter could not decide. Whether the request then passes (fail open) or gets a 503
/// is the caller's policy, not the limiter's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimiterError {
    /// The shared state could not be reached or did not answer in time.
    #[error("the rate limiter is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}
