//! Rolling-window rate-limit arithmetic (SPEC §4).
//!
//! A [`WindowState`] holds what one key has been admitted recently and answers, for a request
//! at `now`, whether it may pass and what the rate-limit headers say. It never reads the clock
//! and holds no locks; the server keeps one per key and decides where it lives.
//!
//! The rule is "at most `limit` requests in **any** `window`": a request at `t` counts while
//! `now` is in `[t, t + window)` and has left the window at `t + window`. Only admitted requests
//! count; a rejected one leaves no trace, so a client hammering through a 429 does not extend
//! its own penalty.
//!
//! Up to [`MAX_EXACT_LIMIT`] the state is a sliding log with one timestamp per counted request,
//! and every answer is exact. Above it the log would cost too much memory per key, so the state
//! switches to [`SUB_BUCKETS`] counters per window, an approximation that never admits more than
//! the limit; its error is documented on [`WindowState`].

use std::collections::VecDeque;
use std::mem::size_of;

use crate::{RateLimit, UnixMillis};

/// Largest limit enforced exactly, with one timestamp (8 bytes) per counted request.
pub const MAX_EXACT_LIMIT: u64 = 10_000;

/// Number of sub-buckets a window is cut into when the limit exceeds [`MAX_EXACT_LIMIT`].
pub const SUB_BUCKETS: u32 = 64;

/// Bucket slots kept: a window of `W` ms with buckets of `⌈W / 64⌉` ms overlaps at most 65.
const RING: usize = SUB_BUCKETS as usize + 1;

/// Longest window the arithmetic accepts (about 35 years). Only a `RateLimit` built without
/// [`RateLimit::new`] can ask for more; it is clamped so that no sum below can overflow.
const MAX_WINDOW_MS: i64 = 1 << 40;

/// Times are clamped to ±2^60 ms (36 million years) for the same reason.
const TIME_BOUND: i64 = 1 << 60;

/// The answer for one request: whether it passes and the values of its rate-limit headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted (and therefore counted).
    pub allowed: bool,
    /// The limit it was checked against (`X-RateLimit-Limit`, `q=` of `RateLimit-Policy`).
    pub limit: u64,
    /// Requests left in the window after this one; 0 when rejected (`X-RateLimit-Remaining`,
    /// `r=` of `RateLimit`).
    pub remaining: u64,
    /// When the oldest counted request (this one included, if admitted) leaves the window
    /// (`X-RateLimit-Reset`, in milliseconds).
    pub reset_at: UnixMillis,
    /// For a rejected request, the `Retry-After` seconds: at least 1, never less than
    /// [`Decision::reset_in_secs`], and late enough that a retry then is admitted unless other
    /// requests took the freed slot first. `None` when admitted.
    pub retry_after_secs: Option<u64>,
}

impl Decision {
    /// Whole seconds from `now` until [`Decision::reset_at`], rounded up: the `t=` of the IETF
    /// `RateLimit: "default";r=<remaining>;t=<t>` field. Pass the `now` given to the check.
    pub fn reset_in_secs(&self, now: UnixMillis) -> u64 {
        ceil_secs(self.reset_at.saturating_sub(now))
    }
}

/// Rate-limit state of one key.
///
/// # Exact up to [`MAX_EXACT_LIMIT`]
/// The state is a log of the admitted requests still in the window, oldest first. A request is
/// admitted iff fewer than `limit` logged requests are in the window; `remaining`, `reset_at` and
/// `retry_after_secs` are exact.
///
/// # Approximate above it
/// With window `W` ms and `g = ⌈W / 64⌉` ms, admitted requests are counted in buckets of `g` ms
/// aligned on multiples of `g`, and every bucket that overlaps the window counts in full. So the
/// counted set always contains every admitted request of the last `W` ms plus possibly some of
/// the `g − 1` ms before. Hence, precisely:
/// - **never over-admits**: no interval of `W` ms ever holds more than `limit` admitted
///   requests, exactly as with the log;
/// - **may under-admit, by at most a window stretch of `g − 1` ms**: a request at `now` is
///   refused only if at least `limit` requests were admitted in `(now − W − g + 1, now]`. The
///   key gets at least `limit` requests per `W + g − 1` ms, under 1/64 of the window (1.6 %)
///   below the exact limiter; for 60 s, `g` is 938 ms;
/// - `reset_at` is when the oldest counted bucket stops counting: `(k + 1)·g + W − 1` for bucket
///   `k`, between `r + W` and `r + W + g − 1` for each request `r` in it, and never more than
///   `g − 1` ms after the exact reset. `retry_after_secs` is when enough buckets have stopped
///   counting to free a slot, so a retry then is admitted as with the log. `remaining` may be
///   low by the requests of the oldest, partly expired, bucket, never high.
///
/// # Memory
/// [`WindowState::memory_bytes`] estimates it. On 64-bit targets: 48 bytes, plus 8 bytes per
/// counted request in exact mode (the log never holds more than the largest limit it was
/// checked against, so at most 80 000 bytes), or a fixed 560 bytes of buckets in approximate
/// mode, whatever the limit.
///
/// # Changes of limit or window
/// The state records admitted requests, not a verdict, so each check applies the limit it is
/// given: after a plan downgrade, the requests admitted under the old limit still count against
/// the new one. Crossing [`MAX_EXACT_LIMIT`] converts between modes conservatively (a bucket's
/// requests are taken to be as late as the bucket allows, so nothing leaves early). A limit
/// that drops to [`MAX_EXACT_LIMIT`] or below stays approximate until what the buckets counted
/// has left the window (at most one window plus `g`), so raising it again cannot forget
/// anything. A window that is lengthened only sees the requests still remembered under the
/// shorter one.
///
/// # Time
/// Time never runs backwards inside a state: a `now` earlier than one already seen is taken as
/// the latest seen, so a clock stepped back can neither free slots early nor break the log's
/// order. Durations in the [`Decision`] are still measured from the caller's `now`. A step back
/// by more than a whole window (a clock that ran ahead and was corrected) starts the state
/// afresh instead of holding the key to requests stamped in a future that may be days away;
/// that once grants at most one extra `limit`.
#[derive(Clone, Debug)]
pub struct WindowState {
    /// Latest time seen.
    latest: UnixMillis,
    /// When everything counted will have left the window of the last check.
    quiet_at: UnixMillis,
    counter: Counter,
}

#[derive(Clone, Debug)]
enum Counter {
    Log(SlidingLog),
    // Boxed so that the common exact state stays small in a map of thousands of keys.
    Buckets(Box<SubBuckets>),
}

impl Default for WindowState {
    fn default() -> Self {
        Self::new()
    }
}

impl WindowState {
    /// A state with nothing counted.
    pub fn new() -> Self {
        Self {
            latest: UnixMillis::MIN,
            quiet_at: UnixMillis::MIN,
            counter: Counter::Log(SlidingLog::default()),
        }
    }

    /// Decides a request at `now` under `limit`, counting it if admitted.
    pub fn check(&mut self, limit: RateLimit, now: UnixMillis) -> Decision {
        self.check_with(limit, now, MAX_EXACT_LIMIT)
    }

    /// Whether nothing is counted any more at `now` (under the window of the last check), so
    /// that dropping the state changes no future answer.
    pub fn is_idle(&self, now: UnixMillis) -> bool {
        self.quiet_at <= now
    }

    /// The latest time checked at (as bounded by the check): when the key was last seen.
    pub fn latest(&self) -> UnixMillis {
        self.latest
    }

    /// Where the approximate mode keeps its buckets (a separate allocation), for
    /// [`prefetch_buckets`]; `None` in the exact mode.
    pub fn buckets_address(&self) -> Option<usize> {
        match &self.counter {
            Counter::Buckets(buckets) => Some(std::ptr::from_ref::<SubBuckets>(buckets).addr()),
            Counter::Log(_) => None,
        }
    }

    /// Estimated bytes this state occupies, heap included.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + match &self.counter {
                Counter::Log(log) => log.admitted.capacity() * size_of::<UnixMillis>(),
                Counter::Buckets(_) => size_of::<SubBuckets>(),
            }
    }

    /// [`WindowState::check`] with the exact/approximate threshold as a parameter, so tests can
    /// exercise both modes and their conversions with small limits.
    fn check_with(&mut self, limit: RateLimit, now: UnixMillis, exact_max: u64) -> Decision {
        let window = window_ms(limit.window_seconds);
        let now_bounded = now.clamp(-TIME_BOUND, TIME_BOUND);
        if now_bounded < self.latest.saturating_sub(window) {
            *self = Self::new();
        }
        let at = now_bounded.max(self.latest);
        self.latest = at;
        self.adapt(limit.limit, window, at, exact_max);
        let outcome = match &mut self.counter {
            Counter::Log(log) => log.check(limit.limit, window, at),
            Counter::Buckets(buckets) => buckets.check(limit.limit, window, at),
        };
        self.quiet_at = match &self.counter {
            Counter::Log(log) => log.quiet_at(window),
            Counter::Buckets(buckets) => buckets.quiet_at(window),
        };
        outcome.decision(limit.limit, now)
    }

    /// Switches representation when the limit crosses `exact_max` or the bucket width no
    /// longer fits the window.
    fn adapt(&mut self, limit: u64, window: i64, at: UnixMillis, exact_max: u64) {
        let exact = limit <= exact_max;
        let replacement =
            match &self.counter {
                Counter::Log(log) if !exact => Some(Counter::Buckets(Box::new(
                    SubBuckets::holding(window, at, log.admitted.iter().map(|&t| (t, 1))),
                ))),
                // Back to the log only once the buckets have emptied: turning up to a billion
                // counts into timestamps would cost what the buckets exist to save, and keeping
                // only some would forget requests that count again if the limit rises anew.
                Counter::Buckets(buckets) if exact && buckets.quiet_at(window) <= at => {
                    Some(Counter::Log(SlidingLog::default()))
                }
                Counter::Buckets(buckets) if buckets.width != bucket_width(window) => {
                    Some(Counter::Buckets(Box::new(SubBuckets::holding(
                        window,
                        at,
                        buckets.latest_times(at),
                    ))))
                }
                _ => None,
            };
        if let Some(counter) = replacement {
            self.counter = counter;
        }
    }
}

/// Asks for the two lines a check at `now` under `limit` reads in the buckets at `address`
/// (from [`WindowState::buckets_address`]): the fields above the ring, and the bucket the
/// request counts in. The slot is found from the window, not from the buckets' own fields,
/// so both are asked for at once, by a caller that remembered the address and asks before it
/// holds the state (the in-process limiter's slot). The address may be stale (the state
/// converted or was dropped since): nothing is read through it, and the hint is merely wasted.
pub fn prefetch_buckets(address: usize, limit: RateLimit, now: UnixMillis) {
    let window = window_ms(limit.window_seconds);
    let now = now.clamp(-TIME_BOUND, TIME_BOUND);
    let counted_in = slot(now.div_euclid(bucket_width(window)));
    let bucket = std::mem::offset_of!(SubBuckets, counts) + counted_in * size_of::<u64>();
    crate::hint::prefetch_at(address);
    crate::hint::prefetch_at(address.wrapping_add(bucket));
}

/// What a counter found, before it is phrased as a [`Decision`].
struct Outcome {
    allowed: bool,
    /// Requests counted in the window, this one included if admitted.
    counted: u64,
    reset_at: UnixMillis,
    /// When a slot frees for the next request (only read when rejected).
    retry_at: UnixMillis,
}

impl Outcome {
    fn decision(&self, limit: u64, now: UnixMillis) -> Decision {
        let reset_in = ceil_secs(self.reset_at.saturating_sub(now));
        Decision {
            allowed: self.allowed,
            limit,
            remaining: if self.allowed {
                limit.saturating_sub(self.counted)
            } else {
                0
            },
            reset_at: self.reset_at,
            retry_after_secs: (!self.allowed).then(|| {
                // retry_at >= reset_at already; the max states SPEC §4's rule outright.
                ceil_secs(self.retry_at.saturating_sub(now))
                    .max(reset_in)
                    .max(1)
            }),
        }
    }
}

/// The exact mode: admitted timestamps still in the window, oldest first.
#[derive(Clone, Debug, Default)]
struct SlidingLog {
    admitted: VecDeque<UnixMillis>,
}

impl SlidingLog {
    fn check(&mut self, limit: u64, window: i64, now: UnixMillis) -> Outcome {
        while self.admitted.front().is_some_and(|&t| t + window <= now) {
            self.admitted.pop_front();
        }
        self.release_spare_capacity();
        let counted = self.admitted.len() as u64;
        if counted < limit {
            self.reserve_one(limit);
            self.admitted.push_back(now);
            let oldest = self.admitted.front().copied().unwrap_or(now);
            return Outcome {
                allowed: true,
                counted: counted + 1,
                reset_at: oldest + window,
                retry_at: oldest + window,
            };
        }
        let reset_at = self.admitted.front().map_or(now, |&t| t) + window;
        // A slot frees when the limit-th newest request leaves. That is the oldest one unless
        // the limit was lowered while more were counted.
        let retry_at = usize::try_from(counted - limit)
            .ok()
            .and_then(|i| self.admitted.get(i))
            .map_or(reset_at, |&t| t + window);
        Outcome {
            allowed: false,
            counted,
            reset_at,
            retry_at,
        }
    }

    fn quiet_at(&self, window: i64) -> UnixMillis {
        self.admitted
            .back()
            .map_or(UnixMillis::MIN, |&t| t + window)
    }

    /// Grows by doubling but never past `limit` (VecDeque alone would round a log of 10 000 up
    /// to 16 384 slots), since the log never holds more than `limit` entries.
    fn reserve_one(&mut self, limit: u64) {
        let len = self.admitted.len();
        if len == self.admitted.capacity() {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            self.admitted
                .reserve_exact(len.max(8).min(limit.saturating_sub(len)).max(1));
        }
    }

    /// Gives memory back after a burst, so a once-busy key does not keep its peak.
    fn release_spare_capacity(&mut self) {
        let (len, cap) = (self.admitted.len(), self.admitted.capacity());
        if cap > 64 && len < cap / 4 {
            self.admitted.shrink_to(len * 2);
        }
    }
}

/// The approximate mode: counts of admitted requests per bucket of `width` ms, bucket `k`
/// covering `[k·width, (k+1)·width)`, for the newest [`RING`] buckets.
///
/// Laid out in declaration order from a cache line's start: the fields every check reads
/// come first, in one line, so a check of a key whose state is not in the processor's cache
/// waits for that line and the bucket lines it touches, not for a line at each end of the
/// ring.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
struct SubBuckets {
    width: i64,
    /// Index of the newest bucket; the ring holds `head − 64 ..= head`.
    head: i64,
    /// The sum of `counts`, kept up to date so that a check under steady load reads a few
    /// buckets instead of summing all 65.
    total: u64,
    /// Bit `s` is set iff `counts[s] > 0`: the oldest and newest non-empty buckets are found
    /// from this word instead of by reading the ring (9 cache lines) on every check.
    /// (Two words rather than a `u128`, whose 16-byte alignment would pad the struct.)
    nonzero: [u64; 2],
    counts: [u64; RING],
}

impl SubBuckets {
    /// Buckets sized for `window`, newest at `at`, holding `(time, count)` pairs. Pairs too old
    /// for the ring have left any window of this length already and are dropped.
    fn holding(
        window: i64,
        at: UnixMillis,
        times: impl Iterator<Item = (UnixMillis, u64)>,
    ) -> Self {
        let width = bucket_width(window);
        let mut buckets = Self {
            width,
            head: at.div_euclid(width),
            counts: [0; RING],
            total: 0,
            nonzero: [0; 2],
        };
        let oldest = buckets.head - SUB_BUCKETS as i64;
        for (t, n) in times {
            let k = t.min(at).div_euclid(width);
            if k >= oldest {
                buckets.counts[slot(k)] += n;
                buckets.total += n;
                if n > 0 {
                    buckets.set_nonzero(slot(k), true);
                }
            }
        }
        buckets
    }

    fn check(&mut self, limit: u64, window: i64, now: UnixMillis) -> Outcome {
        let newest = now.div_euclid(self.width);
        self.advance(newest);
        debug_assert_eq!(self.head, newest, "checks never go back in time");
        // Bucket k counts while any instant of it can still be in the window: from the bucket
        // holding `now − window + 1` up to the current one (at most 65 buckets). `now` never
        // goes back (the caller passes the latest time seen), so the newest bucket is the head
        // and the ones that no longer count are the few at the ring's old end.
        let oldest = (now - window + 1).div_euclid(self.width);
        let expired: u64 = slots(self.head - SUB_BUCKETS as i64, oldest - 1)
            .map(|(_, s)| self.counts[s])
            .sum();
        let counted = self.total - expired;
        let allowed = counted < limit;
        if allowed {
            self.counts[slot(newest)] += 1;
            self.total += 1;
            self.set_nonzero(slot(newest), true);
        }
        let counted = counted + u64::from(allowed);
        let leaves = |k: i64| (k + 1) * self.width + window - 1;
        let first_nonzero = self.first_nonzero(oldest, newest);
        let reset_at = first_nonzero.map_or(now + window, leaves);
        if allowed {
            // `retry_at` is only read for a refusal.
            return Outcome {
                allowed,
                counted,
                reset_at,
                retry_at: reset_at,
            };
        }
        // A slot frees once enough of the oldest buckets have left to bring the count below
        // the limit; with a limit of 0 that never happens and the reset is reported instead.
        let must_leave = counted.saturating_sub(limit).saturating_add(1);
        let mut left = 0;
        let retry_at = slots(oldest, newest)
            .find(|&(_, s)| {
                left += self.counts[s];
                left >= must_leave
            })
            .map_or(reset_at, |(k, _)| leaves(k));
        Outcome {
            allowed,
            counted,
            reset_at,
            retry_at,
        }
    }

    /// Moves the head to bucket `newest`, emptying the slots it reuses.
    fn advance(&mut self, newest: i64) {
        let steps = (newest - self.head).clamp(0, RING as i64);
        for (_, s) in slots(self.head + 1, self.head + steps) {
            let count = &mut self.counts[s];
            self.total -= *count;
            *count = 0;
            self.set_nonzero(s, false);
        }
        self.head = self.head.max(newest);
    }

    /// Non-empty buckets, oldest first.
    fn nonzero(&self) -> impl Iterator<Item = (i64, u64)> + '_ {
        slots(self.head - SUB_BUCKETS as i64, self.head)
            .map(|(k, s)| (k, self.counts[s]))
            .filter(|&(_, n)| n > 0)
    }

    /// Each bucket's requests placed at the latest instant they can have happened (never after
    /// `at`), so that a conversion never lets them leave early.
    fn latest_times(&self, at: UnixMillis) -> impl Iterator<Item = (UnixMillis, u64)> + '_ {
        self.nonzero()
            .map(move |(k, n)| (((k + 1) * self.width - 1).min(at), n))
    }

    fn quiet_at(&self, window: i64) -> UnixMillis {
        let oldest = self.head - SUB_BUCKETS as i64;
        let in_ring = self.nonzero_from(oldest, RING);
        if in_ring == 0 {
            return UnixMillis::MIN;
        }
        let newest = oldest + i64::from(127 - in_ring.leading_zeros());
        (newest + 1) * self.width + window - 1
    }

    /// The oldest non-empty bucket of `from..=to` (all in the ring).
    fn first_nonzero(&self, from: i64, to: i64) -> Option<i64> {
        let n = (to - from + 1).clamp(0, RING as i64) as usize;
        let bits = self.nonzero_from(from, n);
        (bits != 0).then(|| from + i64::from(bits.trailing_zeros()))
    }

    fn set_nonzero(&mut self, slot: usize, nonzero: bool) {
        let (word, bit) = (slot / 64, slot % 64);
        if nonzero {
            self.nonzero[word] |= 1 << bit;
        } else {
            self.nonzero[word] &= !(1 << bit);
        }
    }

    /// Bit `i` set iff bucket `from + i` is non-empty, for `i < n` (`n` ≤ [`RING`]).
    fn nonzero_from(&self, from: i64, n: usize) -> u128 {
        let first = slot(from);
        let ring =
            (u128::from(self.nonzero[1]) << 64 | u128::from(self.nonzero[0])) & ((1 << RING) - 1);
        // Rotate the 65-slot ring so that `from`'s slot is bit 0.
        let rotated = ((ring >> first) | (ring << (RING - first))) & ((1 << RING) - 1);
        rotated & ((1u128 << n) - 1)
    }
}

fn slot(k: i64) -> usize {
    k.rem_euclid(RING as i64) as usize
}

/// Buckets `from..=to` (at most [`RING`] of them) with their slots, oldest first; one
/// division for the first slot, then the ring is walked.
fn slots(from: i64, to: i64) -> impl Iterator<Item = (i64, usize)> {
    let n = (to - from + 1).clamp(0, RING as i64) as usize;
    let first = slot(from);
    (0..n).map(move |i| {
        let s = first + i;
        (from + i as i64, if s >= RING { s - RING } else { s })
    })
}

/// `⌈window / 64⌉`, at least 1 ms.
fn bucket_width(window: i64) -> i64 {
    ((window + SUB_BUCKETS as i64 - 1) / SUB_BUCKETS as i64).max(1)
}

fn window_ms(window_seconds: u64) -> i64 {
    i64::try_from(window_seconds)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000)
        .clamp(1, MAX_WINDOW_MS)
}

/// Milliseconds to whole seconds, rounded up; 0 for a time already past.
fn ceil_secs(ms: i64) -> u64 {
    u64::try_from(ms).map_or(0, |ms| ms.div_ceil(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: UnixMillis = 1_700_000_000_000;

    fn rl(limit: u64, window_seconds: u64) -> RateLimit {
        RateLimit {
            limit,
            window_seconds,
        }
    }

    /// Admitted times in `(t − span, t]`, from a sorted list of times up to `t`.
    fn within(admitted: &[UnixMillis], t: UnixMillis, span: i64) -> &[UnixMillis] {
        &admitted[admitted.partition_point(|&a| a <= t - span)..]
    }

    /// The brute-force model of SPEC §4: admit iff fewer than `limit` admitted requests in
    /// `(t − window, t]`, and report exactly what the headers must say.
    fn model(requests: &[(UnixMillis, u64)], window_seconds: u64) -> Vec<Decision> {
        let w = window_seconds as i64 * 1000;
        let mut admitted: Vec<UnixMillis> = Vec::new();
        requests
            .iter()
            .map(|&(t, limit)| {
                let mut live = within(&admitted, t, w).to_vec();
                let n = live.len() as u64;
                if n < limit {
                    admitted.push(t);
                    live.push(t);
                    Decision {
                        allowed: true,
                        limit,
                        remaining: limit - n - 1,
                        reset_at: live[0] + w,
                        retry_after_secs: None,
                    }
                } else {
                    let reset_at = live.first().map_or(t, |&a| a) + w;
                    let retry_at = live.get((n - limit) as usize).map_or(reset_at, |&a| a + w);
                    Decision {
                        allowed: false,
                        limit,
                        remaining: 0,
                        reset_at,
                        retry_after_secs: Some(ceil_secs(retry_at - t).max(1)),
                    }
                }
            })
            .collect()
    }

    /// Largest number of admitted requests in any interval of `window` ms (a worst interval
    /// always ends on an admitted request). Two pointers, so large streams stay cheap.
    fn max_in_any_window(admitted: &[UnixMillis], window: i64) -> usize {
        let mut first = 0;
        let mut worst = 0;
        for (i, &t) in admitted.iter().enumerate() {
            while admitted[first] <= t - window {
                first += 1;
            }
            worst = worst.max(i + 1 - first);
        }
        worst
    }

    fn arrivals(gaps: &[i64]) -> Vec<UnixMillis> {
        gaps.iter()
            .scan(T0, |t, gap| {
                *t += gap;
                Some(*t)
            })
            .collect()
    }

    #[test]
    fn spec_scenario_ten_per_two_seconds() {
        let limit = rl(10, 2);
        let mut s = WindowState::new();
        for i in 0..5 {
            let d = s.check(limit, T0);
            assert!(d.allowed);
            assert_eq!(d.remaining, 9 - i);
            assert_eq!(d.reset_at, T0 + 2000);
        }
        for i in 0..5 {
            let d = s.check(limit, T0 + 1200);
            assert!(d.allowed);
            assert_eq!(d.remaining, 4 - i);
            assert_eq!(
                d.reset_at,
                T0 + 2000,
                "the t=0 requests are still the oldest"
            );
        }
        let eleventh = s.check(limit, T0 + 1200);
        assert!(!eleventh.allowed);
        assert_eq!(eleventh.remaining, 0);
        assert_eq!(eleventh.reset_at, T0 + 2000);
        assert_eq!(eleventh.reset_in_secs(T0 + 1200), 1);
        assert_eq!(eleventh.retry_after_secs, Some(1));

        // A fixed window starting at 0 would reset everything at 2000; a rolling one frees
        // exactly the five requests of t=0.
        for i in 0..5 {
            let d = s.check(limit, T0 + 2100);
            assert!(d.allowed, "request {i} at 2100");
            assert_eq!(d.remaining, 4 - i);
            assert_eq!(d.reset_at, T0 + 1200 + 2000);
        }
        let sixth = s.check(limit, T0 + 2100);
        assert!(!sixth.allowed);
        assert_eq!(sixth.reset_at, T0 + 1200 + 2000);
        assert_eq!(sixth.reset_in_secs(T0 + 2100), 2);
        assert_eq!(sixth.retry_after_secs, Some(2));
    }

    #[test]
    fn rejected_requests_are_not_counted() {
        let limit = rl(3, 10);
        let mut s = WindowState::new();
        for _ in 0..3 {
            assert!(s.check(limit, T0).allowed);
        }
        for t in (1..10_000).step_by(7) {
            assert!(!s.check(limit, T0 + t).allowed);
        }
        // Had the rejections counted, the window would still be full here.
        for _ in 0..3 {
            assert!(s.check(limit, T0 + 10_000).allowed);
        }
        assert!(!s.check(limit, T0 + 10_000).allowed);
    }

    #[test]
    fn retry_after_is_at_least_one_second_and_rounds_up() {
        let mut s = WindowState::new();
        assert!(s.check(rl(1, 1), T0).allowed);
        let d = s.check(rl(1, 1), T0 + 999);
        assert_eq!((d.reset_at, d.reset_in_secs(T0 + 999)), (T0 + 1000, 1));
        assert_eq!(d.retry_after_secs, Some(1));
        let d = s.check(rl(1, 1), T0 + 1);
        assert_eq!(d.retry_after_secs, Some(1));
        assert!(s.check(rl(1, 1), T0 + 1000).allowed);

        let mut s = WindowState::new();
        assert!(s.check(rl(1, 60), T0).allowed);
        let d = s.check(rl(1, 60), T0 + 1);
        assert_eq!(d.reset_in_secs(T0 + 1), 60);
        assert_eq!(d.retry_after_secs, Some(60));
    }

    #[test]
    fn a_lowered_limit_counts_what_was_admitted_before() {
        let mut s = WindowState::new();
        for i in 0..5 {
            assert!(s.check(rl(10, 10), T0 + i * 100).allowed);
        }
        let d = s.check(rl(3, 10), T0 + 1000);
        assert!(!d.allowed);
        assert_eq!(d.reset_at, T0 + 10_000, "the oldest counted request");
        // Three must leave to get below 3: the third oldest, at 200, frees the slot.
        assert_eq!(d.retry_after_secs, Some(10));
        assert!(!s.check(rl(3, 10), T0 + 10_199).allowed);
        assert!(s.check(rl(3, 10), T0 + 10_200).allowed);
        // Raised again: the log was kept, so only the missing ones are admitted.
        let d = s.check(rl(10, 10), T0 + 10_200);
        assert!(d.allowed);
        assert_eq!(d.remaining, 10 - 4);
    }

    #[test]
    fn a_shortened_window_frees_slots_sooner() {
        let mut s = WindowState::new();
        assert!(s.check(rl(1, 60), T0).allowed);
        assert!(!s.check(rl(1, 60), T0 + 5000).allowed);
        assert!(s.check(rl(1, 5), T0 + 5000).allowed);
    }

    #[test]
    fn a_clock_stepped_back_frees_nothing() {
        let mut s = WindowState::new();
        assert!(s.check(rl(2, 10), T0 + 5000).allowed);
        let d = s.check(rl(2, 10), T0);
        assert!(d.allowed, "recorded at T0 + 5000");
        assert_eq!(d.reset_at, T0 + 15_000);
        assert_eq!(d.reset_in_secs(T0), 15, "from the caller's clock");
        let d = s.check(rl(2, 10), T0 + 14_999);
        assert!(!d.allowed);
        assert_eq!(d.reset_at, T0 + 15_000);
        assert!(s.check(rl(2, 10), T0 + 15_000).allowed);
    }

    #[test]
    fn a_clock_stepped_back_by_more_than_a_window_starts_afresh() {
        let mut s = WindowState::new();
        assert!(s.check(rl(1, 10), T0 + 86_400_000).allowed);
        assert!(!s.check(rl(1, 10), T0 + 86_400_000 - 10_000).allowed);
        let d = s.check(rl(1, 10), T0);
        assert!(d.allowed, "not held until tomorrow");
        assert_eq!(d.reset_at, T0 + 10_000);
        assert!(!s.check(rl(1, 10), T0 + 9_999).allowed);
    }

    #[test]
    fn degenerate_limits_do_not_panic() {
        let mut s = WindowState::new();
        let d = s.check(rl(0, 10), T0);
        assert!(!d.allowed);
        assert_eq!(d.reset_at, T0 + 10_000);
        assert_eq!(d.retry_after_secs, Some(10));
        assert!(s.check(rl(1, 0), T0).allowed);
        assert!(!s.check(rl(1, 0), T0).allowed);
        assert!(
            s.check(rl(1, 0), T0 + 1).allowed,
            "a 0 s window is taken as 1 ms"
        );
        assert!(s.check(rl(u64::MAX, u64::MAX), UnixMillis::MAX).allowed);
        // Further back than the window: a fresh start.
        assert!(s.check(rl(1, u64::MAX), UnixMillis::MIN).allowed);
        let mut s = WindowState::new();
        assert!(!s.check(rl(0, 10), T0).allowed);
        assert!(s.is_idle(T0), "a rejection leaves nothing to remember");
    }

    #[test]
    fn idle_once_the_newest_request_has_left() {
        let mut s = WindowState::new();
        assert!(s.is_idle(T0));
        s.check(rl(5, 2), T0);
        s.check(rl(5, 2), T0 + 1500);
        assert!(!s.is_idle(T0 + 3499));
        assert!(s.is_idle(T0 + 3500));

        let mut s = WindowState::new();
        s.check(rl(50_000, 64), T0);
        assert!(!s.is_idle(T0 + 63_999));
        // Buckets of 1 s: the bucket of T0 leaves when its last instant does.
        let last_of_bucket = T0 - T0.rem_euclid(1000) + 999;
        assert!(!s.is_idle(last_of_bucket + 64_000 - 1));
        assert!(s.is_idle(last_of_bucket + 64_000));
    }

    #[test]
    fn memory_is_bounded_by_the_limit_or_the_buckets() {
        let mut s = WindowState::new();
        let small = s.memory_bytes();
        assert!(small <= 64, "{small}");
        for _ in 0..20_000 {
            s.check(rl(MAX_EXACT_LIMIT, 60), T0);
        }
        let full = s.memory_bytes();
        assert!(full <= small + 8 * MAX_EXACT_LIMIT as usize, "{full}");
        assert!(full >= 8 * MAX_EXACT_LIMIT as usize);

        let mut s = WindowState::new();
        for i in 0..100_000 {
            s.check(rl(1_000_000, 60), T0 + i);
        }
        assert!(s.memory_bytes() <= 640, "{}", s.memory_bytes());

        // After the burst has left, a log gives its memory back.
        let mut s = WindowState::new();
        for _ in 0..5000 {
            s.check(rl(5000, 1), T0);
        }
        s.check(rl(5000, 1), T0 + 1000);
        assert!(s.memory_bytes() <= small + 8 * 64, "{}", s.memory_bytes());
    }

    #[test]
    fn large_limits_never_exceed_and_hardly_under_admit() {
        // 100 000 requests, about 40 000 per window of 10 s in uneven bursts, against a limit
        // of 20 000: beyond the exact mode.
        let (limit, window) = (20_000u64, 10_000i64);
        let g = bucket_width(window);
        let mut s = WindowState::new();
        let mut admitted = Vec::new();
        let mut t = T0;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut refused = 0;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            t += i64::from(seed >> 62 == 0);
            let d = s.check(rl(limit, 10), t);
            if d.allowed {
                admitted.push(t);
            } else {
                let recent = within(&admitted, t, window + g - 1).len() as u64;
                assert!(recent >= limit, "refused at {t} with only {recent} recent");
                assert!(d.reset_at > t);
                refused += 1;
            }
        }
        assert!(refused > 10_000, "{refused}");
        assert_eq!(max_in_any_window(&admitted, window), limit as usize);
    }

    #[test]
    fn crossing_the_exact_threshold_keeps_what_was_counted() {
        let is_log = |s: &WindowState| matches!(s.counter, Counter::Log(_));
        let mut s = WindowState::new();
        for _ in 0..10 {
            assert!(s.check(rl(10, 60), T0).allowed);
        }
        // To buckets: the ten still count.
        for _ in 0..(20_000 - 10) {
            assert!(s.check(rl(20_000, 60), T0 + 1).allowed);
        }
        assert!(!is_log(&s));
        assert!(!s.check(rl(20_000, 60), T0 + 2).allowed);
        // Down to 10: all 20 000 still count, so nothing passes, and the buckets stay until
        // they have emptied.
        let d = s.check(rl(10, 60), T0 + 3);
        assert!(!d.allowed);
        assert!(d.reset_at >= T0 + 60_000);
        assert!(!is_log(&s));
        // Up again at once: nothing was forgotten.
        assert!(!s.check(rl(20_000, 60), T0 + 4).allowed);
        // Once the window has moved past them (allowing for the bucket width), it opens, exact.
        assert!(s.check(rl(10, 60), T0 + 61_000).allowed);
        assert!(is_log(&s));
        assert_eq!(s.check(rl(10, 60), T0 + 61_000).remaining, 8);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The log agrees with the brute-force model on every header value, and a retry after
        /// `Retry-After` seconds is admitted.
        #[test]
        fn exact_mode_matches_the_model(
            gaps in prop::collection::vec(prop_oneof![3 => 0i64..50, 1 => 0i64..3000], 1..150),
            limit in 1u64..12,
            window_seconds in 1u64..4,
        ) {
            let times = arrivals(&gaps);
            let requests: Vec<_> = times.iter().map(|&t| (t, limit)).collect();
            let expected = model(&requests, window_seconds);
            let mut s = WindowState::new();
            for (&(t, _), want) in requests.iter().zip(&expected) {
                let before = s.clone();
                let got = s.check(rl(limit, window_seconds), t);
                prop_assert_eq!(&got, want, "at {}", t - T0);
                if let Some(secs) = got.retry_after_secs {
                    prop_assert!(secs >= got.reset_in_secs(t));
                    let mut retry = before;
                    prop_assert!(retry.check(rl(limit, window_seconds), t + secs as i64 * 1000).allowed);
                }
            }
        }

        /// With the limit changing on every request, each check still applies its own limit
        /// to everything admitted before.
        #[test]
        fn exact_mode_follows_limit_changes(
            requests in prop::collection::vec((0i64..800, 1u64..10), 1..150),
            window_seconds in 1u64..3,
        ) {
            let times = arrivals(&requests.iter().map(|r| r.0).collect::<Vec<_>>());
            let requests: Vec<_> = times.iter().zip(&requests).map(|(&t, r)| (t, r.1)).collect();
            let expected = model(&requests, window_seconds);
            let mut s = WindowState::new();
            for (&(t, limit), want) in requests.iter().zip(&expected) {
                prop_assert_eq!(&s.check(rl(limit, window_seconds), t), want);
            }
        }

        /// Buckets: never more than `limit` in any window; a refusal only when `limit` were
        /// admitted in the stretched window; reset and retry never early, at most g − 1 late.
        #[test]
        fn approximate_mode_keeps_its_documented_bounds(
            gaps in prop::collection::vec(prop_oneof![3 => 0i64..40, 1 => 0i64..2500], 1..250),
            limit in 1u64..15,
            window_seconds in 1u64..4,
        ) {
            let w = window_seconds as i64 * 1000;
            let g = bucket_width(w);
            let mut s = WindowState::new();
            let mut admitted = Vec::new();
            for t in arrivals(&gaps) {
                let before = s.clone();
                let d = s.check_with(rl(limit, window_seconds), t, 0);
                if d.allowed {
                    admitted.push(t);
                    let exact = within(&admitted, t, w).len() as u64;
                    let stretched = within(&admitted, t, w + g - 1).len() as u64;
                    prop_assert!(d.remaining <= limit - exact);
                    prop_assert!(d.remaining >= limit.saturating_sub(stretched));
                } else {
                    prop_assert!(within(&admitted, t, w + g - 1).len() as u64 >= limit);
                }
                prop_assert!(d.reset_at > t);
                prop_assert!(admitted.iter().any(|&r| r + w <= d.reset_at && d.reset_at < r + w + g));
                if let Some(&oldest) = within(&admitted, t, w).first() {
                    prop_assert!(d.reset_at < oldest + w + g);
                }
                if !d.allowed {
                    let secs = d.retry_after_secs.unwrap_or(0);
                    prop_assert!(secs >= d.reset_in_secs(t) && secs >= 1);
                    let mut retry = before;
                    prop_assert!(retry.check_with(rl(limit, window_seconds), t + secs as i64 * 1000, 0).allowed);
                }
                prop_assert!(max_in_any_window(&admitted, w) <= limit as usize);
            }
        }

        /// Switching between modes with every limit change (threshold 4) never admits more
        /// than the limit in force at admission over the window before it.
        #[test]
        fn mode_switches_never_over_admit(
            requests in prop::collection::vec((0i64..600, 1u64..10), 1..200),
            window_seconds in 1u64..3,
        ) {
            let w = window_seconds as i64 * 1000;
            let mut s = WindowState::new();
            let mut admitted = Vec::new();
            let mut t = T0;
            for (gap, limit) in requests {
                t += gap;
                if s.check_with(rl(limit, window_seconds), t, 4).allowed {
                    admitted.push(t);
                    prop_assert!(within(&admitted, t, w).len() as u64 <= limit);
                }
            }
        }

        /// Changing windows in approximate mode rebuckets without over-admitting against the
        /// window in force.
        #[test]
        fn rebucketing_never_over_admits(
            requests in prop::collection::vec((0i64..600, 1u64..4), 1..200),
            limit in 1u64..10,
        ) {
            let mut s = WindowState::new();
            let mut admitted = Vec::new();
            let mut t = T0;
            let mut window_seconds = 4;
            for (gap, next_window) in requests {
                t += gap;
                // Only shorten, so "the window in force" covers everything it must remember.
                window_seconds = window_seconds.min(next_window);
                let w = window_seconds as i64 * 1000;
                if s.check_with(rl(limit, window_seconds), t, 0).allowed {
                    admitted.push(t);
                    prop_assert!(within(&admitted, t, w).len() as u64 <= limit);
                }
            }
        }
    }
}
