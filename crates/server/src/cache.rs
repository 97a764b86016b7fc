//! The in-process cache of authenticated keys, keyed by the SHA-256 of the presented key.
//!
//! It holds everything authentication, capability checks and rate limiting need, so a
//! request with a known key touches no storage. Unknown hashes are cached too (a minute or
//! so), so a flood of well-formed unknown keys that repeat cannot reach storage. Concurrent
//! misses of the same key are coalesced into one lookup. The cache is bounded, and its
//! eviction resists scans: the keys in use stay in when a flood of one-off keys arrives.
//!
//! Staleness is bounded two ways: every change made through this process's service layer
//! invalidates the cache right after it commits (so the very next request sees it), and a
//! watcher clears it when the database's authentication change counter moves (changes made by
//! other processes: within `change_watch_ms`). A lookup that raced with an invalidation is not
//! trusted: each entry remembers the generation it was loaded in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

use crate::service::Principal;

/// Most entries (known and unknown keys together).
pub const DEFAULT_CAPACITY: u64 = 200_000;
/// How long a known key stays cached without any change notice, at least; see [`spread`].
/// A safety net only: changes reach the cache through invalidation on commit, the change
/// watcher (without which the cache is not used at all) and the Redis bus. Each expiry sends a
/// request to storage on the request path, so the net is wide.
const KNOWN_TTL: Duration = Duration::from_secs(600);
/// How long an unknown hash is remembered, at least. Making a key does not invalidate the
/// cache (that would empty it on every new key), and need not: a new key's secret is drawn
/// at random and told only once its row is committed, so no request can have presented it
/// before, and no entry can say it is unknown. The exception is `keyward dev seed-keys`, whose
/// secrets exist before their rows: a server already answering for the database it seeds may
/// refuse a seeded key it was asked about before, for this long (and up to half again).
/// Each expiry is a lookup on the request path: with 5 s, 10 000 unknown keys in rotation
/// sent 2 000 lookups a second to storage, each 20-45 µs of the server's time. Unknown
/// entries that keep being asked about hold their place in the cache like known ones; a
/// flood of one-off keys still cannot push the keys in use out (see the module docs).
const UNKNOWN_TTL: Duration = Duration::from_secs(60);

/// `ttl` plus up to half of it again, in milliseconds, drawn at random: keys loaded together
/// (at start-up, after an invalidation) then expire over a stretch of time instead of all at
/// once, which would send thousands of lookups to storage in the same moment.
fn spread(ttl: Duration) -> u64 {
    let ttl = ttl.as_millis() as u64;
    ttl + rand::random_range(0..=ttl / 2)
}

/// How long a failed lookup is shared: long enough for the requests already waiting for it,
/// short enough that the next request tries storage again.
const FAILURE_SHARED_MS: u64 = 100;

/// A lookup that failed, with the storage error's message.
#[derive(Clone, Debug)]
pub struct LookupError(Arc<str>);

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a cached key's memory is that every request reads beyond its [`Principal`]: the
/// limiter's state and buckets, the usage counts and the key's part of its `whoami` answer.
/// Kept in the cache's entry, beside the handle to the principal, so that a hit asks for all
/// of it at once instead of after the principal's lines have come (one wait for memory
/// instead of two in a row; docs/BENCHMARKS.md). Hints only: an address may be unknown (0) or
/// stale, nothing is ever read through one, and a wrong one costs a wasted prefetch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    pub limiter_state: usize,
    pub limiter_buckets: usize,
    pub usage: usize,
    /// Start and length of the rendered answer's own bytes.
    pub whoami: (usize, usize),
}

impl Hints {
    fn prefetch(&self) {
        use keyward_core::hint::{prefetch_at, prefetch_span};
        for address in [self.limiter_state, self.limiter_buckets, self.usage] {
            if address != 0 {
                prefetch_at(address);
            }
        }
        let (start, len) = self.whoami;
        if start != 0 {
            prefetch_span(std::ptr::without_provenance(start), len);
        }
    }
}

/// What a lookup found: the key, `None` for a hash no key has, or why it failed.
pub type Found = Result<Option<Arc<Principal>>, LookupError>;

/// A cached lookup: the key, or `None` for a hash no key has.
pub struct Entry {
    pub principal: Option<Arc<Principal>>,
    hints: Hints,
    /// The lookup failed (storage unreachable): requests that were waiting for it get this
    /// error instead of each trying storage in turn.
    failed: Option<Arc<str>>,
    generation: u64,
    /// Until when (ms since the cache's epoch) the entry may be used.
    expires: u64,
}

/// Cloned by the cache to hand out a hit. Taking a handle to the key writes its reference
/// count, a locked instruction after which no later read may start early: the fields a
/// request reads next, on the lines after the count, would each wait for memory in turn
/// behind it. They are asked for first, so their waits overlap the count's.
impl Clone for Entry {
    fn clone(&self) -> Self {
        if let Some(principal) = &self.principal {
            self.hints.prefetch();
            principal.prefetch_hot();
        }
        Self {
            principal: self.principal.clone(),
            hints: self.hints,
            failed: self.failed.clone(),
            generation: self.generation,
            expires: self.expires,
        }
    }
}

impl Entry {
    /// What the entry answers, if it was loaded in the latest generation (after the last
    /// invalidation) and has not expired by `now`.
    fn usable(self, generation: u64, now: u64) -> Option<Found> {
        (self.generation >= generation && self.expires > now).then(|| match self.failed {
            Some(error) => Err(LookupError(error)),
            None => Ok(self.principal),
        })
    }
}

/// The cache of looked-up keys.
///
/// A hit is a read lock on one of several shards and a hash probe (a per-process keyed
/// hash, so nobody can aim digests at one bucket); the eviction policy is scan-resistant, so a
/// flood of one-off unknown keys passes through without pushing out the keys in use.
#[derive(Clone)]
pub struct KeyCache {
    entries: Arc<Cache<[u8; 32], Entry>>,
    generation: Arc<AtomicU64>,
    /// While a watcher keeps the cache honest: until when (ms since `epoch`) entries may be
    /// trusted. `u64::MAX` when no watcher runs (a single process, e.g. in benchmarks).
    trusted_until: Arc<AtomicU64>,
    epoch: Instant,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl KeyCache {
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: Arc::new(Cache::new(
                usize::try_from(capacity).unwrap_or(usize::MAX).max(1),
            )),
            generation: Arc::new(AtomicU64::new(0)),
            trusted_until: Arc::new(AtomicU64::new(u64::MAX)),
            epoch: Instant::now(),
        }
    }

    /// The cached lookup of `digest` when a usable entry is there, without waiting or loading:
    /// the path of almost every request, kept out of any `async` code so that it does not
    /// carry (and move) the state of a storage lookup. `None` when [`KeyCache::get_or_load`]
    /// must be asked: a miss, a load in progress, a stale entry, or an unconfirmed watcher.
    /// `at` is a reading of the monotonic clock made with nothing awaited since (the gate's
    /// reading when the request arrived, which spares it one more): the entry's expiry and
    /// the watcher's window are judged as of then.
    /// With the answer come the entry's [`Hints`], for [`KeyCache::update_hints`].
    pub fn get_fresh(&self, digest: &[u8; 32], at: Instant) -> Option<(Found, Hints)> {
        let now = self.ms_at(at);
        if now > self.trusted_until.load(Ordering::Acquire) {
            return None;
        }
        let generation = self.generation.load(Ordering::Acquire);
        let entry = self.entries.get(digest)?;
        let hints = entry.hints;
        Some((entry.usable(generation, now)?, hints))
    }

    /// Stores `hints` in the entry of `digest`, if it still holds `principal` (it may have
    /// been invalidated, expired or reloaded since). Called when a request found the hints it
    /// was handed out of date, which happens a few times per key and load: its limiter state
    /// and `whoami` answer are made by its first requests.
    pub fn update_hints(&self, digest: &[u8; 32], principal: &Arc<Principal>, hints: Hints) {
        use quick_cache::sync::EntryAction;
        // Never waits: a load in progress means the entry is being replaced anyway. If the
        // entry is gone, the placeholder this is given is dropped unfilled, which leaves the
        // digest to the next request's lookup, as before.
        let _ = self
            .entries
            .entry(digest, Some(Duration::ZERO), |_, entry| {
                if entry
                    .principal
                    .as_ref()
                    .is_some_and(|held| Arc::ptr_eq(held, principal))
                {
                    entry.hints = hints;
                }
                EntryAction::Retain(())
            });
    }

    /// The cached lookup of `digest`, loading it with `load` on a miss (concurrent misses of
    /// one digest share one load). An entry, or a shared load, that began before the latest
    /// invalidation is never returned: it is dropped and loaded again.
    pub async fn get_or_load<F, Fut, E>(&self, digest: &[u8; 32], load: F) -> Found
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Principal>, E>>,
        E: std::fmt::Display,
    {
        let failed = |e: E| LookupError(e.to_string().into());
        let now = self.now_ms();
        if now > self.trusted_until.load(Ordering::Acquire) {
            // The watcher has not confirmed recently that nothing changed elsewhere: go to
            // storage rather than risk answering from a stale entry.
            return load().await.map(|p| p.map(Arc::new)).map_err(failed);
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let generation = self.generation.load(Ordering::Acquire);
            match self.entries.get_value_or_guard_async(digest).await {
                // A hit, or a load shared with an earlier request: either may predate an
                // invalidation or have outlived its time.
                Ok(entry) => {
                    if let Some(answer) = entry.usable(generation, now) {
                        return answer;
                    }
                    // Only if still stale: another request may have put a fresh one there.
                    self.entries
                        .remove_if(digest, |e| e.generation < generation || e.expires <= now);
                }
                // This request loads; others asking for the same digest wait for it.
                Err(guard) => {
                    let principal = match load().await {
                        Ok(principal) => principal.map(Arc::new),
                        Err(e) => {
                            let error = failed(e);
                            let _ = guard.insert(Entry {
                                principal: None,
                                hints: Hints::default(),
                                failed: Some(error.0.clone()),
                                generation,
                                // From the failure, not the start: a load may take long to fail.
                                expires: self.now_ms() + FAILURE_SHARED_MS,
                            });
                            return Err(error);
                        }
                    };
                    let ttl = if principal.is_some() {
                        KNOWN_TTL
                    } else {
                        UNKNOWN_TTL
                    };
                    let entry = Entry {
                        principal,
                        hints: Hints::default(),
                        failed: None,
                        generation,
                        expires: now + spread(ttl),
                    };
                    let _ = guard.insert(entry.clone());
                    let latest = self.generation.load(Ordering::Acquire);
                    if entry.generation >= latest || attempts >= 3 {
                        return Ok(entry.principal);
                    }
                    self.entries.remove_if(digest, |e| e.generation < latest);
                }
            }
            if attempts >= 3 {
                // Invalidated three times while loading: storage's answer is current enough.
                return load().await.map(|p| p.map(Arc::new)).map_err(failed);
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    fn ms_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Puts the cache under a watcher: untrusted (every lookup goes to storage) until the
    /// watcher's first [`KeyCache::confirm_fresh`].
    pub fn start_watching(&self) {
        self.trusted_until.store(0, Ordering::Release);
    }

    /// The watcher confirmed that nothing changed elsewhere up to now: entries may be trusted
    /// for `for_how_long` more (a little over the watch interval). If the watcher stalls, the
    /// cache stops being used instead of serving stale keys.
    /// `read_at` is when the watcher began the read that confirmed it, so the window counts
    /// from the moment the database was looked at, not from when the answer arrived.
    pub fn confirm_fresh(&self, read_at: Instant, for_how_long: Duration) {
        let since_epoch = read_at.saturating_duration_since(self.epoch).as_millis() as u64;
        let until = since_epoch + for_how_long.as_millis() as u64;
        self.trusted_until.store(until, Ordering::Release);
    }

    /// Forgets everything: after any change that affects authentication.
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }

    /// Entries held now (approximate; for tests and metrics).
    pub async fn entry_count(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn capacity(&self) -> u64 {
        self.entries.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_core::{AgentId, ApiKey, CapabilitySet, KeyPrefix, OrgId, Plan, RateLimit};
    use keyward_store::keys::KeyRecord;

    /// A key as the cache holds it, with a digest of its own.
    fn principal() -> (Arc<Principal>, [u8; 32]) {
        let secret = ApiKey::generate(&KeyPrefix::default());
        let key = KeyRecord::seeded(
            &OrgId::generate(),
            &AgentId::generate(),
            "test".into(),
            &secret,
            0,
        );
        let digest = keyward_core::KeyHash::digest(secret.expose());
        let plan = Plan {
            name: "pro".into(),
            api_access: true,
            rate_limit: RateLimit::new(100, 60).expect("a valid limit"),
            max_keys: None,
        };
        let principal = Principal::new(
            key,
            "agent".into(),
            CapabilitySet::from_stored(["content:read"]),
            false,
            "org".into(),
            "org".into(),
            plan,
        );
        (Arc::new(principal), digest)
    }

    #[tokio::test]
    async fn a_failed_lookup_is_shared_by_its_waiters_then_tried_again() {
        let cache = KeyCache::new(100);
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let failing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err::<Option<Principal>, _>("storage is down")
        };
        let digest = [7u8; 32];
        let (a, b, c) = tokio::join!(
            cache.get_or_load(&digest, failing),
            cache.get_or_load(&digest, failing),
            cache.get_or_load(&digest, failing),
        );
        for result in [a, b, c] {
            assert_eq!(
                result.err().map(|e| e.to_string()).as_deref(),
                Some("storage is down")
            );
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one storage attempt for three requests"
        );
        tokio::time::sleep(Duration::from_millis(FAILURE_SHARED_MS + 20)).await;
        let found = cache
            .get_or_load(&digest, || async { Ok::<_, std::io::Error>(None) })
            .await;
        assert!(
            matches!(found, Ok(None)),
            "the next request tries storage again"
        );
    }

    /// Looks `digest` up in `cache`, storage answering with `stored`.
    async fn load(
        cache: &KeyCache,
        digest: &[u8; 32],
        stored: &Principal,
    ) -> Option<Arc<Principal>> {
        cache
            .get_or_load(digest, || async {
                Ok::<_, std::io::Error>(Some(stored.clone()))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_cached_key_is_looked_up_again_after_an_invalidation() {
        let cache = KeyCache::new(1000);
        let (principal, digest) = principal();
        let stored = Principal::clone(&principal);
        let loaded = load(&cache, &digest, &stored).await;
        assert!(loaded.is_some());
        let found = cache
            .get_fresh(&digest, Instant::now())
            .map(|(found, _)| found);
        let found = found.expect("cached").expect("no error").expect("known");
        assert_eq!(found.key.id, principal.key.id);
        // Judged as of the reading it is given: past the longest time an entry is kept, and
        // past the watcher's window, it is not used.
        let later = Instant::now() + KNOWN_TTL * 2;
        assert!(cache.get_fresh(&digest, later).is_none(), "expired by then");
        cache.start_watching();
        cache.confirm_fresh(Instant::now(), Duration::from_secs(1));
        assert!(cache.get_fresh(&digest, Instant::now()).is_some());
        let unconfirmed = Instant::now() + Duration::from_secs(2);
        assert!(
            cache.get_fresh(&digest, unconfirmed).is_none(),
            "the watcher has not confirmed that far"
        );
        cache.invalidate_all();
        assert!(
            cache.get_fresh(&digest, Instant::now()).is_none(),
            "after an invalidation the key is looked up again"
        );
    }

    #[tokio::test]
    async fn hints_are_kept_for_the_principal_they_were_taken_from() {
        let cache = KeyCache::new(1000);
        let (principal, digest) = principal();
        let stored = Principal::clone(&principal);
        let loaded = load(&cache, &digest, &stored).await.expect("known");
        let (_, hints) = cache.get_fresh(&digest, Instant::now()).expect("cached");
        assert_eq!(hints, Hints::default(), "none known after a load");
        let current = loaded.hints();
        assert_eq!(current.usage, Arc::as_ptr(&loaded.usage).addr());
        assert_eq!(current.limiter_state, 0, "no state until the first check");
        cache.update_hints(&digest, &loaded, current);
        let (_, kept) = cache.get_fresh(&digest, Instant::now()).expect("cached");
        assert_eq!(kept, current);

        // Hints taken from another principal (one since replaced) are not stored.
        let other = Hints {
            usage: 64,
            ..current
        };
        cache.update_hints(&digest, &principal, other);
        let (_, kept) = cache.get_fresh(&digest, Instant::now()).expect("cached");
        assert_eq!(kept, current);

        // Nor for a digest the cache no longer holds; its next request loads it as before.
        cache.invalidate_all();
        cache.update_hints(&digest, &loaded, other);
        let reloaded = load(&cache, &digest, &stored).await.expect("loaded again");
        let (_, fresh) = cache.get_fresh(&digest, Instant::now()).expect("cached");
        assert_eq!(fresh, Hints::default());
        assert!(!Arc::ptr_eq(&reloaded, &loaded));
    }

    #[tokio::test]
    async fn stays_within_capacity() {
        let cache = KeyCache::new(100);
        for i in 0..1000u32 {
            let mut digest = [0u8; 32];
            digest[..4].copy_from_slice(&i.to_be_bytes());
            let got = cache
                .get_or_load(&digest, || async { Ok::<_, std::io::Error>(None) })
                .await
                .unwrap();
            assert!(got.is_none());
        }
        let n = cache.entry_count().await;
        assert!(n <= 100, "{n} entries");
    }
}
