use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyward_core::{AgentId, KeyId, RateLimit, TeamId, UserId};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::{path_id, ListParams};
use crate::http::auth::{Auth, KeysRead, KeysWrite};
use crate::http::extract::{Json as Body, JsonOrEmpty, Query};
use crate::http::{ApiError, AppState};
use crate::service::{KeyChanges, NewKey};
use crate::views::{parse_rfc3339, KeyView, KeyWithSecret, ListView, RolledView};

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, Clone, Copy, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    #[schema(minimum = 1)]
    limit: u64,
    #[schema(minimum = 1, maximum = 2592000)]
    window_seconds: u64,
}

impl RateLimitBody {
    fn parse(self) -> Result<RateLimit, ApiError> {
        RateLimit::new(self.limit, self.window_seconds)
            .map_err(|e| ApiError::invalid("rate_limit", format!("Invalid rate_limit: {e}.")))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// Scope the key to one team; omit for all teams.
    team_id: Option<String>,
    owner_id: Option<String>,
    environment: Option<String>,
    /// Seconds from now.
    #[schema(minimum = 1)]
    expires_in: Option<u64>,
    /// RFC 3339; give this or `expires_in`.
    expires_at: Option<String>,
    rate_limit: Option<RateLimitBody>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    name: Option<String>,
    /// `null` removes the override.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RateLimitBody>)]
    rate_limit: Option<Option<RateLimitBody>>,
    /// RFC 3339, or `null` for no expiry; only while the key is active.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    expires_at: Option<Option<String>>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeKey {
    reason: Option<String>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollKey {
    /// How long the old key keeps working (default 86400; 0 ends it now).
    #[schema(maximum = 2592000)]
    grace_seconds: Option<u64>,
}

fn expires_at_field(s: &str) -> Result<i64, ApiError> {
    parse_rfc3339(s).ok_or_else(|| {
        ApiError::invalid(
            "expires_at",
            "expires_at must be an RFC 3339 time, like 2026-01-31T12:00:00Z.",
        )
    })
}

#[utoipa::path(
    operation_id = "list_keys",
    get,
    path = "/agents/{id}/keys",
    tag = "management",
    summary = "List an agent's keys, hints only (keys:read)",
    params(("id" = String, Path, description = "The agent's id"), ListParams),
    responses((status = 200, body = ListView<KeyView>), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list_for_agent(
    State(state): State<AppState>,
    auth: Auth<KeysRead>,
    Path(agent): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<ListView<KeyView>>, ApiError> {
    let agent = path_id(AgentId::parse, &agent)?;
    let page = params.page()?;
    let keys = state
        .service
        .list_keys(&auth.caller(), Some(&agent), &page)
        .await?;
    let now = state.service.now();
    Ok(Json(ListView::new(&keys, page.limit, |k| {
        KeyView::new(k, now)
    })))
}

#[utoipa::path(
    operation_id = "create_key",
    post,
    path = "/agents/{id}/keys",
    tag = "management",
    summary = "Create a key; the secret is in this response only (keys:write)",
    params(("id" = String, Path, description = "The agent's id")),
    request_body = CreateKey,
    responses((status = 201, body = KeyWithSecret), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth<KeysWrite>,
    Path(agent): Path<String>,
    Body(body): Body<CreateKey>,
) -> Result<(StatusCode, Json<KeyWithSecret>), ApiError> {
    let agent = path_id(AgentId::parse, &agent)?;
    let now = state.service.now();
    let expires_at = match (body.expires_in, body.expires_at.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "expires_at",
                "Give expires_in or expires_at, not both.",
            ))
        }
        (Some(secs), None) => {
            if !(1..=10 * 366 * 86_400).contains(&secs) {
                return Err(ApiError::invalid(
                    "expires_in",
                    "expires_in must be from 1 second to 10 years.",
                ));
            }
            Some(now + secs as i64 * 1000)
        }
        (None, Some(at)) => Some(expires_at_field(at)?),
        (None, None) => None,
    };
    let input = NewKey {
        name: body.name,
        team: body
            .team_id
            .as_deref()
            .map(|t| TeamId::parse(t).map_err(|_| ApiError::invalid("team_id", "No such team.")))
            .transpose()?,
        owner: body
            .owner_id
            .as_deref()
            .map(|u| {
                UserId::parse(u).map_err(|_| {
                    ApiError::invalid(
                        "owner_id",
                        "The owner must be a member of the organization.",
                    )
                })
            })
            .transpose()?,
        environment: body.environment,
        expires_at,
        rate_limit: body.rate_limit.map(RateLimitBody::parse).transpose()?,
    };
    let created = state
        .service
        .create_key(&auth.caller(), &agent, input)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyWithSecret::new(&created, state.service.now())),
    ))
}

#[utoipa::path(
    operation_id = "get_key",
    get,
    path = "/keys/{id}",
    tag = "management",
    summary = "A key, without its secret (keys:read)",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, body = KeyView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth<KeysRead>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let id = path_id(KeyId::parse, &id)?;
    let key = state.service.get_key(&auth.caller(), &id).await?;
    Ok(Json(KeyView::new(&key, state.service.now())))
}

#[utoipa::path(
    operation_id = "update_key",
    patch,
    path = "/keys/{id}",
    tag = "management",
    summary = "Change a key's name, rate limit or expiry (keys:write)",
    params(("id" = String, Path, description = "The key's id")),
    request_body = UpdateKey,
    responses((status = 200, body = KeyView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth<KeysWrite>,
    Path(id): Path<String>,
    Body(body): Body<UpdateKey>,
) -> Result<Json<KeyView>, ApiError> {
    let id = path_id(KeyId::parse, &id)?;
    let changes = KeyChanges {
        name: body.name,
        rate_limit: body
            .rate_limit
            .map(|r| r.map(RateLimitBody::parse).transpose())
            .transpose()?,
        expires_at: body
            .expires_at
            .map(|e| e.as_deref().map(expires_at_field).transpose())
            .transpose()?,
    };
    let key = state
        .service
        .update_key(&auth.caller(), &id, changes)
        .await?;
    Ok(Json(KeyView::new(&key, state.service.now())))
}

#[utoipa::path(
    operation_id = "revoke_key",
    post,
    path = "/keys/{id}/revoke",
    tag = "management",
    summary = "Revoke a key now and for good (keys:write)",
    params(("id" = String, Path, description = "The key's id")),
    request_body = Option<RevokeKey>,
    responses((status = 200, body = KeyView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn revoke(
    State(state): State<AppState>,
    auth: Auth<KeysWrite>,
    Path(id): Path<String>,
    JsonOrEmpty(body): JsonOrEmpty<RevokeKey>,
) -> Result<Json<KeyView>, ApiError> {
    let id = path_id(KeyId::parse, &id)?;
    let key = state
        .service
        .revoke_key(&auth.caller(), &id, body.reason.as_deref())
        .await?;
    Ok(Json(KeyView::new(&key, state.service.now())))
}

#[utoipa::path(
    operation_id = "roll_key",
    post,
    path = "/keys/{id}/roll",
    tag = "management",
    summary = "Replace a key; the old one works for the grace period (keys:write)",
    params(("id" = String, Path, description = "The key's id")),
    request_body = Option<RollKey>,
    responses((status = 200, body = RolledView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn roll(
    State(state): State<AppState>,
    auth: Auth<KeysWrite>,
    Path(id): Path<String>,
    JsonOrEmpty(body): JsonOrEmpty<RollKey>,
) -> Result<Json<RolledView>, ApiError> {
    let id = path_id(KeyId::parse, &id)?;
    let rolled = state
        .service
        .roll_key(&auth.caller(), &id, body.grace_seconds)
        .await?;
    Ok(Json(RolledView::new(&rolled, state.service.now())))
}
