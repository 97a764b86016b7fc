//! The application: a bound listener, the router and the background tasks around it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keyward_store::Store;
use tokio::net::TcpListener;

use crate::http::AppState;
use crate::recorder::UsageRecorder;
use crate::{Config, Service};

/// How often key usage gathered in memory is written.
const USAGE_FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often idle keys are dropped from the rate limiter.
const LIMITER_SWEEP_EVERY: Duration = Duration::from_secs(30);
/// How often Redis is pinged, to notice an outage between requests and its end.
const REDIS_PROBE_EVERY: Duration = Duration::from_secs(1);
/// Prefix of every Redis key keyward writes.
const REDIS_NAMESPACE: &str = "keyward:";
/// How often old per-minute usage rows are pruned.
const USAGE_PRUNE_EVERY: Duration = Duration::from_secs(600);
const USAGE_ROLL_UP_EVERY: Duration = Duration::from_secs(60);

pub struct Application {
    listener: TcpListener,
    state: AppState,
    bus: Option<crate::bus::ChangeBus>,
}

impl Application {
    /// Binds `listen` (port 0 picks a free port) over an already migrated store.
    pub async fn build(listen: &str, store: Store, config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        let local = Arc::new(crate::limiter::LocalLimiter::default());
        let limiter = match &config.redis_url {
            Some(url) => {
                let redis = crate::limiter::RedisLimiter::new(
                    url,
                    REDIS_NAMESPACE,
                    crate::limiter::TimeSource::Redis,
                )
                .map_err(|e| {
                    anyhow::anyhow!("redis_url: {e}: {:?}", std::error::Error::source(&e))
                })?;
                crate::limiter::Limiter::redis(redis, config.redis_fallback, local)
            }
            None => crate::limiter::Limiter::local(local),
        };
        let bus = match &config.redis_url {
            Some(url) => Some(crate::bus::ChangeBus::new(url)?),
            None => None,
        };
        let mut service = Service::new(store, Arc::new(config));
        if let Some(bus) = &bus {
            service.announce_changes_to(bus.signal());
        }
        Ok(Self {
            listener,
            state: AppState::new(crate::http::Shared {
                service,
                recorder: UsageRecorder::default(),
                metrics: crate::metrics::Metrics::default(),
                jobs_waiting: Arc::new(tokio::sync::Notify::new()),
                openapi: Arc::default(),
                limiter: Arc::new(limiter),
            }),
            bus,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn service(&self) -> &Service {
        &self.state.service
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and writes the
    /// usage still held in memory.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let store = self.state.service.store().clone();
        let recorder = self.state.recorder.clone();
        let (stop_flusher, flusher_stopped) = tokio::sync::watch::channel(false);
        let flusher = recorder.spawn_flusher(store.clone(), USAGE_FLUSH_EVERY, flusher_stopped);
        let config = self.state.service.config();
        let roller =
            crate::recorder::spawn_roller(store.clone(), config.clock.clone(), USAGE_ROLL_UP_EVERY);
        let pruner = crate::recorder::spawn_pruner(
            store.clone(),
            config.clock.clone(),
            config.usage_retention_days,
            USAGE_PRUNE_EVERY,
        );
        let redis_probe = self.state.limiter.spawn_probe(REDIS_PROBE_EVERY);
        let bus = self
            .bus
            .map(|bus| bus.spawn(self.state.service.key_cache().clone()));
        let sweeper = self
            .state
            .limiter
            .local_limiter()
            .spawn_sweeper(config.clock.clone(), LIMITER_SWEEP_EVERY);
        let watcher = spawn_change_watcher(self.state.service.clone(), config.change_watch);
        let (stop_worker, worker_stopped) = tokio::sync::watch::channel(false);
        let worker = crate::worker::Worker::new(
            self.state.service.clone(),
            crate::generator::build(&config.generator),
            config.worker,
            self.state.jobs_waiting.clone(),
        )
        .spawn(worker_stopped);
        let application = crate::http::Application::new(self.state);
        let service_for = move |peer| application.at::<hyper::body::Incoming>(Some(peer));
        crate::http::serve(self.listener, service_for, shutdown).await;
        let _ = stop_flusher.send(true);
        let _ = flusher.await;
        pruner.abort();
        roller.abort();
        sweeper.abort();
        if let Some(probe) = redis_probe {
            probe.abort();
        }
        for task in bus.into_iter().flatten() {
            task.abort();
        }
        watcher.abort();
        let _ = stop_worker.send(true);
        let _ = worker.await;
        recorder.flush(&store).await;
        // What the last flushes appended goes into the usage tables before the process ends,
        // so that nothing waits in storage for a fold that only a running server makes.
        if let Err(e) = crate::recorder::fold(&store).await {
            tracing::warn!(error = %e, "could not fold the last usage counts; a later fold will");
        }
        Ok(())
    }
}

/// Clears the key cache when another process changes something authentication depends on:
/// it polls the database's change counter every `every` (SPEC §10 `change_watch_ms`) on a
/// connection of its own. Each successful poll lets the cache be trusted for one more second (the
/// SPEC §10 bound); if polls stop succeeding, lookups go to storage.
fn spawn_change_watcher(service: Service, every: Duration) -> tokio::task::JoinHandle<()> {
    let cache = service.key_cache().clone();
    cache.start_watching();
    // SPEC §10: every node enforces a change within one second, even if a poll is delayed.
    let trust = Duration::from_secs(1);
    tokio::spawn(async move {
        let mut seen: Option<i64> = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let read_at = std::time::Instant::now();
            let version = match tokio::time::timeout(every, async {
                let mut conn = service.store().watch_conn().await?;
                keyward_store::keys::auth_version(&mut conn).await
            })
            .await
            {
                Ok(result) => result,
                Err(_) => continue, // timed out: the trust window runs out by itself
            };
            match version {
                Ok(v) => {
                    if seen != Some(v) {
                        // Also on the first poll: entries loaded before it are not vouched for.
                        cache.invalidate_all();
                        seen = Some(v);
                    }
                    cache.confirm_fresh(read_at, trust);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the change counter; keys are checked in storage until it answers")
                }
            }
        }
    })
}
