//! Content generation jobs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyward_core::{GenerationId, WebsiteId};
use serde::Deserialize;
use utoipa::ToSchema;

use super::path_id;
use crate::http::auth::{Auth, Generate};
use crate::http::extract::Json as Body;
use crate::http::{ApiError, AppState};
use crate::service::NewGeneration;
use crate::views::GenerationView;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerationBody {
    website_id: Option<String>,
    topic: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    tone: Option<String>,
    /// `short`, `medium` (default) or `long`.
    length: Option<String>,
}

/// `POST /v1/generations`: queues a job and answers 202 at once.
#[utoipa::path(
    operation_id = "create_generation",
    post,
    path = "/generations",
    tag = "generation",
    summary = "Queue a content generation job (generate)",
    request_body = GenerationBody,
    responses((status = 202, body = GenerationView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth<Generate>,
    Body(body): Body<GenerationBody>,
) -> Result<(StatusCode, Json<GenerationView>), ApiError> {
    let website = body
        .website_id
        .as_deref()
        .map(|w| {
            WebsiteId::parse(w).map_err(|_| ApiError::invalid("website_id", "No such website."))
        })
        .transpose()?;
    if body.topic.is_none() {
        return Err(ApiError::invalid("topic", "topic is required."));
    }
    let input = NewGeneration {
        website,
        topic: body.topic,
        keywords: body.keywords,
        tone: body.tone,
        length: body.length,
    };
    let job = state
        .service
        .submit_generation(&auth.caller(), input)
        .await?;
    state.jobs_waiting.notify_one();
    Ok((StatusCode::ACCEPTED, Json(GenerationView::new(&job, None))))
}

/// `GET /v1/generations/{id}`: the job's state, and the saved draft once it succeeded.
#[utoipa::path(
    operation_id = "get_generation",
    get,
    path = "/generations/{id}",
    tag = "generation",
    summary = "A generation job and, once done, its draft (generate)",
    params(("id" = String, Path, description = "The generation's id")),
    responses((status = 200, body = GenerationView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth<Generate>,
    Path(id): Path<String>,
) -> Result<Json<GenerationView>, ApiError> {
    let id = path_id(GenerationId::parse, &id)?;
    let (job, blog) = state.service.get_generation(&auth.caller(), &id).await?;
    Ok(Json(GenerationView::new(&job, blog.as_ref())))
}
