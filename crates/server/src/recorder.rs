//! Off-the-hot-path bookkeeping: usage counts and `last_used_at` are gathered in memory and
//! written in batches (every second by default), so a request never waits for a database
//! write. A crash loses at most the counts gathered since the last flush. A flush appends
//! its counts as one row, folded into the usage tables every [`FOLD_EVERY`] flushes and
//! before usage is read ([`fold`], `keyward_store::usage::fold`).

use std::collections::HashMap;

use foldhash::fast::RandomState;
use smallvec::SmallVec;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyward_core::{AgentId, CompactKeyId, KeyId, OrgId, UnixMillis};
use keyward_store::usage::{self, Counts, Granularity, UsageRow};
use keyward_store::{keys, Store};

/// What a request's answer was, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    ClientError,
    RateLimited,
    ServerError,
    /// Anything else (1xx, 3xx such as 304): counted as a request only.
    Other,
}

impl Outcome {
    pub fn of_status(status: u16) -> Self {
        match status {
            429 => Outcome::RateLimited,
            200..=299 => Outcome::Success,
            400..=499 => Outcome::ClientError,
            500..=599 => Outcome::ServerError,
            _ => Outcome::Other,
        }
    }
}

/// What one key did since the last flush.
struct PerKey {
    /// Where the key's ids are held (a cell of the key, shared rather than copied).
    ids: Arc<UsageCell>,
    minutes: Minutes,
    last_used: UnixMillis,
}

/// A key's counts per minute between two flushes: almost always one minute, held inline
/// (a list of its own per key was thousands of small allocations a flush, freed together
/// at its end); two across a minute's end.
type Minutes = SmallVec<[(UnixMillis, Counts); 1]>;

/// What each key did since the last flush.
type PerKeys = HashMap<CompactKeyId, PerKey, RandomState>;

/// One key's counts since the last flush, held by the cached key itself
/// ([`crate::service::Principal::usage`]). Counting a request then touches memory the
/// request has just read, instead of a shared map whose entries for thousands of keys do not
/// stay in the processor's cache; the recorder only hears of a cell on its first request
/// after a flush.
///
/// Laid out so that a request's count touches one cache line: the cell starts a line (its
/// reference counts sit on the one before), with its lock and everything a count changes;
/// the counts of earlier minutes and the ids come after.
#[repr(C, align(64))]
pub struct UsageCell {
    counting: Mutex<Counting>,
    org: OrgId,
    agent: AgentId,
    key: KeyId,
}

/// `repr(C)`: what every count changes first, the rest after.
#[repr(C)]
#[derive(Default)]
struct Counting {
    /// The minute `current` counts; `None` until the first count after a flush.
    minute: Option<UnixMillis>,
    last_used: UnixMillis,
    /// The counts of the latest minute seen (almost every request adds here), in 32 bits:
    /// one key cannot make four billion requests between two flushes a second apart.
    current: Tally,
    /// In the recorder's list of cells to drain at the next flush.
    queued: bool,
    /// Other minutes since the last flush: the one before, across a minute's end.
    earlier: Vec<(UnixMillis, Counts)>,
}

/// [`Counts`] in 32 bits, so that a cell's counting fits the line it shares.
#[derive(Clone, Copy, Default)]
struct Tally {
    requests: u32,
    success: u32,
    client_errors: u32,
    rate_limited: u32,
    server_errors: u32,
}

impl Tally {
    fn add(&mut self, outcome: Outcome) {
        let one = |n: &mut u32| *n = n.saturating_add(1);
        one(&mut self.requests);
        match outcome {
            Outcome::Success => one(&mut self.success),
            Outcome::ClientError => one(&mut self.client_errors),
            Outcome::RateLimited => one(&mut self.rate_limited),
            Outcome::ServerError => one(&mut self.server_errors),
            Outcome::Other => {}
        }
    }

    fn counts(self) -> Counts {
        Counts {
            requests: self.requests.into(),
            success: self.success.into(),
            client_errors: self.client_errors.into(),
            rate_limited: self.rate_limited.into(),
            server_errors: self.server_errors.into(),
        }
    }
}

const _: () = assert!(
    size_of::<Mutex<Counting>>() - size_of::<Vec<(UnixMillis, Counts)>>() <= 64,
    "a count touches one line"
);

impl Counting {
    /// Takes the counts of every minute, leaving none.
    fn take_minutes(&mut self) -> Minutes {
        // The earlier minutes' list goes with them (it exists only across a minute's end).
        let mut minutes: Minutes = std::mem::take(&mut self.earlier).into_iter().collect();
        if let Some(minute) = self.minute.take() {
            minutes.push((minute, std::mem::take(&mut self.current).counts()));
        }
        minutes
    }
}

impl UsageCell {
    pub fn new(org: OrgId, agent: AgentId, key: KeyId) -> Self {
        Self {
            counting: Mutex::new(Counting::default()),
            org,
            agent,
            key,
        }
    }

    /// Moves the counts into `into`, leaving the cell empty and no longer queued.
    fn drain_into(self: &Arc<Self>, into: &mut PerKeys) {
        let (minutes, last_used) = {
            let Ok(mut c) = self.counting.lock() else {
                return;
            };
            c.queued = false;
            (c.take_minutes(), c.last_used)
        };
        if minutes.is_empty() {
            return;
        }
        let k = into
            .entry(CompactKeyId::from(&self.key))
            .or_insert_with(|| PerKey {
                ids: self.clone(),
                minutes: Minutes::new(),
                last_used,
            });
        k.last_used = k.last_used.max(last_used);
        for (minute, counts) in minutes {
            add_minute(&mut k.minutes, minute, &counts);
        }
    }
}

impl std::fmt::Debug for UsageCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageCell").field("key", &self.key).finish()
    }
}

/// Adds `counts` to `minute`'s entry in `minutes` (a cell's or a flush's list).
fn add_minute<M>(minutes: &mut M, minute: UnixMillis, counts: &Counts)
where
    M: std::ops::DerefMut<Target = [(UnixMillis, Counts)]> + Extend<(UnixMillis, Counts)>,
{
    match minutes.iter_mut().find(|(m, _)| *m == minute) {
        Some((_, c)) => c.add(counts),
        None => minutes.extend([(minute, *counts)]),
    }
}

/// What the next flush writes: the cells counted since the last one and counts already taken
/// from cells (or put back by a failed flush). Maps are keyed by the key id held inline
/// ([`CompactKeyId`]). The bookkeeping of `last_used_at` writes is in [`LastUses`].
#[derive(Default)]
struct Pending {
    /// Cells counted since the last flush.
    queued: Vec<Arc<UsageCell>>,
    /// Counts taken from the cells but not written yet (a failed flush puts its batch here).
    keys: PerKeys,
    /// Emptied buffers of the last flush, for the next one.
    spare: Spare,
}

/// The bookkeeping of `last_used_at` writes. Only flushes take its lock, never a request, so
/// a flush may go through thousands of keys under it without holding anyone up.
#[derive(Default)]
struct LastUses {
    /// The `last_used_at` last written per key. A key's time is written again only once it
    /// moved on by [`LAST_USED_STEP_MS`]: "last used" stays within a minute of true at a
    /// fraction of the writes when many keys are busy.
    written: HashMap<CompactKeyId, UnixMillis, RandomState>,
    /// Last uses that are due but wait for a later flush (at most [`MAX_TOUCHES_PER_FLUSH`]
    /// are written per flush), with the order in which they became due.
    deferred: HashMap<CompactKeyId, Touch, RandomState>,
    /// Counts deferrals, to write the longest-waiting first.
    deferrals: u64,
}

/// The buffers a flush fills and empties again, kept for the next one. With thousands of
/// keys a second they take megabytes; made anew every second, the allocator gave their
/// pages back to the system between two flushes and had them faulted in again (hundreds of
/// page faults a second, each tens of microseconds on a virtual machine: docs/BENCHMARKS.md).
#[derive(Default)]
struct Spare {
    cells: Vec<Arc<UsageCell>>,
    keys: PerKeys,
    rows: Vec<CellMinute>,
}

/// One row a flush writes: a key's counts in one minute, with the key's ids read from its
/// cell where they are held already.
struct CellMinute {
    cell: Arc<UsageCell>,
    minute: UnixMillis,
    counts: Counts,
}

impl UsageRow for CellMinute {
    fn org(&self) -> &OrgId {
        &self.cell.org
    }
    fn agent(&self) -> &AgentId {
        &self.cell.agent
    }
    fn key(&self) -> &KeyId {
        &self.cell.key
    }
    fn minute(&self) -> UnixMillis {
        self.minute
    }
    fn counts(&self) -> &Counts {
        &self.counts
    }
}

/// The most entries an emptied buffer may hold room for and still be kept: a burst of many
/// more keys than usual leaves no lasting memory behind.
const KEEP_ROOM_FOR: usize = 100_000;

/// Empties `buffer` (callers empty it before they take a lock) and keeps it in `spare`, if it
/// has more room than what `spare` holds and not more than [`KEEP_ROOM_FOR`].
fn keep<T: Emptied>(spare: &mut T, mut buffer: T) {
    buffer.empty();
    if buffer.room() <= KEEP_ROOM_FOR && buffer.room() > spare.room() {
        *spare = buffer;
    }
}

/// A buffer that can be emptied, keeping its room.
trait Emptied {
    fn empty(&mut self);
    fn room(&self) -> usize;
}

impl<T> Emptied for Vec<T> {
    fn empty(&mut self) {
        self.clear();
    }
    fn room(&self) -> usize {
        self.capacity()
    }
}

impl Emptied for PerKeys {
    fn empty(&mut self) {
        self.clear();
    }
    fn room(&self) -> usize {
        self.capacity()
    }
}

/// A key's last use, due to be written.
struct Touch {
    org: OrgId,
    key: KeyId,
    at: UnixMillis,
    since: u64,
}

/// How far a key's last use may run ahead of the stored `last_used_at` before it is written.
const LAST_USED_STEP_MS: i64 = 30_000;

/// Most `last_used_at` updates per flush. When thousands of keys come into use in the same
/// second (a restart under load), writing all of their times in one flush would hold the
/// database for a tenth of a second; the rest wait for the next flushes, longest-waiting
/// first, and keys that became due together drift apart instead of coming due together
/// every [`LAST_USED_STEP_MS`].
const MAX_TOUCHES_PER_FLUSH: usize = 1_000;

impl LastUses {
    /// Forgets what it holds when a stalled database let it grow past [`MAX_PENDING`].
    fn bound(&mut self) {
        if self.written.len() > MAX_PENDING {
            self.written.clear();
        }
        if self.deferred.len() > MAX_PENDING {
            self.deferred.clear();
        }
    }

    /// Queues the key's last use if it moved on far enough from the written one.
    fn mark_due(&mut self, compact: &CompactKeyId, k: &PerKey) {
        let due = self
            .written
            .get(compact)
            .is_none_or(|w| k.last_used - *w >= LAST_USED_STEP_MS);
        if due {
            let since = self.deferrals;
            let touch = self.deferred.entry(*compact).or_insert_with(|| Touch {
                org: k.ids.org.clone(),
                key: k.ids.key.clone(),
                at: k.last_used,
                since,
            });
            touch.at = touch.at.max(k.last_used);
            self.deferrals += 1;
        }
    }

    /// The due last uses this flush writes, longest-waiting first, marked as written.
    fn take_touches(&mut self) -> Vec<(OrgId, KeyId, UnixMillis)> {
        let mut due: Vec<(u64, CompactKeyId)> = self
            .deferred
            .iter()
            .map(|(compact, touch)| (touch.since, *compact))
            .collect();
        if due.len() > MAX_TOUCHES_PER_FLUSH {
            due.select_nth_unstable_by_key(MAX_TOUCHES_PER_FLUSH, |(since, _)| *since);
            due.truncate(MAX_TOUCHES_PER_FLUSH);
        }
        due.into_iter()
            .filter_map(|(_, compact)| {
                let touch = self.deferred.remove(&compact)?;
                self.written.insert(compact, touch.at);
                Some((touch.org, touch.key, touch.at))
            })
            .collect()
    }

    /// Puts back last uses a failed flush did not write: first in line next time.
    fn put_back(&mut self, touches: Vec<(OrgId, KeyId, UnixMillis)>) {
        for (org, key, at) in touches {
            let compact = CompactKeyId::from(&key);
            self.written.remove(&compact);
            self.deferred.entry(compact).or_insert(Touch {
                org,
                key,
                at,
                since: 0,
            });
        }
    }
}

/// Collects key uses; [`UsageRecorder::flush`] writes them.
#[derive(Clone, Default)]
pub struct UsageRecorder {
    pending: Arc<Mutex<Pending>>,
    last_uses: Arc<Mutex<LastUses>>,
    /// Flushes so far, to fold the appended counts every [`FOLD_EVERY`].
    flushes: Arc<std::sync::atomic::AtomicU64>,
}

/// Every how many flushes the counts appended since are folded into the usage tables
/// ([`usage::fold`]): each node then writes a key's row of the minute at most once in ten
/// seconds instead of every second (a read of usage folds first, so it can make that
/// sooner, and never sees less than was flushed).
pub const FOLD_EVERY: u64 = 10;

/// Keys a flush handles between two yields to the runtime (about a tenth of a millisecond).
const YIELD_EVERY: usize = 256;

/// Most entries held between flushes. Entries are keyed by authenticated keys only, so an
/// attacker cannot grow this with made-up keys; the cap guards against a stalled database.
const MAX_PENDING: usize = 1_000_000;

impl UsageRecorder {
    /// Counts one request of an authenticated key that reached the rate limiter, in the
    /// key's own cell.
    pub fn record(&self, cell: &Arc<UsageCell>, at: UnixMillis, outcome: Outcome) {
        let minute = Granularity::Minute.floor(at);
        let newly_counted = {
            let Ok(mut c) = cell.counting.lock() else {
                return;
            };
            c.last_used = c.last_used.max(at);
            if c.minute != Some(minute) {
                // A new minute (or the first count since a flush): the one before moves aside.
                if let Some(before) = c.minute.replace(minute) {
                    let counts = std::mem::take(&mut c.current).counts();
                    add_minute(&mut c.earlier, before, &counts);
                }
            }
            c.current.add(outcome);
            !std::mem::replace(&mut c.queued, true)
        };
        // Once per key between flushes; the cell's lock is released first, so the recorder's
        // lock is never taken inside a cell's (the flush takes them the other way round).
        if newly_counted {
            if let Ok(mut p) = self.pending.lock() {
                p.queued.push(cell.clone());
            }
        }
    }

    /// Moves the counts of every queued cell into the batch the next flush takes. Yields to
    /// the runtime every [`YIELD_EVERY`] cells: thousands of keys a second must not hold up
    /// the requests on this thread for one long stretch.
    async fn drain_cells(&self) {
        let Some((mut cells, mut drained)) = self.pending.lock().ok().map(|mut p| {
            let spare = std::mem::take(&mut p.spare.cells);
            let cells = std::mem::replace(&mut p.queued, spare);
            (cells, std::mem::take(&mut p.spare.keys))
        }) else {
            return;
        };
        drained.reserve(cells.len());
        for (i, cell) in cells.iter().enumerate() {
            cell.drain_into(&mut drained);
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
        }
        self.restore(drained);
        // Emptied before the lock is taken: a request may be waiting for it.
        cells.clear();
        if let Ok(mut p) = self.pending.lock() {
            keep(&mut p.spare.cells, cells);
        }
    }

    /// What one flush writes: the counts gathered so far and the last uses due now. Goes
    /// through every key of the batch, yielding to the runtime now and then.
    async fn take_batch(&self) -> (PerKeys, Vec<(OrgId, KeyId, UnixMillis)>) {
        let Some(taken) = self.pending.lock().ok().map(|mut p| {
            let spare = std::mem::take(&mut p.spare.keys);
            std::mem::replace(&mut p.keys, spare)
        }) else {
            return Default::default();
        };
        if let Ok(mut last_uses) = self.last_uses.lock() {
            last_uses.bound();
        }
        let mut entries = taken.iter();
        loop {
            // Keys marked in this step; none under a poisoned lock, which ends the pass.
            let seen = match self.last_uses.lock() {
                Ok(mut last_uses) => entries
                    .by_ref()
                    .take(YIELD_EVERY)
                    .map(|(compact, k)| last_uses.mark_due(compact, k))
                    .count(),
                Err(_) => 0,
            };
            if seen < YIELD_EVERY {
                break;
            }
            tokio::task::yield_now().await;
        }
        let touches = self
            .last_uses
            .lock()
            .map(|mut l| l.take_touches())
            .unwrap_or_default();
        tokio::task::yield_now().await;
        (taken, touches)
    }

    /// Writes everything gathered so far in one transaction, the counts appended as one row
    /// and the last uses that are due, and keeps it all for the next attempt on failure;
    /// every [`FOLD_EVERY`] flushes, then folds what is appended into the usage tables. One
    /// transaction, not many small ones spread out: what delays requests on a machine where
    /// they share a core with the database's thread is the time the flush takes, and more
    /// transactions only took longer (docs/BENCHMARKS.md).
    pub async fn flush(&self, store: &Store) {
        self.drain_cells().await;
        let (mut taken, touches) = self.take_batch().await;
        let flushes = self
            .flushes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let fold = flushes % FOLD_EVERY == FOLD_EVERY - 1;
        // Last uses deferred by earlier flushes are written even in a second without traffic,
        // and what earlier flushes appended is folded in time even when none follows.
        if taken.is_empty() && touches.is_empty() && !fold {
            return;
        }
        let mut rows = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut p.spare.rows))
            .unwrap_or_default();
        rows.reserve(taken.len());
        for (i, k) in taken.values().enumerate() {
            rows.extend(k.minutes.iter().map(|(minute, counts)| CellMinute {
                cell: k.ids.clone(),
                minute: *minute,
                counts: *counts,
            }));
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
        }
        let batch = usage::PendingBatch::of(&rows);
        let started = std::time::Instant::now();
        let result = async {
            let mut tx = store.begin().await?;
            usage::append(&mut tx, &batch).await?;
            let added = started.elapsed();
            keys::touch_last_used(&mut tx, &touches).await?;
            let touched = started.elapsed();
            keyward_store::commit(tx).await?;
            Ok::<_, keyward_store::StoreError>((added, touched))
        }
        .await;
        let written = rows.len();
        // Emptied before the lock is taken: a request may be waiting for it.
        rows.clear();
        match result {
            Ok((added, touched)) => {
                tracing::debug!(
                    rows = written,
                    last_used = touches.len(),
                    add_ms = added.as_secs_f64() * 1e3,
                    touch_ms = (touched - added).as_secs_f64() * 1e3,
                    commit_ms = (started.elapsed() - touched).as_secs_f64() * 1e3,
                    "usage flushed"
                );
                taken.clear();
                if let Ok(mut p) = self.pending.lock() {
                    keep(&mut p.spare.rows, rows);
                    keep(&mut p.spare.keys, taken);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, keys = taken.len(), "could not write usage counts; will retry");
                if let Ok(mut p) = self.pending.lock() {
                    keep(&mut p.spare.rows, rows);
                }
                if let Ok(mut last_uses) = self.last_uses.lock() {
                    last_uses.put_back(touches);
                }
                self.restore(taken);
            }
        }
        // In a transaction of its own, so that a fold that fails leaves this flush written.
        if fold {
            if let Err(e) = self::fold(store).await {
                tracing::warn!(error = %e, "could not fold usage counts; will retry");
            }
        }
    }

    /// Puts counts into the batch the next flush takes, merged with what is there: counts
    /// drained from the cells, or a batch that could not be written.
    fn restore(&self, mut taken: PerKeys) {
        let Ok(mut p) = self.pending.lock() else {
            return;
        };
        if p.keys.is_empty() {
            let empty = std::mem::replace(&mut p.keys, taken);
            keep(&mut p.spare.keys, empty);
            return;
        }
        for (key, old) in taken.drain() {
            let room = p.keys.len() < MAX_PENDING;
            match p.keys.get_mut(&key) {
                Some(k) => {
                    k.last_used = k.last_used.max(old.last_used);
                    for (minute, counts) in old.minutes {
                        add_minute(&mut k.minutes, minute, &counts);
                    }
                }
                None if room => {
                    p.keys.insert(key, old);
                }
                None => {}
            }
        }
        keep(&mut p.spare.keys, taken);
    }

    /// Flushes every `every` until `stop` turns true, then flushes once more. A flush in
    /// progress is never cut short, so no taken batch can be lost on a graceful stop.
    pub fn spawn_flusher(
        &self,
        store: Store,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let recorder = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => recorder.flush(&store).await,
                    _ = stop.changed() => break,
                }
            }
            recorder.flush(&store).await;
        })
    }
}

/// Folds the counts appended by flushes into the usage tables now ([`usage::fold`]), in a
/// transaction of its own, if any are waiting: what a read of usage does first, so that it
/// sees every count flushed.
pub async fn fold(store: &Store) -> Result<(), keyward_store::StoreError> {
    let waiting = {
        let mut conn = store.read().await?;
        usage::has_pending(&mut conn).await?
    };
    if waiting {
        let mut tx = store.begin().await?;
        usage::fold(&mut tx).await?;
        keyward_store::commit(tx).await?;
    }
    Ok(())
}

/// How long after a minute ends it is rolled up into the hourly and daily rows: well past
/// the last flush that can carry its counts (flushes run every second). Counts that arrive
/// later still (held back by a database outage) are written to all three tables at once.
pub const ROLL_UP_AFTER_MS: i64 = 90_000;

/// Rolls closed minutes up into the hourly and daily rows every `every`, until the returned
/// task is aborted (see [`keyward_store::usage::roll_up`]).
pub fn spawn_roller(
    store: Store,
    clock: crate::Clock,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let until = clock.now() - ROLL_UP_AFTER_MS;
            let result = async {
                // Counts still appended are folded first, in a transaction of their own: on
                // PostgreSQL a fold holds the roll-up mark shared, and two nodes each
                // holding it shared while asking for it alone would deadlock. A failed fold
                // does not hold the roll-up back: counts folded later count as late ones.
                if let Err(e) = fold(&store).await {
                    tracing::warn!(error = %e, "could not fold usage counts before rolling up");
                }
                let mut tx = store.begin().await?;
                let n = usage::roll_up(&mut tx, until).await?;
                keyward_store::commit(tx).await?;
                Ok::<_, keyward_store::StoreError>(n)
            }
            .await;
            match result {
                Ok(n) => tracing::debug!(hourly_rows = n, "rolled usage up"),
                Err(e) => tracing::warn!(error = %e, "could not roll usage up; will retry"),
            }
        }
    })
}

/// How long hourly rows are kept; daily rows are kept for good.
pub const HOURLY_RETENTION_DAYS: i64 = 400;

/// Prunes per-minute rows older than `retention_days` (their hourly and daily sums stay)
/// every `every`, until the returned task is aborted.
pub fn spawn_pruner(
    store: Store,
    clock: crate::Clock,
    retention_days: u32,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = clock.now();
            let minutes_before = now - i64::from(retention_days) * 86_400_000;
            let hours_before =
                now - HOURLY_RETENTION_DAYS.max(i64::from(retention_days)) * 86_400_000;
            let result = async {
                let mut tx = store.begin().await?;
                let n = usage::prune(&mut tx, minutes_before, hours_before).await?;
                keyward_store::commit(tx).await?;
                Ok::<_, keyward_store::StoreError>(n)
            }
            .await;
            match result {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned old usage rows"),
                Err(e) => tracing::warn!(error = %e, "could not prune usage rows"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated SQLite store in `dir`.
    async fn sqlite_store(dir: &tempfile::TempDir, name: &str) -> Store {
        let url = format!("sqlite://{}", dir.path().join(name).display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// `n` keys of one organization and agent, each with its usage cell.
    fn keys_with_cells(n: usize) -> (OrgId, Vec<KeyId>, Vec<Arc<UsageCell>>) {
        let (org, agent) = (OrgId::generate(), AgentId::generate());
        let keys: Vec<KeyId> = (0..n).map(|_| KeyId::generate()).collect();
        let cells = keys
            .iter()
            .map(|key| Arc::new(UsageCell::new(org.clone(), agent.clone(), key.clone())))
            .collect();
        (org, keys, cells)
    }

    /// The stored requests of each key and minute.
    async fn stored_requests(store: &Store, org: &OrgId, keys: &[KeyId]) -> Vec<i64> {
        fold(store).await.unwrap();
        let mut conn = store.read().await.unwrap();
        let rows = usage::series(
            &mut conn,
            org,
            usage::Subject::Keys(keys),
            Granularity::Minute,
            0,
            UnixMillis::MAX,
        )
        .await
        .unwrap();
        rows.iter().map(|(_, _, c)| c.requests).collect()
    }

    #[tokio::test]
    async fn cells_are_counted_across_minutes_reloads_and_flushes() {
        let recorder = UsageRecorder::default();
        let (org, agent, key) = (OrgId::generate(), AgentId::generate(), KeyId::generate());
        // The same key loaded twice (a reload after an invalidation): two cells, one key.
        let first = Arc::new(UsageCell::new(org.clone(), agent.clone(), key.clone()));
        let second = Arc::new(UsageCell::new(org, agent, key.clone()));
        recorder.record(&first, 59_000, Outcome::Success);
        recorder.record(&first, 60_500, Outcome::RateLimited);
        recorder.record(&second, 60_900, Outcome::ServerError);
        // Each cell is queued once, however many requests it counted.
        assert_eq!(recorder.pending.lock().unwrap().queued.len(), 2);
        recorder.drain_cells().await;
        // Counted again after the drain: queued again, for the next flush.
        recorder.record(&first, 61_000, Outcome::Success);
        assert_eq!(recorder.pending.lock().unwrap().queued.len(), 1);
        recorder.drain_cells().await;
        let (taken, used) = recorder.take_batch().await;
        let k = &taken[&CompactKeyId::from(&key)];
        let mut minutes = k.minutes.clone();
        minutes.sort_by_key(|(m, _)| *m);
        let requests: Vec<(UnixMillis, i64, i64)> = minutes
            .iter()
            .map(|(m, c)| (*m, c.requests, c.success))
            .collect();
        assert_eq!(requests, [(0, 1, 1), (60_000, 3, 1)]);
        assert_eq!(minutes[1].1.rate_limited, 1);
        assert_eq!(minutes[1].1.server_errors, 1);
        assert_eq!(k.last_used, 61_000);
        assert_eq!(used.len(), 1);
    }

    #[tokio::test]
    async fn a_flush_leaves_its_emptied_buffers_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir, "usage.db").await;
        let recorder = UsageRecorder::default();
        let (org, keys, cells) = keys_with_cells(300);
        let room = |recorder: &UsageRecorder| {
            let p = recorder.pending.lock().unwrap();
            let s = &p.spare;
            (s.cells.capacity(), s.keys.capacity(), s.rows.capacity())
        };
        for second in 0..3 {
            for cell in &cells {
                recorder.record(cell, 60_000 + second * 1_000, Outcome::Success);
            }
            recorder.flush(&store).await;
            let (cells_room, keys_room, rows_room) = room(&recorder);
            assert!(
                cells_room >= 300 && keys_room >= 300 && rows_room >= 300,
                "after flush {second}: {:?}",
                room(&recorder)
            );
            let p = recorder.pending.lock().unwrap();
            assert!(p.spare.cells.is_empty() && p.spare.keys.is_empty());
            assert!(p.spare.rows.is_empty());
        }
        let requests = stored_requests(&store, &org, &keys).await;
        assert_eq!(requests.len(), 300);
        assert!(requests.iter().all(|&n| n == 3), "every count once");
        store.close().await;

        // A buffer grown by a burst far above the usual is let go, not kept.
        let mut spare: Vec<u8> = Vec::with_capacity(10);
        keep(&mut spare, Vec::with_capacity(KEEP_ROOM_FOR + 1));
        assert_eq!(spare.capacity(), 10);
        keep(&mut spare, vec![1; 50]);
        assert!(spare.capacity() >= 50 && spare.is_empty());
    }

    #[tokio::test]
    async fn every_tenth_flush_folds_what_the_flushes_before_it_appended() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir, "fold.db").await;
        let recorder = UsageRecorder::default();
        let (org, keys, cells) = keys_with_cells(3);
        let waiting = || async {
            let mut conn = store.read().await.unwrap();
            usage::has_pending(&mut conn).await.unwrap()
        };
        // Read straight from the usage tables, without the fold a read of usage makes first.
        let in_tables = || async {
            let mut conn = store.read().await.unwrap();
            usage::org_requests_since(&mut conn, &org, 0).await.unwrap()
        };
        for flush in 1..=FOLD_EVERY {
            for cell in &cells {
                recorder.record(cell, 60_000 + flush as i64 * 1_000, Outcome::Success);
            }
            recorder.flush(&store).await;
            if flush < FOLD_EVERY {
                assert!(waiting().await, "after flush {flush}: appended, not folded");
                assert_eq!(in_tables().await, 0);
            }
        }
        assert!(!waiting().await, "the tenth flush folded");
        assert_eq!(in_tables().await, 3 * FOLD_EVERY as i64);
        assert_eq!(
            stored_requests(&store, &org, &keys).await,
            vec![FOLD_EVERY as i64; 3]
        );
        // A flush with nothing new when a fold is due still folds.
        recorder.record(&cells[0], 80_000, Outcome::Success);
        for _ in 0..FOLD_EVERY {
            recorder.flush(&store).await;
        }
        assert!(!waiting().await);
        assert_eq!(in_tables().await, 3 * FOLD_EVERY as i64 + 1);
        store.close().await;
    }

    #[tokio::test]
    async fn a_failed_flush_keeps_its_counts_and_last_uses_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (down, up) = (
            sqlite_store(&dir, "down.db").await,
            sqlite_store(&dir, "up.db").await,
        );
        down.close().await;
        let recorder = UsageRecorder::default();
        let (org, keys, cells) = keys_with_cells(600);
        for cell in &cells {
            recorder.record(cell, 60_000, Outcome::Success);
        }
        recorder.flush(&down).await;
        for cell in &cells[..100] {
            recorder.record(cell, 61_000, Outcome::ClientError);
        }
        {
            let p = recorder.pending.lock().unwrap();
            assert_eq!(p.keys.len(), 600, "the failed batch is kept");
            let l = recorder.last_uses.lock().unwrap();
            assert!(l.written.is_empty() && l.deferred.len() == 600);
        }
        recorder.flush(&up).await;
        let requests = stored_requests(&up, &org, &keys).await;
        assert_eq!(requests.len(), 600);
        assert_eq!(requests.iter().sum::<i64>(), 700, "every count once");
        assert!(recorder.pending.lock().unwrap().keys.is_empty());
        {
            let l = recorder.last_uses.lock().unwrap();
            assert!(l.deferred.is_empty() && l.written.len() == 600);
        }
        up.close().await;
    }

    #[tokio::test]
    async fn last_uses_are_written_a_thousand_a_flush_longest_waiting_first() {
        let recorder = UsageRecorder::default();
        let (org, agent) = (OrgId::generate(), AgentId::generate());
        let keys: Vec<KeyId> = (0..2_500).map(|_| KeyId::generate()).collect();
        let cells: HashMap<&KeyId, Arc<UsageCell>> = keys
            .iter()
            .map(|key| {
                let cell = UsageCell::new(org.clone(), agent.clone(), key.clone());
                (key, Arc::new(cell))
            })
            .collect();
        let record = |key: &KeyId, at| recorder.record(&cells[key], at, Outcome::Success);
        for key in &keys[..2_000] {
            record(key, 1_000);
        }
        recorder.drain_cells().await;
        let first = recorder.take_batch().await.1;
        assert_eq!(first.len(), MAX_TOUCHES_PER_FLUSH);
        // 500 more keys come into use; the first key is used again, later.
        for key in &keys[2_000..] {
            record(key, 2_000);
        }
        record(&keys[0], 3_000);
        recorder.drain_cells().await;
        let second = recorder.take_batch().await.1;
        // A second without traffic still writes what waits.
        let (nothing_new, third) = recorder.take_batch().await;
        assert!(nothing_new.is_empty());
        let fourth = recorder.take_batch().await.1;
        assert_eq!((second.len(), third.len(), fourth.len()), (1_000, 500, 0));
        // The 1 000 left over from the first flush go before the newcomers.
        let first_wave: std::collections::HashSet<&str> =
            keys[..2_000].iter().map(KeyId::as_str).collect();
        assert!(second
            .iter()
            .all(|(_, key, _)| first_wave.contains(key.as_str())));
        // Every key is written exactly once, a deferred one with its latest use.
        let mut written: Vec<&str> = first
            .iter()
            .chain(&second)
            .chain(&third)
            .map(|(_, key, _)| key.as_str())
            .collect();
        written.sort_unstable();
        written.dedup();
        assert_eq!(written.len(), 2_500);
        let zero = first
            .iter()
            .chain(&second)
            .find(|(_, key, _)| key == &keys[0]);
        if let Some((_, _, at)) = zero {
            assert!(*at == 1_000 || *at == 3_000);
        }
    }
}
