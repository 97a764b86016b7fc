//! Teams inside an organization.

use keyward_core::{OrgId, TeamId, UnixMillis, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Conn, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    pub id: TeamId,
    pub org: OrgId,
    pub name: String,
    pub created_at: UnixMillis,
}

fn from_row(row: &AnyRow) -> Result<Team, sqlx::Error> {
    Ok(Team {
        id: TeamId::from_stored(row.try_get("id")?),
        org: OrgId::from_stored(row.try_get("organization_id")?),
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

pub async fn insert(conn: &mut Conn, team: &Team) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO teams (id, organization_id, name, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(team.id.as_str())
    .bind(team.org.as_str())
    .bind(&team.name)
    .bind(team.created_at)
    .execute(conn)
    .await
    .map_err(|e| {
        StoreError::on_unique(e, || format!("a team named {:?} already exists", team.name))
    })?;
    Ok(())
}

pub async fn get(conn: &mut Conn, org: &OrgId, id: &TeamId) -> Result<Option<Team>, StoreError> {
    let row = sqlx::query("SELECT id, organization_id, name, created_at FROM teams WHERE organization_id = $1 AND id = $2")
        .bind(org.as_str())
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn get_by_name(
    conn: &mut Conn,
    org: &OrgId,
    name: &str,
) -> Result<Option<Team>, StoreError> {
    let row = sqlx::query("SELECT id, organization_id, name, created_at FROM teams WHERE organization_id = $1 AND name = $2")
        .bind(org.as_str())
        .bind(name)
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The teams of `org` visible to `only_team` (all when `None`), newest first.
pub async fn list(
    conn: &mut Conn,
    org: &OrgId,
    only_team: Option<&TeamId>,
) -> Result<Vec<Team>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, organization_id, name, created_at FROM teams
         WHERE organization_id = $1 AND ($2 = '' OR id = $2)
         ORDER BY created_at DESC, id DESC",
    )
    .bind(org.as_str())
    .bind(only_team.map(|t| t.as_str()).unwrap_or(""))
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

pub async fn add_member(
    conn: &mut Conn,
    org: &OrgId,
    team: &TeamId,
    user: &UserId,
    now: UnixMillis,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO team_members (organization_id, team_id, user_id, created_at) VALUES ($1, $2, $3, $4)")
        .bind(org.as_str())
        .bind(team.as_str())
        .bind(user.as_str())
        .bind(now)
        .execute(conn)
        .await
        .map_err(|e| StoreError::on_unique(e, || "that user is already in the team".into()))?;
    Ok(())
}

pub async fn is_member(
    conn: &mut Conn,
    org: &OrgId,
    team: &TeamId,
    user: &UserId,
) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM team_members WHERE organization_id = $1 AND team_id = $2 AND user_id = $3",
    )
    .bind(org.as_str())
    .bind(team.as_str())
    .bind(user.as_str())
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}
