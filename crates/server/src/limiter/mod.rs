//! Per-key rate limiting (SPEC §4) behind one trait, so that the in-process limiter and a
//! shared one (Redis, for a limit that holds across nodes) are interchangeable.
//!
//! The arithmetic lives in [`keyward_core::ratelimit`]; this module decides where the state
//! lives. Callers see only [`RateLimiter::check`] and must not assume the state is local: it may
//! be on another machine, slow, or unreachable ([`LimiterError::Unavailable`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyward_core::ratelimit::Decision;
use keyward_core::{CompactKeyId, KeyId, RateLimit, UnixMillis};
use tokio::task::JoinHandle;

pub mod conformance;
mod local;
mod redis;

pub use self::redis::{RedisLimiter, TimeSource};
pub use local::{LimiterStats, LocalLimiter, Slot, DEFAULT_MAX_KEYS};

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

/// What a node does while Redis is unreachable (SPEC §10 `redis_fallback`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fallback {
    /// Each node limits with its own [`LocalLimiter`]: the limit holds per node, not globally.
    #[default]
    Local,
    /// Every limited request answers 503 `unavailable`.
    Deny,
}

/// The limiter a server uses: local only, or Redis with a fallback while Redis is down.
///
/// While Redis is marked down, checks go straight to the fallback instead of waiting on a
/// connection that is known to be broken; [`Limiter::spawn_probe`] pings Redis and marks it up
/// again. Each change of state is logged once, not per request.
pub struct Limiter {
    local: Arc<LocalLimiter>,
    shared: Option<SharedState>,
}

struct SharedState {
    redis: RedisLimiter,
    fallback: Fallback,
    up: AtomicBool,
}

impl Limiter {
    /// Only this process' limiter.
    pub fn local(local: Arc<LocalLimiter>) -> Self {
        Self {
            local,
            shared: None,
        }
    }

    /// Redis first, `fallback` while it is unreachable (with `local` as the per-node limiter).
    pub fn redis(redis: RedisLimiter, fallback: Fallback, local: Arc<LocalLimiter>) -> Self {
        Self {
            local,
            shared: Some(SharedState {
                redis,
                fallback,
                up: AtomicBool::new(true),
            }),
        }
    }

    /// The in-process limiter (the only one, or Redis' fallback).
    pub fn local_limiter(&self) -> &Arc<LocalLimiter> {
        &self.local
    }

    /// The decision of the in-process limiter when it is the only one (no Redis): the check
    /// of almost every deployment, made without any `async` state. `None` with Redis: use
    /// [`RateLimiter::check`]. `slot` is where the cached key keeps its state (see
    /// [`LocalLimiter::decide_in`]).
    pub fn decide_locally(
        &self,
        slot: &Slot,
        key: CompactKeyId,
        limit: RateLimit,
        now: UnixMillis,
    ) -> Option<Decision> {
        self.shared
            .is_none()
            .then(|| self.local.decide_in(slot, key, limit, now))
    }

    /// `None` without Redis, else whether Redis is currently reachable.
    pub fn redis_up(&self) -> Option<bool> {
        self.shared.as_ref().map(|s| s.up.load(Ordering::Relaxed))
    }

    /// Whether limited requests are answered at the moment (not so while Redis is down and the
    /// fallback is [`Fallback::Deny`]).
    pub fn ready(&self) -> bool {
        self.shared
            .as_ref()
            .is_none_or(|s| s.fallback == Fallback::Local || s.up.load(Ordering::Relaxed))
    }

    /// Checks Redis every `every` and marks it up or down; also how a node notices Redis is
    /// back. Stops once the limiter is dropped. Nothing to do without Redis.
    pub fn spawn_probe(self: &Arc<Self>, every: Duration) -> Option<JoinHandle<()>> {
        self.shared.as_ref()?;
        let limiter = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(limiter) = limiter.upgrade() else {
                    return;
                };
                if let Some(shared) = &limiter.shared {
                    // The probe runs the real script on a reserved key: a Redis that answers
                    // PING but refuses the script (out of memory, read-only replica, missing
                    // ACL) is down for limiting purposes.
                    let probe = KeyId::from_stored("key_keywardprobe".to_string());
                    let limit = RateLimit {
                        limit: 1_000_000_000,
                        window_seconds: 1,
                    };
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    match shared.redis.check(&probe, limit, now).await {
                        Ok(_) => shared.mark(true, None),
                        Err(e) => shared.mark(false, Some(&e)),
                    }
                }
            }
        }))
    }
}

impl SharedState {
    /// Records Redis' state, logging only a change.
    fn mark(&self, up: bool, cause: Option<&LimiterError>) {
        if self.up.swap(up, Ordering::Relaxed) == up {
            return;
        }
        if up {
            tracing::warn!("Redis is reachable again; rate limits are global again");
        } else {
            let cause = cause
                .and_then(std::error::Error::source)
                .map(|e| e.to_string());
            match self.fallback {
                Fallback::Local => tracing::error!(
                    cause,
                    "Redis is unreachable; each node limits on its own until it is back"
                ),
                Fallback::Deny => tracing::error!(
                    cause,
                    "Redis is unreachable; limited requests answer 503 until it is back"
                ),
            }
        }
    }
}

impl RateLimiter for Limiter {
    async fn check(
        &self,
        key: &KeyId,
        limit: RateLimit,
        now: UnixMillis,
    ) -> Result<Decision, LimiterError> {
        let Some(shared) = &self.shared else {
            return Ok(self.local.decide(key, limit, now));
        };
        if shared.up.load(Ordering::Relaxed) {
            match shared.redis.check(key, limit, now).await {
                Ok(decision) => return Ok(decision),
                Err(e) => shared.mark(false, Some(&e)),
            }
        }
        match shared.fallback {
            Fallback::Local => Ok(self.local.decide(key, limit, now)),
            Fallback::Deny => Err(LimiterError::Unavailable("Redis is unreachable".into())),
        }
    }
}
