//! People and their memberships in organizations.

use keyward_core::{OrgId, Role, UnixMillis, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Conn, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// Stored lowercase.
    pub email: String,
    pub name: String,
    pub created_at: UnixMillis,
}

/// A user's place in one organization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub user: User,
    pub org: OrgId,
    pub role: Role,
}

fn user_from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: UserId::from_stored(row.try_get("id")?),
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn member_from_row(row: &AnyRow) -> Result<Member, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(Member {
        user: user_from_row(row)?,
        org: OrgId::from_stored(row.try_get("organization_id")?),
        role: role.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

pub async fn insert(
    conn: &mut Conn,
    user: &User,
    password_hash: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO users (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(user.id.as_str())
        .bind(&user.email)
        .bind(&user.name)
        .bind(password_hash)
        .bind(user.created_at)
        .execute(conn)
        .await
        .map_err(|e| StoreError::on_unique(e, || format!("a user with the email {} already exists", user.email)))?;
    Ok(())
}

pub async fn get_by_email(conn: &mut Conn, email: &str) -> Result<Option<User>, StoreError> {
    let row = sqlx::query("SELECT id, email, name, created_at FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

/// The stored argon2id hash of a user's password, if one is set.
pub async fn password_hash(conn: &mut Conn, id: &UserId) -> Result<Option<String>, StoreError> {
    let hash: Option<Option<String>> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(conn)
            .await?;
    Ok(hash.flatten())
}

pub async fn set_password_hash(conn: &mut Conn, id: &UserId, hash: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn add_membership(
    conn: &mut Conn,
    org: &OrgId,
    user: &UserId,
    role: Role,
    now: UnixMillis,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO memberships (organization_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind(org.as_str())
        .bind(user.as_str())
        .bind(role.as_str())
        .bind(now)
        .execute(conn)
        .await
        .map_err(|e| StoreError::on_unique(e, || "that user is already a member of the organization".into()))?;
    Ok(())
}

const MEMBER_SELECT: &str = "SELECT u.id, u.email, u.name, u.created_at, m.organization_id, m.role
    FROM memberships m JOIN users u ON u.id = m.user_id";

/// A user's membership in `org`, if any.
pub async fn member(
    conn: &mut Conn,
    org: &OrgId,
    user: &UserId,
) -> Result<Option<Member>, StoreError> {
    let row = sqlx::query(&format!(
        "{MEMBER_SELECT} WHERE m.organization_id = $1 AND m.user_id = $2"
    ))
    .bind(org.as_str())
    .bind(user.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(member_from_row).transpose()?)
}

/// A member of `org` found by email.
pub async fn member_by_email(
    conn: &mut Conn,
    org: &OrgId,
    email: &str,
) -> Result<Option<Member>, StoreError> {
    let row = sqlx::query(&format!(
        "{MEMBER_SELECT} WHERE m.organization_id = $1 AND u.email = $2"
    ))
    .bind(org.as_str())
    .bind(email)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(member_from_row).transpose()?)
}

/// Every membership of a user, across organizations.
pub async fn memberships_of(conn: &mut Conn, user: &UserId) -> Result<Vec<Member>, StoreError> {
    let rows = sqlx::query(&format!(
        "{MEMBER_SELECT} WHERE m.user_id = $1 ORDER BY m.created_at"
    ))
    .bind(user.as_str())
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(member_from_row).collect::<Result<_, _>>()?)
}

/// The members of `org`, oldest first.
pub async fn members(conn: &mut Conn, org: &OrgId) -> Result<Vec<Member>, StoreError> {
    let rows = sqlx::query(&format!(
        "{MEMBER_SELECT} WHERE m.organization_id = $1 ORDER BY m.created_at, u.id"
    ))
    .bind(org.as_str())
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(member_from_row).collect::<Result<_, _>>()?)
}

/// Whether any user exists anywhere (decides whether first-run setup is open).
pub async fn any_exist(conn: &mut Conn) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}
