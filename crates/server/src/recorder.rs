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
use keyward_store::usage::{self, Counts, Granularity};
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

/// A key's counts per minute between two flushes: almost always one minute, held inline
/// (a list of its own per key was thousands of small allocations a flush, freed together
/// at its end); two across a minute's end.
type Minutes = SmallVec<[(UnixMillis, Counts); 1]>;

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
    /// The key's id held inline, on the line after the counts: a flush writes it and keys
    /// its bookkeeping by it without reading the id's string elsewhere on the heap.
    compact: CompactKeyId,
    owner: Arc<Owner>,
    key: KeyId,
}

/// The organization and agent of a cell's key, shared by the cells of keys of one agent
/// loaded one after another: a flush writes an owner's ids once and tells the rows of its
/// keys by where it is ([`usage::BatchWriter`]), instead of reading two ids per key.
#[derive(PartialEq, Eq)]
struct Owner {
    org: OrgId,
    agent: AgentId,
}

/// [`Counting::written`] when this cell does not know what was written.
const NOT_WRITTEN: UnixMillis = UnixMillis::MIN;

/// `repr(C)`: what every count changes first, the rest after.
#[repr(C)]
#[derive(Default)]
struct Counting {
    /// The minute `current` counts; `None` until the first count after a flush.
    minute: Option<UnixMillis>,
    last_used: UnixMillis,
    /// The `last_used_at` a flush last wrote for the key through this cell, or
    /// [`NOT_WRITTEN`]: then [`LastUses::written`] is asked.
    written: UnixMillis,
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
            counting: Mutex::new(Counting {
                written: NOT_WRITTEN,
                ..Counting::default()
            }),
            compact: CompactKeyId::from(&key),
            owner: Owner::shared(Owner { org, agent }),
            key,
        }
    }

    /// Takes the counts of every minute, leaving the cell empty and no longer queued, with
    /// the key's last use and the one written ([`Counting::written`]).
    fn take(&self) -> (Minutes, UnixMillis, UnixMillis) {
        let Ok(mut c) = self.counting.lock() else {
            return (Minutes::new(), 0, NOT_WRITTEN);
        };
        c.queued = false;
        (c.take_minutes(), c.last_used, c.written)
    }

    /// Notes that the key's `last_used_at` is being written as `at`, or (`None`) that it
    /// may not have been after all.
    fn set_written(&self, at: Option<UnixMillis>) {
        if let Ok(mut c) = self.counting.lock() {
            c.written = at.map_or(NOT_WRITTEN, |at| c.written.max(at));
        }
    }

    /// The text the key's id is written as.
    fn key_text(&self) -> &str {
        self.compact.as_text().unwrap_or(self.key.as_str())
    }
}

impl Owner {
    /// `owner`, or the equal one made last on this thread (keys of one agent are usually
    /// loaded together: at start-up, after an invalidation).
    fn shared(owner: Owner) -> Arc<Owner> {
        thread_local! {
            static LAST: std::cell::RefCell<Option<Arc<Owner>>> =
                const { std::cell::RefCell::new(None) };
        }
        let equal = LAST.try_with(|last| {
            let last = last.try_borrow().ok()?;
            last.as_ref().filter(|made| ***made == owner).cloned()
        });
        if let Ok(Some(made)) = equal {
            return made;
        }
        let made = Arc::new(owner);
        let _ = LAST.try_with(|last| {
            if let Ok(mut last) = last.try_borrow_mut() {
                *last = Some(made.clone());
            }
        });
        made
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

/// What the next flush writes: the cells counted since the last one and the batches earlier
/// flushes could not write. The bookkeeping of `last_used_at` writes is in [`LastUses`].
#[derive(Default)]
struct Pending {
    /// Cells counted since the last flush.
    queued: Vec<Arc<UsageCell>>,
    /// Counts taken from the cells but not written yet: a failed flush puts its batch here,
    /// summed with those before it.
    unwritten: Vec<usage::PendingBatch>,
    /// Emptied buffers of the last flush, for the next one.
    spare: Spare,
}

/// The bookkeeping of `last_used_at` writes. Only flushes take its lock, never a request, so
/// a flush may go through thousands of keys under it without holding anyone up.
#[derive(Default)]
struct LastUses {
    /// The `last_used_at` last written per key. A key's time is written again only once it
    /// moved on by [`LAST_USED_STEP_MS`]: "last used" stays within a minute of true at a
    /// fraction of the writes when many keys are busy. Each cell holds its key's too
    /// ([`Counting::written`]), which a flush reads on the line it reads anyway; this map is
    /// asked only by a cell that knows none (a key loaded anew).
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
    batch: Vec<u8>,
}

/// The most entries an emptied buffer may hold room for and still be kept: a burst of many
/// more keys than usual leaves no lasting memory behind.
const KEEP_ROOM_FOR: usize = 100_000;

/// The most bytes an emptied batch buffer may hold room for and still be kept: about
/// [`KEEP_ROOM_FOR`] rows.
const KEEP_BATCH_BYTES: usize = 4 << 20;

/// Empties `buffer` (callers empty it before they take a lock) and keeps it in `spare`, if it
/// has more room than what `spare` holds and not more than `most`.
fn keep<T: Emptied>(spare: &mut T, mut buffer: T, most: usize) {
    buffer.empty();
    if buffer.room() <= most && buffer.room() > spare.room() {
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

/// A key's last use, due to be written.
struct Touch {
    cell: Arc<UsageCell>,
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

    /// Queues the last use of `cell`'s key if it moved on far enough from the written one
    /// (`written`, as the cell knows it, else as this knows it).
    fn mark_due(&mut self, cell: &Arc<UsageCell>, last_used: UnixMillis, written: UnixMillis) {
        let written = if written == NOT_WRITTEN {
            self.written.get(&cell.compact).copied()
        } else {
            Some(written)
        };
        if written.is_none_or(|w| last_used - w >= LAST_USED_STEP_MS) {
            let since = self.deferrals;
            let touch = self.deferred.entry(cell.compact).or_insert_with(|| Touch {
                cell: cell.clone(),
                at: last_used,
                since,
            });
            touch.at = touch.at.max(last_used);
            self.deferrals += 1;
        }
    }

    /// The due last uses this flush writes, longest-waiting first, marked as written.
    fn take_touches(&mut self) -> Vec<Touch> {
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
                touch.cell.set_written(Some(touch.at));
                Some(touch)
            })
            .collect()
    }

    /// Puts back last uses a failed flush did not write: first in line next time.
    fn put_back(&mut self, touches: Vec<Touch>) {
        for touch in touches {
            let compact = touch.cell.compact;
            self.written.remove(&compact);
            touch.cell.set_written(None);
            self.deferred
                .entry(compact)
                .or_insert(Touch { since: 0, ..touch });
        }
    }
}

/// What one flush writes ([`UsageRecorder::take_batch`]).
struct Taken {
    batch: usage::PendingBatch,
    unwritten: Vec<usage::PendingBatch>,
    touches: Vec<Touch>,
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

    /// Takes what the next write holds: the counts of every queued cell, written straight
    /// into a batch (a cell's lines are read once, and an agent's ids once per batch), the
    /// batches earlier flushes could not write, and the last uses that are due. Yields to the
    /// runtime every [`YIELD_EVERY`] cells: thousands of keys a second must not hold up the
    /// requests on this thread for one long stretch.
    async fn take_batch(&self) -> Taken {
        let (mut cells, buffer, unwritten) = match self.pending.lock() {
            Ok(mut p) => {
                let spare = std::mem::take(&mut p.spare.cells);
                (
                    std::mem::replace(&mut p.queued, spare),
                    std::mem::take(&mut p.spare.batch),
                    std::mem::take(&mut p.unwritten),
                )
            }
            Err(_) => Default::default(),
        };
        if let Ok(mut last_uses) = self.last_uses.lock() {
            last_uses.bound();
        }
        let mut writer = usage::BatchWriter::new(buffer);
        for step in cells.chunks(YIELD_EVERY) {
            {
                // None under a poisoned lock: the counts are still taken.
                let mut last_uses = self.last_uses.lock().ok();
                for cell in step {
                    let (minutes, last_used, written) = cell.take();
                    if minutes.is_empty() {
                        continue;
                    }
                    let owner = Arc::as_ptr(&cell.owner).addr();
                    let ids = || (&cell.owner.org, &cell.owner.agent);
                    for (minute, counts) in &minutes {
                        writer.push(owner, ids, cell.key_text(), *minute, counts);
                    }
                    if let Some(last_uses) = last_uses.as_mut() {
                        last_uses.mark_due(cell, last_used, written);
                    }
                }
            }
            tokio::task::yield_now().await;
        }
        // The owners were told apart by address: the cells that hold them live until now.
        let batch = writer.finish();
        // Emptied before the lock is taken: a request may be waiting for it.
        cells.clear();
        if let Ok(mut p) = self.pending.lock() {
            keep(&mut p.spare.cells, cells, KEEP_ROOM_FOR);
        }
        let touches = self
            .last_uses
            .lock()
            .map(|mut l| l.take_touches())
            .unwrap_or_default();
        Taken {
            batch,
            unwritten,
            touches,
        }
    }

    /// Writes everything gathered so far in one transaction, the counts appended as one row
    /// and the last uses that are due, and keeps it all for the next attempt on failure;
    /// every [`FOLD_EVERY`] flushes, then folds what is appended into the usage tables. One
    /// transaction, not many small ones spread out: what delays requests on a machine where
    /// they share a core with the database's thread is the time the flush takes, and more
    /// transactions only took longer (docs/BENCHMARKS.md).
    pub async fn flush(&self, store: &Store) {
        let Taken {
            batch,
            unwritten,
            touches,
        } = self.take_batch().await;
        let flushes = self
            .flushes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let fold = flushes % FOLD_EVERY == FOLD_EVERY - 1;
        // Last uses deferred by earlier flushes are written even in a second without traffic,
        // and what earlier flushes appended is folded in time even when none follows.
        if batch.rows() > 0 || !unwritten.is_empty() || !touches.is_empty() {
            self.write(store, batch, unwritten, touches).await;
        } else {
            self.keep_buffer(batch);
        }
        // In a transaction of its own, so that a fold that fails leaves this flush written.
        if fold {
            if let Err(e) = self::fold(store).await {
                tracing::warn!(error = %e, "could not fold usage counts; will retry");
            }
        }
    }

    /// [`UsageRecorder::flush`]'s write: on failure the counts are summed into one batch
    /// for the next flush and the last uses put back.
    async fn write(
        &self,
        store: &Store,
        batch: usage::PendingBatch,
        unwritten: Vec<usage::PendingBatch>,
        touches: Vec<Touch>,
    ) {
        let last_used: Vec<(OrgId, KeyId, UnixMillis)> = touches
            .iter()
            .map(|t| (t.cell.owner.org.clone(), t.cell.key.clone(), t.at))
            .collect();
        let started = std::time::Instant::now();
        let result = async {
            let mut tx = store.begin().await?;
            for earlier in &unwritten {
                usage::append(&mut tx, earlier).await?;
            }
            usage::append(&mut tx, &batch).await?;
            let added = started.elapsed();
            keys::touch_last_used(&mut tx, &last_used).await?;
            let touched = started.elapsed();
            keyward_store::commit(tx).await?;
            Ok::<_, keyward_store::StoreError>((added, touched))
        }
        .await;
        let rows = batch.rows() + unwritten.iter().map(|b| b.rows()).sum::<usize>();
        match result {
            Ok((added, touched)) => {
                tracing::debug!(
                    rows,
                    last_used = touches.len(),
                    add_ms = added.as_secs_f64() * 1e3,
                    touch_ms = (touched - added).as_secs_f64() * 1e3,
                    commit_ms = (started.elapsed() - touched).as_secs_f64() * 1e3,
                    "usage flushed"
                );
                self.keep_buffer(batch);
            }
            Err(e) => {
                tracing::warn!(error = %e, rows, "could not write usage counts; will retry");
                if let Ok(mut last_uses) = self.last_uses.lock() {
                    last_uses.put_back(touches);
                }
                let mut batches = unwritten;
                batches.push(batch);
                let (summed, dropped) = usage::PendingBatch::merge(&batches, MAX_PENDING).await;
                if dropped > 0 {
                    tracing::error!(
                        rows = dropped,
                        "usage counts held back by the database outage outgrew what is kept; \
                         these are dropped"
                    );
                }
                if let Ok(mut p) = self.pending.lock() {
                    p.unwritten.push(summed);
                }
            }
        }
    }

    /// Keeps a written batch's buffer for the next flush.
    fn keep_buffer(&self, batch: usage::PendingBatch) {
        let buffer = batch.into_buffer();
        if let Ok(mut p) = self.pending.lock() {
            keep(&mut p.spare.batch, buffer, KEEP_BATCH_BYTES);
        }
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

    /// The stored counts of each key and minute (after a fold), as `(key, minute, counts)`.
    async fn stored(
        store: &Store,
        org: &OrgId,
        keys: &[KeyId],
    ) -> Vec<(KeyId, UnixMillis, Counts)> {
        fold(store).await.unwrap();
        let mut conn = store.read().await.unwrap();
        usage::series(
            &mut conn,
            org,
            usage::Subject::Keys(keys),
            Granularity::Minute,
            0,
            UnixMillis::MAX,
        )
        .await
        .unwrap()
    }

    /// The stored requests of each key and minute.
    async fn stored_requests(store: &Store, org: &OrgId, keys: &[KeyId]) -> Vec<i64> {
        let rows = stored(store, org, keys).await;
        rows.iter().map(|(_, _, c)| c.requests).collect()
    }

    #[tokio::test]
    async fn cells_are_counted_across_minutes_reloads_and_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir, "cells.db").await;
        let recorder = UsageRecorder::default();
        let (org, agent, key) = (OrgId::generate(), AgentId::generate(), KeyId::generate());
        // The same key loaded twice (a reload after an invalidation): two cells, one key.
        let first = Arc::new(UsageCell::new(org.clone(), agent.clone(), key.clone()));
        let second = Arc::new(UsageCell::new(org.clone(), agent, key.clone()));
        assert!(Arc::ptr_eq(&first.owner, &second.owner), "one owner");
        recorder.record(&first, 59_000, Outcome::Success);
        recorder.record(&first, 60_500, Outcome::RateLimited);
        recorder.record(&second, 60_900, Outcome::ServerError);
        // Each cell is queued once, however many requests it counted.
        assert_eq!(recorder.pending.lock().unwrap().queued.len(), 2);
        recorder.flush(&store).await;
        // Counted again after the flush: queued again, for the next one.
        recorder.record(&first, 61_000, Outcome::Success);
        assert_eq!(recorder.pending.lock().unwrap().queued.len(), 1);
        recorder.flush(&store).await;
        let rows = stored(&store, &org, std::slice::from_ref(&key)).await;
        let mut minutes: Vec<(UnixMillis, Counts)> =
            rows.into_iter().map(|(_, m, c)| (m, c)).collect();
        minutes.sort_by_key(|(m, _)| *m);
        let requests: Vec<(UnixMillis, i64, i64)> = minutes
            .iter()
            .map(|(m, c)| (*m, c.requests, c.success))
            .collect();
        assert_eq!(requests, [(0, 1, 1), (60_000, 3, 1)]);
        assert_eq!(minutes[1].1.rate_limited, 1);
        assert_eq!(minutes[1].1.server_errors, 1);
        // The last use was written once, at the first flush, with the later of the two
        // cells' times; 61 000 is too close to it to be written again.
        {
            let l = recorder.last_uses.lock().unwrap();
            assert_eq!(l.written.get(&CompactKeyId::from(&key)), Some(&60_900));
            assert!(l.deferred.is_empty());
        }
        store.close().await;
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
            (s.cells.capacity(), s.batch.capacity())
        };
        for second in 0..3 {
            for cell in &cells {
                recorder.record(cell, 60_000 + second * 1_000, Outcome::Success);
            }
            recorder.flush(&store).await;
            let (cells_room, batch_room) = room(&recorder);
            assert!(
                cells_room >= 300 && batch_room >= 300 * 30,
                "after flush {second}: {:?}",
                room(&recorder)
            );
            let p = recorder.pending.lock().unwrap();
            assert!(p.spare.cells.is_empty() && p.spare.batch.is_empty());
        }
        let requests = stored_requests(&store, &org, &keys).await;
        assert_eq!(requests.len(), 300);
        assert!(requests.iter().all(|&n| n == 3), "every count once");
        store.close().await;

        // A buffer grown by a burst far above the usual is let go, not kept.
        let mut spare: Vec<u8> = Vec::with_capacity(10);
        keep(
            &mut spare,
            Vec::with_capacity(KEEP_ROOM_FOR + 1),
            KEEP_ROOM_FOR,
        );
        assert_eq!(spare.capacity(), 10);
        keep(&mut spare, vec![1; 50], KEEP_ROOM_FOR);
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
        let written = |cell: &Arc<UsageCell>| cell.counting.lock().unwrap().written;
        assert!(cells.iter().all(|c| written(c) == NOT_WRITTEN));
        // Still down: the second failed batch is summed with the first, key by key.
        for cell in &cells[..100] {
            recorder.record(cell, 61_000, Outcome::ClientError);
        }
        recorder.flush(&down).await;
        {
            let p = recorder.pending.lock().unwrap();
            let kept: Vec<usize> = p.unwritten.iter().map(|b| b.rows()).collect();
            assert_eq!(kept, [600], "the failed batches are kept, summed");
            let l = recorder.last_uses.lock().unwrap();
            assert!(l.written.is_empty() && l.deferred.len() == 600);
        }
        recorder.flush(&up).await;
        let requests = stored_requests(&up, &org, &keys).await;
        assert_eq!(requests.len(), 600);
        assert_eq!(requests.iter().sum::<i64>(), 700, "every count once");
        assert!(recorder.pending.lock().unwrap().unwritten.is_empty());
        {
            let l = recorder.last_uses.lock().unwrap();
            assert!(l.deferred.is_empty() && l.written.len() == 600);
        }
        assert!(cells[..100].iter().all(|c| written(c) == 61_000));
        assert!(cells[100..].iter().all(|c| written(c) == 60_000));
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
        let first = recorder.take_batch().await.touches;
        assert_eq!(first.len(), MAX_TOUCHES_PER_FLUSH);
        // 500 more keys come into use; the first key is used again, later.
        for key in &keys[2_000..] {
            record(key, 2_000);
        }
        record(&keys[0], 3_000);
        let second = recorder.take_batch().await.touches;
        // A second without traffic still writes what waits.
        let quiet = recorder.take_batch().await;
        assert_eq!(quiet.batch.rows(), 0);
        let third = quiet.touches;
        let fourth = recorder.take_batch().await.touches;
        assert_eq!((second.len(), third.len(), fourth.len()), (1_000, 500, 0));
        // The 1 000 left over from the first flush go before the newcomers.
        let first_wave: std::collections::HashSet<&str> =
            keys[..2_000].iter().map(KeyId::as_str).collect();
        assert!(second
            .iter()
            .all(|t| first_wave.contains(t.cell.key.as_str())));
        // Every key is written exactly once, a deferred one with its latest use.
        let mut written: Vec<&str> = first
            .iter()
            .chain(&second)
            .chain(&third)
            .map(|t| t.cell.key.as_str())
            .collect();
        written.sort_unstable();
        written.dedup();
        assert_eq!(written.len(), 2_500);
        let zero = first.iter().chain(&second).find(|t| t.cell.key == keys[0]);
        if let Some(t) = zero {
            assert!(t.at == 1_000 || t.at == 3_000);
        }
    }
}
