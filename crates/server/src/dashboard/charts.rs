//! Usage charts drawn on the server as SVG: stacked bars of successful, failed and
//! rate-limited requests per bucket. No chart library, no script; colours come from the
//! stylesheet, so the chart follows the page.

use keyward_core::UnixMillis;
use keyward_store::usage::{Counts, Granularity};
use maud::{html, Markup};
use time::OffsetDateTime;

/// The periods a chart can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    Hour,
    Day,
    Month,
}

impl Range {
    pub const ALL: [Range; 3] = [Range::Hour, Range::Day, Range::Month];

    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("1h") => Range::Hour,
            Some("30d") => Range::Month,
            _ => Range::Day,
        }
    }

    pub fn param(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Month => "30d",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Range::Hour => "Last hour",
            Range::Day => "Last 24 hours",
            Range::Month => "Last 30 days",
        }
    }

    /// One bar per minute, hour or day: 60, 24 or 30 bars.
    pub fn granularity(self) -> Granularity {
        match self {
            Range::Hour => Granularity::Minute,
            Range::Day => Granularity::Hour,
            Range::Month => Granularity::Day,
        }
    }

    fn per(self) -> &'static str {
        match self {
            Range::Hour => "minute",
            Range::Day => "hour",
            Range::Month => "day",
        }
    }

    /// Every how many bars the time axis gets a label.
    fn label_every(self) -> usize {
        match self {
            Range::Hour => 10,
            Range::Day => 4,
            Range::Month => 5,
        }
    }
}

/// One bar: requests split into successful (everything not below), errors and rate-limited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bar {
    pub start: UnixMillis,
    pub ok: i64,
    pub errors: i64,
    pub limited: i64,
}

impl Bar {
    pub fn of(start: UnixMillis, c: &Counts) -> Self {
        let errors = c.client_errors + c.server_errors;
        Self {
            start,
            ok: (c.requests - errors - c.rate_limited).max(0),
            errors,
            limited: c.rate_limited,
        }
    }

    pub fn total(&self) -> i64 {
        self.ok + self.errors + self.limited
    }
}

/// Totals over a chart's bars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: i64,
    pub errors: i64,
    pub limited: i64,
}

pub fn totals(bars: &[Bar]) -> Totals {
    bars.iter().fold(Totals::default(), |t, b| Totals {
        requests: t.requests + b.total(),
        errors: t.errors + b.errors,
        limited: t.limited + b.limited,
    })
}

/// A round axis maximum at or above `max`, with a step that divides into four ticks.
pub fn axis_max(max: i64) -> i64 {
    let step_min = (max.max(1) + 3) / 4;
    for m in [1, 2, 3, 4, 5, 6, 8] {
        if m >= step_min {
            return m * 4;
        }
    }
    let mut tenth = 1_i64;
    loop {
        for m in [10_i64, 15, 20, 25, 30, 40, 50, 60, 80] {
            let step = m.saturating_mul(tenth);
            if step >= step_min {
                return step.saturating_mul(4);
            }
        }
        tenth = tenth.saturating_mul(10);
    }
}

/// `950`, `1.2k`, `3.4M`.
pub fn compact(n: i64) -> String {
    fn trim(x: f64, suffix: &str) -> String {
        let s = format!("{x:.1}");
        format!("{}{suffix}", s.strip_suffix(".0").unwrap_or(&s))
    }
    match n {
        n if n.abs() < 1000 => n.to_string(),
        n if n.abs() < 1_000_000 => trim(n as f64 / 1e3, "k"),
        n => trim(n as f64 / 1e6, "M"),
    }
}

fn tick_label(range: Range, ms: UnixMillis) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return String::new();
    };
    match range {
        Range::Hour => format!("{:02}:{:02}", t.hour(), t.minute()),
        Range::Day => format!("{:02}:00", t.hour()),
        Range::Month => {
            let month = format!("{:?}", t.month());
            format!("{} {}", &month[..3.min(month.len())], t.day())
        }
    }
}

fn bar_title(range: Range, b: &Bar) -> String {
    let when = super::layout::fmt_time(b.start);
    let when = match range {
        Range::Month => super::layout::fmt_date(b.start),
        _ => when,
    };
    format!(
        "{when}: {} requests — {} successful, {} errors, {} rate-limited",
        b.total(),
        b.ok,
        b.errors,
        b.limited
    )
}

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

fn f(x: f64) -> String {
    format!("{x:.1}")
}

/// The chart for `bars` (oldest first). `id` makes the title/description ids unique.
pub fn chart(id: &str, range: Range, bars: &[Bar]) -> Markup {
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let max = axis_max(bars.iter().map(Bar::total).max().unwrap_or(0));
    let n = bars.len().max(1) as f64;
    let slot = plot_w / n;
    let bar_w = (slot * 0.7).max(1.0);
    let y = |v: i64| TOP + plot_h - (v as f64 / max as f64) * plot_h;
    let t = totals(bars);
    let title = format!(
        "Requests per {}, {}",
        range.per(),
        range.label().to_lowercase()
    );
    let desc = format!(
        "{} requests in total, {} errors, {} rate-limited.",
        t.requests, t.errors, t.limited
    );
    html! {
        svg class="chart" viewBox={"0 0 " (W) " " (H)} role="img"
            aria-labelledby={(id) "-title " (id) "-desc"} preserveAspectRatio="xMidYMid meet" {
            title id={(id) "-title"} { (title) }
            desc id={(id) "-desc"} { (desc) }
            g class="grid" {
                @for i in 0..=4_i64 {
                    @let v = max * i / 4;
                    line x1=(f(LEFT)) x2=(f(W - RIGHT)) y1=(f(y(v))) y2=(f(y(v))) {}
                    text class="axis" x=(f(LEFT - 6.0)) y=(f(y(v) + 4.0)) text-anchor="end" { (compact(v)) }
                }
            }
            @for (i, b) in bars.iter().enumerate() {
                @let x = LEFT + i as f64 * slot + (slot - bar_w) / 2.0;
                g class="bar" {
                    title { (bar_title(range, b)) }
                    rect class="hit" x=(f(LEFT + i as f64 * slot)) y=(f(TOP)) width=(f(slot)) height=(f(plot_h)) {}
                    @if b.ok > 0 {
                        rect class="ok" x=(f(x)) y=(f(y(b.ok))) width=(f(bar_w)) height=(f(y(0) - y(b.ok))) {}
                    }
                    @if b.errors > 0 {
                        rect class="err" x=(f(x)) y=(f(y(b.ok + b.errors))) width=(f(bar_w)) height=(f(y(b.ok) - y(b.ok + b.errors))) {}
                    }
                    @if b.limited > 0 {
                        rect class="lim" x=(f(x)) y=(f(y(b.total()))) width=(f(bar_w)) height=(f(y(b.ok + b.errors) - y(b.total()))) {}
                    }
                }
                @if i % range.label_every() == 0 {
                    text class="axis" x=(f(LEFT + (i as f64 + 0.5) * slot)) y=(f(H - 8.0)) text-anchor="middle" { (tick_label(range, b.start)) }
                }
            }
            line class="baseline" x1=(f(LEFT)) x2=(f(W - RIGHT)) y1=(f(y(0))) y2=(f(y(0))) {}
            @if t.requests == 0 {
                text class="empty" x=(f(LEFT + plot_w / 2.0)) y=(f(TOP + plot_h / 2.0)) text-anchor="middle" { "No requests in this period" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(axis_max(0), 4);
        assert_eq!(axis_max(3), 4);
        assert_eq!(axis_max(5), 8);
        assert_eq!(axis_max(37), 40);
        assert_eq!(axis_max(41), 60);
        assert_eq!(axis_max(950), 1000);
        assert_eq!(axis_max(1_000_001), 1_200_000);
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(compact(950), "950");
        assert_eq!(compact(1200), "1.2k");
        assert_eq!(compact(2000), "2k");
        assert_eq!(compact(3_400_000), "3.4M");
    }

    #[test]
    fn bars_stack_to_the_request_count() {
        let c = Counts {
            requests: 10,
            success: 6,
            client_errors: 2,
            rate_limited: 1,
            server_errors: 0,
        };
        let b = Bar::of(0, &c);
        assert_eq!((b.ok, b.errors, b.limited, b.total()), (7, 2, 1, 10));
        let svg = chart("c", Range::Hour, &[b, Bar::default()]).into_string();
        assert!(svg.contains("class=\"ok\"") && svg.contains("class=\"err\""));
        assert!(svg.contains("10 requests in total, 2 errors, 1 rate-limited."));
        let empty = chart("e", Range::Day, &[Bar::default(); 24]).into_string();
        assert!(empty.contains("No requests in this period"));
    }
}
