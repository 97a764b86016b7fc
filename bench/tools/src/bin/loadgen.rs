//! A fixed-rate (open-loop) HTTP/1.1 load generator for latency at a given rate.
//!
//! Each of `--connections` connections sends on its own schedule so that together they
//! offer `--rate` requests per second. When a connection is still waiting for the previous
//! answer at a request's scheduled time, latency is measured from that scheduled time, not
//! from when the request could finally be sent, so a stalled server cannot hide its stalls
//! (coordinated omission). When the connection was free, latency is measured from the send,
//! so that the generator's own lateness is not charged to the server.
//!
//! Requests are paced to the microsecond: the runtime's timer has millisecond ticks, which
//! would send each millisecond's requests in one burst (measured from the schedule with that
//! timer alone, a bare hello-world showed a 1.4 ms median), so the last stretch before each
//! send is spent yielding until the exact time. That costs the generator's core, not the
//! server's.
//! Keys from `--keys` rotate through the `Authorization` header.
//!
//! Besides the percentiles of the whole run it prints the median and the worst of each
//! second's p99 (`window_p99_median_us`, `window_p99_max_us`): a tail made by a few stalled
//! seconds shows as a worst second far above the median one, a tail of the server's own as
//! every second alike.
//!
//! With `--slow-log FILE`, every request slower than `--slow-us` (default 1000) is written
//! there as a line `scheduled_us latency_us`, its scheduled time counted from the run's
//! start: slow requests that gather at one phase of every second point at something the
//! server does once a second, scattered ones at the machine.
//!
//! Usage: loadgen --url http://127.0.0.1:8080/v1/whoami --rate 20000 --duration 10
//!                [--connections 64] [--keys keys.txt] [--slow-log slow.txt [--slow-us 1000]]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

struct Args {
    url: String,
    rate: f64,
    duration: f64,
    connections: usize,
    keys: Vec<String>,
    slow_log: Option<String>,
    slow_us: u32,
}

fn args() -> Args {
    let mut a = Args {
        url: String::new(),
        rate: 1000.0,
        duration: 10.0,
        connections: 64,
        keys: Vec::new(),
        slow_log: None,
        slow_us: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--url" => a.url = value,
            "--rate" => a.rate = value.parse().expect("--rate"),
            "--duration" => a.duration = value.parse().expect("--duration"),
            "--connections" => a.connections = value.parse().expect("--connections"),
            "--keys" => {
                a.keys = std::fs::read_to_string(&value).expect("--keys file").lines().map(str::to_string).collect();
            }
            "--slow-log" => a.slow_log = Some(value),
            "--slow-us" => a.slow_us = value.parse().expect("--slow-us"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!a.url.is_empty(), "--url is required");
    a
}

/// Waits until `until` to within a few microseconds: the timer for all but the last two
/// milliseconds, then yielding to the other connections until the time has come.
async fn sleep_precisely(until: Instant) {
    if let Some(coarse) = until.checked_sub(Duration::from_millis(2)) {
        if coarse > Instant::now() {
            tokio::time::sleep_until(coarse.into()).await;
        }
    }
    while Instant::now() < until {
        tokio::task::yield_now().await;
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let url: hyper::Uri = a.url.parse().expect("url");
    let authority = url.authority().expect("host:port").to_string();
    let path = url.path_and_query().map_or("/".to_string(), |p| p.to_string());
    let keys = Arc::new(a.keys);
    let interval = Duration::from_secs_f64(a.connections as f64 / a.rate);
    let deadline = Duration::from_secs_f64(a.duration);
    let start = Instant::now() + Duration::from_millis(100);
    let connections = a.connections;
    let mut tasks = Vec::new();
    for c in 0..a.connections {
        let (authority, path, keys) = (authority.clone(), path.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&authority).await.expect("connect");
            stream.set_nodelay(true).ok();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
            tokio::spawn(conn);
            // (when the request was scheduled, µs from the start; latency in µs)
            let mut latencies: Vec<(u64, u32)> = Vec::new();
            let mut statuses = [0u64; 6];
            // Spread the connections' schedules evenly over one interval.
            let mut scheduled = start + interval.mul_f64(c as f64 / connections as f64);
            let mut i = c;
            let mut free_since = start;
            let mut late = 0u64;
            while scheduled.duration_since(start) < deadline {
                sleep_precisely(scheduled).await;
                // Late because the server had not answered the previous request yet: count the
                // wait. Late only because the timer woke late: count from now.
                let measured_from = if free_since > scheduled { scheduled } else { Instant::now() };
                // The generator itself fell behind (its core is saturated): say so.
                if measured_from.saturating_duration_since(scheduled) > Duration::from_micros(200) {
                    late += 1;
                }
                let mut req = Request::get(path.as_str()).header("host", authority.as_str());
                if !keys.is_empty() {
                    req = req.header("authorization", format!("Bearer {}", keys[i % keys.len()]));
                    i += 7;
                }
                let req = req.body(Empty::<Bytes>::new()).expect("request");
                match sender.send_request(req).await {
                    Ok(res) => {
                        statuses[(res.status().as_u16() / 100) as usize % 6] += 1;
                        let _ = res.into_body().collect().await;
                    }
                    Err(_) => statuses[0] += 1,
                }
                free_since = Instant::now();
                let latency = free_since.saturating_duration_since(measured_from).as_micros().min(u32::MAX as u128) as u32;
                latencies.push((scheduled.duration_since(start).as_micros() as u64, latency));
                scheduled += interval;
            }
            (latencies, statuses, late)
        }));
    }
    let mut all: Vec<(u64, u32)> = Vec::new();
    let mut statuses = [0u64; 6];
    let mut late = 0;
    for t in tasks {
        let (l, s, n) = t.await.expect("task");
        all.extend(l);
        late += n;
        for (a, b) in statuses.iter_mut().zip(s) {
            *a += b;
        }
    }
    // The achieved rate, over the time the run really took (not the nominal duration).
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(path) = &a.slow_log {
        let mut slow: Vec<(u64, u32)> = all.iter().copied().filter(|&(_, l)| l > a.slow_us).collect();
        slow.sort_unstable();
        let lines: String = slow.iter().map(|(at, l)| format!("{at} {l}\n")).collect();
        std::fs::write(path, lines).expect("--slow-log file");
    }
    let mut windows: Vec<Vec<u32>> = Vec::new();
    for &(at, latency) in &all {
        let second = at / 1_000_000;
        if windows.len() <= second as usize {
            windows.resize(second as usize + 1, Vec::new());
        }
        windows[second as usize].push(latency);
    }
    let mut window_p99: Vec<u32> = windows
        .iter_mut()
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.sort_unstable();
            percentile(w, 0.99)
        })
        .collect();
    window_p99.sort_unstable();
    let mut all: Vec<u32> = all.into_iter().map(|(_, latency)| latency).collect();
    all.sort_unstable();
    let pct = |p: f64| percentile(&all, p);
    println!(
        "requests={} rate={:.0} p50_us={} p99_us={} p999_us={} max_us={} window_p99_median_us={} \
         window_p99_max_us={} 2xx={} 4xx={} 5xx={} errors={} late_sends={}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        all.last().copied().unwrap_or(0),
        percentile(&window_p99, 0.5),
        window_p99.last().copied().unwrap_or(0),
        statuses[2],
        statuses[4],
        statuses[5],
        statuses[0],
        late
    );
}

/// The `p` quantile of sorted `values` (0 for none).
fn percentile(values: &[u32], p: f64) -> u32 {
    values.get(((values.len() as f64 * p) as usize).min(values.len().saturating_sub(1))).copied().unwrap_or(0)
}
