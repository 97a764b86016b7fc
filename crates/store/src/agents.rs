//! API agents: named sets of capabilities shared by all their keys.

use keyward_core::{AgentId, CapabilitySet, OrgId, UnixMillis};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::page::{Cursor, Page, PageRequest};
use crate::{Conn, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    pub id: AgentId,
    pub org: OrgId,
    pub name: String,
    pub description: String,
    pub capabilities: CapabilitySet,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub deleted_at: Option<UnixMillis>,
}

/// An agent with the number of its keys that still work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSummary {
    pub agent: Agent,
    pub active_keys: i64,
}

const COLUMNS: &str = "a.id, a.organization_id, a.name, a.description, a.capabilities, a.created_at, a.updated_at, a.deleted_at";

/// Capabilities are stored as one space-separated, sorted string.
pub(crate) fn encode_caps(caps: &CapabilitySet) -> String {
    caps.names().join(" ")
}

pub(crate) fn from_row(row: &AnyRow) -> Result<Agent, sqlx::Error> {
    let caps: String = row.try_get("capabilities")?;
    Ok(Agent {
        id: AgentId::from_stored(row.try_get("id")?),
        org: OrgId::from_stored(row.try_get("organization_id")?),
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        capabilities: CapabilitySet::from_stored(caps.split_whitespace()),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}

fn name_taken(name: &str) -> String {
    format!("an agent named {name:?} already exists in this organization")
}

pub async fn insert(conn: &mut Conn, agent: &Agent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agents (id, organization_id, name, description, capabilities, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(agent.id.as_str())
    .bind(agent.org.as_str())
    .bind(&agent.name)
    .bind(&agent.description)
    .bind(encode_caps(&agent.capabilities))
    .bind(agent.created_at)
    .bind(agent.updated_at)
    .execute(conn)
    .await
    .map_err(|e| StoreError::on_unique(e, || name_taken(&agent.name)))?;
    Ok(())
}

/// A live (not deleted) agent of `org`.
pub async fn get(conn: &mut Conn, org: &OrgId, id: &AgentId) -> Result<Option<Agent>, StoreError> {
    select_live(conn, org, id, "").await
}

/// A live agent of `org`, locked for the rest of the transaction (PostgreSQL).
pub async fn get_for_update(
    conn: &mut Conn,
    org: &OrgId,
    id: &AgentId,
) -> Result<Option<Agent>, StoreError> {
    let lock = crate::keys::lock_clause(conn);
    select_live(conn, org, id, lock).await
}

async fn select_live(
    conn: &mut Conn,
    org: &OrgId,
    id: &AgentId,
    lock: &str,
) -> Result<Option<Agent>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM agents a WHERE a.organization_id = $1 AND a.id = $2 AND a.deleted_at IS NULL{lock}"
    ))
    .bind(org.as_str())
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// A live agent of `org` found by its (unique) name.
pub async fn get_by_name(
    conn: &mut Conn,
    org: &OrgId,
    name: &str,
) -> Result<Option<Agent>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM agents a WHERE a.organization_id = $1 AND a.name = $2 AND a.deleted_at IS NULL"
    ))
    .bind(org.as_str())
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Live agents of `org`, newest first, with their active key counts (only keys of
/// `only_team` counted, for a team-scoped caller).
pub async fn list(
    conn: &mut Conn,
    org: &OrgId,
    only_team: Option<&keyward_core::TeamId>,
    page: &PageRequest,
    now: UnixMillis,
) -> Result<Page<AgentSummary>, StoreError> {
    let (at, id) = page.bounds();
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS},
            (SELECT COUNT(*) FROM api_keys k
              WHERE k.organization_id = a.organization_id AND k.agent_id = a.id AND ($6 = '' OR k.team_id = $6)
                AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $2)) AS active_keys
         FROM agents a
         WHERE a.organization_id = $1 AND a.deleted_at IS NULL
           AND (a.created_at < $3 OR (a.created_at = $3 AND a.id < $4))
         ORDER BY a.created_at DESC, a.id DESC
         LIMIT $5"
    ))
    .bind(org.as_str())
    .bind(now)
    .bind(at)
    .bind(id)
    .bind(page.fetch_limit())
    .bind(only_team.map(|t| t.as_str()).unwrap_or(""))
    .fetch_all(conn)
    .await?;
    let items = rows
        .iter()
        .map(|r| {
            Ok(AgentSummary {
                agent: from_row(r)?,
                active_keys: r.try_get("active_keys")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Page::from_rows(items, page, |s| Cursor {
        at: s.agent.created_at,
        id: s.agent.id.to_string(),
    }))
}

/// Replaces an agent's name, description and capabilities.
pub async fn update(conn: &mut Conn, org: &OrgId, agent: &Agent) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE agents SET name = $1, description = $2, capabilities = $3, updated_at = $4
         WHERE organization_id = $5 AND id = $6 AND deleted_at IS NULL",
    )
    .bind(&agent.name)
    .bind(&agent.description)
    .bind(encode_caps(&agent.capabilities))
    .bind(agent.updated_at)
    .bind(org.as_str())
    .bind(agent.id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(|e| StoreError::on_unique(e, || name_taken(&agent.name)))?;
    Ok(())
}

/// Marks an agent deleted; its record stays for the audit trail.
pub async fn mark_deleted(
    conn: &mut Conn,
    org: &OrgId,
    id: &AgentId,
    now: UnixMillis,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE agents SET deleted_at = $1 WHERE organization_id = $2 AND id = $3 AND deleted_at IS NULL")
        .bind(now)
        .bind(org.as_str())
        .bind(id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// An agent of `org`, deleted or not: a deleted agent's capabilities still bound who may act
/// on its (revoked) keys.
pub async fn get_including_deleted(
    conn: &mut Conn,
    org: &OrgId,
    id: &AgentId,
) -> Result<Option<Agent>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM agents a WHERE a.organization_id = $1 AND a.id = $2"
    ))
    .bind(org.as_str())
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Live agents with this exact name or id in any organization, as `(organization, agent)`.
/// For the operator's command line, which may name an agent without its organization; the
/// caller refuses an ambiguous answer.
pub async fn locate(
    conn: &mut Conn,
    id_or_name: &str,
) -> Result<Vec<(OrgId, AgentId)>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT organization_id, id FROM agents WHERE (id = $1 OR name = $1) AND deleted_at IS NULL ORDER BY created_at",
    )
    .bind(id_or_name)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(o, a)| (OrgId::from_stored(o), AgentId::from_stored(a)))
        .collect())
}
