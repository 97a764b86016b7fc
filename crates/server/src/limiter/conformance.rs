//! The behaviour every [`RateLimiter`] must show, as async functions that panic on a
//! violation. Each backend's tests run them all; the in-process limiter does in this crate,
//! a shared one (Redis) will against a real server.
//!
//! Every function uses fresh random key ids and times relative to the system clock, so they
//! can run concurrently against one shared backend without seeing each other.

use std::collections::BTreeSet;
use std::sync::Arc;

use keyward_core::ratelimit::Decision;
use keyward_core::{KeyId, RateLimit, UnixMillis};

use super::RateLimiter;
use crate::Clock;

/// Runs every check of this module.
pub async fn all<L: RateLimiter + 'static>(limiter: Arc<L>) {
    admits_exactly_limit(&*limiter).await;
    rolling_not_fixed(&*limiter).await;
    rejected_not_counted(&*limiter).await;
    keys_are_independent(&*limiter).await;
    limit_changes_apply_at_once(&*limiter).await;
    concurrent_never_exceeds_limit(limiter).await;
}

/// `limit` requests pass with the right headers, the next one is refused with a `Retry-After`
/// for when the first leaves.
pub async fn admits_exactly_limit(limiter: &impl RateLimiter) {
    let (key, t0) = (KeyId::generate(), start());
    let limit = rl(5, 60);
    for i in 0..5 {
        let d = check(limiter, &key, limit, t0 + i * 10).await;
        assert!(d.allowed, "request {i}");
        assert_eq!(d.limit, 5);
        assert_eq!(d.remaining, 4 - i as u64);
        assert_eq!(d.reset_at, t0 + 60_000, "the first request is the oldest");
        assert_eq!(d.retry_after_secs, None);
    }
    let d = check(limiter, &key, limit, t0 + 50).await;
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert_eq!(d.reset_at, t0 + 60_000);
    assert_eq!(d.reset_in_secs(t0 + 50), 60);
    assert_eq!(d.retry_after_secs, Some(60));
    let d = check(limiter, &key, limit, t0 + 59_999).await;
    assert_eq!((d.allowed, d.retry_after_secs), (false, Some(1)));
    let d = check(limiter, &key, limit, t0 + 60_000).await;
    assert!(d.allowed, "the first request has left");
    assert_eq!(d.reset_at, t0 + 10 + 60_000);
}

/// SPEC §4's example, 10 per 2 s: a rolling window frees the requests of t=0 at 2 s, not a
/// fixed window's whole count.
pub async fn rolling_not_fixed(limiter: &impl RateLimiter) {
    let (key, t0) = (KeyId::generate(), start());
    let limit = rl(10, 2);
    for at in [0, 0, 0, 0, 0, 1200, 1200, 1200, 1200, 1200] {
        assert!(
            check(limiter, &key, limit, t0 + at).await.allowed,
            "at {at}"
        );
    }
    let d = check(limiter, &key, limit, t0 + 1200).await;
    assert!(!d.allowed, "the 11th");
    assert_eq!(d.reset_at, t0 + 2000);
    for i in 0..5 {
        let d = check(limiter, &key, limit, t0 + 2100).await;
        assert!(d.allowed, "request {i} at 2100");
        assert_eq!(d.remaining, 4 - i);
        assert_eq!(d.reset_at, t0 + 1200 + 2000);
    }
    let d = check(limiter, &key, limit, t0 + 2100).await;
    assert!(!d.allowed, "the sixth at 2100");
    assert_eq!(d.reset_at, t0 + 1200 + 2000);
    assert_eq!(d.retry_after_secs, Some(2));
}

/// Refused requests leave no trace: hammering through 429s does not extend the wait.
pub async fn rejected_not_counted(limiter: &impl RateLimiter) {
    let (key, t0) = (KeyId::generate(), start());
    let limit = rl(2, 1);
    for _ in 0..2 {
        assert!(check(limiter, &key, limit, t0).await.allowed);
    }
    for at in (0..1000).step_by(20) {
        let d = check(limiter, &key, limit, t0 + at).await;
        assert!(!d.allowed, "at {at}");
        assert_eq!(d.reset_at, t0 + 1000);
    }
    for i in 0..2 {
        let d = check(limiter, &key, limit, t0 + 1000).await;
        assert!(d.allowed, "request {i} at 1000");
        assert_eq!(d.reset_at, t0 + 2000);
    }
    assert!(!check(limiter, &key, limit, t0 + 1000).await.allowed);
}

/// One key's exhaustion does not touch another's allowance.
pub async fn keys_are_independent(limiter: &impl RateLimiter) {
    let (a, b, t0) = (KeyId::generate(), KeyId::generate(), start());
    let limit = rl(3, 60);
    for _ in 0..3 {
        assert!(check(limiter, &a, limit, t0).await.allowed);
    }
    assert!(!check(limiter, &a, limit, t0).await.allowed);
    for i in 0..3 {
        let d = check(limiter, &b, limit, t0 + 1).await;
        assert!(d.allowed);
        assert_eq!(d.remaining, 2 - i);
        assert_eq!(d.reset_at, t0 + 1 + 60_000);
    }
    assert!(!check(limiter, &b, limit, t0 + 1).await.allowed);
    assert!(!check(limiter, &a, limit, t0 + 2).await.allowed);
}

/// A limit passed with a check applies to what was admitted before under another limit (a
/// plan change or override takes effect at once).
pub async fn limit_changes_apply_at_once(limiter: &impl RateLimiter) {
    let (key, t0) = (KeyId::generate(), start());
    for i in 0..5 {
        assert!(check(limiter, &key, rl(10, 60), t0 + i).await.allowed);
    }
    let d = check(limiter, &key, rl(3, 60), t0 + 10).await;
    assert!(!d.allowed, "five already count against three");
    assert_eq!(d.limit, 3);
    let d = check(limiter, &key, rl(10, 60), t0 + 20).await;
    assert!(d.allowed);
    assert_eq!(d.remaining, 4);
}

/// Many tasks hammering one key at once admit exactly `limit`, each with its own `remaining`:
/// checks of one key are atomic.
pub async fn concurrent_never_exceeds_limit<L: RateLimiter + 'static>(limiter: Arc<L>) {
    const TASKS: u64 = 16;
    const EACH: u64 = 50;
    let (key, t0) = (KeyId::generate(), start());
    let limit = rl(100, 60);
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (limiter, key) = (limiter.clone(), key.clone());
            tokio::spawn(async move {
                let mut admitted = Vec::new();
                for i in 0..EACH {
                    // Times interleave across tasks, all inside one window.
                    let d = check(&*limiter, &key, limit, t0 + (i * TASKS + task) as i64).await;
                    if d.allowed {
                        admitted.push(d.remaining);
                    }
                }
                admitted
            })
        })
        .collect();
    let mut remaining = Vec::new();
    for task in tasks {
        match task.await {
            Ok(admitted) => remaining.extend(admitted),
            Err(e) => panic!("a hammering task failed: {e}"),
        }
    }
    assert_eq!(remaining.len(), 100, "admitted exactly the limit");
    let distinct: BTreeSet<u64> = remaining.into_iter().collect();
    assert_eq!(
        distinct,
        (0..100).collect(),
        "each admission saw its own count"
    );
    assert!(!check(&*limiter, &key, limit, t0 + 1000).await.allowed);
}

async fn check<L: RateLimiter + ?Sized>(
    limiter: &L,
    key: &KeyId,
    limit: RateLimit,
    now: UnixMillis,
) -> Decision {
    match limiter.check(key, limit, now).await {
        Ok(decision) => decision,
        Err(e) => panic!("the limiter could not decide: {e}"),
    }
}

/// Real time, so that a shared backend's expiries behave as in production.
fn start() -> UnixMillis {
    Clock::system().now()
}

fn rl(limit: u64, window_seconds: u64) -> RateLimit {
    RateLimit {
        limit,
        window_seconds,
    }
}
