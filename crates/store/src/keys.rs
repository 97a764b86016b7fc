//! API key records. The secret is never here: only its SHA-256 and a display hint.

use keyward_core::{
    AgentId, CapabilitySet, KeyHash, KeyId, OrgId, RateLimit, TeamId, UnixMillis, UserId,
};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::page::{Cursor, Page, PageRequest};
use crate::{Conn, Scope, StoreError};

/// Who did something: a person, a key, or the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorRef {
    /// `user`, `key` or `cli`.
    pub kind: String,
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub org: OrgId,
    pub agent: AgentId,
    pub name: String,
    pub hint: String,
    pub hash: KeyHash,
    /// `None` is valid for all teams.
    pub team: Option<TeamId>,
    pub owner: Option<UserId>,
    pub environment: String,
    pub created_at: UnixMillis,
    pub created_by: ActorRef,
    pub expires_at: Option<UnixMillis>,
    pub revoked_at: Option<UnixMillis>,
    pub revoked_by: Option<String>,
    pub revoked_reason: Option<String>,
    pub last_used_at: Option<UnixMillis>,
    pub rate_limit: Option<RateLimit>,
    pub rolled_from: Option<KeyId>,
    pub rolled_to: Option<KeyId>,
}

impl KeyRecord {
    /// A new active key of `agent` with nothing of its own (no team, owner, expiry or rate
    /// limit), made by the command line: what `keyward dev seed-keys` and the benchmarks
    /// write in bulk.
    pub fn seeded(
        org: &OrgId,
        agent: &AgentId,
        name: String,
        secret: &keyward_core::ApiKey,
        now: UnixMillis,
    ) -> Self {
        Self {
            id: KeyId::generate(),
            org: org.clone(),
            agent: agent.clone(),
            name,
            hint: secret.hint(),
            hash: secret.hash(),
            team: None,
            owner: None,
            environment: "development".into(),
            created_at: now,
            created_by: ActorRef {
                kind: "cli".into(),
                id: "cli".into(),
            },
            expires_at: None,
            revoked_at: None,
            revoked_by: None,
            revoked_reason: None,
            last_used_at: None,
            rate_limit: None,
            rolled_from: None,
            rolled_to: None,
        }
    }
}

const COLUMNS: &str = "k.id, k.organization_id, k.agent_id, k.name, k.hint, k.key_hash, k.team_id, k.owner_id,
    k.environment, k.created_at, k.created_by_type, k.created_by_id, k.expires_at, k.revoked_at, k.revoked_by,
    k.revoked_reason, k.last_used_at, k.rate_limit, k.rate_window, k.rolled_from, k.rolled_to";

/// The SQL condition limiting keys to a scope; binds `$1` (organization) and `$2` (team or '').
const SCOPE_SQL: &str = "k.organization_id = $1 AND ($2 = '' OR k.team_id = $2)";

fn scope_team(scope: &Scope) -> &str {
    scope.team.as_ref().map(|t| t.as_str()).unwrap_or("")
}

fn from_row(row: &AnyRow) -> Result<KeyRecord, sqlx::Error> {
    let limit: Option<i64> = row.try_get("rate_limit")?;
    let window: Option<i64> = row.try_get("rate_window")?;
    Ok(KeyRecord {
        id: KeyId::from_stored(row.try_get("id")?),
        org: OrgId::from_stored(row.try_get("organization_id")?),
        agent: AgentId::from_stored(row.try_get("agent_id")?),
        name: row.try_get("name")?,
        hint: row.try_get("hint")?,
        hash: KeyHash::from_stored(row.try_get("key_hash")?),
        team: row
            .try_get::<Option<String>, _>("team_id")?
            .map(TeamId::from_stored),
        owner: row
            .try_get::<Option<String>, _>("owner_id")?
            .map(UserId::from_stored),
        environment: row.try_get("environment")?,
        created_at: row.try_get("created_at")?,
        created_by: ActorRef {
            kind: row.try_get("created_by_type")?,
            id: row.try_get("created_by_id")?,
        },
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_by: row.try_get("revoked_by")?,
        revoked_reason: row.try_get("revoked_reason")?,
        last_used_at: row.try_get("last_used_at")?,
        rate_limit: match (limit, window) {
            (Some(l), Some(w)) => Some(RateLimit {
                limit: l as u64,
                window_seconds: w as u64,
            }),
            _ => None,
        },
        rolled_from: row
            .try_get::<Option<String>, _>("rolled_from")?
            .map(KeyId::from_stored),
        rolled_to: row
            .try_get::<Option<String>, _>("rolled_to")?
            .map(KeyId::from_stored),
    })
}

pub async fn insert(conn: &mut Conn, key: &KeyRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_keys (id, organization_id, agent_id, name, hint, key_hash, team_id, owner_id, environment,
            created_at, created_by_type, created_by_id, expires_at, rate_limit, rate_window, rolled_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(key.id.as_str())
    .bind(key.org.as_str())
    .bind(key.agent.as_str())
    .bind(&key.name)
    .bind(&key.hint)
    .bind(key.hash.as_str())
    .bind(key.team.as_ref().map(|t| t.as_str()))
    .bind(key.owner.as_ref().map(|u| u.as_str()))
    .bind(&key.environment)
    .bind(key.created_at)
    .bind(&key.created_by.kind)
    .bind(&key.created_by.id)
    .bind(key.expires_at)
    .bind(key.rate_limit.map(|r| r.limit as i64))
    .bind(key.rate_limit.map(|r| r.window_seconds as i64))
    .bind(key.rolled_from.as_ref().map(|k| k.as_str()))
    .execute(conn)
    .await
    // 190 random bits make a hash collision a broken random source, not a user error.
    .map_err(|e| StoreError::on_unique(e, || "a key with this secret already exists".into()))?;
    Ok(())
}

/// Marks that something authentication depends on changed (a revocation, an expiry, an
/// agent's capabilities, a plan). Runs inside the change's own transaction, so other
/// processes watching [`auth_version`] see the change exactly when it commits. Call it as the
/// last statement before the commit: every such transaction then takes this one shared row
/// last, which keeps lock order consistent (no deadlocks) and holds the row briefly.
pub async fn bump_auth_version(conn: &mut Conn) -> Result<(), StoreError> {
    sqlx::query("UPDATE auth_changes SET version = version + 1 WHERE id = 1")
        .execute(conn)
        .await?;
    Ok(())
}

/// The current authentication change counter (see [`bump_auth_version`]).
pub async fn auth_version(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM auth_changes WHERE id = 1")
            .fetch_one(conn)
            .await?,
    )
}

/// `FOR UPDATE` on PostgreSQL; nothing on SQLite, whose write transactions already run one
/// at a time (`BEGIN IMMEDIATE`).
pub(crate) fn lock_clause(conn: &Conn) -> &'static str {
    if conn.backend_name() == "PostgreSQL" {
        " FOR UPDATE"
    } else {
        ""
    }
}

/// A key visible in `scope`, locked for the rest of the transaction: for changes that read,
/// decide, then write.
pub async fn get_for_update(
    conn: &mut Conn,
    scope: &Scope,
    id: &KeyId,
) -> Result<Option<KeyRecord>, StoreError> {
    let lock = lock_clause(conn);
    select_one(conn, scope, id, lock).await
}

/// A key visible in `scope`.
pub async fn get(
    conn: &mut Conn,
    scope: &Scope,
    id: &KeyId,
) -> Result<Option<KeyRecord>, StoreError> {
    select_one(conn, scope, id, "").await
}

async fn select_one(
    conn: &mut Conn,
    scope: &Scope,
    id: &KeyId,
    lock: &str,
) -> Result<Option<KeyRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_keys k WHERE {SCOPE_SQL} AND k.id = $3{lock}"
    ))
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Keys visible in `scope`, optionally of one agent, newest first.
pub async fn list(
    conn: &mut Conn,
    scope: &Scope,
    agent: Option<&AgentId>,
    page: &PageRequest,
) -> Result<Page<KeyRecord>, StoreError> {
    let (at, id) = page.bounds();
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_keys k
         WHERE {SCOPE_SQL} AND ($3 = '' OR k.agent_id = $3)
           AND (k.created_at < $4 OR (k.created_at = $4 AND k.id < $5))
         ORDER BY k.created_at DESC, k.id DESC
         LIMIT $6"
    ))
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(agent.map(|a| a.as_str()).unwrap_or(""))
    .bind(at)
    .bind(id)
    .bind(page.fetch_limit())
    .fetch_all(conn)
    .await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |k| Cursor {
        at: k.created_at,
        id: k.id.to_string(),
    }))
}

/// Writes a key's changeable fields (name, rate-limit override, expiry) back.
pub async fn update(conn: &mut Conn, scope: &Scope, key: &KeyRecord) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE api_keys SET name = $3, rate_limit = $4, rate_window = $5, expires_at = $6
         WHERE id = $7 AND organization_id = $1 AND ($2 = '' OR team_id = $2)",
    )
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(&key.name)
    .bind(key.rate_limit.map(|r| r.limit as i64))
    .bind(key.rate_limit.map(|r| r.window_seconds as i64))
    .bind(key.expires_at)
    .bind(key.id.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Revokes a key if it is not revoked yet; answers whether it changed.
pub async fn revoke(
    conn: &mut Conn,
    scope: &Scope,
    id: &KeyId,
    now: UnixMillis,
    by: &ActorRef,
    reason: Option<&str>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = $3, revoked_by = $4, revoked_reason = $5
         WHERE id = $6 AND organization_id = $1 AND ($2 = '' OR team_id = $2) AND revoked_at IS NULL",
    )
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(now)
    .bind(format!("{}:{}", by.kind, by.id))
    .bind(reason)
    .bind(id.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Revokes every key of an agent that is not revoked yet; answers how many.
pub async fn revoke_all_of_agent(
    conn: &mut Conn,
    org: &OrgId,
    agent: &AgentId,
    now: UnixMillis,
    by: &ActorRef,
    reason: &str,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1, revoked_by = $2, revoked_reason = $3
         WHERE organization_id = $4 AND agent_id = $5 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(format!("{}:{}", by.kind, by.id))
    .bind(reason)
    .bind(org.as_str())
    .bind(agent.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Records that `id` was rolled into `to`, and sets its new (earlier) expiry — only if it is
/// still rollable (not rolled, not revoked, not expired at `now`). Answers whether it was.
pub async fn mark_rolled(
    conn: &mut Conn,
    scope: &Scope,
    id: &KeyId,
    to: &KeyId,
    expires_at: UnixMillis,
    now: UnixMillis,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE api_keys SET rolled_to = $3, expires_at = $4
         WHERE id = $5 AND organization_id = $1 AND ($2 = '' OR team_id = $2)
           AND rolled_to IS NULL AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $6)",
    )
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(to.as_str())
    .bind(expires_at)
    .bind(id.as_str())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Keys of `org` that count against a plan's `max_keys`: not revoked, not expired, and not
/// an old key rolled into a new one (rolling never changes the count).
pub async fn count_counted(
    conn: &mut Conn,
    org: &OrgId,
    now: UnixMillis,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys
         WHERE organization_id = $1 AND revoked_at IS NULL AND rolled_to IS NULL
           AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(org.as_str())
    .bind(now)
    .fetch_one(conn)
    .await?)
}

/// Keys in `scope` that still work (not revoked, not expired), optionally of one agent.
pub async fn count_active(
    conn: &mut Conn,
    scope: &Scope,
    agent: Option<&AgentId>,
    now: UnixMillis,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM api_keys k
         WHERE {SCOPE_SQL} AND ($3 = '' OR k.agent_id = $3)
           AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $4)"
    ))
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(agent.map(|a| a.as_str()).unwrap_or(""))
    .bind(now)
    .fetch_one(conn)
    .await?)
}

/// Which organization a key id belongs to. For the operator's command line, which names keys
/// by id alone; the answer is then used as the scope of every further query.
pub async fn locate(conn: &mut Conn, id: &KeyId) -> Result<Option<OrgId>, StoreError> {
    let org: Option<String> =
        sqlx::query_scalar("SELECT organization_id FROM api_keys WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(conn)
            .await?;
    Ok(org.map(OrgId::from_stored))
}

/// Everything authentication needs about a presented key, found by its hash.
#[derive(Clone, Debug)]
pub struct AuthRecord {
    pub key: KeyRecord,
    pub agent_name: String,
    pub agent_capabilities: CapabilitySet,
    pub agent_deleted: bool,
    pub org_name: String,
    pub org_slug: String,
    pub plan: String,
}

/// Finds a key by the SHA-256 of the presented secret. The hash is the credential, so this
/// lookup is the one place a key is found without an organization; everything after it is
/// scoped by the organization it returns.
pub async fn find_for_auth(
    conn: &mut Conn,
    hash: &KeyHash,
) -> Result<Option<AuthRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS}, a.name AS agent_name, a.capabilities AS agent_capabilities, a.deleted_at AS agent_deleted_at,
                o.name AS org_name, o.slug AS org_slug, o.plan AS org_plan
         FROM api_keys k
         JOIN agents a ON a.id = k.agent_id AND a.organization_id = k.organization_id
         JOIN organizations o ON o.id = k.organization_id
         WHERE k.key_hash = $1"
    ))
    .bind(hash.as_str())
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let caps: String = row.try_get("agent_capabilities")?;
    let deleted: Option<i64> = row.try_get("agent_deleted_at")?;
    Ok(Some(AuthRecord {
        key: from_row(&row)?,
        agent_name: row.try_get("agent_name")?,
        agent_capabilities: CapabilitySet::from_stored(caps.split_whitespace()),
        agent_deleted: deleted.is_some(),
        org_name: row.try_get("org_name")?,
        org_slug: row.try_get("org_slug")?,
        plan: row.try_get("org_plan")?,
    }))
}

/// Moves `last_used_at` forward (never back) for a batch of `(org, key, time)` entries.
pub async fn touch_last_used(
    conn: &mut Conn,
    entries: &[(OrgId, KeyId, UnixMillis)],
) -> Result<(), StoreError> {
    // A flush after heavy traffic touches thousands of keys: a few statements carry them
    // all (one JSON array on PostgreSQL, multi-row `VALUES` on SQLite; see `crate::batch`).
    let update = |source: &str| {
        format!(
            "WITH v(id, org, at) AS ({source})
             UPDATE api_keys SET last_used_at = v.at FROM v
             WHERE api_keys.id = v.id AND api_keys.organization_id = v.org
               AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < v.at)"
        )
    };
    if conn.backend_name() != "PostgreSQL" {
        for piece in crate::batch::pieces(entries) {
            let sql = update(&format!("VALUES {}", crate::batch::values(piece.len(), 3)));
            let mut q = sqlx::query(&sql);
            for (org, id, at) in piece {
                q = q.bind(id.as_str()).bind(org.as_str()).bind(*at);
            }
            q.execute(&mut *conn).await?;
        }
        return Ok(());
    }
    let sql =
        update("SELECT r->>0, r->>1, (r->>2)::BIGINT FROM jsonb_array_elements($1::jsonb) AS r");
    for chunk in entries.chunks(crate::batch::JSON_ROWS) {
        let rows: Vec<(&str, &str, UnixMillis)> = chunk
            .iter()
            .map(|(org, id, at)| (id.as_str(), org.as_str(), *at))
            .collect();
        sqlx::query(&sql)
            .bind(crate::batch::json(&rows)?)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// How many keys of an agent (revoked ones included) are not scoped to `team`. A team-scoped
/// caller may change an agent only when this is zero: the change would reach outside its team.
pub async fn count_outside_team(
    conn: &mut Conn,
    org: &OrgId,
    agent: &AgentId,
    team: &TeamId,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys
         WHERE organization_id = $1 AND agent_id = $2 AND (team_id IS NULL OR team_id <> $3)",
    )
    .bind(org.as_str())
    .bind(agent.as_str())
    .bind(team.as_str())
    .fetch_one(conn)
    .await?)
}
