//! Durable content generation jobs.

use keyward_core::{BlogId, GenerationId, OrgId, UnixMillis, WebsiteId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::keys::ActorRef;
use crate::{Backend, Conn, Scope, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: GenerationId,
    pub org: OrgId,
    pub website: WebsiteId,
    pub requested_by: ActorRef,
    pub topic: String,
    pub keywords: Vec<String>,
    pub tone: Option<String>,
    /// `short`, `medium` or `long`.
    pub length: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub blog: Option<BlogId>,
    pub attempts: i64,
    pub created_at: UnixMillis,
    pub started_at: Option<UnixMillis>,
    pub finished_at: Option<UnixMillis>,
}

const COLUMNS: &str = "j.id, j.organization_id, j.website_id, j.requested_by_type, j.requested_by_id, j.topic, j.keywords,
    j.tone, j.length, j.status, j.error, j.blog_id, j.attempts, j.created_at, j.started_at, j.finished_at";

fn from_row(row: &AnyRow) -> Result<Job, sqlx::Error> {
    let keywords: String = row.try_get("keywords")?;
    Ok(Job {
        id: GenerationId::from_stored(row.try_get("id")?),
        org: OrgId::from_stored(row.try_get("organization_id")?),
        website: WebsiteId::from_stored(row.try_get("website_id")?),
        requested_by: ActorRef {
            kind: row.try_get("requested_by_type")?,
            id: row.try_get("requested_by_id")?,
        },
        topic: row.try_get("topic")?,
        keywords: serde_json::from_str(&keywords).unwrap_or_default(),
        tone: row.try_get("tone")?,
        length: row.try_get("length")?,
        status: row.try_get("status")?,
        error: row.try_get("error")?,
        blog: row
            .try_get::<Option<String>, _>("blog_id")?
            .map(BlogId::from_stored),
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

pub async fn insert(conn: &mut Conn, job: &Job) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO generation_jobs (id, organization_id, website_id, requested_by_type, requested_by_id, topic, keywords,
            tone, length, status, attempts, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11)",
    )
    .bind(job.id.as_str())
    .bind(job.org.as_str())
    .bind(job.website.as_str())
    .bind(&job.requested_by.kind)
    .bind(&job.requested_by.id)
    .bind(&job.topic)
    .bind(serde_json::to_string(&job.keywords).unwrap_or_else(|_| "[]".into()))
    .bind(job.tone.as_deref())
    .bind(&job.length)
    .bind(&job.status)
    .bind(job.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A job whose website is visible in `scope`.
pub async fn get(
    conn: &mut Conn,
    scope: &Scope,
    id: &GenerationId,
) -> Result<Option<Job>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM generation_jobs j JOIN websites w ON w.id = j.website_id AND w.organization_id = j.organization_id
         WHERE j.organization_id = $1 AND ($2 = '' OR w.team_id = $2) AND j.id = $3"
    ))
    .bind(scope.org.as_str())
    .bind(scope.team.as_ref().map(|t| t.as_str()).unwrap_or(""))
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Claims the oldest queued job for `worker` until `lease_until`, atomically: two workers
/// never claim the same job (PostgreSQL skips rows another transaction has locked; SQLite
/// has one writer at a time).
pub async fn claim(
    conn: &mut Conn,
    backend: Backend,
    worker: &str,
    now: UnixMillis,
    lease_until: UnixMillis,
) -> Result<Option<Job>, StoreError> {
    let pick = match backend {
        Backend::Postgres => {
            "SELECT id FROM generation_jobs WHERE status = 'queued' ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
        }
        Backend::Sqlite => "SELECT id FROM generation_jobs WHERE status = 'queued' ORDER BY created_at, id LIMIT 1",
    };
    let row = sqlx::query(&format!(
        "UPDATE generation_jobs SET status = 'running', claimed_by = $1, lease_until = $2, started_at = $3,
            attempts = attempts + 1
         WHERE id = ({pick}) AND status = 'queued'
         RETURNING {}",
        COLUMNS.replace("j.", "")
    ))
    .bind(worker)
    .bind(lease_until)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Extends the lease of a job `worker` still holds; false when it no longer does.
pub async fn renew(
    conn: &mut Conn,
    id: &GenerationId,
    worker: &str,
    lease_until: UnixMillis,
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE generation_jobs SET lease_until = $1 WHERE id = $2 AND claimed_by = $3 AND status = 'running'")
        .bind(lease_until)
        .bind(id.as_str())
        .bind(worker)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Finishes a job `worker` holds; false (and nothing written) when it no longer holds it.
pub async fn finish(
    conn: &mut Conn,
    id: &GenerationId,
    worker: &str,
    now: UnixMillis,
    outcome: Result<&BlogId, &str>,
) -> Result<bool, StoreError> {
    let (status, blog, error) = match outcome {
        Ok(blog) => ("succeeded", Some(blog.as_str()), None),
        Err(error) => ("failed", None, Some(error)),
    };
    let done = sqlx::query(
        "UPDATE generation_jobs SET status = $1, blog_id = $2, error = $3, finished_at = $4, lease_until = NULL
         WHERE id = $5 AND claimed_by = $6 AND status = 'running'",
    )
    .bind(status)
    .bind(blog)
    .bind(error)
    .bind(now)
    .bind(id.as_str())
    .bind(worker)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Puts running jobs whose lease ran out back in the queue (their worker died); returns how many.
pub async fn requeue_expired(conn: &mut Conn, now: UnixMillis) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE generation_jobs SET status = 'queued', claimed_by = NULL, lease_until = NULL
         WHERE status = 'running' AND lease_until < $1",
    )
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Jobs by status, across organizations (for metrics).
pub async fn count_by_status(conn: &mut Conn) -> Result<Vec<(String, i64)>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, COUNT(*) FROM generation_jobs GROUP BY status ORDER BY status",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}
