#![allow(clippy::expect_used, clippy::unwrap_used)]

//! In-process cost of checking a key, beside a baseline of bare SHA-256 plus a `HashMap`
//! lookup. Run with `cargo bench -p keyward-server --bench verify`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use keyward_core::{ApiKey, KeyHash, KeyPrefix};
use keyward_server::{Config, Service};

mod common;

struct Fixture {
    service: Service,
    key: String,
    unknown: String,
    malformed: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let common::Setup {
        dir,
        service,
        agent,
        ..
    } = common::setup(Config::default(), "pro", "Bench").await;
    let key = agent.first_key.secret.expose().to_string();
    let unknown = ApiKey::generate(&KeyPrefix::default()).expose().to_string();
    let mut malformed = key.clone();
    malformed.pop();
    malformed.push(if key.ends_with('0') { '1' } else { '0' });
    Fixture {
        service,
        key,
        unknown,
        malformed,
        _dir: dir,
    }
}

fn verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let f = rt.block_on(fixture());
    let mut group = c.benchmark_group("verify");

    // Baseline: what any hashing key check pays (SHA-256 and a map of 10 000 keys).
    let mut map: HashMap<[u8; 32], Arc<String>> = HashMap::new();
    for _ in 0..9_999 {
        let k = ApiKey::generate(&KeyPrefix::default());
        map.insert(KeyHash::digest(k.expose()), Arc::new(k.hint()));
    }
    map.insert(KeyHash::digest(&f.key), Arc::new("hit".into()));
    group.bench_function("baseline: sha256 + HashMap", |b| {
        b.iter(|| map.get(&KeyHash::digest(black_box(&f.key))).cloned())
    });

    group.bench_function("cache hit", |b| {
        b.to_async(&rt).iter(|| async {
            f.service
                .authenticate(black_box(&f.key))
                .await
                .expect("ok")
                .expect("valid")
        })
    });
    group.bench_function("malformed key", |b| {
        b.to_async(&rt).iter(|| async {
            f.service
                .authenticate(black_box(&f.malformed))
                .await
                .expect("ok")
                .expect_err("malformed")
        })
    });
    group.bench_function("unknown key (negative cache)", |b| {
        b.to_async(&rt).iter(|| async {
            f.service
                .authenticate(black_box(&f.unknown))
                .await
                .expect("ok")
                .expect_err("unknown")
        })
    });
    group.bench_function("cache miss (storage lookup)", |b| {
        b.to_async(&rt).iter(|| async {
            f.service.key_cache().invalidate_all();
            f.service
                .authenticate(black_box(&f.key))
                .await
                .expect("ok")
                .expect("valid")
        })
    });
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
