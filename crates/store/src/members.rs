//! Changing people's places in an organization and its teams: roles, removal, team members.

use keyward_core::{OrgId, Role, TeamId, UserId};

use crate::{Conn, StoreError};

/// Sets the role of a member of `org`; `false` when the user is not a member.
pub async fn set_role(
    conn: &mut Conn,
    org: &OrgId,
    user: &UserId,
    role: Role,
) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE memberships SET role = $3 WHERE organization_id = $1 AND user_id = $2")
            .bind(org.as_str())
            .bind(user.as_str())
            .bind(role.as_str())
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes a member from `org` and from all of its teams; `false` when not a member.
pub async fn remove(conn: &mut Conn, org: &OrgId, user: &UserId) -> Result<bool, StoreError> {
    sqlx::query("DELETE FROM team_members WHERE organization_id = $1 AND user_id = $2")
        .bind(org.as_str())
        .bind(user.as_str())
        .execute(&mut *conn)
        .await?;
    let done = sqlx::query("DELETE FROM memberships WHERE organization_id = $1 AND user_id = $2")
        .bind(org.as_str())
        .bind(user.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// How many owners `org` has.
pub async fn count_owners(conn: &mut Conn, org: &OrgId) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM memberships WHERE organization_id = $1 AND role = 'owner'",
    )
    .bind(org.as_str())
    .fetch_one(conn)
    .await?)
}

/// Removes a user from a team of `org`; `false` when they were not in it.
pub async fn remove_from_team(
    conn: &mut Conn,
    org: &OrgId,
    team: &TeamId,
    user: &UserId,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "DELETE FROM team_members WHERE organization_id = $1 AND team_id = $2 AND user_id = $3",
    )
    .bind(org.as_str())
    .bind(team.as_str())
    .bind(user.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Every `(team, user)` pair of `org`, oldest first.
pub async fn team_memberships(
    conn: &mut Conn,
    org: &OrgId,
) -> Result<Vec<(TeamId, UserId)>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT team_id, user_id FROM team_members WHERE organization_id = $1 ORDER BY created_at, user_id",
    )
    .bind(org.as_str())
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(t, u)| (TeamId::from_stored(t), UserId::from_stored(u)))
        .collect())
}

/// The members of `org` who have set a password (the others have a sign-in link pending).
pub async fn with_password(conn: &mut Conn, org: &OrgId) -> Result<Vec<UserId>, StoreError> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT u.id FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.organization_id = $1 AND u.password_hash IS NOT NULL",
    )
    .bind(org.as_str())
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(UserId::from_stored).collect())
}
