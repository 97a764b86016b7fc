use axum::extract::State;
use axum::Json;
use keyward_store::{Cursor, Page};

use super::ListParams;
use crate::http::auth::{Auth, KeysRead};
use crate::http::extract::Query;
use crate::http::{ApiError, AppState};
use crate::views::{ListView, TeamView};

/// `GET /v1/teams`: the organization's teams (a team-scoped key sees its own).
#[utoipa::path(
    operation_id = "list_teams",
    get,
    path = "/teams",
    tag = "management",
    summary = "List teams (keys:read)",
    params(ListParams),
    responses((status = 200, body = ListView<TeamView>), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth<KeysRead>,
    Query(params): Query<ListParams>,
) -> Result<Json<ListView<TeamView>>, ApiError> {
    let req = params.page()?;
    let teams = state.service.list_teams(&auth.caller()).await?;
    // Teams are few; the store returns them newest first and the page is cut here.
    let after = |t: &keyward_store::teams::Team| match &req.cursor {
        None => true,
        Some(c) => (t.created_at, t.id.as_str()) < (c.at, c.id.as_str()),
    };
    let mut items: Vec<_> = teams
        .into_iter()
        .filter(after)
        .take(req.limit as usize + 1)
        .collect();
    let has_more = items.len() > req.limit as usize;
    items.truncate(req.limit as usize);
    let next = if has_more {
        items.last().map(|t| Cursor {
            at: t.created_at,
            id: t.id.to_string(),
        })
    } else {
        None
    };
    let page = Page { items, next };
    Ok(Json(ListView::new(&page, req.limit, TeamView::new)))
}
