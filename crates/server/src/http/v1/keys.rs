use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keyward_core::{AgentId, KeyId, RateLimit, TeamId, UserId};
use serde::{Deserialize, Deserializer};

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

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    limit: u64,
    window_seconds: u64,
}

impl RateLimitBody {
    fn parse(self) -> Result<RateLimit, ApiError> {
        RateLimit::new(self.limit, self.window_seconds)
            .map_err(|e| ApiError::invalid("rate_limit", format!("Invalid rate_limit: {e}.")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    team_id: Option<String>,
    owner_id: Option<String>,
    environment: Option<String>,
    expires_in: Option<u64>,
    expires_at: Option<String>,
    rate_limit: Option<RateLimitBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    rate_limit: Option<Option<RateLimitBody>>,
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeKey {
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RollKey {
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
        .list_keys(&auth.caller, Some(&agent), &page)
        .await?;
    let now = state.service.now();
    Ok(Json(ListView::new(&keys, page.limit, |k| {
        KeyView::new(k, now)
    })))
}

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
        .create_key(&auth.caller, &agent, input)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyWithSecret::new(&created, state.service.now())),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    auth: Auth<KeysRead>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let id = path_id(KeyId::parse, &id)?;
    let key = state.service.get_key(&auth.caller, &id).await?;
    Ok(Json(KeyView::new(&key, state.service.now())))
}

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
    let key = state.service.update_key(&auth.caller, &id, changes).await?;
    Ok(Json(KeyView::new(&key, state.service.now())))
}

pub async fn revoke(
    State(state): State<AppState>,
    auth: Auth<KeysWrite>,
    Path(id): Path<String>,
    JsonOrEmpty(body): JsonOrEmpty<RevokeKey>,
) -> Result<Json<KeyView>, ApiError> {
    let id = path_id(KeyId::parse, &id)?;
    let key = state
        .service
        .revoke_key(&auth.caller, &id, body.reason.as_deref())
        .await?;
    Ok(Json(KeyView::new(&key, state.service.now())))
}

pub async fn roll(
    State(state): State<AppState>,
    auth: Auth<KeysWrite>,
    Path(id): Path<String>,
    JsonOrEmpty(body): JsonOrEmpty<RollKey>,
) -> Result<Json<RolledView>, ApiError> {
    let id = path_id(KeyId::parse, &id)?;
    let rolled = state
        .service
        .roll_key(&auth.caller, &id, body.grace_seconds)
        .await?;
    Ok(Json(RolledView::new(&rolled, state.service.now())))
}
