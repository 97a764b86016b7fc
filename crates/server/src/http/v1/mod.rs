//! The `/v1` API.

mod account;
mod agents;
mod audit;
mod content;
pub mod forward;
mod generations;
mod keys;
mod teams;
mod verify;
pub mod whoami;

use axum::routing::any;
use keyward_store::{Cursor, PageRequest};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::authenticate;
use super::lean::LeanLayer;
use super::{ApiError, AppState};
use crate::views::parse_rfc3339;

/// Every `/v1` route with its documentation; each authenticates with a key first.
pub fn router(state: AppState) -> OpenApiRouter<AppState> {
    keyed(state.clone()).merge(forward(state))
}

/// Forward auth: the original request is read (and a key in its query refused) before the
/// client's key is authenticated; an error's body is also copied into a header for nginx.
/// The last layer added runs first: `error_header`, `target`, `authenticate`, the handler.
fn forward(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(forward::check))
        // Envoy appends the original path to ours; any method, since it is the original's.
        // The document lists this form through `ApiDoc` (it cannot spell a catch-all).
        .route("/auth/forward/", any(forward::check_envoy))
        .route("/auth/forward/{*path}", any(forward::check_envoy))
        .route_layer(LeanLayer::new(state.clone(), authenticate))
        .route_layer(axum::middleware::from_fn_with_state(state, forward::target))
        .route_layer(axum::middleware::from_fn(forward::error_header))
}

fn keyed(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(whoami::whoami))
        .routes(routes!(verify::verify))
        .routes(routes!(agents::list, agents::create))
        .routes(routes!(agents::get, agents::update, agents::delete))
        .routes(routes!(keys::list_for_agent, keys::create))
        .routes(routes!(keys::get, keys::update))
        .routes(routes!(keys::revoke))
        .routes(routes!(keys::roll))
        .routes(routes!(teams::list))
        .routes(routes!(audit::list))
        .routes(routes!(account::account))
        .routes(routes!(account::usage))
        .routes(routes!(generations::create))
        .routes(routes!(generations::get))
        .routes(routes!(content::list_websites, content::create_website))
        .routes(routes!(content::get_website, content::update_website))
        .routes(routes!(content::list_blogs, content::create_blog))
        .routes(routes!(
            content::get_blog,
            content::update_blog,
            content::delete_blog
        ))
        .routes(routes!(content::list_categories, content::create_category))
        .routes(routes!(
            content::get_category,
            content::update_category,
            content::delete_category
        ))
        .routes(routes!(content::list_tags, content::create_tag))
        .routes(routes!(
            content::get_tag,
            content::update_tag,
            content::delete_tag
        ))
        .route_layer(LeanLayer::new(state, authenticate))
}

/// `limit` and `cursor` of every list.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `pagination.next_cursor` of the previous page.
    cursor: Option<String>,
}

impl ListParams {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        page_of(self.limit.as_deref(), self.cursor.as_deref())
    }
}

/// Reads `limit` (1–100, default 20) and `cursor` into a page request.
pub fn page_of(limit: Option<&str>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
    let limit = match limit {
        None => 20,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::invalid("limit", "limit must be a whole number from 1 to 100.")
            })?,
    };
    let cursor = match cursor {
        None => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
            ApiError::invalid(
                "cursor",
                "The cursor is not one this API returned; start from the first page.",
            )
        })?),
    };
    Ok(PageRequest { limit, cursor })
}

/// Parses a path id; one that cannot exist answers 404 like one that does not.
pub fn path_id<T>(
    parse: impl FnOnce(&str) -> Result<T, keyward_core::id::InvalidId>,
    s: &str,
) -> Result<T, ApiError> {
    parse(s).map_err(|_| ApiError::not_found())
}

/// An optional RFC 3339 query parameter, as stored milliseconds.
pub fn time_param(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            parse_rfc3339(v).ok_or_else(|| {
                ApiError::invalid(
                    name,
                    format!("{name} must be an RFC 3339 time, like 2026-01-31T12:00:00Z."),
                )
            })
        })
        .transpose()
}
