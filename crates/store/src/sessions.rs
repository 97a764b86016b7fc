//! Dashboard sessions, one-time sign-in links, the first-run setup token, and failed sign-ins.
//!
//! Tokens are never stored: only the lowercase hex SHA-256 of each, so a copy of the database
//! signs nobody in. Everything is in the database so several processes sharing it agree.

use keyward_core::{OrgId, UnixMillis, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Backend, Conn, StoreError};

/// A signed-in person's session in one organization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub token_hash: String,
    pub user: UserId,
    pub org: OrgId,
    /// Echoed by every form the session posts.
    pub csrf_token: String,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

fn session_from_row(row: &AnyRow) -> Result<SessionRecord, sqlx::Error> {
    Ok(SessionRecord {
        token_hash: row.try_get("token_hash")?,
        user: UserId::from_stored(row.try_get("user_id")?),
        org: OrgId::from_stored(row.try_get("organization_id")?),
        csrf_token: row.try_get("csrf_token")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
    })
}

pub async fn insert_session(conn: &mut Conn, s: &SessionRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, organization_id, csrf_token, created_at, expires_at, ip, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&s.token_hash)
    .bind(s.user.as_str())
    .bind(s.org.as_str())
    .bind(&s.csrf_token)
    .bind(s.created_at)
    .bind(s.expires_at)
    .bind(s.ip.as_deref())
    .bind(s.user_agent.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

/// The session with this token hash, if it has not expired by `now`.
pub async fn find_session(
    conn: &mut Conn,
    token_hash: &str,
    now: UnixMillis,
) -> Result<Option<SessionRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT token_hash, user_id, organization_id, csrf_token, created_at, expires_at, ip, user_agent
         FROM sessions WHERE token_hash = $1 AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(session_from_row).transpose()?)
}

pub async fn delete_session(conn: &mut Conn, token_hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends every session of `user` except the one with `keep` as its hash.
pub async fn delete_sessions_of_user(
    conn: &mut Conn,
    user: &UserId,
    keep: Option<&str>,
) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
        .bind(user.as_str())
        .bind(keep.unwrap_or(""))
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Ends the sessions `user` has in `org` (when they leave it).
pub async fn delete_sessions_in_org(
    conn: &mut Conn,
    org: &OrgId,
    user: &UserId,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE organization_id = $1 AND user_id = $2")
        .bind(org.as_str())
        .bind(user.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes sessions that expired before `now`.
pub async fn prune_sessions(conn: &mut Conn, now: UnixMillis) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// A one-time link that lets a new member choose a password and sign in.
pub async fn insert_link(
    conn: &mut Conn,
    token_hash: &str,
    org: &OrgId,
    user: &UserId,
    now: UnixMillis,
    expires_at: UnixMillis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sign_in_links (token_hash, user_id, organization_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user.as_str())
    .bind(org.as_str())
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The user and organization of an unused, unexpired link.
pub async fn find_link(
    conn: &mut Conn,
    token_hash: &str,
    now: UnixMillis,
) -> Result<Option<(UserId, OrgId)>, StoreError> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT user_id, organization_id FROM sign_in_links
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(u, o)| (UserId::from_stored(u), OrgId::from_stored(o))))
}

/// Marks a link used. `false` when it was already used or has expired: whoever marks it
/// first wins, even across processes.
pub async fn use_link(
    conn: &mut Conn,
    token_hash: &str,
    now: UnixMillis,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE sign_in_links SET used_at = $2
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Retires the unused links of a user (when a new one is made or a password is set).
pub async fn retire_links_of_user(
    conn: &mut Conn,
    user: &UserId,
    now: UnixMillis,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sign_in_links SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL")
        .bind(user.as_str())
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Arbitrary constant naming the first-run setup's advisory lock on PostgreSQL.
const PG_SETUP_LOCK: i64 = 0x006b_7773_6574_7570;

/// Makes concurrent first-run setups (from several processes) take turns, so only one
/// organization and owner can be created while nobody exists. SQLite's write transactions
/// take turns already.
pub async fn lock_setup(conn: &mut Conn, backend: Backend) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_SETUP_LOCK)
            .execute(conn)
            .await?;
    }
    Ok(())
}

pub async fn insert_setup_token(
    conn: &mut Conn,
    token_hash: &str,
    now: UnixMillis,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO setup_tokens (token_hash, created_at) VALUES ($1, $2)")
        .bind(token_hash)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether a setup token exists and is unused.
pub async fn setup_token_unused(conn: &mut Conn, token_hash: &str) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM setup_tokens WHERE token_hash = $1 AND used_at IS NULL",
    )
    .bind(token_hash)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// Marks a setup token used; `false` if it was unknown or already used.
pub async fn use_setup_token(
    conn: &mut Conn,
    token_hash: &str,
    now: UnixMillis,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE setup_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
    )
    .bind(token_hash)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records one failed sign-in for `subject` and forgets failures older than `forget_before`.
pub async fn record_failure(
    conn: &mut Conn,
    subject: &str,
    at: UnixMillis,
    forget_before: UnixMillis,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sign_in_failures WHERE at < $1")
        .bind(forget_before)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO sign_in_failures (subject, at) VALUES ($1, $2)")
        .bind(subject)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many failures `subject` has since `since`, and when the oldest of them happened.
pub async fn failures_since(
    conn: &mut Conn,
    subject: &str,
    since: UnixMillis,
) -> Result<(i64, Option<UnixMillis>), StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM sign_in_failures WHERE subject = $1 AND at >= $2",
    )
    .bind(subject)
    .bind(since)
    .fetch_one(conn)
    .await?;
    Ok((row.try_get("n")?, row.try_get("oldest")?))
}

/// Forgets the failures of `subject` (after a successful sign-in).
pub async fn clear_failures(conn: &mut Conn, subject: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sign_in_failures WHERE subject = $1")
        .bind(subject)
        .execute(conn)
        .await?;
    Ok(())
}
