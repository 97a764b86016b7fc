use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyward_core::AgentId;
use serde::Deserialize;

use super::{path_id, ListParams};
use crate::http::auth::{Auth, KeysRead, KeysWrite};
use crate::http::extract::{Json as Body, Query};
use crate::http::{ApiError, AppState};
use crate::service::{AgentChanges, NewAgent};
use crate::views::{AgentCreatedView, AgentView, ListView};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    name: String,
    description: Option<String>,
    capabilities: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    name: Option<String>,
    description: Option<String>,
    capabilities: Option<Vec<String>>,
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth<KeysRead>,
    Query(params): Query<ListParams>,
) -> Result<Json<ListView<AgentView>>, ApiError> {
    let page = params.page()?;
    let agents = state.service.list_agents(&auth.caller, &page).await?;
    Ok(Json(ListView::new(&agents, page.limit, AgentView::new)))
}

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
    let created = state.service.create_agent(&auth.caller, input).await?;
    Ok((
        StatusCode::CREATED,
        Json(AgentCreatedView::new(&created, state.service.now())),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    auth: Auth<KeysRead>,
    Path(id): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    let id = path_id(AgentId::parse, &id)?;
    let agent = state.service.get_agent(&auth.caller, &id).await?;
    Ok(Json(AgentView::new(&agent)))
}

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
        .update_agent(&auth.caller, &id, changes)
        .await?;
    Ok(Json(AgentView::new(&agent)))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth<KeysWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(AgentId::parse, &id)?;
    state.service.delete_agent(&auth.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
