//! A fixed-rate (open-loop) HTTP/1.1 load generator for latency at a given rate.
//!
//! Each of `--connections` connections sends on its own schedule so that together they
//! offer `--rate` requests per second. Latency is measured from when a request was
//! *scheduled*, not when it was sent, so a stalled server cannot hide its stalls
//! (coordinated omission). Keys from `--keys` rotate through the `Authorization` header.
//!
//! Usage: loadgen --url http://127.0.0.1:8080/v1/whoami --rate 20000 --duration 10
//!                [--connections 64] [--keys keys.txt]

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
}

fn args() -> Args {
    let mut a = Args { url: String::new(), rate: 1000.0, duration: 10.0, connections: 64, keys: Vec::new() };
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
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!a.url.is_empty(), "--url is required");
    a
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
            let mut latencies: Vec<u32> = Vec::new();
            let mut statuses = [0u64; 6];
            // Spread the connections' schedules evenly over one interval.
            let mut scheduled = start + interval.mul_f64(c as f64 / connections as f64);
            let mut i = c;
            while scheduled.duration_since(start) < deadline {
                tokio::time::sleep_until(scheduled.into()).await;
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
                latencies.push(Instant::now().saturating_duration_since(scheduled).as_micros().min(u32::MAX as u128) as u32);
                scheduled += interval;
            }
            (latencies, statuses)
        }));
    }
    let mut all: Vec<u32> = Vec::new();
    let mut statuses = [0u64; 6];
    for t in tasks {
        let (l, s) = t.await.expect("task");
        all.extend(l);
        for (a, b) in statuses.iter_mut().zip(s) {
            *a += b;
        }
    }
    let elapsed = a.duration;
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "requests={} rate={:.0} p50_us={} p99_us={} p999_us={} max_us={} 2xx={} 4xx={} 5xx={} errors={}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        all.last().copied().unwrap_or(0),
        statuses[2],
        statuses[4],
        statuses[5],
        statuses[0]
    );
}
