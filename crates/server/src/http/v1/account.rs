//! The account and its usage figures.

use axum::extract::State;
use axum::Json;
use keyward_core::{AgentId, KeyId};
use keyward_store::usage::Granularity;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::auth::{AccountRead, Auth};
use crate::http::extract::Query;
use crate::http::{ApiError, AppState};
use crate::service::UsageQuery;
use crate::views::{AccountView, UsageView};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    key_id: Option<String>,
    agent_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// `minute`, `hour` (default) or `day`.
    granularity: Option<String>,
    /// `key`: one series per key of the agent as well.
    group_by: Option<String>,
}

/// `GET /v1/usage`: requests, successes, client errors and rate-limited requests over time.
#[utoipa::path(
    operation_id = "usage",
    get,
    path = "/usage",
    tag = "account",
    summary = "Usage over time for a key or an agent (account:read)",
    params(UsageParams),
    responses((status = 200, body = UsageView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn usage(
    State(state): State<AppState>,
    auth: Auth<AccountRead>,
    Query(p): Query<UsageParams>,
) -> Result<Json<UsageView>, ApiError> {
    let granularity = match p.granularity.as_deref() {
        None | Some("hour") => Granularity::Hour,
        Some("minute") => Granularity::Minute,
        Some("day") => Granularity::Day,
        Some(_) => {
            return Err(ApiError::invalid(
                "granularity",
                "granularity must be minute, hour or day.",
            ))
        }
    };
    let per_key = match p.group_by.as_deref() {
        None => false,
        Some("key") => true,
        Some(_) => return Err(ApiError::invalid("group_by", "group_by can only be key.")),
    };
    let query = UsageQuery {
        key: p
            .key_id
            .as_deref()
            .map(|k| KeyId::parse(k).map_err(|_| ApiError::not_found()))
            .transpose()?,
        agent: p
            .agent_id
            .as_deref()
            .map(|a| AgentId::parse(a).map_err(|_| ApiError::not_found()))
            .transpose()?,
        from: super::time_param("from", p.from.as_deref())?,
        to: super::time_param("to", p.to.as_deref())?,
        granularity,
        per_key,
    };
    if per_key && query.agent.is_none() {
        return Err(ApiError::invalid(
            "group_by",
            "group_by=key needs agent_id.",
        ));
    }
    let series = state.service.usage(&auth.caller(), query).await?;
    Ok(Json(UsageView::new(&series)))
}

/// `GET /v1/account`: the organization, its plan and limits, and this month's requests.
#[utoipa::path(
    operation_id = "account",
    get,
    path = "/account",
    tag = "account",
    summary = "The organization, its plan and this month's requests (account:read)",
    responses((status = 200, body = AccountView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn account(
    State(state): State<AppState>,
    auth: Auth<AccountRead>,
) -> Result<Json<AccountView>, ApiError> {
    let account = state.service.account(&auth.caller()).await?;
    Ok(Json(AccountView::new(&account)))
}
