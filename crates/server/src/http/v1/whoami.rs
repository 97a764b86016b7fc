use axum::extract::State;
use axum::Json;

use crate::http::auth::{AnyKey, Auth};
use crate::http::AppState;
use crate::views::WhoamiView;

/// `GET /v1/whoami`: the key, its agent, organization, plan and capabilities.
#[utoipa::path(
    operation_id = "whoami",
    get,
    path = "/whoami",
    tag = "identity",
    summary = "The key making the request: its agent, organization, plan and capabilities",
    responses((status = 200, body = WhoamiView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn whoami(State(state): State<AppState>, auth: Auth<AnyKey>) -> Json<WhoamiView> {
    Json(WhoamiView::new(&auth.principal, state.service.now()))
}
