//! The dashboard: server-rendered pages for people who sign in with email and password.
//!
//! Pages are HTML built with maud (which escapes every interpolated value), with one
//! stylesheet and one small script (the copy button) served by the binary itself; nothing
//! is loaded from anywhere else. Every change goes through the service layer, acting as the
//! signed-in person, exactly like `/v1` and the command line.
//!
//! Layers on the dashboard's routes, outside-in:
//! 1. `security_headers`: no caching (pages can show a key once), no framing, a strict
//!    Content-Security-Policy allowing only our own stylesheet and script;
//! 2. `error_pages`: draws [`error::PageError`]s as pages carrying the request id;
//! 3. `csrf::refuse_cross_site`: refuses cross-site `POST`s before any handler runs (the
//!    per-session token is checked by the [`csrf::SignedForm`] extractor).

mod assets;
pub mod charts;
pub mod csrf;
pub mod error;
pub mod layout;
mod pages;
pub mod session;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{from_fn, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::http::AppState;
use pages::{api, audit, auth, teams};

pub use error::not_found_page;

/// The dashboard's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(auth::home))
        .route("/setup", get(auth::setup_page).post(auth::setup_submit))
        .route("/login", get(auth::login_page).post(auth::login_submit))
        .route("/login/link", get(auth::link_page).post(auth::link_submit))
        .route("/logout", get(auth::logout_page).post(auth::logout))
        .route("/settings", get(auth::settings_home))
        .route("/settings/account", get(auth::account))
        .route(
            "/settings/account/password",
            get(back("/settings/account")).post(auth::change_password),
        )
        .route("/settings/api", get(api::index))
        .route(
            "/settings/api/agents",
            get(back("/settings/api")).post(api::create_agent),
        )
        .route("/settings/api/agents/{id}", get(api::agent))
        .route(
            "/settings/api/agents/{id}/capabilities",
            get(api::back_to_agent).post(api::capabilities),
        )
        .route(
            "/settings/api/agents/{id}/keys",
            get(api::back_to_agent).post(api::create_key),
        )
        .route(
            "/settings/api/agents/{id}/delete",
            get(api::confirm_delete).post(api::delete),
        )
        .route(
            "/settings/api/agents/{id}/keys/{key}/revoke",
            get(api::confirm_revoke).post(api::revoke),
        )
        .route(
            "/settings/api/agents/{id}/keys/{key}/roll",
            get(api::confirm_roll).post(api::roll),
        )
        .route("/settings/audit", get(audit::index))
        .route(
            "/settings/teams",
            get(teams::index).post(teams::create_team),
        )
        .route(
            "/settings/teams/members",
            get(back("/settings/teams")).post(teams::add_member),
        )
        .route(
            "/settings/teams/members/{user}/role",
            post(teams::change_role),
        )
        .route(
            "/settings/teams/members/{user}/link",
            post(teams::renew_link),
        )
        .route(
            "/settings/teams/members/{user}/remove",
            get(teams::confirm_remove).post(teams::remove_member),
        )
        .route("/settings/teams/{team}/members", post(teams::add_to_team))
        .route(
            "/settings/teams/{team}/members/{user}/remove",
            post(teams::remove_from_team),
        )
        .route("/assets/dashboard.css", get(assets::css))
        .route("/assets/dashboard.js", get(assets::js))
        .route("/assets/favicon.svg", get(assets::favicon))
        .layer(from_fn(csrf::refuse_cross_site))
        .layer(from_fn(error::error_pages))
        .layer(from_fn(security_headers))
}

/// `GET` on a path that only takes forms (after a reload, or a typed address): the page
/// the form lives on.
fn back(
    to: &'static str,
) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    move || std::future::ready(pages::see_other(to))
}

/// What every dashboard response carries.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/assets/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Tokens in setup and sign-in link URLs must not travel to other sites. (Not
    // `no-referrer`: with it browsers send `Origin: null` even on our own forms.)
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
