//! The usage flush: what writing one second of usage costs the server, for 10 000 keys that
//! each made requests in that second (the HTTP benchmark's valid-key run, where every key
//! is used about twelve times a second). The flush runs once a second whatever the load, so
//! its cost per request is this figure times the flushes a second, divided by the requests
//! served in that second.
//!
//! Each iteration counts one request for every key in its usage cell (not timed), then
//! flushes: one transaction that appends the second's counts as one row and moves some
//! keys' `last_used_at`, and every tenth flush a fold of what was appended into
//! `usage_minute` (a row per key and minute: new on a minute's first fold, updated after
//! that), as in a running server; the figure is their average. What is measured is the
//! **CPU time of the whole process** during the flush, the database's own thread included,
//! not the wall-clock time: the commit waits for the disk, which costs the server no work.
//! Run with `cargo bench -p keyward-server --bench flush`.

#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use keyward_core::ApiKey;
use keyward_server::recorder::{Outcome, UsageCell, UsageRecorder};
use keyward_server::Config;
use keyward_store::keys::{self, KeyRecord};
use keyward_store::usage;

mod common;

/// The allocator the `keyward` binary runs with, so that allocations cost here what they cost
/// there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: usize = 10_000;

/// The CPU time this process has used so far, all its threads together.
fn process_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn flush(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let common::Setup {
        dir: _dir,
        service,
        org,
        agent,
    } = rt.block_on(common::setup(Config::default(), "pro", "Load"));
    // Real keys, so that moving their `last_used_at` finds rows to change.
    let cells: Vec<Arc<UsageCell>> = rt.block_on(async {
        let mut tx = service.store().begin().await.expect("begin");
        let mut cells = Vec::with_capacity(KEYS);
        for i in 0..KEYS {
            let secret = ApiKey::generate(&service.config().key_prefix);
            let record =
                KeyRecord::seeded(&org.id, &agent.agent.id, format!("seed-{i}"), &secret, 0);
            keys::insert(&mut tx, &record).await.expect("insert");
            cells.push(Arc::new(UsageCell::new(
                record.org.clone(),
                record.agent.clone(),
                record.id.clone(),
            )));
        }
        keyward_store::commit(tx).await.expect("commit");
        cells
    });
    let recorder = UsageRecorder::default();
    let store = service.store().clone();
    // Every request counted, to check at the end that the flushes wrote them all: a flush
    // that failed would keep its counts for the next one and time something else.
    let mut counted = 0_i64;
    let mut group = c.benchmark_group("usage flush");
    group.sample_size(20);
    group.bench_function(format!("{KEYS} keys, CPU time of the process"), |b| {
        b.iter_custom(|iterations| {
            rt.block_on(async {
                let mut spent = Duration::ZERO;
                for _ in 0..iterations {
                    let now = service.now();
                    for cell in &cells {
                        recorder.record(cell, now, Outcome::Success);
                    }
                    counted += KEYS as i64;
                    let started = process_cpu_time();
                    recorder.flush(&store).await;
                    spent += process_cpu_time() - started;
                }
                spent
            })
        })
    });
    group.finish();
    let written = rt.block_on(async {
        keyward_server::recorder::fold(&store).await.expect("fold");
        let mut tx = store.begin().await.expect("begin");
        usage::org_requests_since(&mut tx, &org.id, 0)
            .await
            .expect("usage")
    });
    assert_eq!(written, counted, "every counted request was written");
}

criterion_group!(benches, flush);
criterion_main!(benches);
