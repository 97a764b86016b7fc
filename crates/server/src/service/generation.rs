//! Content generation jobs: submitted here, run by the worker (see `crate::worker`).

use keyward_core::{GenerationId, WebsiteId};
use keyward_store::content::{self, Blog};
use keyward_store::jobs::{self, Job};
use keyward_store::{audit, Conn};
use serde_json::json;

use super::{Caller, Service, ServiceError};

#[derive(Clone, Debug, Default)]
pub struct NewGeneration {
    pub website: Option<WebsiteId>,
    pub topic: Option<String>,
    pub keywords: Vec<String>,
    pub tone: Option<String>,
    pub length: Option<String>,
}

fn short_text(field: &str, value: &str, max: usize) -> Result<String, ServiceError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            field,
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    Ok(v.to_string())
}

impl Service {
    /// Queues a generation job for a website the caller can see.
    pub async fn submit_generation(
        &self,
        caller: &Caller,
        input: NewGeneration,
    ) -> Result<Job, ServiceError> {
        caller.require("generate")?;
        let website = input
            .website
            .ok_or_else(|| ServiceError::invalid("website_id", "website_id is required"))?;
        let topic = short_text("topic", input.topic.as_deref().unwrap_or(""), 300)?;
        if input.keywords.len() > 20 {
            return Err(ServiceError::invalid("keywords", "at most 20 keywords"));
        }
        let keywords = input
            .keywords
            .iter()
            .map(|k| short_text("keywords", k, 50))
            .collect::<Result<Vec<_>, _>>()?;
        let tone = input
            .tone
            .as_deref()
            .map(|t| short_text("tone", t, 50))
            .transpose()?;
        let length = match input.length.as_deref().unwrap_or("medium") {
            l @ ("short" | "medium" | "long") => l.to_string(),
            _ => {
                return Err(ServiceError::invalid(
                    "length",
                    "length must be short, medium or long",
                ))
            }
        };
        let now = self.now();
        let mut tx = self.store().begin().await?;
        content::get_website(&mut tx, &caller.scope(), &website)
            .await?
            .ok_or_else(|| ServiceError::invalid("website_id", "no such website"))?;
        let job = Job {
            id: GenerationId::generate(),
            org: caller.org.clone(),
            website,
            requested_by: caller.actor_ref(),
            topic,
            keywords,
            tone,
            length,
            status: "queued".into(),
            error: None,
            blog: None,
            attempts: 0,
            created_at: now,
            started_at: None,
            finished_at: None,
        };
        jobs::insert(&mut tx, &job).await?;
        let event = caller.event(
            now,
            "generation.created",
            ("generation", job.id.as_str()),
            json!({"website_id": job.website, "topic": job.topic, "length": job.length}),
        );
        audit::insert(&mut tx, &event).await?;
        keyward_store::commit(tx).await?;
        Ok(job)
    }

    /// A job and, once it succeeded, its draft.
    pub async fn get_generation(
        &self,
        caller: &Caller,
        id: &GenerationId,
    ) -> Result<(Job, Option<Blog>), ServiceError> {
        caller.require("generate")?;
        let mut conn = self.store().read().await?;
        let job = jobs::get(&mut conn, &caller.scope(), id)
            .await?
            .ok_or(ServiceError::NotFound("generation"))?;
        let blog = match &job.blog {
            Some(b) => content::get_blog(&mut conn, &caller.scope(), b, true).await?,
            None => None,
        };
        Ok((job, blog))
    }

    /// A slug for a generated draft that no blog of the website uses yet.
    pub(crate) async fn free_blog_slug(
        &self,
        conn: &mut Conn,
        job: &Job,
        title: &str,
    ) -> Result<String, ServiceError> {
        let base: String = super::orgs::slugify(title).chars().take(80).collect();
        let base = if base.is_empty() {
            "draft".to_string()
        } else {
            base
        };
        for n in 1..=20 {
            let candidate = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            if !content::blog_slug_exists(conn, &job.org, &job.website, &candidate).await? {
                return Ok(candidate);
            }
        }
        Ok(format!("{base}-{}", job.id.as_str()[4..12].to_lowercase()))
    }
}
