use axum::extract::State;
use axum::Json;

use crate::http::auth::{AnyKey, Auth};
use crate::http::AppState;
use crate::views::WhoamiView;

/// `GET /v1/whoami`: the key, its agent, organization, plan and capabilities.
pub async fn whoami(State(state): State<AppState>, auth: Auth<AnyKey>) -> Json<WhoamiView> {
    Json(WhoamiView::new(&auth.principal, state.service.now()))
}
