//! The in-process limiter: one [`WindowState`] per key in sharded maps.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use keyward_core::ratelimit::{Decision, WindowState};
use keyward_core::{CompactKeyId, KeyId, RateLimit, UnixMillis};
use tokio::task::JoinHandle;

use super::{LimiterError, RateLimiter};
use crate::Clock;

/// Default cap on tracked keys. Only authenticated keys reach the limiter, so this bounds
/// memory against a flood of real keys, not of made-up ones.
pub const DEFAULT_MAX_KEYS: usize = 200_000;

/// Enough shards that two requests rarely wait on each other on any realistic core count.
const SHARDS: usize = 64;

/// Rate limits keys in this process.
///
/// Each key's state sits in one of 64 shards chosen by a keyed hash of its id, each behind its
/// own mutex, held only for one check (microseconds) and never across an await.
///
/// # Memory
/// At most `max_keys` states are tracked; [`LocalLimiter::stats`] estimates their size. A key
/// costs about 90 bytes of map entry (its id held inline) plus its log, 8 bytes per request counted in its
/// window (up to 80 kB for a limit of 10 000), or a fixed 560 bytes of buckets above 10 000.
/// Measured with map slack, when ids were still held on the heap: about 185 bytes per key
/// (somewhat less now) with one recent request (37 MB for the
/// default 200 000 keys), about 1 kB per key using all of 100 per 60 s. A key whose window is
/// empty is idle: [`LocalLimiter::sweep`] drops it, since a fresh state answers the same.
///
/// # When the cap is reached
/// The cap is split evenly over the shards, so it is enforced without a global lock or counter;
/// with a uniform hash the shards fill within a few percent of each other. A new key arriving
/// at a full shard first makes the shard drop its idle states, which loses nothing. Only if
/// none is idle does it evict the least recently seen key: that key then starts afresh and may
/// get up to one extra `limit` in its current window (counted in
/// [`LimiterStats::evicted_active`]). The new key is always tracked, so it is limited exactly.
/// We prefer this to refusing new keys, which would lock out legitimate clients because others
/// are busy; the cap is a safety valve meant to sit well above the keys active in one window.
pub struct LocalLimiter {
    shards: Box<[Mutex<Shard>]>,
    /// Keyed per process, so nobody can aim many keys at one shard.
    hasher: RandomState,
    evicted_active: AtomicU64,
}

struct Shard {
    /// Most states this shard keeps.
    cap: usize,
    /// Keyed by the id held inline, so a lookup compares it in place.
    states: HashMap<CompactKeyId, Tracked, RandomState>,
}

struct Tracked {
    state: WindowState,
    /// Latest check, to pick the least recently seen key when one must go.
    last_seen: UnixMillis,
}

/// A snapshot of a [`LocalLimiter`] for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimiterStats {
    /// Keys currently tracked.
    pub keys: usize,
    /// Estimated bytes of all states, map overhead included.
    pub memory_bytes: usize,
    /// Keys evicted while still counting requests, because the cap was reached.
    pub evicted_active: u64,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_KEYS)
    }
}

impl LocalLimiter {
    /// A limiter tracking at most `max_keys` keys (at least 1).
    pub fn new(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let shards = SHARDS.min(max_keys);
        let shards = (0..shards)
            .map(|i| {
                // The remainder goes to the first shards, so the caps add up to `max_keys`.
                let cap = max_keys / shards + usize::from(i < max_keys % shards);
                Mutex::new(Shard {
                    cap,
                    states: HashMap::default(),
                })
            })
            .collect();
        Self {
            shards,
            hasher: RandomState::default(),
            evicted_active: AtomicU64::new(0),
        }
    }

    /// Most keys tracked at once.
    pub fn max_keys(&self) -> usize {
        self.shards.iter().map(|s| lock(s).cap).sum()
    }

    /// [`RateLimiter::check`] without the future: it never waits on anything but a shard lock.
    pub fn decide(&self, key: &KeyId, limit: RateLimit, now: UnixMillis) -> Decision {
        self.decide_compact(CompactKeyId::from(key), limit, now)
    }

    /// [`LocalLimiter::decide`] for a key id already in its compact form (cached keys keep
    /// it beside the id, so a check does not read the id's text).
    pub fn decide_compact(&self, key: CompactKeyId, limit: RateLimit, now: UnixMillis) -> Decision {
        let mut shard = lock(self.shard_of(&key));
        if let Some(tracked) = shard.states.get_mut(&key) {
            tracked.last_seen = tracked.last_seen.max(now);
            return tracked.state.check(limit, now);
        }
        let mut state = WindowState::new();
        let decision = state.check(limit, now);
        // Nothing counted (a limit of 0) is the same as a fresh state: nothing to keep.
        if !state.is_idle(now) {
            if shard.make_room(now) {
                self.evicted_active.fetch_add(1, Ordering::Relaxed);
            }
            shard.states.insert(
                key,
                Tracked {
                    state,
                    last_seen: now,
                },
            );
        }
        decision
    }

    /// Drops every idle state and returns how many went. Locks one shard at a time.
    pub fn sweep(&self, now: UnixMillis) -> usize {
        (0..self.shards.len())
            .map(|i| self.sweep_shard(i, now))
            .sum()
    }

    /// Sweeps with `clock`'s time every `every` (at least 1 ms), yielding between shards so a
    /// large map never holds up a worker thread. Stops once the limiter is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>, clock: Clock, every: Duration) -> JoinHandle<()> {
        // Weak, so that the sweeper does not keep a dropped limiter alive.
        let limiter = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick completes at once; there is nothing to sweep yet.
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limiter) = limiter.upgrade() else {
                    return;
                };
                let mut removed = 0;
                for i in 0..limiter.shards.len() {
                    removed += limiter.sweep_shard(i, clock.now());
                    tokio::task::yield_now().await;
                }
                tracing::debug!(removed, "rate limiter swept idle keys");
            }
        })
    }

    /// Tracked keys and estimated memory. Visits every state, so meant for a metrics scrape,
    /// not for each request.
    pub fn stats(&self) -> LimiterStats {
        let mut keys = 0;
        let mut memory_bytes = size_of::<Self>();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            keys += shard.states.len();
            // Every bucket of the map costs an entry and a control byte, used or not.
            memory_bytes += shard.states.capacity() * (size_of::<(CompactKeyId, Tracked)>() + 1);
            memory_bytes += shard
                .states
                .values()
                .map(|tracked| tracked.state.memory_bytes() - size_of::<WindowState>())
                .sum::<usize>();
        }
        LimiterStats {
            keys,
            memory_bytes,
            evicted_active: self.evicted_active.load(Ordering::Relaxed),
        }
    }

    fn shard_of(&self, key: &CompactKeyId) -> &Mutex<Shard> {
        let i = self.hasher.hash_one(key) as usize % self.shards.len();
        &self.shards[i]
    }

    fn sweep_shard(&self, i: usize, now: UnixMillis) -> usize {
        let Some(shard) = self.shards.get(i) else {
            return 0;
        };
        let mut shard = lock(shard);
        let removed = shard.drop_idle(now);
        // Give back the room a past flood of keys left behind.
        let (len, capacity) = (shard.states.len(), shard.states.capacity());
        if capacity > 64 && len < capacity / 4 {
            shard.states.shrink_to(len * 2);
        }
        removed
    }
}

impl Shard {
    /// Makes room for one more state; returns whether a key still counting had to go.
    fn make_room(&mut self, now: UnixMillis) -> bool {
        if self.states.len() < self.cap {
            return false;
        }
        self.drop_idle(now);
        if self.states.len() < self.cap {
            return false;
        }
        let oldest = self
            .states
            .iter()
            .min_by_key(|(_, tracked)| tracked.last_seen)
            .map(|(key, _)| *key);
        if let Some(key) = oldest {
            self.states.remove(&key);
        }
        true
    }

    fn drop_idle(&mut self, now: UnixMillis) -> usize {
        let before = self.states.len();
        self.states.retain(|_, tracked| !tracked.state.is_idle(now));
        before - self.states.len()
    }
}

impl RateLimiter for LocalLimiter {
    fn check(
        &self,
        key: &KeyId,
        limit: RateLimit,
        now: UnixMillis,
    ) -> impl Future<Output = Result<Decision, LimiterError>> + Send {
        std::future::ready(Ok(self.decide(key, limit, now)))
    }
}

/// Locks a shard even if a panic poisoned it: the states are plain counters, and the worst a
/// check interrupted half-way leaves is one request miscounted, which beats failing every
/// later request of 1/64 of the keys.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::conformance;

    const T0: UnixMillis = 1_700_000_000_000;

    fn rl(limit: u64, window_seconds: u64) -> RateLimit {
        RateLimit {
            limit,
            window_seconds,
        }
    }

    #[tokio::test]
    async fn conforms_admits_exactly_limit() {
        conformance::admits_exactly_limit(&LocalLimiter::default()).await;
    }

    #[tokio::test]
    async fn conforms_rolling_not_fixed() {
        conformance::rolling_not_fixed(&LocalLimiter::default()).await;
    }

    #[tokio::test]
    async fn conforms_rejected_not_counted() {
        conformance::rejected_not_counted(&LocalLimiter::default()).await;
    }

    #[tokio::test]
    async fn conforms_keys_are_independent() {
        conformance::keys_are_independent(&LocalLimiter::default()).await;
    }

    #[tokio::test]
    async fn conforms_limit_changes_apply_at_once() {
        conformance::limit_changes_apply_at_once(&LocalLimiter::default()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conforms_concurrent_never_exceeds_limit() {
        conformance::concurrent_never_exceeds_limit(Arc::new(LocalLimiter::default())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conforms_all_through_an_arc() {
        conformance::all(Arc::new(Arc::new(LocalLimiter::new(1000)))).await;
    }

    #[test]
    fn caps_add_up_to_max_keys() {
        for max in [0, 1, 63, 64, 65, 1000, DEFAULT_MAX_KEYS] {
            assert_eq!(LocalLimiter::new(max).max_keys(), max.max(1), "{max}");
        }
    }

    #[test]
    fn a_flood_of_active_keys_stays_within_the_cap() {
        let limiter = LocalLimiter::new(1000);
        let limit = rl(2, 3600);
        for round in 0..20 {
            for i in 0..1000 {
                let d = limiter.decide(&KeyId::generate(), limit, T0 + round * 1000 + i);
                assert!(d.allowed);
            }
            assert!(limiter.stats().keys <= 1000);
        }
        let stats = limiter.stats();
        assert_eq!(stats.keys, 1000, "every shard is full");
        assert_eq!(stats.evicted_active, 20_000 - stats.keys as u64);
        assert!(stats.memory_bytes < 1000 * 400, "{stats:?}");

        // A key arriving at a full limiter is still limited exactly.
        let newcomer = KeyId::generate();
        assert!(limiter.decide(&newcomer, limit, T0 + 20_000).allowed);
        assert!(limiter.decide(&newcomer, limit, T0 + 20_001).allowed);
        assert!(!limiter.decide(&newcomer, limit, T0 + 20_002).allowed);
    }

    #[test]
    fn idle_keys_make_room_before_active_ones() {
        let limiter = LocalLimiter::new(640);
        let patient = KeyId::generate();
        assert!(limiter.decide(&patient, rl(1, 3600), T0).allowed);
        // A thousand short-lived keys, each idle before the next: every shard overflows, and
        // the least recently seen key, `patient`, is still counting.
        for i in 0..1000 {
            let at = T0 + 1000 + i * 2000;
            assert!(limiter.decide(&KeyId::generate(), rl(5, 1), at).allowed);
        }
        let stats = limiter.stats();
        assert_eq!(stats.evicted_active, 0, "{stats:?}");
        assert!(stats.keys <= 640);
        assert!(
            !limiter
                .decide(&patient, rl(1, 3600), T0 + 2_100_000)
                .allowed,
            "remembered"
        );
    }

    #[test]
    fn sweep_drops_idle_keys_only() {
        let limiter = LocalLimiter::default();
        let keys: Vec<_> = (0..500).map(|_| KeyId::generate()).collect();
        for (i, key) in keys.iter().enumerate() {
            let window = if i < 250 { 1 } else { 60 };
            limiter.decide(key, rl(10, window), T0);
        }
        assert_eq!(limiter.sweep(T0 + 999), 0);
        assert_eq!(limiter.sweep(T0 + 1000), 250);
        assert_eq!(limiter.stats().keys, 250);
        assert_eq!(limiter.sweep(T0 + 60_000), 250);
        assert_eq!(limiter.stats().keys, 0);
        // A swept key starts afresh, which is what its empty window said anyway.
        assert_eq!(
            limiter
                .decide(&keys[499], rl(10, 60), T0 + 60_000)
                .remaining,
            9
        );
    }

    #[test]
    fn memory_is_given_back_after_a_flood() {
        let limiter = LocalLimiter::default();
        let empty = limiter.stats().memory_bytes;
        for _ in 0..50_000 {
            limiter.decide(&KeyId::generate(), rl(10, 1), T0);
        }
        let flooded = limiter.stats().memory_bytes;
        assert!(flooded > 50_000 * 100, "{flooded}");
        limiter.sweep(T0 + 1000);
        let swept = limiter.stats().memory_bytes;
        assert!(
            swept < empty + 64 * 64 * 200,
            "{empty} → {flooded} → {swept}"
        );
    }

    #[test]
    fn a_limit_of_zero_tracks_nothing() {
        let limiter = LocalLimiter::default();
        assert!(!limiter.decide(&KeyId::generate(), rl(0, 60), T0).allowed);
        assert_eq!(limiter.stats().keys, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweeper_sweeps_and_stops_with_the_limiter() {
        let clock = Clock::adjustable();
        let limiter = Arc::new(LocalLimiter::default());
        for _ in 0..100 {
            limiter.decide(&KeyId::generate(), rl(10, 1), clock.now());
        }
        let sweeper = limiter.spawn_sweeper(clock.clone(), Duration::from_millis(5));
        clock.advance(1000);
        // Bounded wait for the background task to reach its next tick.
        tokio::time::timeout(Duration::from_secs(10), async {
            while limiter.stats().keys > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("swept");
        drop(limiter);
        tokio::time::timeout(Duration::from_secs(10), sweeper)
            .await
            .expect("the sweeper stops once the limiter is gone")
            .unwrap();
    }
}
