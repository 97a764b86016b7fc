//! The append-only audit log. Events are written in the same transaction as their change.

use keyward_core::{EventId, OrgId, UnixMillis};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::keys::ActorRef;
use crate::page::{Cursor, Page, PageRequest};
use crate::{Conn, StoreError};

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub org: OrgId,
    pub at: UnixMillis,
    pub actor: ActorRef,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: serde_json::Value,
}

/// Filters of the audit log; empty strings match everything.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub target_id: Option<String>,
    pub from: Option<UnixMillis>,
    pub to: Option<UnixMillis>,
}

fn from_row(row: &AnyRow) -> Result<(i64, Event), sqlx::Error> {
    let details: String = row.try_get("details")?;
    Ok((
        row.try_get("seq")?,
        Event {
            id: EventId::from_stored(row.try_get("id")?),
            org: OrgId::from_stored(row.try_get("organization_id")?),
            at: row.try_get("at")?,
            actor: ActorRef {
                kind: row.try_get("actor_type")?,
                id: row.try_get("actor_id")?,
            },
            action: row.try_get("action")?,
            target_type: row.try_get("target_type")?,
            target_id: row.try_get("target_id")?,
            ip: row.try_get("ip")?,
            user_agent: row.try_get("user_agent")?,
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
        },
    ))
}

pub async fn insert(conn: &mut Conn, e: &Event) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (id, organization_id, at, actor_type, actor_id, action, target_type, target_id,
            ip, user_agent, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(e.id.as_str())
    .bind(e.org.as_str())
    .bind(e.at)
    .bind(&e.actor.kind)
    .bind(&e.actor.id)
    .bind(&e.action)
    .bind(&e.target_type)
    .bind(&e.target_id)
    .bind(e.ip.as_deref())
    .bind(e.user_agent.as_deref())
    .bind(e.details.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Events of `org`, newest first, filtered.
pub async fn list(
    conn: &mut Conn,
    org: &OrgId,
    filter: &EventFilter,
    page: &PageRequest,
) -> Result<Page<Event>, StoreError> {
    let (seq, _) = page.bounds();
    let rows = sqlx::query(
        "SELECT seq, id, organization_id, at, actor_type, actor_id, action, target_type, target_id, ip, user_agent, details
         FROM audit_events
         WHERE organization_id = $1 AND seq < $2
           AND ($3 = '' OR action = $3) AND ($4 = '' OR actor_id = $4) AND ($5 = '' OR target_id = $5)
           AND at >= $6 AND at < $7
         ORDER BY seq DESC
         LIMIT $8",
    )
    .bind(org.as_str())
    .bind(seq)
    .bind(filter.action.as_deref().unwrap_or(""))
    .bind(filter.actor_id.as_deref().unwrap_or(""))
    .bind(filter.target_id.as_deref().unwrap_or(""))
    .bind(filter.from.unwrap_or(i64::MIN))
    .bind(filter.to.unwrap_or(i64::MAX))
    .bind(page.fetch_limit())
    .fetch_all(conn)
    .await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let page = Page::from_rows(items, page, |(seq, e)| Cursor {
        at: *seq,
        id: e.id.to_string(),
    });
    Ok(Page {
        items: page.items.into_iter().map(|(_, e)| e).collect(),
        next: page.next,
    })
}
