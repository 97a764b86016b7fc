use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::http::auth::{Answered, AnyKey, Auth};
use crate::http::AppState;
use crate::service::Principal;
use crate::views::{WhoamiTemplate, WhoamiView};
use keyward_core::UnixMillis;

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
pub async fn whoami(State(state): State<AppState>, auth: Auth<AnyKey>) -> Response {
    answer(&auth.principal, state.service.now()).into_response()
}

/// The answer for an authenticated key as of `now` (the gate calls this for `GET /v1/whoami`
/// directly, with the time the request was admitted at).
pub fn answer(p: &Principal, now: UnixMillis) -> Answered {
    let template = p.whoami.get_or_init(|| WhoamiTemplate::new(p, now));
    // The body lives as long as the answer: a piece of the thread's buffer (`arena`).
    match template
        .as_ref()
        .and_then(|t| t.pieces(p, now, crate::http::arena::concat))
    {
        Some(body) => Answered::Json(body),
        None => Answered::Response(Json(WhoamiView::new(p, now)).into_response()),
    }
}
