//! The shared limiter: each key's sliding log is a sorted set in Redis, checked and updated by
//! one Lua script, so that every node sharing the Redis enforces one global limit (SPEC §4).

use std::future::Future;
use std::time::Duration;

use keyward_core::ratelimit::Decision;
use keyward_core::{KeyId, RateLimit, UnixMillis};
use rand::Rng;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{LimiterError, RateLimiter};

/// How long one check may take before the limiter counts as unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// One atomic check of one key, the sliding log of [`keyward_core::ratelimit`] in Redis.
///
/// KEYS[1]: the key's sorted set of admitted requests (score: time in ms; member: time and a
/// random suffix, unique per request). ARGV: limit, window in ms, the member suffix, and the
/// time in ms or `""` for Redis' own `TIME`. Returns
/// `{allowed, counted, reset_at, retry_at, now}`.
///
/// As in the local log, time never runs backwards inside a key (a `now` before the newest
/// counted request is taken as that request's time), and a step back by more than a window
/// starts the key afresh. Refused requests add nothing. The set expires a window after its
/// newest request, so idle keys cost Redis nothing.
const CHECK: &str = r"
redis.replicate_commands()
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now
if ARGV[4] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[4])
end
local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if newest[2] then
  local latest = tonumber(newest[2])
  if now < latest - window then
    redis.call('DEL', key)
  elseif now < latest then
    now = latest
  end
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local counted = redis.call('ZCARD', key)
if counted < limit then
  redis.call('ZADD', key, now, string.format('%d', now) .. '-' .. ARGV[3])
  redis.call('PEXPIRE', key, window)
  local oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
  return {1, counted + 1, oldest + window, oldest + window, now}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local reset_at = now + window
if oldest[2] then reset_at = tonumber(oldest[2]) + window end
local retry_at = reset_at
local nth = redis.call('ZRANGE', key, counted - limit, counted - limit, 'WITHSCORES')
if nth[2] then retry_at = tonumber(nth[2]) + window end
return {0, counted, reset_at, retry_at, now}
";

/// Whose clock a [`RedisLimiter`] counts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSource {
    /// Redis' `TIME`: one clock for every node, whatever their own clocks say. Production.
    Redis,
    /// The `now` passed to each check. For tests that drive time (the conformance suite moves
    /// it a minute ahead) and exercise the same script; never across nodes with their own
    /// clocks.
    Caller,
}

/// Rate limits keys in Redis, globally across every node that shares it.
///
/// # Exactness and memory
/// Every limit is enforced exactly, also above [`keyward_core::ratelimit::MAX_EXACT_LIMIT`]:
/// Redis holds one sorted-set member per request counted in the window (about 60–100 bytes
/// each, e.g. 6 MB for a key using all of 100 000 per minute), and a set expires by itself one
/// window after its newest request. We chose exactness over the local limiter's buckets because
/// the memory is Redis', bounded by what keys actually use, and only very large limits cost
/// much; an operator planning such limits should size Redis for `limit × 100` bytes per busy key.
///
/// # Time
/// With [`TimeSource::Redis`] the window is measured with Redis' clock, so nodes with skewed
/// clocks still share one window; `reset_at` is in Redis time, and `retry_after_secs` is
/// computed from Redis' now.
#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: redis::Script,
    /// Prepended to every Redis key, so that several deployments (or tests) share one Redis.
    namespace: String,
    time: TimeSource,
}

impl RedisLimiter {
    /// A limiter on the Redis at `url`. Connects lazily and reconnects by itself, so a Redis
    /// that is down at start-up only makes checks fail until it is back.
    pub fn new(url: &str, namespace: &str, time: TimeSource) -> Result<Self, LimiterError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        Ok(Self {
            conn,
            script: redis::Script::new(CHECK),
            namespace: namespace.to_owned(),
            time,
        })
    }

    async fn run(
        &self,
        key: &KeyId,
        limit: RateLimit,
        now: UnixMillis,
    ) -> Result<Decision, LimiterError> {
        let window = i64::try_from(limit.window_seconds)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000)
            .clamp(1, 1 << 40);
        // Lua numbers are doubles: exact up to 2^53, far above any real count.
        let max = limit.limit.min(1 << 52);
        let suffix: u64 = rand::rng().random();
        let at = match self.time {
            TimeSource::Redis => String::new(),
            TimeSource::Caller => now.to_string(),
        };
        let mut conn = self.conn.clone();
        let (allowed, counted, reset_at, retry_at, redis_now): (i64, u64, i64, i64, i64) = self
            .script
            .key(format!("{}rl:{}", self.namespace, key.as_str()))
            .arg(max)
            .arg(window)
            .arg(format!("{suffix:016x}"))
            .arg(at)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let allowed = allowed == 1;
        // Redis' clock decides; the answer is given on this node's clock, so that every
        // header (`RateLimit: t=` is computed from `now`) agrees even if the clocks differ.
        let (reset_at, retry_at) = match self.time {
            TimeSource::Redis => (reset_at + (now - redis_now), retry_at + (now - redis_now)),
            TimeSource::Caller => (reset_at, retry_at),
        };
        let from = now;
        let ceil = |ms: i64| u64::try_from(ms).map_or(0, |ms| ms.div_ceil(1000));
        Ok(Decision {
            allowed,
            limit: limit.limit,
            remaining: if allowed {
                limit.limit.saturating_sub(counted)
            } else {
                0
            },
            reset_at,
            retry_after_secs: (!allowed)
                .then(|| ceil(retry_at - from).max(ceil(reset_at - from)).max(1)),
        })
    }
}

impl RateLimiter for RedisLimiter {
    fn check(
        &self,
        key: &KeyId,
        limit: RateLimit,
        now: UnixMillis,
    ) -> impl Future<Output = Result<Decision, LimiterError>> + Send {
        self.run(key, limit, now)
    }
}

fn unavailable(e: redis::RedisError) -> LimiterError {
    LimiterError::Unavailable(Box::new(e))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::limiter::conformance;

    /// The Redis of `KEYWARD_TEST_REDIS_URL`, or `None` (and a note) when it is not set.
    fn redis_url() -> Option<String> {
        let url = std::env::var("KEYWARD_TEST_REDIS_URL").ok();
        if url.is_none() {
            eprintln!("skipped: KEYWARD_TEST_REDIS_URL not set");
        }
        url
    }

    /// A limiter in a namespace of its own, so tests sharing one Redis never meet.
    fn limiter(url: &str, time: TimeSource) -> RedisLimiter {
        let namespace = format!("kwtest:{:016x}:", rand::rng().random::<u64>());
        match RedisLimiter::new(url, &namespace, time) {
            Ok(limiter) => limiter,
            Err(e) => panic!("{e}"),
        }
    }

    fn rl(limit: u64, window_seconds: u64) -> RateLimit {
        RateLimit {
            limit,
            window_seconds,
        }
    }

    async fn redis_time(l: &RedisLimiter) -> UnixMillis {
        let mut conn = l.conn.clone();
        let (s, us): (i64, i64) = match redis::cmd("TIME").query_async(&mut conn).await {
            Ok(t) => t,
            Err(e) => panic!("TIME: {e}"),
        };
        s * 1000 + us / 1000
    }

    async fn check(l: &RedisLimiter, key: &KeyId, limit: RateLimit) -> Decision {
        check_at(l, key, limit, 0).await
    }

    async fn check_at(l: &RedisLimiter, key: &KeyId, limit: RateLimit, now: i64) -> Decision {
        match l.check(key, limit, now).await {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    // The conformance suite drives time a minute ahead, so it runs with the caller's clock;
    // the script is the same one production runs with Redis' clock.
    macro_rules! conforms {
        ($($name:ident),*) => {$(
            #[tokio::test]
            async fn $name() {
                let Some(url) = redis_url() else { return };
                conformance::$name(&limiter(&url, TimeSource::Caller)).await;
            }
        )*};
    }
    conforms!(
        admits_exactly_limit,
        rolling_not_fixed,
        rejected_not_counted,
        keys_are_independent,
        limit_changes_apply_at_once
    );

    #[tokio::test]
    async fn concurrent_never_exceeds_limit() {
        let Some(url) = redis_url() else { return };
        conformance::concurrent_never_exceeds_limit(Arc::new(limiter(&url, TimeSource::Caller)))
            .await;
    }

    #[tokio::test]
    async fn concurrent_never_exceeds_limit_on_redis_time() {
        let Some(url) = redis_url() else { return };
        conformance::concurrent_never_exceeds_limit(Arc::new(limiter(&url, TimeSource::Redis)))
            .await;
    }

    /// With Redis' clock deciding, the caller's `now` only places the answer on the caller's
    /// clock: a node 5 s behind Redis gets a reset 5 s earlier in its own time, and the same
    /// limit and Retry-After.
    #[tokio::test]
    async fn redis_time_is_the_clock() {
        let Some(url) = redis_url() else { return };
        let l = limiter(&url, TimeSource::Redis);
        let key = KeyId::generate();
        const SKEW: i64 = 5_000;
        let before = redis_time(&l).await;
        let first = check_at(&l, &key, rl(3, 60), before - SKEW).await;
        let after = redis_time(&l).await;
        assert!(first.allowed);
        assert_eq!(first.remaining, 2);
        assert!(
            (before - SKEW + 60_000 - 50..=after - SKEW + 60_000 + 50).contains(&first.reset_at),
            "{before} {} {after}",
            first.reset_at
        );
        for remaining in [1, 0] {
            let now = redis_time(&l).await - SKEW;
            let d = check_at(&l, &key, rl(3, 60), now).await;
            assert_eq!((d.allowed, d.remaining), (true, remaining));
            assert!(
                (d.reset_at - first.reset_at).abs() <= 50,
                "the first is the oldest"
            );
        }
        let refused = check_at(&l, &key, rl(3, 60), redis_time(&l).await - SKEW).await;
        assert!(!refused.allowed);
        assert!((refused.reset_at - first.reset_at).abs() <= 50);
        assert!(matches!(refused.retry_after_secs, Some(59 | 60)));
        // A short window frees itself on Redis' clock.
        let key = KeyId::generate();
        assert!(check(&l, &key, rl(1, 1)).await.allowed);
        assert!(!check(&l, &key, rl(1, 1)).await.allowed);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(check(&l, &key, rl(1, 1)).await.allowed);
    }

    /// Idle keys cost Redis nothing: a set expires one window after its newest request, and a
    /// refusal adds nothing.
    #[tokio::test]
    async fn sets_expire_with_their_window() {
        let Some(url) = redis_url() else { return };
        let l = limiter(&url, TimeSource::Redis);
        let key = KeyId::generate();
        for _ in 0..3 {
            check(&l, &key, rl(2, 5)).await;
        }
        let name = format!("{}rl:{}", l.namespace, key.as_str());
        let mut conn = l.conn.clone();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&name)
            .query_async(&mut conn)
            .await
            .unwrap_or(-3);
        assert!((1..=5000).contains(&ttl), "{ttl}");
        let size: i64 = redis::cmd("ZCARD")
            .arg(&name)
            .query_async(&mut conn)
            .await
            .unwrap_or(-1);
        assert_eq!(size, 2, "the refused third was not added");
    }
}
