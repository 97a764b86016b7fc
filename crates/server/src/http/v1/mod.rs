//! The `/v1` API.

mod account;
mod agents;
mod audit;
mod content;
mod generations;
mod keys;
mod teams;
mod whoami;

use axum::routing::{get, post};
use axum::Router;
use keyward_store::{Cursor, PageRequest};
use serde::Deserialize;

use super::auth::authenticate;
use super::{ApiError, AppState};

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/whoami", get(whoami::whoami))
        .route("/agents", get(agents::list).post(agents::create))
        .route(
            "/agents/{id}",
            get(agents::get)
                .patch(agents::update)
                .delete(agents::delete),
        )
        .route(
            "/agents/{id}/keys",
            get(keys::list_for_agent).post(keys::create),
        )
        .route("/keys/{id}", get(keys::get).patch(keys::update))
        .route("/keys/{id}/revoke", post(keys::revoke))
        .route("/keys/{id}/roll", post(keys::roll))
        .route("/teams", get(teams::list))
        .route("/audit-events", get(audit::list))
        .route("/account", get(account::account))
        .route("/usage", get(account::usage))
        .route("/generations", post(generations::create))
        .route("/generations/{id}", get(generations::get))
        .route(
            "/websites",
            get(content::list_websites).post(content::create_website),
        )
        .route(
            "/websites/{id}",
            get(content::get_website).patch(content::update_website),
        )
        .route(
            "/blogs",
            get(content::list_blogs).post(content::create_blog),
        )
        .route(
            "/blogs/{id}",
            get(content::get_blog)
                .patch(content::update_blog)
                .delete(content::delete_blog),
        )
        .route(
            "/categories",
            get(content::list_categories).post(content::create_category),
        )
        .route(
            "/categories/{id}",
            get(content::get_category)
                .patch(content::update_category)
                .delete(content::delete_category),
        )
        .route("/tags", get(content::list_tags).post(content::create_tag))
        .route(
            "/tags/{id}",
            get(content::get_tag)
                .patch(content::update_tag)
                .delete(content::delete_tag),
        )
        .route_layer(axum::middleware::from_fn_with_state(state, authenticate))
}

/// `limit` and `cursor` of every list.
#[derive(Deserialize, Default)]
pub struct ListParams {
    limit: Option<String>,
    cursor: Option<String>,
}

impl ListParams {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = match &self.limit {
            None => 20,
            Some(s) => s
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid("limit", "limit must be a whole number from 1 to 100.")
                })?,
        };
        let cursor = match &self.cursor {
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
}

/// Parses a path id; one that cannot exist answers 404 like one that does not.
pub fn path_id<T>(
    parse: impl FnOnce(&str) -> Result<T, keyward_core::id::InvalidId>,
    s: &str,
) -> Result<T, ApiError> {
    parse(s).map_err(|_| ApiError::not_found())
}
