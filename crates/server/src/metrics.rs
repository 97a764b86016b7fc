//! Prometheus metrics, kept in memory with bounded labels: routes are matched route
//! templates (or `unmatched`), never raw paths, so a client cannot grow the label set.
//!
//! `GET /v1/whoami`, which the gate answers without the router (`crate::http::gate`), is
//! counted apart, in counts of each thread's own (`DirectCounts`): the key check that every
//! request of a customer's API may make should not take a lock shared by all threads, nor
//! hash its route's name, to count itself. A scrape adds them to the other routes'. (Forward
//! auth, which the gate answers itself too, is counted in the shared map, under the same
//! label the router would give it.)

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thread_local::ThreadLocal;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone, Default)]
struct Histogram {
    /// Observations in each bucket alone: over the bucket below's bound, up to this one's.
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counts of one route. Few methods and statuses occur per route, so small vectors searched
/// in place beat maps, and a request allocates nothing once its route has been seen.
#[derive(Clone, Default)]
struct RouteStats {
    counts: Vec<(&'static str, u16, u64)>,
    latency: Vec<(&'static str, Histogram)>,
}

impl RouteStats {
    fn record(&mut self, method: &'static str, status: u16, elapsed: Duration) {
        *self.count_mut(method, status) += 1;
        self.histogram_mut(method).record(elapsed.as_secs_f64());
    }

    /// Adds `other`'s counts to these.
    fn merge(&mut self, other: &RouteStats) {
        for &(method, status, n) in &other.counts {
            *self.count_mut(method, status) += n;
        }
        for (method, h) in &other.latency {
            self.histogram_mut(method).merge(h);
        }
    }

    /// The count of `method` answered with `status`, made (zero) if there is none yet.
    fn count_mut(&mut self, method: &'static str, status: u16) -> &mut u64 {
        let i = match self
            .counts
            .iter()
            .position(|(m, s, _)| *m == method && *s == status)
        {
            Some(i) => i,
            None => {
                self.counts.push((method, status, 0));
                self.counts.len() - 1
            }
        };
        &mut self.counts[i].2
    }

    /// The latency histogram of `method`, made (empty) if there is none yet.
    fn histogram_mut(&mut self, method: &'static str) -> &mut Histogram {
        let i = match self.latency.iter().position(|(m, _)| *m == method) {
            Some(i) => i,
            None => {
                self.latency.push((method, Histogram::default()));
                self.latency.len() - 1
            }
        };
        &mut self.latency[i].1
    }
}

impl Histogram {
    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    /// Counts one observation in the first bucket that holds it (the cumulative counts
    /// Prometheus wants are summed when rendering, not on every request).
    fn record(&mut self, secs: f64) {
        if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += secs;
    }

    /// Observations at or under each bound, as Prometheus' `le` buckets count them.
    fn cumulative(&self) -> [u64; BUCKETS.len()] {
        let mut total = 0;
        self.counts.map(|n| {
            total += n;
            total
        })
    }
}

/// The route counted in each thread's own counts (with `GET`), as labelled.
pub const DIRECT_ROUTE: &str = "/v1/whoami";
const DIRECT_METHOD: &str = "GET";

/// The statuses `GET /v1/whoami` answers with (an answer, or a refusal of SPEC §3); any other
/// is counted through the shared map.
const DIRECT_STATUSES: [u16; 7] = [200, 401, 429, 400, 403, 503, 500];

/// The histogram's bounds in nanoseconds, compared with a request's time without turning it
/// into seconds first.
const BUCKET_NANOS: [u64; BUCKETS.len()] = {
    let mut nanos = [0; BUCKETS.len()];
    let mut i = 0;
    while i < BUCKETS.len() {
        nanos[i] = (BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    nanos
};

/// One thread's counts of the direct route. Only that thread writes them, so an addition is
/// a load and a store, with no locked instruction (on x86 both are plain moves); a scrape
/// reads them from another thread, hence atomics. Aligned to 128 bytes (a line and the one
/// the processor fetches beside it): `ThreadLocal` keeps threads' values side by side, and
/// two threads writing one line would pass it between their cores on every request.
#[derive(Default)]
#[repr(align(128))]
struct DirectCounts {
    /// By status, in the order of [`DIRECT_STATUSES`].
    statuses: [AtomicU64; DIRECT_STATUSES.len()],
    /// Observations in each bucket alone, as [`Histogram::counts`]; one over every bound is
    /// counted by `statuses` only.
    buckets: [AtomicU64; BUCKETS.len()],
    sum_nanos: AtomicU64,
}

/// Adds `n` to a count that only this thread writes. The store releases what this thread
/// wrote before it: see [`DirectCounts::snapshot_into`].
fn add(count: &AtomicU64, n: u64) {
    count.store(count.load(Relaxed).wrapping_add(n), Release);
}

impl DirectCounts {
    fn snapshot_into(&self, stats: &mut RouteStats) {
        // The buckets first: a request adds to its status before its bucket, so a bucket read
        // here (acquiring) comes with its request's status, and no bucket counts more than
        // the statuses' total, which is the histogram's `+Inf`.
        let buckets = self.buckets.each_ref().map(|n| n.load(Acquire));
        let mut counts = Vec::new();
        for (status, n) in DIRECT_STATUSES.iter().zip(&self.statuses) {
            let n = n.load(Relaxed);
            if n > 0 {
                counts.push((DIRECT_METHOD, *status, n));
            }
        }
        let count = counts.iter().map(|c| c.2).sum();
        if count == 0 {
            return;
        }
        let histogram = Histogram {
            counts: buckets,
            count,
            sum: self.sum_nanos.load(Relaxed) as f64 / 1e9,
        };
        stats.merge(&RouteStats {
            counts,
            latency: vec![(DIRECT_METHOD, histogram)],
        });
    }
}

#[derive(Default)]
struct Inner {
    routes: HashMap<String, RouteStats, foldhash::fast::RandomState>,
    auth_failures: BTreeMap<&'static str, u64>,
    verifications: BTreeMap<&'static str, u64>,
    rate_limited: u64,
}

/// A gauge computed at scrape time: name, help text, and `(labels, value)` samples.
pub type Gauge<'a> = (&'a str, &'a str, Vec<(String, f64)>);

/// The application's metrics. Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
    direct: Arc<ThreadLocal<DirectCounts>>,
}

/// Known methods keep their name; anything else is `other`.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Records one answered request. `route` is the matched route template or `unmatched`.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        if method == DIRECT_METHOD && route == DIRECT_ROUTE && self.observe_direct(status, elapsed)
        {
            return;
        }
        let Ok(mut m) = self.inner.lock() else { return };
        // One lookup for a route seen before (every request but a route's first).
        match m.routes.get_mut(route) {
            Some(r) => r.record(method, status, elapsed),
            None => {
                let mut r = RouteStats::default();
                r.record(method, status, elapsed);
                m.routes.insert(route.to_string(), r);
            }
        }
    }

    /// Records one answer of `GET` [`DIRECT_ROUTE`] in the thread's own counts, unless its
    /// status is not one they keep.
    fn observe_direct(&self, status: u16, elapsed: Duration) -> bool {
        let Some(slot) = DIRECT_STATUSES.iter().position(|s| *s == status) else {
            return false;
        };
        let counts = self.direct.get_or_default();
        add(&counts.statuses[slot], 1);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        if let Some(bucket) = BUCKET_NANOS.iter().position(|bound| nanos <= *bound) {
            add(&counts.buckets[bucket], 1);
        }
        add(&counts.sum_nanos, nanos);
        true
    }

    /// Records a refused credential by its §3 code.
    pub fn auth_failure(&self, code: &'static str) {
        if let Ok(mut m) = self.inner.lock() {
            *m.auth_failures.entry(code).or_default() += 1;
        }
    }

    /// Records one answer of the verify API by its `code`: `valid` or the §3 code the checked
    /// key would get. The answer is a 200 either way, so the status alone cannot tell an
    /// operator how many of the keys their services checked passed.
    pub fn verification(&self, code: &'static str) {
        if let Ok(mut m) = self.inner.lock() {
            *m.verifications.entry(code).or_default() += 1;
        }
    }

    pub fn rate_limited(&self) {
        if let Ok(mut m) = self.inner.lock() {
            m.rate_limited += 1;
        }
    }

    /// The Prometheus text exposition, with `extra` gauges appended as `(name, help, [(labels, value)])`.
    pub fn render(&self, extra: &[Gauge<'_>]) -> String {
        let Ok(m) = self.inner.lock() else {
            return String::new();
        };
        let mut out = String::new();
        let _ = writeln!(out, "# HELP keyward_http_requests_total HTTP requests answered, by method, matched route and status.");
        let _ = writeln!(out, "# TYPE keyward_http_requests_total counter");
        let mut direct = m.routes.get(DIRECT_ROUTE).cloned().unwrap_or_default();
        for counts in self.direct.iter() {
            counts.snapshot_into(&mut direct);
        }
        let mut routes: Vec<(&str, &RouteStats)> = m
            .routes
            .iter()
            .filter(|(route, _)| *route != DIRECT_ROUTE)
            .map(|(route, stats)| (route.as_str(), stats))
            .collect();
        if !direct.counts.is_empty() {
            routes.push((DIRECT_ROUTE, &direct));
        }
        routes.sort_by(|a, b| a.0.cmp(b.0));
        for (route, r) in &routes {
            let mut counts = r.counts.clone();
            counts.sort();
            for (method, status, n) in counts {
                let _ = writeln!(out, "keyward_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}", escape(route));
            }
        }
        let _ = writeln!(out, "# HELP keyward_http_request_duration_seconds Time to answer HTTP requests, by method and matched route.");
        let _ = writeln!(
            out,
            "# TYPE keyward_http_request_duration_seconds histogram"
        );
        for (route, method, h) in routes
            .iter()
            .flat_map(|(route, r)| r.latency.iter().map(move |(m, h)| (route, m, h)))
        {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            for (bound, n) in BUCKETS.iter().zip(h.cumulative()) {
                let _ = writeln!(
                    out,
                    "keyward_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "keyward_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "keyward_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "keyward_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        let _ = writeln!(out, "# HELP keyward_auth_failures_total Requests refused while authenticating, by error code.");
        let _ = writeln!(out, "# TYPE keyward_auth_failures_total counter");
        for (code, n) in &m.auth_failures {
            let _ = writeln!(out, "keyward_auth_failures_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP keyward_verifications_total Keys checked through POST /v1/keys/verify, by the code answered (valid, or the refusal's).");
        let _ = writeln!(out, "# TYPE keyward_verifications_total counter");
        for (code, n) in &m.verifications {
            let _ = writeln!(out, "keyward_verifications_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP keyward_rate_limited_total Requests refused by the rate limiter."
        );
        let _ = writeln!(out, "# TYPE keyward_rate_limited_total counter");
        let _ = writeln!(out, "keyward_rate_limited_total {}", m.rate_limited);
        for (name, help, samples) in extra {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (labels, value) in samples {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_bounded_labels() {
        let m = Metrics::default();
        m.observe_request("GET", "/v1/whoami", 200, Duration::from_millis(2));
        m.observe_request("BREW", "unmatched", 404, Duration::from_millis(1));
        m.auth_failure("invalid_api_key");
        m.verification("valid");
        m.verification("valid");
        m.verification("revoked_api_key");
        m.rate_limited();
        let render = || {
            m.render(&[(
                "keyward_generation_jobs",
                "Jobs by state.",
                vec![("state=\"queued\"".into(), 2.0)],
            )])
        };
        let text = render();
        assert!(text.contains(
            "keyward_http_requests_total{method=\"GET\",route=\"/v1/whoami\",status=\"200\"} 1"
        ));
        assert!(text.contains("method=\"other\",route=\"unmatched\",status=\"404\""));
        m.observe_request("GET", "/v1/whoami", 200, Duration::from_micros(300));
        m.observe_request("GET", "/v1/whoami", 429, Duration::from_secs(3));
        let text = render();
        assert!(text.contains(
            "keyward_http_requests_total{method=\"GET\",route=\"/v1/whoami\",status=\"200\"} 2"
        ));
        // Cumulative: each bucket counts everything at or under its bound.
        let bucket = |le: &str| {
            format!("keyward_http_request_duration_seconds_bucket{{method=\"GET\",route=\"/v1/whoami\",le=\"{le}\"}} ")
        };
        for (le, n) in [
            ("0.0005", 1),
            ("0.001", 1),
            ("0.0025", 2),
            ("2.5", 2),
            ("+Inf", 3),
        ] {
            assert!(
                text.contains(&format!("{}{n}\n", bucket(le))),
                "le={le}: {text}"
            );
        }
        assert!(text.contains(
            "keyward_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/whoami\"} 3"
        ));
        assert!(text.contains("keyward_auth_failures_total{code=\"invalid_api_key\"} 1"));
        assert!(text.contains("keyward_verifications_total{code=\"valid\"} 2\n"));
        assert!(text.contains("keyward_verifications_total{code=\"revoked_api_key\"} 1\n"));
        assert!(text.contains("keyward_rate_limited_total 1"));
        assert!(text.contains("keyward_generation_jobs{state=\"queued\"} 2"));
    }

    #[test]
    fn the_direct_routes_counts_of_every_thread_join_the_shared_ones() {
        let m = Metrics::default();
        let line = |text: &str, start: &str| {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start} in {text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        m.observe_request("GET", DIRECT_ROUTE, 200, Duration::from_micros(200));
                    }
                    m.observe_request("GET", DIRECT_ROUTE, 401, Duration::from_millis(3));
                });
            }
        });
        // A status the threads' counts do not keep, and another method: the shared map.
        m.observe_request("GET", DIRECT_ROUTE, 404, Duration::from_secs(5));
        m.observe_request("HEAD", DIRECT_ROUTE, 200, Duration::from_micros(100));
        let text = m.render(&[]);
        let requests = |method: &str, status: u16| {
            line(&text, &format!("keyward_http_requests_total{{method=\"{method}\",route=\"/v1/whoami\",status=\"{status}\"}}"))
        };
        assert_eq!(requests("GET", 200), "300");
        assert_eq!(requests("GET", 401), "3");
        assert_eq!(requests("GET", 404), "1");
        assert_eq!(requests("HEAD", 200), "1");
        let histogram = |what: &str| {
            line(
                &text,
                &format!("keyward_http_request_duration_seconds_{what}"),
            )
        };
        assert_eq!(
            histogram("bucket{method=\"GET\",route=\"/v1/whoami\",le=\"0.0005\"}"),
            "300"
        );
        assert_eq!(
            histogram("bucket{method=\"GET\",route=\"/v1/whoami\",le=\"0.005\"}"),
            "303"
        );
        assert_eq!(
            histogram("bucket{method=\"GET\",route=\"/v1/whoami\",le=\"2.5\"}"),
            "303"
        );
        assert_eq!(
            histogram("bucket{method=\"GET\",route=\"/v1/whoami\",le=\"+Inf\"}"),
            "304"
        );
        assert_eq!(
            histogram("count{method=\"GET\",route=\"/v1/whoami\"}"),
            "304"
        );
        let sum: f64 = histogram("sum{method=\"GET\",route=\"/v1/whoami\"}")
            .parse()
            .unwrap();
        assert!((sum - (0.06 + 0.009 + 5.0)).abs() < 1e-9, "{sum}");
        assert_eq!(
            histogram("count{method=\"HEAD\",route=\"/v1/whoami\"}"),
            "1"
        );
        // One series per label set: the route is not listed twice.
        assert_eq!(
            text.matches("route=\"/v1/whoami\",status=\"200\"").count(),
            2
        );
    }
}
