//! The generation worker: claims queued jobs, runs the configured generator, saves the draft.
//!
//! A claimed job carries a lease that the worker renews while the generator runs. A worker
//! that dies (crash, `kill -9`) stops renewing; once the lease runs out, any worker puts the
//! job back in the queue. A worker finishes a job only while it still holds the lease, in
//! the same transaction as the draft, so a job's draft is saved exactly once.

use std::sync::Arc;
use std::time::Duration;

use keyward_core::base62;
use keyward_store::jobs::{self, Job};
use tokio::sync::{watch, Notify};

use crate::generator::{GenerationRequest, Generator, Length};
use crate::service::BlogInput;
use crate::{Caller, Service};

/// How a worker paces itself.
#[derive(Clone, Copy, Debug)]
pub struct WorkerTiming {
    /// How long a claim holds without renewal.
    pub lease: Duration,
    /// How often the lease is renewed while a job runs (well under `lease`).
    pub renew_every: Duration,
    /// How often the queue is looked at when nothing wakes the worker.
    pub poll_every: Duration,
}

impl Default for WorkerTiming {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(6),
            renew_every: Duration::from_secs(2),
            poll_every: Duration::from_millis(500),
        }
    }
}

/// A job claimed this many times (each claim after a worker died or crashed on it) fails
/// instead of being tried again.
pub const MAX_ATTEMPTS: i64 = 3;

#[derive(Clone)]
pub struct Worker {
    service: Service,
    generator: Arc<dyn Generator>,
    id: String,
    timing: WorkerTiming,
    wake: Arc<Notify>,
}

impl Worker {
    pub fn new(
        service: Service,
        generator: Arc<dyn Generator>,
        timing: WorkerTiming,
        wake: Arc<Notify>,
    ) -> Self {
        let mut id = String::from("wrk_");
        base62::push_random(&mut id, &mut rand::rng(), 16);
        Self {
            service,
            generator,
            id,
            timing,
            wake,
        }
    }

    /// Runs until `stop` turns true; a job in progress is handed back to the queue.
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            tracing::info!(worker = %self.id, generator = self.generator.name(), "generation worker started");
            loop {
                if *stop.borrow() {
                    break;
                }
                self.requeue_expired().await;
                match self.claim().await {
                    Some(job) => {
                        // Each job runs in a task of its own, so a generator that panics
                        // fails that job instead of stopping this worker.
                        let worker = self.clone();
                        let running = job.clone();
                        let mut task = tokio::spawn(async move { worker.run(running).await });
                        tokio::select! {
                            joined = &mut task => {
                                if joined.is_err() {
                                    tracing::error!(job = %job.id, "a generation job crashed");
                                    let _ = self.fail(&job, "the generator failed unexpectedly").await;
                                }
                            }
                            _ = stop.changed() => {
                                task.abort();
                                self.release(&job).await;
                                break;
                            }
                        }
                    }
                    None => {
                        tokio::select! {
                            _ = self.wake.notified() => {}
                            _ = tokio::time::sleep(self.timing.poll_every) => {}
                            _ = stop.changed() => break,
                        }
                    }
                }
            }
            tracing::info!(worker = %self.id, "generation worker stopped");
        })
    }

    fn lease_until(&self) -> i64 {
        self.service.now() + self.timing.lease.as_millis() as i64
    }

    async fn requeue_expired(&self) {
        let result = async {
            let mut tx = self.service.store().begin().await?;
            let n = jobs::requeue_expired(&mut tx, self.service.now()).await?;
            keyward_store::commit(tx).await?;
            Ok::<_, keyward_store::StoreError>(n)
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                jobs = n,
                "requeued generation jobs whose worker stopped renewing its lease"
            ),
            Err(e) => tracing::warn!(error = %e, "could not requeue expired generation jobs"),
        }
    }

    async fn claim(&self) -> Option<Job> {
        let store = self.service.store();
        let result = async {
            let mut tx = store.begin().await?;
            let job = jobs::claim(
                &mut tx,
                store.backend(),
                &self.id,
                self.service.now(),
                self.lease_until(),
            )
            .await?;
            keyward_store::commit(tx).await?;
            Ok::<_, keyward_store::StoreError>(job)
        }
        .await;
        result.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not claim a generation job");
            None
        })
    }

    /// Hands a job back to the queue when this worker stops in the middle of it.
    async fn release(&self, job: &Job) {
        let result = async {
            let mut tx = self.service.store().begin().await?;
            // Expiring the lease now lets the next requeue pass (on any node) take it.
            jobs::renew(&mut tx, &job.id, &self.id, 0).await?;
            jobs::requeue_expired(&mut tx, self.service.now()).await?;
            keyward_store::commit(tx).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, job = %job.id, "could not hand a generation job back; it is requeued when its lease ends");
        }
    }

    async fn run(&self, job: Job) {
        if job.attempts > MAX_ATTEMPTS {
            let reason = format!("gave up after {MAX_ATTEMPTS} attempts that did not finish");
            if let Err(e) = self.fail(&job, &reason).await {
                tracing::error!(error = ?e, job = %job.id, "could not fail a generation job");
            }
            return;
        }
        let website_name = {
            let scope = keyward_store::Scope::org(job.org.clone());
            match self.service.store().read().await {
                Ok(mut conn) => {
                    keyward_store::content::get_website(&mut conn, &scope, &job.website)
                        .await
                        .ok()
                        .flatten()
                        .map(|w| w.name)
                        .unwrap_or_default()
                }
                Err(_) => String::new(),
            }
        };
        let request = GenerationRequest {
            topic: job.topic.clone(),
            keywords: job.keywords.clone(),
            tone: job.tone.clone(),
            length: match job.length.as_str() {
                "short" => Length::Short,
                "long" => Length::Long,
                _ => Length::Medium,
            },
            website_name,
        };
        tracing::info!(job = %job.id, attempt = job.attempts, "generating");
        let generated = {
            let generate = self.generator.generate(&request);
            tokio::pin!(generate);
            let mut renew = tokio::time::interval(self.timing.renew_every);
            renew.tick().await;
            loop {
                tokio::select! {
                    result = &mut generate => break result,
                    _ = renew.tick() => {
                        if !self.renew(&job).await {
                            tracing::warn!(job = %job.id, "lost the lease of a generation job; leaving it to another worker");
                            return;
                        }
                    }
                }
            }
        };
        let outcome = match generated {
            Ok(draft) => self.save(&job, draft).await,
            Err(e) => self.fail(&job, &e.to_string()).await,
        };
        if let Err(e) = outcome {
            tracing::error!(error = ?e, job = %job.id, "could not record the outcome of a generation job");
        }
    }

    async fn renew(&self, job: &Job) -> bool {
        let result = async {
            let mut tx = self.service.store().begin().await?;
            let held = jobs::renew(&mut tx, &job.id, &self.id, self.lease_until()).await?;
            keyward_store::commit(tx).await?;
            Ok::<_, keyward_store::StoreError>(held)
        }
        .await;
        // A storage hiccup is not a lost lease; the next renewal tries again.
        result.unwrap_or(true)
    }

    /// Saves the draft and finishes the job in one transaction, only while holding the lease.
    async fn save(
        &self,
        job: &Job,
        draft: crate::generator::Draft,
    ) -> Result<(), crate::ServiceError> {
        let now = self.service.now();
        let caller = Caller::on_behalf_of(job.org.clone(), &job.requested_by);
        let mut tx = self.service.store().begin().await?;
        let slug = self
            .service
            .free_blog_slug(&mut tx, job, &draft.title)
            .await?;
        let input = BlogInput {
            website: Some(job.website.clone()),
            title: Some(draft.title.chars().take(200).collect()),
            body: Some(draft.body),
            excerpt: Some(draft.excerpt.chars().take(500).collect()),
            slug: Some(slug),
            status: Some("draft".into()),
            ..BlogInput::default()
        };
        let saved = self.service.insert_blog(&mut tx, &caller, input, now).await;
        let blog = match saved {
            Ok(blog) => blog,
            Err(e) => {
                drop(tx);
                return self
                    .fail(job, &format!("the draft could not be saved: {e}"))
                    .await;
            }
        };
        if jobs::finish(&mut tx, &job.id, &self.id, now, Ok(&blog.id)).await? {
            keyward_store::commit(tx).await?;
            tracing::info!(job = %job.id, blog = %blog.id, "generation succeeded");
        } else {
            tracing::warn!(job = %job.id, "another worker took over this job; its draft is not saved twice");
        }
        Ok(())
    }

    async fn fail(&self, job: &Job, error: &str) -> Result<(), crate::ServiceError> {
        let mut tx = self.service.store().begin().await?;
        if jobs::finish(&mut tx, &job.id, &self.id, self.service.now(), Err(error)).await? {
            keyward_store::commit(tx).await?;
            tracing::warn!(job = %job.id, error, "generation failed");
        }
        Ok(())
    }
}
