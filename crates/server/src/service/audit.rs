//! Reading the audit log.

use keyward_core::UnixMillis;
use keyward_store::audit::{Event, EventFilter};
use keyward_store::{audit, Page, PageRequest};

use super::{Caller, Service, ServiceError};

#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub target_id: Option<String>,
    pub from: Option<UnixMillis>,
    pub to: Option<UnixMillis>,
}

impl Service {
    /// The organization's audit log, newest first. Team-scoped keys cannot read it: it
    /// describes the whole organization.
    pub async fn list_audit_events(
        &self,
        caller: &Caller,
        query: AuditQuery,
        page: &PageRequest,
    ) -> Result<Page<Event>, ServiceError> {
        caller.require("audit:read")?;
        if caller.team.is_some() {
            return Err(ServiceError::Forbidden(
                "a team-scoped key cannot read the organization's audit log".into(),
            ));
        }
        let filter = EventFilter {
            action: query.action,
            actor_id: query.actor_id,
            target_id: query.target_id,
            from: query.from,
            to: query.to,
        };
        let mut conn = self.store().read().await?;
        Ok(audit::list(&mut conn, &caller.org, &filter, page).await?)
    }
}
