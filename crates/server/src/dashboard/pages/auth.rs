//! First-run setup, signing in and out, one-time sign-in links, and one's own account.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use secrecy::SecretString;

use super::{query, see_other, with_cookie};
use crate::dashboard::csrf::{FormData, PublicForm, SignedForm};
use crate::dashboard::error::{sentence, PageError};
use crate::dashboard::layout::{
    alert, app_page, csrf_field, fmt_time, html_response, public_page, AlertKind, Nav,
};
use crate::dashboard::session::{
    clear_cookie, client_from, safe_next, session_cookie, MaybeSignedIn, SignedIn,
};
use crate::http::extract::ClientInfo;
use crate::http::AppState;
use crate::password::MIN_LEN;
use crate::service::{FirstRun, ServiceError, SignInRefusal};

/// `/`: the dashboard for people signed in, the sign-in page for everyone else.
pub async fn home(MaybeSignedIn(signed): MaybeSignedIn) -> Response {
    match signed {
        Some(_) => see_other("/settings/api"),
        None => see_other("/login"),
    }
}

pub async fn settings_home() -> Response {
    see_other("/settings/api")
}

fn setup_form(token: &str, form: &FormData, error: Option<&str>) -> Markup {
    public_page(
        "Set up keyward",
        html! {
            h1 { "Set up keyward" }
            p class="lead" { "Create your organization and its first owner: you. You can add people afterwards." }
            @if let Some(e) = error { (alert(AlertKind::Error, e)) }
            form method="post" action="/setup" class="stack" {
                input type="hidden" name="token" value=(token);
                div class="field" {
                    label for="organization" { "Organization name" }
                    input id="organization" name="organization" type="text" required maxlength="100"
                        autocomplete="organization" value=[form.get("organization")];
                }
                div class="field" {
                    label for="email" { "Your email" }
                    input id="email" name="email" type="email" required autocomplete="username" value=[form.get("email")];
                }
                div class="field" {
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" required minlength=(MIN_LEN)
                        autocomplete="new-password" aria-describedby="password-help";
                    p class="help" id="password-help" { "At least " (MIN_LEN) " characters." }
                }
                div class="field" {
                    label for="password_confirm" { "Password again" }
                    input id="password_confirm" name="password_confirm" type="password" required
                        minlength=(MIN_LEN) autocomplete="new-password";
                }
                button type="submit" class="button primary wide" { "Create organization" }
            }
        },
    )
}

fn setup_closed() -> PageError {
    PageError::Forbidden(
        "This setup link has been used, or keyward is already set up. Sign in instead; if nobody can, an operator can set a password with `keyward user set-password`.".into(),
    )
}

/// `GET /setup?token=…`: the first-run form, while the token is unused and nobody exists.
pub async fn setup_page(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q = query(raw);
    let token = q.get("token").unwrap_or("");
    if !state.service.setup_open(token).await? {
        return Err(setup_closed());
    }
    Ok(html_response(
        StatusCode::OK,
        setup_form(token, &FormData::default(), None),
    ))
}

pub async fn setup_submit(
    State(state): State<AppState>,
    info: ClientInfo,
    PublicForm(form): PublicForm,
) -> Result<Response, PageError> {
    let token = form.get("token").unwrap_or("").to_string();
    if form.raw("password") != form.raw("password_confirm") {
        return Ok(html_response(
            StatusCode::BAD_REQUEST,
            setup_form(&token, &form, Some("The two passwords are not the same.")),
        ));
    }
    let input = FirstRun {
        organization: form.get("organization").unwrap_or("").to_string(),
        email: form.get("email").unwrap_or("").to_string(),
        password: SecretString::from(form.raw("password").to_string()),
    };
    match state
        .service
        .complete_setup(&token, input, &client_from(info))
        .await
    {
        Ok(opened) => Ok(with_cookie(
            see_other("/settings/api?done=welcome"),
            session_cookie(&state.service.config().dashboard, &opened.token),
        )),
        Err(ServiceError::Invalid { message, .. }) => Ok(html_response(
            StatusCode::BAD_REQUEST,
            setup_form(&token, &form, Some(&sentence(&message))),
        )),
        Err(ServiceError::Forbidden(_)) => Err(setup_closed()),
        Err(e) => Err(e.into()),
    }
}

fn login_form(
    next: &str,
    email: Option<&str>,
    notice: Option<(AlertKind, &str)>,
    set_up: bool,
) -> Markup {
    public_page(
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some((kind, text)) = notice { (alert(kind, text)) }
            @if !set_up {
                p class="notice" {
                    "keyward is not set up yet. Open the " strong { "Setup" }
                    " link that " code { "keyward serve" } " printed when it started."
                }
            }
            form method="post" action="/login" class="stack" {
                input type="hidden" name="next" value=(next);
                div class="field" {
                    label for="email" { "Email" }
                    input id="email" name="email" type="email" required autocomplete="username" autofocus[email.is_none()] value=[email];
                }
                div class="field" {
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" required autocomplete="current-password" autofocus[email.is_some()];
                }
                button type="submit" class="button primary wide" { "Sign in" }
            }
            p class="muted small" { "New here? An admin of your organization gives you a one-time sign-in link." }
        },
    )
}

/// `GET /login`
pub async fn login_page(
    State(state): State<AppState>,
    MaybeSignedIn(signed): MaybeSignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q = query(raw);
    let next = safe_next(q.get("next"));
    if signed.is_some() {
        return Ok(see_other(&next));
    }
    let notice = if q.get("signed_out").is_some() {
        Some((AlertKind::Success, "You are signed out."))
    } else if q.get("next").is_some() {
        Some((AlertKind::Error, "Sign in to continue."))
    } else {
        None
    };
    let set_up = state.service.is_set_up().await?;
    Ok(html_response(
        StatusCode::OK,
        login_form(&next, None, notice, set_up),
    ))
}

/// `POST /login`
pub async fn login_submit(
    State(state): State<AppState>,
    info: ClientInfo,
    PublicForm(form): PublicForm,
) -> Result<Response, PageError> {
    let next = safe_next(form.get("next"));
    let email = form.get("email").unwrap_or("");
    let password = SecretString::from(form.raw("password").to_string());
    match state
        .service
        .sign_in(email, password, &client_from(info))
        .await?
    {
        Ok(opened) => Ok(with_cookie(
            see_other(&next),
            session_cookie(&state.service.config().dashboard, &opened.token),
        )),
        Err(SignInRefusal::Invalid) => Ok(html_response(
            StatusCode::UNAUTHORIZED,
            login_form(
                &next,
                Some(email),
                Some((
                    AlertKind::Error,
                    "The email or the password is not correct.",
                )),
                true,
            ),
        )),
        Err(SignInRefusal::Throttled { retry_after_secs }) => {
            let minutes = retry_after_secs.div_ceil(60);
            let text = format!(
                "Too many failed sign-ins. For your safety, try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            );
            let mut r = html_response(
                StatusCode::TOO_MANY_REQUESTS,
                login_form(&next, Some(email), Some((AlertKind::Error, &text)), true),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Ok(r)
        }
    }
}

/// `GET /logout`: signing out changes state, so it takes a form; this page offers it.
pub async fn logout_page(MaybeSignedIn(signed): MaybeSignedIn) -> Response {
    let Some(signed) = signed else {
        return see_other("/login");
    };
    html_response(
        StatusCode::OK,
        public_page(
            "Sign out",
            html! {
                h1 { "Sign out?" }
                p { "You are signed in as " strong { (signed.session.user.email) } "." }
                form method="post" action="/logout" class="stack" {
                    (csrf_field(&signed))
                    button type="submit" class="button primary wide" { "Sign out" }
                }
            },
        ),
    )
}

/// `POST /logout`
pub async fn logout(State(state): State<AppState>, f: SignedForm) -> Result<Response, PageError> {
    state.service.sign_out(&f.signed.session).await?;
    Ok(with_cookie(
        see_other("/login?signed_out=1"),
        clear_cookie(&state.service.config().dashboard),
    ))
}

fn link_form(token: &str, email: &str, org: &str, error: Option<&str>) -> Markup {
    public_page(
        "Choose a password",
        html! {
            h1 { "Welcome to " (org) }
            p class="lead" { "Choose a password for " strong { (email) } ". This link works once." }
            @if let Some(e) = error { (alert(AlertKind::Error, e)) }
            form method="post" action="/login/link" class="stack" {
                input type="hidden" name="token" value=(token);
                input type="hidden" name="email" value=(email) autocomplete="username";
                div class="field" {
                    label for="password" { "New password" }
                    input id="password" name="password" type="password" required minlength=(MIN_LEN)
                        autocomplete="new-password" aria-describedby="password-help" autofocus;
                    p class="help" id="password-help" { "At least " (MIN_LEN) " characters." }
                }
                div class="field" {
                    label for="password_confirm" { "New password again" }
                    input id="password_confirm" name="password_confirm" type="password" required
                        minlength=(MIN_LEN) autocomplete="new-password";
                }
                button type="submit" class="button primary wide" { "Set password and sign in" }
            }
        },
    )
}

fn link_gone() -> PageError {
    PageError::Forbidden(
        "This sign-in link has been used or has expired. Ask an admin of your organization for a new one.".into(),
    )
}

/// `GET /login/link?token=…`: shows the form; only posting it uses the link up, so link
/// previews in chat tools do not spend it.
pub async fn link_page(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q = query(raw);
    let token = q.get("token").unwrap_or("");
    let Some((user, org)) = state.service.sign_in_link(token).await? else {
        return Err(link_gone());
    };
    Ok(html_response(
        StatusCode::OK,
        link_form(token, &user.email, &org.name, None),
    ))
}

/// `POST /login/link`
pub async fn link_submit(
    State(state): State<AppState>,
    info: ClientInfo,
    PublicForm(form): PublicForm,
) -> Result<Response, PageError> {
    let token = form.get("token").unwrap_or("").to_string();
    let Some((user, org)) = state.service.sign_in_link(&token).await? else {
        return Err(link_gone());
    };
    let retry = |message: &str| {
        html_response(
            StatusCode::BAD_REQUEST,
            link_form(&token, &user.email, &org.name, Some(message)),
        )
    };
    if form.raw("password") != form.raw("password_confirm") {
        return Ok(retry("The two passwords are not the same."));
    }
    let password = SecretString::from(form.raw("password").to_string());
    match state
        .service
        .redeem_sign_in_link(&token, password, &client_from(info))
        .await
    {
        Ok(opened) => Ok(with_cookie(
            see_other("/settings/api?done=welcome"),
            session_cookie(&state.service.config().dashboard, &opened.token),
        )),
        Err(ServiceError::Invalid { message, .. }) => Ok(retry(&sentence(&message))),
        Err(ServiceError::Forbidden(_)) => Err(link_gone()),
        Err(e) => Err(e.into()),
    }
}

fn account_page(signed: &SignedIn, notice: Option<(AlertKind, &str)>) -> Markup {
    let s = &signed.session;
    app_page(
        signed,
        Nav::Account,
        "Account",
        html! {
            div class="page-head" {
                h1 { "Account" }
                p class="lead" { "You are signed in to " strong { (s.org.name) } " as " strong { (s.user.email) } "." }
            }
            @if let Some((kind, text)) = notice { (alert(kind, text)) }
            section class="card" aria-labelledby="you" {
                h2 id="you" { "You" }
                dl class="facts" {
                    dt { "Email" } dd { (s.user.email) }
                    dt { "Organization" } dd { (s.org.name) " " span class="muted" { "(" (s.org.slug) ", plan " (s.org.plan) ")" } }
                    dt { "Role" } dd { span class={"badge role-" (s.role.as_str())} { (s.role.as_str()) } }
                    dt { "Session ends" } dd { (fmt_time(s.expires_at)) }
                }
            }
            section class="card" aria-labelledby="pw" {
                h2 id="pw" { "Change your password" }
                p class="muted" { "Your other sessions are signed out when the password changes." }
                form method="post" action="/settings/account/password" class="stack narrow" {
                    (csrf_field(signed))
                    input type="hidden" name="email" value=(s.user.email) autocomplete="username";
                    div class="field" {
                        label for="current_password" { "Current password" }
                        input id="current_password" name="current_password" type="password" required autocomplete="current-password";
                    }
                    div class="field" {
                        label for="new_password" { "New password" }
                        input id="new_password" name="new_password" type="password" required minlength=(MIN_LEN) autocomplete="new-password" aria-describedby="new-help";
                        p class="help" id="new-help" { "At least " (MIN_LEN) " characters." }
                    }
                    div class="field" {
                        label for="new_password_confirm" { "New password again" }
                        input id="new_password_confirm" name="new_password_confirm" type="password" required minlength=(MIN_LEN) autocomplete="new-password";
                    }
                    button type="submit" class="button primary" { "Change password" }
                }
            }
        },
    )
}

/// `GET /settings/account`
pub async fn account(signed: SignedIn, RawQuery(raw): RawQuery) -> Response {
    let q = query(raw);
    let notice = q
        .has("done", "password")
        .then_some((AlertKind::Success, "Your password was changed."));
    html_response(StatusCode::OK, account_page(&signed, notice))
}

/// `POST /settings/account/password`
pub async fn change_password(
    State(state): State<AppState>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let form = &f.form;
    let error = |m: &str| {
        html_response(
            StatusCode::BAD_REQUEST,
            account_page(&f.signed, Some((AlertKind::Error, m))),
        )
    };
    if form.raw("new_password") != form.raw("new_password_confirm") {
        return Ok(error("The two new passwords are not the same."));
    }
    let current = SecretString::from(form.raw("current_password").to_string());
    let new = SecretString::from(form.raw("new_password").to_string());
    match state
        .service
        .change_own_password(&f.signed.session, &f.signed.client, current, new)
        .await
    {
        Ok(()) => Ok(see_other("/settings/account?done=password")),
        Err(ServiceError::Invalid { message, .. }) => Ok(error(&sentence(&message))),
        Err(e) => Err(e.into()),
    }
}
