//! Organizations: the customers, each on a plan.

use keyward_core::{OrgId, UnixMillis};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Conn, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    pub slug: String,
    pub plan: String,
    pub created_at: UnixMillis,
}

const COLUMNS: &str = "id, name, slug, plan, created_at";

fn from_row(row: &AnyRow) -> Result<Org, sqlx::Error> {
    Ok(Org {
        id: OrgId::from_stored(row.try_get("id")?),
        name: row.try_get("name")?,
        slug: row.try_get("slug")?,
        plan: row.try_get("plan")?,
        created_at: row.try_get("created_at")?,
    })
}

pub async fn insert(conn: &mut Conn, org: &Org) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO organizations (id, name, slug, plan, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(org.id.as_str())
    .bind(&org.name)
    .bind(&org.slug)
    .bind(&org.plan)
    .bind(org.created_at)
    .execute(conn)
    .await
    .map_err(|e| {
        StoreError::on_unique(e, || {
            format!(
                "an organization with the slug {:?} already exists",
                org.slug
            )
        })
    })?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id: &OrgId) -> Result<Option<Org>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM organizations WHERE id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn get_by_slug(conn: &mut Conn, slug: &str) -> Result<Option<Org>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM organizations WHERE slug = $1"
    ))
    .bind(slug)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Every organization, oldest first. For operators (the command line) only.
pub async fn list_all(conn: &mut Conn) -> Result<Vec<Org>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM organizations ORDER BY created_at, id"
    ))
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Locks an organization's row for the rest of the transaction (PostgreSQL), so checks such
/// as a plan's `max_keys` and the insert they guard cannot interleave with another's.
pub async fn lock(conn: &mut Conn, id: &OrgId) -> Result<(), StoreError> {
    let lock = crate::keys::lock_clause(conn);
    sqlx::query(&format!("SELECT id FROM organizations WHERE id = $1{lock}"))
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(())
}

pub async fn set_plan(conn: &mut Conn, id: &OrgId, plan: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE organizations SET plan = $1 WHERE id = $2")
        .bind(plan)
        .bind(id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Whether the store holds any organization at all (used to decide on demo data).
pub async fn any_exist(conn: &mut Conn) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM organizations")
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}
