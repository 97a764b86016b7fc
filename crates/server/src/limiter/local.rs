//! The in-process limiter: one [`WindowState`] per key in sharded maps.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
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
/// own mutex, held only for one lookup (microseconds) and never across an await. Each state
/// has its own mutex too, held for one check; a cached key keeps a handle to its state
/// ([`Slot`]), so its checks skip the shard.
///
/// # Memory
/// At most `max_keys` states are tracked; [`LocalLimiter::stats`] estimates their size. A key
/// costs a map entry (its id held inline and a handle, about 40 bytes, plus the map's slack)
/// and a 128-byte allocation for its state (a line of reference counts, then the lock and the
/// state on a line of their own), plus its log, 8 bytes per request counted in its window (up
/// to 80 kB for a limit of 10 000), or a fixed 576 bytes of buckets above 10 000. A key whose
/// window is empty is idle: [`LocalLimiter::sweep`] drops it, since a fresh state answers the
/// same. A cached key may keep its swept state's allocation (reset, its log freed) until the
/// key leaves the key cache, so those are bounded by the cache's capacity.
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
    states: HashMap<CompactKeyId, Shared, RandomState>,
}

/// A key's state, shared by its shard's map and by the [`Slot`] of the key's cached
/// principal, so that a check of a cached key goes to it directly instead of through the map
/// (a hash, a shard lock and two more lines of memory on every request).
type Shared = Arc<OwnLine>;

/// A state and its lock on one cache line of their own: a check reads that line (and, in the
/// approximate mode, the buckets), not the reference counts before it, which only copying
/// the handle touches.
#[repr(align(64))]
struct OwnLine(Mutex<Tracked>);

const _: () = assert!(size_of::<Mutex<Tracked>>() <= 64, "a state fits its line");

impl OwnLine {
    fn lock(&self) -> MutexGuard<'_, Tracked> {
        lock(&self.0)
    }
}

struct Tracked {
    /// Its latest check tells when the key was last seen, to pick the one to go when the
    /// shard is full.
    state: WindowState,
    /// Taken out of its shard's map (idle, or evicted to make room), and reset. A slot that
    /// still holds it must not count on it: the next check goes through the map, which holds
    /// the key's one current state. Counting on a retired state beside a newer one would
    /// admit the key's requests twice.
    retired: bool,
}

impl Tracked {
    /// Marks the state as out of the map and gives back its memory: a slot may keep it for
    /// as long as its key stays cached, so only the empty shell stays.
    fn retire(&mut self) {
        self.retired = true;
        self.state = WindowState::new();
    }
}

/// Where a cached key keeps its limiter state once it has one (see [`Shared`]).
///
/// Set once. If the state is retired and the key's next check finds the map without a state
/// for it, the retired one is put back (reset, so the key starts afresh as a new state would);
/// if another state took its place meanwhile (a newer principal of the same key), each check
/// of this slot goes through the map, until that other state is retired in turn and this
/// one comes back.
#[derive(Default)]
pub struct Slot {
    state: OnceLock<Shared>,
    /// Where the state's buckets were at its last check through this slot (0: none), so that
    /// their lines can be asked for before the state is locked. A hint only: it may be stale,
    /// and nothing is read through it (see [`keyward_core::ratelimit::prefetch_buckets`]).
    buckets: AtomicUsize,
}

impl Clone for Slot {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            buckets: AtomicUsize::new(self.buckets.load(Ordering::Relaxed)),
        }
    }
}

impl Slot {
    /// Asks for the line of the key's state, once the slot holds it (see
    /// [`keyward_core::hint`]).
    pub fn prefetch(&self) {
        if let Some(shared) = self.state.get() {
            keyward_core::hint::prefetch(&**shared);
        }
    }

    /// Where the key's state is, once the slot holds it (0 until then).
    pub fn state_address(&self) -> usize {
        self.state
            .get()
            .map_or(0, |shared| Arc::as_ptr(shared).addr())
    }

    /// Where the state's buckets were at its last check (0: none).
    pub fn buckets_address(&self) -> usize {
        self.buckets.load(Ordering::Relaxed)
    }

    /// Asks for the lines of the state's buckets that a check at `now` under `limit` reads,
    /// if the state has buckets (limits above the exact mode's).
    pub fn prefetch_buckets(&self, limit: RateLimit, now: UnixMillis) {
        let address = self.buckets.load(Ordering::Relaxed);
        if address != 0 {
            keyward_core::ratelimit::prefetch_buckets(address, limit, now);
        }
    }

    /// Checks `tracked` and remembers where its buckets are.
    fn check(&self, tracked: &mut Tracked, limit: RateLimit, now: UnixMillis) -> Decision {
        let decision = tracked.state.check(limit, now);
        let address = tracked.state.buckets_address().unwrap_or(0);
        // Written only when it moved: the slot shares a line with the principal's fields.
        if self.buckets.load(Ordering::Relaxed) != address {
            self.buckets.store(address, Ordering::Relaxed);
        }
        decision
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.state.get().is_some() {
            "Slot(set)"
        } else {
            "Slot(empty)"
        })
    }
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

    /// [`RateLimiter::check`] without the future: it never waits on anything but a lock.
    pub fn decide(&self, key: &KeyId, limit: RateLimit, now: UnixMillis) -> Decision {
        self.decide_in(&Slot::default(), CompactKeyId::from(key), limit, now)
    }

    /// [`LocalLimiter::decide`] for a cached key: `key` is its id in compact form, and `slot`
    /// where it keeps its state. Once the slot holds the key's state, a check locks that state
    /// alone.
    pub fn decide_in(
        &self,
        slot: &Slot,
        key: CompactKeyId,
        limit: RateLimit,
        now: UnixMillis,
    ) -> Decision {
        if let Some(shared) = slot.state.get() {
            let mut tracked = shared.lock();
            if !tracked.retired {
                return slot.check(&mut tracked, limit, now);
            }
        }
        // Lock order: the shard, then a state; the shortcut above takes a state alone.
        let mut shard = lock(self.shard_of(&key));
        if let Some(shared) = shard.states.get(&key) {
            let shared = shared.clone();
            // Checked before the shard is let go: only a holder of the shard's lock retires a
            // state, so this one is still the key's current state when it counts.
            let decision = slot.check(&mut shared.lock(), limit, now);
            drop(shard);
            let _ = slot.state.set(shared);
            return decision;
        }
        // The slot's own retired state comes back, reset: the same as a new one.
        let shared = slot.state.get().cloned().unwrap_or_else(|| {
            Arc::new(OwnLine(Mutex::new(Tracked {
                state: WindowState::new(),
                retired: true,
            })))
        });
        let mut tracked = shared.lock();
        let decision = slot.check(&mut tracked, limit, now);
        // Nothing counted (a limit of 0) is the same as a fresh state: nothing to keep.
        if tracked.state.is_idle(now) {
            tracked.state = WindowState::new();
            return decision;
        }
        tracked.retired = false;
        drop(tracked);
        if shard.make_room(now) {
            self.evicted_active.fetch_add(1, Ordering::Relaxed);
        }
        shard.states.insert(key, shared.clone());
        drop(shard);
        let _ = slot.state.set(shared);
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
            memory_bytes += shard.states.capacity() * (size_of::<(CompactKeyId, Shared)>() + 1);
            // Each state is its own allocation: a line of reference counts, then its own.
            memory_bytes += shard
                .states
                .values()
                .map(|shared| {
                    size_of::<OwnLine>() * 2 + shared.lock().state.memory_bytes()
                        - size_of::<WindowState>()
                })
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
            .min_by_key(|(_, shared)| shared.lock().state.latest())
            .map(|(key, _)| *key);
        if let Some(shared) = oldest.and_then(|key| self.states.remove(&key)) {
            shared.lock().retire();
        }
        true
    }

    fn drop_idle(&mut self, now: UnixMillis) -> usize {
        let before = self.states.len();
        self.states.retain(|_, shared| {
            let mut tracked = shared.lock();
            let idle = tracked.state.is_idle(now);
            if idle {
                tracked.retire();
            }
            !idle
        });
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

/// Locks a shard or a state even if a panic poisoned it: the states are plain counters, and
/// the worst a check interrupted half-way leaves is one request miscounted, which beats
/// failing every later request of the key, or of 1/64 of the keys.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
    fn a_slot_and_the_map_count_into_one_state() {
        let limiter = LocalLimiter::default();
        let key = KeyId::generate();
        let compact = CompactKeyId::from(&key);
        let slot = Slot::default();
        let limit = rl(4, 60);
        assert_eq!(limiter.decide_in(&slot, compact, limit, T0).remaining, 3);
        // Through the shortcut, and through the map (as a request without the slot would).
        assert_eq!(
            limiter.decide_in(&slot, compact, limit, T0 + 1).remaining,
            2
        );
        assert_eq!(limiter.decide(&key, limit, T0 + 2).remaining, 1);
        assert_eq!(
            limiter.decide_in(&slot, compact, limit, T0 + 3).remaining,
            0
        );
        assert!(!limiter.decide_in(&slot, compact, limit, T0 + 4).allowed);
        assert!(!limiter.decide(&key, limit, T0 + 5).allowed);
        assert_eq!(limiter.stats().keys, 1);
    }

    #[test]
    fn a_slot_remembers_where_the_buckets_are_and_a_stale_hint_is_harmless() {
        let limiter = LocalLimiter::default();
        let compact = CompactKeyId::from(&KeyId::generate());
        let slot = Slot::default();
        let exact = rl(100, 60);
        let approximate = rl(1_000_000, 60);
        limiter.decide_in(&slot, compact, exact, T0);
        assert_eq!(
            slot.buckets.load(Ordering::Relaxed),
            0,
            "the exact mode has none"
        );
        limiter.decide_in(&slot, compact, approximate, T0 + 1);
        let address = slot.buckets.load(Ordering::Relaxed);
        assert_ne!(address, 0);
        // A hint that points nowhere, or at buckets long gone, changes no decision.
        for hint in [address, 1, usize::MAX] {
            slot.buckets.store(hint, Ordering::Relaxed);
            slot.prefetch();
            slot.prefetch_buckets(approximate, T0 + 2);
        }
        let decision = limiter.decide_in(&slot, compact, approximate, T0 + 2);
        assert_eq!(decision.remaining, 1_000_000 - 3);
        assert_eq!(
            slot.buckets.load(Ordering::Relaxed),
            address,
            "corrected by the check"
        );
    }

    #[test]
    fn a_swept_state_comes_back_through_its_slot_and_is_shared_again() {
        let limiter = LocalLimiter::default();
        let key = KeyId::generate();
        let compact = CompactKeyId::from(&key);
        let slot = Slot::default();
        let limit = rl(2, 1);
        assert!(limiter.decide_in(&slot, compact, limit, T0).allowed);
        assert_eq!(limiter.sweep(T0 + 1000), 1, "idle after its window");
        assert_eq!(limiter.stats().keys, 0);
        // The slot's retired state is put back, reset: the key starts afresh, as it should.
        assert_eq!(
            limiter
                .decide_in(&slot, compact, limit, T0 + 1000)
                .remaining,
            1
        );
        assert_eq!(limiter.stats().keys, 1);
        // ...and it is the map's state again: both ways count into it.
        assert_eq!(limiter.decide(&key, limit, T0 + 1001).remaining, 0);
        assert!(!limiter.decide_in(&slot, compact, limit, T0 + 1002).allowed);
    }

    #[test]
    fn a_slot_whose_state_was_replaced_counts_through_the_map() {
        let limiter = LocalLimiter::default();
        let key = KeyId::generate();
        let compact = CompactKeyId::from(&key);
        let (old, new) = (Slot::default(), Slot::default());
        let limit = rl(3, 1);
        assert!(limiter.decide_in(&old, compact, limit, T0).allowed);
        limiter.sweep(T0 + 1000);
        // A newer principal of the key checks first and gets a new state into the map.
        assert_eq!(
            limiter.decide_in(&new, compact, limit, T0 + 1000).remaining,
            2
        );
        // The old slot's state is retired: its checks must land in the new one, never beside it.
        assert_eq!(
            limiter.decide_in(&old, compact, limit, T0 + 1001).remaining,
            1
        );
        assert_eq!(
            limiter.decide_in(&new, compact, limit, T0 + 1002).remaining,
            0
        );
        assert!(!limiter.decide_in(&old, compact, limit, T0 + 1003).allowed);
        assert_eq!(limiter.stats().keys, 1);
    }

    #[test]
    fn an_evicted_key_with_a_slot_starts_afresh_and_is_tracked_again() {
        let limiter = LocalLimiter::new(1);
        let (a, b) = (KeyId::generate(), KeyId::generate());
        let slot = Slot::default();
        let limit = rl(2, 3600);
        assert!(
            limiter
                .decide_in(&slot, CompactKeyId::from(&a), limit, T0)
                .allowed
        );
        assert!(limiter.decide(&b, limit, T0 + 1).allowed);
        assert_eq!(limiter.stats().evicted_active, 1, "a made room for b");
        // `a` starts afresh (its slot's state was reset when evicted), within the cap.
        let d = limiter.decide_in(&slot, CompactKeyId::from(&a), limit, T0 + 2);
        assert_eq!(d.remaining, 1);
        assert_eq!(limiter.stats().keys, 1);
        assert_eq!(limiter.stats().evicted_active, 2, "b made room for a");
    }

    /// Requests of one key from several threads, each with its own slot (as several cached
    /// principals of the key would be), while a sweeper retires each window's state as soon
    /// as it is idle: within each window no more than `limit` may be admitted in all.
    #[test]
    fn slots_racing_the_sweeper_never_admit_more_than_the_limit() {
        let limiter = Arc::new(LocalLimiter::default());
        let compact = CompactKeyId::from(&KeyId::generate());
        let limit = rl(20, 1);
        for window in 0..100 {
            let now = T0 + window * 1000;
            let admitted = std::thread::scope(|scope| {
                let sweeper = scope.spawn(|| {
                    for _ in 0..50 {
                        limiter.sweep(now);
                    }
                });
                let counters: Vec<_> = (0..4)
                    .map(|_| {
                        scope.spawn(|| {
                            let slot = Slot::default();
                            (0..15)
                                .filter(|_| limiter.decide_in(&slot, compact, limit, now).allowed)
                                .count()
                        })
                    })
                    .collect();
                sweeper.join().unwrap();
                counters
                    .into_iter()
                    .map(|c| c.join().unwrap())
                    .sum::<usize>()
            });
            assert_eq!(
                admitted, 20,
                "window {window}: exactly the limit of 60 requests"
            );
        }
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
