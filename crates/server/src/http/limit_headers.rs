//! The rate-limit headers of SPEC §4, on every answer that reached the limiter.
//!
//! Most such answers are JSON with no other header yet (`whoami`, and every handler answering
//! with `Json`). For those the whole header map is laid out once per thread and limit: the
//! content type, the five rate-limit headers and a slot for `X-Request-Id`, which
//! [`super::request_id::finish`] fills. Each answer takes a copy and sets the three values
//! that change per request. Inserting the headers one by one hashes and places every name on
//! every answer, which cost more than everything else these headers need (docs/BENCHMARKS.md).
//! A handler that has only a JSON body to give ([`super::auth::Answered::Json`]) gets the copy
//! as its headers straight away ([`json`]). Any other answer gets the headers inserted into
//! what it already has.

use std::cell::RefCell;

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use keyward_core::ratelimit::Decision;
use keyward_core::{RateLimit, UnixMillis};

use super::request_id::X_REQUEST_ID;

static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

pub(super) static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Adds the rate-limit headers for decision `d`, made under `limit` at `now`.
pub fn write(headers: &mut HeaderMap, d: &Decision, limit: RateLimit, now: UnixMillis) {
    if is_json_only(headers) {
        *headers = json_headers(d, limit, now);
    } else {
        insert_each(headers, &Changing::of(d, now), d, limit);
    }
}

/// A JSON answer with `body` and the rate-limit headers for decision `d`: its headers are
/// made in one step, with no map made for the content type first and thrown away.
pub fn json(body: Bytes, d: &Decision, limit: RateLimit, now: UnixMillis) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.headers_mut() = json_headers(d, limit, now);
    response
}

/// A JSON answer's headers: a copy of the laid-out map with this request's values, or (if
/// this thread has no layout to give) the content type and the five inserted one by one.
fn json_headers(d: &Decision, limit: RateLimit, now: UnixMillis) -> HeaderMap {
    let values = Changing::of(d, now);
    with_layout(d.limit, limit, |layout| layout.fill(&values)).unwrap_or_else(|| {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, JSON.clone());
        insert_each(&mut headers, &values, d, limit);
        headers
    })
}

/// The rate-limit headers inserted one by one, into an answer that was not laid out.
fn insert_each(headers: &mut HeaderMap, values: &Changing, d: &Decision, limit: RateLimit) {
    // The layout holds the two values that depend on the limit alone: reused here too.
    let (limit_value, policy_value) = with_layout(d.limit, limit, |layout| {
        (layout.limit_value.clone(), layout.policy_value.clone())
    })
    .unwrap_or_else(|| constant_values(d.limit, limit));
    headers.insert(X_RATELIMIT_LIMIT.clone(), limit_value);
    headers.insert(X_RATELIMIT_REMAINING.clone(), values.remaining());
    headers.insert(X_RATELIMIT_RESET.clone(), values.reset());
    headers.insert(RATELIMIT_POLICY.clone(), policy_value);
    headers.insert(RATELIMIT.clone(), values.ratelimit());
}

/// Whether the answer's only header is `Content-Type: application/json`.
fn is_json_only(headers: &HeaderMap) -> bool {
    let mut entries = headers.iter();
    matches!(
        (entries.next(), entries.next()),
        (Some((name, value)), None) if name == CONTENT_TYPE && value == JSON
    )
}

/// The three values that change per request, written into one buffer and handed out as
/// slices of it: a piece of the thread's [`super::arena`], with no allocation per answer.
struct Changing {
    text: Bytes,
    remaining_end: usize,
    reset_end: usize,
}

/// The most the three values take: three numbers of at most 20 digits, one of which twice,
/// and 15 bytes of text.
const MOST: usize = 4 * 20 + 15;

impl Changing {
    fn of(d: &Decision, now: UnixMillis) -> Self {
        use std::io::Write;
        // Each write fits: MOST counts the longest numbers there are. The text is put
        // together here and copied once.
        fn number(rest: &mut &mut [u8], n: impl itoa::Integer) {
            let written = rest.write_all(itoa::Buffer::new().format(n).as_bytes());
            debug_assert!(written.is_ok(), "MOST is too small");
        }
        let mut text = [0u8; MOST];
        let mut rest = &mut text[..];
        number(&mut rest, d.remaining);
        let remaining_end = MOST - rest.len();
        number(&mut rest, d.reset_at);
        let reset_end = MOST - rest.len();
        let text_fits = rest.write_all(b"\"default\";r=").is_ok();
        // `r` is the remaining count again: copied, not formatted twice.
        let used = MOST - rest.len();
        let (written, mut rest) = text.split_at_mut(used);
        let text_fits = text_fits && rest.write_all(&written[..remaining_end]).is_ok();
        let text_fits = text_fits && rest.write_all(b";t=").is_ok();
        debug_assert!(text_fits, "MOST is too small");
        number(&mut rest, d.reset_in_secs(now));
        let end = MOST - rest.len();
        Self {
            text: super::arena::copy(&text[..end]),
            remaining_end,
            reset_end,
        }
    }

    fn value(&self, range: std::ops::Range<usize>) -> HeaderValue {
        // Digits, quotes, letters, `;` and `=`: always a valid header value.
        HeaderValue::from_maybe_shared(self.text.slice(range))
            .unwrap_or(HeaderValue::from_static("0"))
    }

    /// `X-RateLimit-Remaining`.
    fn remaining(&self) -> HeaderValue {
        self.value(0..self.remaining_end)
    }

    /// `X-RateLimit-Reset`.
    fn reset(&self) -> HeaderValue {
        self.value(self.remaining_end..self.reset_end)
    }

    /// `RateLimit`.
    fn ratelimit(&self) -> HeaderValue {
        self.value(self.reset_end..self.text.len())
    }
}

/// The values of `X-RateLimit-Limit` and `RateLimit-Policy`, which depend on the limit alone.
fn constant_values(shown: u64, limit: RateLimit) -> (HeaderValue, HeaderValue) {
    let policy = format!("\"default\";q={};w={}", limit.limit, limit.window_seconds);
    (
        HeaderValue::from(shown),
        HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("\"default\"")),
    )
}

/// A JSON answer's headers for one limit, with placeholders where values change per request.
struct Layout {
    /// The limit shown and the limit the layout was made for.
    made_for: (u64, RateLimit),
    map: HeaderMap,
    /// `X-RateLimit-Limit` and `RateLimit-Policy`, also for the answers not laid out.
    limit_value: HeaderValue,
    policy_value: HeaderValue,
    /// Positions, in the map's iteration order, of the values set per request. They are
    /// found in the map once it is built, not assumed: a copy iterates in the same order.
    remaining: usize,
    reset: usize,
    ratelimit: usize,
}

impl Layout {
    fn new(shown: u64, limit: RateLimit) -> Option<Self> {
        let (limit_value, policy_value) = constant_values(shown, limit);
        let placeholder = HeaderValue::from_static("");
        let mut map = HeaderMap::with_capacity(7);
        map.insert(CONTENT_TYPE, JSON.clone());
        map.insert(X_RATELIMIT_LIMIT.clone(), limit_value.clone());
        map.insert(X_RATELIMIT_REMAINING.clone(), placeholder.clone());
        map.insert(X_RATELIMIT_RESET.clone(), placeholder.clone());
        map.insert(RATELIMIT_POLICY.clone(), policy_value.clone());
        map.insert(RATELIMIT.clone(), placeholder.clone());
        map.insert(X_REQUEST_ID.clone(), placeholder);
        let position = |wanted: &HeaderName| map.keys().position(|name| name == wanted);
        Some(Self {
            made_for: (shown, limit),
            remaining: position(&X_RATELIMIT_REMAINING)?,
            reset: position(&X_RATELIMIT_RESET)?,
            ratelimit: position(&RATELIMIT)?,
            map,
            limit_value,
            policy_value,
        })
    }

    /// A copy with this request's values.
    fn fill(&self, values: &Changing) -> HeaderMap {
        let mut map = self.map.clone();
        for (i, (_, value)) in map.iter_mut().enumerate() {
            if i == self.remaining {
                *value = values.remaining();
            } else if i == self.reset {
                *value = values.reset();
            } else if i == self.ratelimit {
                *value = values.ratelimit();
            }
        }
        map
    }
}

/// Calls `f` with this thread's layout for the limit, made first if the last one was for
/// another limit. Almost every key shares its plan's limit, so it is rarely remade, and an
/// answer takes reference counts instead of formatting and checking values.
fn with_layout<R>(shown: u64, limit: RateLimit, f: impl FnOnce(&Layout) -> R) -> Option<R> {
    thread_local! {
        static LAST: RefCell<Option<Layout>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        if last.as_ref().is_none_or(|l| l.made_for != (shown, limit)) {
            *last = Layout::new(shown, limit);
        }
        last.as_ref().map(f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(remaining: u64) -> Decision {
        Decision {
            allowed: true,
            limit: 100,
            remaining,
            reset_at: 61_500,
            retry_after_secs: None,
        }
    }

    const LIMIT: RateLimit = RateLimit {
        limit: 100,
        window_seconds: 60,
    };

    fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        pairs.sort();
        pairs
    }

    fn expected(extra: &[(&str, &str)], remaining: &str) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = [
            ("x-ratelimit-limit", "100"),
            ("x-ratelimit-remaining", remaining),
            ("x-ratelimit-reset", "61500"),
            ("ratelimit-policy", "\"default\";q=100;w=60"),
            ("ratelimit", &format!("\"default\";r={remaining};t=2")),
        ]
        .iter()
        .chain(extra)
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        pairs.sort();
        pairs
    }

    #[test]
    fn a_json_answer_gets_the_laid_out_map_with_this_requests_values() {
        for remaining in [99, 98] {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, JSON.clone());
            write(&mut headers, &decision(remaining), LIMIT, 60_000);
            // The request id's slot is there, empty until the gate fills it.
            let remaining = remaining.to_string();
            let want = expected(
                &[("content-type", "application/json"), ("x-request-id", "")],
                &remaining,
            );
            assert_eq!(pairs(&headers), want);
        }
    }

    #[test]
    fn the_longest_values_there_are_fit_whole() {
        let d = Decision {
            remaining: u64::MAX,
            reset_at: i64::MIN,
            ..decision(0)
        };
        let values = Changing::of(&d, i64::MAX);
        assert_eq!(values.remaining(), u64::MAX.to_string().as_str());
        assert_eq!(values.reset(), i64::MIN.to_string().as_str());
        let t = d.reset_in_secs(i64::MAX);
        assert_eq!(
            values.ratelimit(),
            format!("\"default\";r={};t={t}", u64::MAX).as_str()
        );
    }

    #[test]
    fn a_json_body_gets_the_same_headers_as_a_json_answer() {
        let response = json(Bytes::from_static(b"{}"), &decision(42), LIMIT, 60_000);
        let want = expected(
            &[("content-type", "application/json"), ("x-request-id", "")],
            "42",
        );
        assert_eq!(pairs(response.headers()), want);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, JSON.clone());
        write(&mut headers, &decision(42), LIMIT, 60_000);
        assert_eq!(pairs(&headers), want);
    }

    #[test]
    fn any_other_answer_keeps_its_headers_and_gets_the_five_inserted() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/csv"));
        headers.insert("retry-after", HeaderValue::from_static("3"));
        write(&mut headers, &decision(7), LIMIT, 60_000);
        let want = expected(&[("content-type", "text/csv"), ("retry-after", "3")], "7");
        assert_eq!(pairs(&headers), want);
    }

    #[test]
    fn a_layout_made_for_one_limit_is_not_used_for_another() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, JSON.clone());
        write(&mut headers, &decision(1), LIMIT, 60_000);
        let other = RateLimit {
            limit: 5,
            window_seconds: 1,
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, JSON.clone());
        write(
            &mut headers,
            &Decision {
                limit: 5,
                ..decision(1)
            },
            other,
            60_000,
        );
        assert_eq!(headers["x-ratelimit-limit"], "5");
        assert_eq!(headers["ratelimit-policy"], "\"default\";q=5;w=1");
    }
}
