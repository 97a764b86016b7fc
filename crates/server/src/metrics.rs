//! Prometheus metrics, kept in memory with bounded labels: routes are matched route
//! templates (or `unmatched`), never raw paths, so a client cannot grow the label set.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    /// Observations in each bucket alone: over the bucket below's bound, up to this one's.
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counts of one route. Few methods and statuses occur per route, so small vectors searched
/// in place beat maps, and a request allocates nothing once its route has been seen.
#[derive(Default)]
struct RouteStats {
    counts: Vec<(&'static str, u16, u64)>,
    latency: Vec<(&'static str, Histogram)>,
}

impl RouteStats {
    fn record(&mut self, method: &'static str, status: u16, elapsed: Duration) {
        match self
            .counts
            .iter_mut()
            .find(|(m, s, _)| *m == method && *s == status)
        {
            Some(c) => c.2 += 1,
            None => self.counts.push((method, status, 1)),
        }
        let h = match self.latency.iter().position(|(m, _)| *m == method) {
            Some(i) => &mut self.latency[i].1,
            None => {
                self.latency.push((method, Histogram::default()));
                let last = self.latency.len() - 1;
                &mut self.latency[last].1
            }
        };
        h.record(elapsed.as_secs_f64());
    }
}

impl Histogram {
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

#[derive(Default)]
struct Inner {
    routes: HashMap<String, RouteStats, foldhash::fast::RandomState>,
    auth_failures: BTreeMap<&'static str, u64>,
    rate_limited: u64,
}

/// A gauge computed at scrape time: name, help text, and `(labels, value)` samples.
pub type Gauge<'a> = (&'a str, &'a str, Vec<(String, f64)>);

/// The application's metrics. Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
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
        let Ok(mut m) = self.inner.lock() else { return };
        let method = method_label(method);
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

    /// Records a refused credential by its §3 code.
    pub fn auth_failure(&self, code: &'static str) {
        if let Ok(mut m) = self.inner.lock() {
            *m.auth_failures.entry(code).or_default() += 1;
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
        let mut routes: Vec<(&String, &RouteStats)> = m.routes.iter().collect();
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
        assert!(text.contains("keyward_rate_limited_total 1"));
        assert!(text.contains("keyward_generation_jobs{state=\"queued\"} 2"));
    }
}
