use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::auth::{AuditRead, Auth};
use crate::http::extract::Query;
use crate::http::{ApiError, AppState};
use crate::service::AuditQuery;
use crate::views::{EventView, ListView};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `pagination.next_cursor` of the previous page.
    cursor: Option<String>,
    /// e.g. `key.revoked`
    action: Option<String>,
    actor_id: Option<String>,
    target_id: Option<String>,
    /// RFC 3339; events at or after.
    from: Option<String>,
    /// RFC 3339; events before.
    to: Option<String>,
}

/// `GET /v1/audit-events`: the organization's audit log, newest first.
#[utoipa::path(
    operation_id = "list_audit_events",
    get,
    path = "/audit-events",
    tag = "audit",
    summary = "The audit log, newest first (audit:read)",
    params(AuditParams),
    responses((status = 200, body = ListView<EventView>), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth<AuditRead>,
    Query(params): Query<AuditParams>,
) -> Result<Json<ListView<EventView>>, ApiError> {
    let page = super::page_of(params.limit.as_deref(), params.cursor.as_deref())?;
    let query = AuditQuery {
        action: params.action,
        actor_id: params.actor_id,
        target_id: params.target_id,
        from: super::time_param("from", params.from.as_deref())?,
        to: super::time_param("to", params.to.as_deref())?,
    };
    let events = state
        .service
        .list_audit_events(&auth.caller(), query, &page)
        .await?;
    Ok(Json(ListView::new(&events, page.limit, EventView::new)))
}
