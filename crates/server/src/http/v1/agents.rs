use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyward_core::AgentId;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{path_id, ListParams};
use crate::http::auth::{Auth, KeysRead, KeysWrite};
use crate::http::extract::{Json as Body, Query};
use crate::http::{ApiError, AppState};
use crate::service::{AgentChanges, NewAgent};
use crate::views::{AgentCreatedView, AgentView, ListView};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    /// Unique in the organization.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    #[schema(max_length = 500)]
    description: Option<String>,
    /// Capability names, e.g. `content:read`; at most the caller's own.
    capabilities: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    name: Option<String>,
    description: Option<String>,
    capabilities: Option<Vec<String>>,
}

#[utoipa::path(
    operation_id = "list_agents",
    get,
    path = "/agents",
    tag = "management",
    summary = "List agents (keys:read)",
    params(ListParams),
    responses((status = 200, body = ListView<AgentView>), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth<KeysRead>,
    Query(params): Query<ListParams>,
) -> Result<Json<ListView<AgentView>>, ApiError> {
    let page = params.page()?;
    let agents = state.service.list_agents(&auth.caller(), &page).await?;
    Ok(Json(ListView::new(&agents, page.limit, AgentView::new)))
}

#[utoipa::path(
    operation_id = "create_agent",
    post,
    path = "/agents",
    tag = "management",
    summary = "Create an agent and its first key, shown once (keys:write)",
    request_body = CreateAgent,
    responses((status = 201, body = AgentCreatedView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth<KeysWrite>,
    Body(body): Body<CreateAgent>,
) -> Result<(StatusCode, Json<AgentCreatedView>), ApiError> {
    let input = NewAgent {
        name: body.name,
        description: body.description,
        capabilities: body.capabilities,
    };
    let created = state.service.create_agent(&auth.caller(), input).await?;
    Ok((
        StatusCode::CREATED,
        Json(AgentCreatedView::new(&created, state.service.now())),
    ))
}

#[utoipa::path(
    operation_id = "get_agent",
    get,
    path = "/agents/{id}",
    tag = "management",
    summary = "An agent (keys:read)",
    params(("id" = String, Path, description = "The agent's id")),
    responses((status = 200, body = AgentView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth<KeysRead>,
    Path(id): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    let id = path_id(AgentId::parse, &id)?;
    let agent = state.service.get_agent(&auth.caller(), &id).await?;
    Ok(Json(AgentView::new(&agent)))
}

#[utoipa::path(
    operation_id = "update_agent",
    patch,
    path = "/agents/{id}",
    tag = "management",
    summary = "Rename an agent or change its capabilities (keys:write)",
    params(("id" = String, Path, description = "The agent's id")),
    request_body = UpdateAgent,
    responses((status = 200, body = AgentView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth<KeysWrite>,
    Path(id): Path<String>,
    Body(body): Body<UpdateAgent>,
) -> Result<Json<AgentView>, ApiError> {
    let id = path_id(AgentId::parse, &id)?;
    let changes = AgentChanges {
        name: body.name,
        description: body.description,
        capabilities: body.capabilities,
    };
    let agent = state
        .service
        .update_agent(&auth.caller(), &id, changes)
        .await?;
    Ok(Json(AgentView::new(&agent)))
}

#[utoipa::path(
    operation_id = "delete_agent",
    delete,
    path = "/agents/{id}",
    tag = "management",
    summary = "Delete an agent and revoke its keys (keys:write)",
    params(("id" = String, Path, description = "The agent's id")),
    responses((status = 204, description = "Deleted"), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth<KeysWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(AgentId::parse, &id)?;
    state.service.delete_agent(&auth.caller(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
