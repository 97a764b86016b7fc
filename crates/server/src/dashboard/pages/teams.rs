//! Settings › Teams & members: people, their roles, one-time sign-in links, and teams.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyward_core::{Role, TeamId, UserId};
use keyward_store::teams::Team;
use maud::{html, Markup};
use secrecy::SecretString;

use super::{query, see_other};
use crate::dashboard::csrf::{FormData, SignedForm};
use crate::dashboard::error::{sentence, PageError};
use crate::dashboard::layout::{
    alert, app_page, copy_button, csrf_field, html_response, replace_url, time_cell, AlertKind, Nav,
};
use crate::dashboard::session::SignedIn;
use crate::http::AppState;
use crate::service::{sign_in_link_path, MemberListing, ServiceError, SIGN_IN_LINK_HOURS};

fn done_notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "team" => "Team created.",
        "role" => "Role changed.",
        "removed" => "The person was removed from the organization and signed out.",
        "team_added" => "Added to the team.",
        "team_removed" => "Removed from the team.",
        _ => return None,
    })
}

fn parse_user(id: &str) -> Result<UserId, PageError> {
    UserId::parse(id).map_err(|_| PageError::NotFound)
}

fn parse_team(id: &str) -> Result<TeamId, PageError> {
    TeamId::parse(id).map_err(|_| PageError::NotFound)
}

fn parse_role(s: Option<&str>) -> Result<Role, PageError> {
    s.and_then(|r| r.parse().ok())
        .ok_or_else(|| PageError::BadRequest("Choose a role: member, admin or owner.".into()))
}

/// A one-time sign-in link shown once.
struct LinkPanel {
    email: String,
    token: SecretString,
}

#[derive(Default)]
struct Extras {
    link: Option<LinkPanel>,
    alert: Option<(AlertKind, String)>,
    status: Option<StatusCode>,
    add_form: FormData,
}

fn roles_for(signed: &SignedIn) -> &'static [Role] {
    if signed.role() == Role::Owner {
        &[Role::Member, Role::Admin, Role::Owner]
    } else {
        &[Role::Member, Role::Admin]
    }
}

fn role_badge(role: Role) -> Markup {
    html! { span class={"badge role-" (role.as_str())} { (role.as_str()) } }
}

fn members_table(
    signed: &SignedIn,
    members: &[MemberListing],
    teams: &HashMap<TeamId, String>,
) -> Markup {
    let me = &signed.session.user.id;
    html! {
        div class="table-wrap" {
            table class="members" {
                thead { tr {
                    th scope="col" { "Email" }
                    th scope="col" { "Role" }
                    th scope="col" { "Teams" }
                    th scope="col" { "Added" }
                    th scope="col" { span class="visually-hidden" { "Actions" } }
                } }
                tbody {
                    @for m in members {
                        @let id = &m.member.user.id;
                        @let changeable = signed.can_manage() && (signed.role() == Role::Owner || m.member.role != Role::Owner);
                        tr {
                            td {
                                span class="strong" { (m.member.user.email) }
                                @if id == me { " " span class="muted" { "(you)" } }
                                @if !m.has_password { br; span class="badge pending" { "sign-in link pending" } }
                            }
                            td {
                                @if changeable {
                                    form method="post" action={"/settings/teams/members/" (id) "/role"} class="inline-form" {
                                        (csrf_field(signed))
                                        label class="visually-hidden" for={"role-" (id)} { "Role of " (m.member.user.email) }
                                        select id={"role-" (id)} name="role" {
                                            @for r in roles_for(signed) {
                                                option value=(r.as_str()) selected[*r == m.member.role] { (r.as_str()) }
                                            }
                                        }
                                        button type="submit" class="button small secondary" { "Change" }
                                    }
                                } @else {
                                    (role_badge(m.member.role))
                                }
                            }
                            td {
                                @if m.teams.is_empty() { span class="muted" { "—" } }
                                @else {
                                    ul class="chips" { @for t in &m.teams { li { (teams.get(t).map_or("", String::as_str)) } } }
                                }
                            }
                            td { (time_cell(Some(m.member.user.created_at), "")) }
                            td class="actions" {
                                @if changeable && !m.has_password {
                                    form method="post" action={"/settings/teams/members/" (id) "/link"} class="inline" {
                                        (csrf_field(signed))
                                        button type="submit" class="link" { "New sign-in link" }
                                    }
                                }
                                @if changeable && id != me {
                                    a class="danger" href={"/settings/teams/members/" (id) "/remove"} { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn team_card(
    signed: &SignedIn,
    team: &Team,
    members: &[MemberListing],
    emails: &HashMap<UserId, String>,
) -> Markup {
    let inside: Vec<&MemberListing> = members
        .iter()
        .filter(|m| m.teams.contains(&team.id))
        .collect();
    let outside: Vec<&MemberListing> = members
        .iter()
        .filter(|m| !m.teams.contains(&team.id))
        .collect();
    html! {
        li class="team" {
            h3 { (team.name) }
            @if inside.is_empty() {
                p class="muted small" { "Nobody in this team yet." }
            } @else {
                ul class="people" {
                    @for m in &inside {
                        li {
                            span { (emails.get(&m.member.user.id).map_or("", String::as_str)) }
                            @if signed.can_manage() {
                                form method="post" action={"/settings/teams/" (team.id) "/members/" (m.member.user.id) "/remove"} class="inline" {
                                    (csrf_field(signed))
                                    button type="submit" class="link danger" aria-label={"Remove " (m.member.user.email) " from " (team.name)} { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
            @if signed.can_manage() && !outside.is_empty() {
                form method="post" action={"/settings/teams/" (team.id) "/members"} class="inline-form" {
                    (csrf_field(signed))
                    label class="visually-hidden" for={"add-" (team.id)} { "Person to add to " (team.name) }
                    select id={"add-" (team.id)} name="user" {
                        @for m in &outside { option value=(m.member.user.id) { (m.member.user.email) } }
                    }
                    button type="submit" class="button small secondary" { "Add to team" }
                }
            }
        }
    }
}

async fn render(
    state: &AppState,
    signed: &SignedIn,
    extras: Extras,
    notice: Option<&str>,
) -> Result<Response, PageError> {
    let caller = signed.caller();
    let members = state.service.list_members(&caller).await?;
    let mut team_list = state.service.list_teams(&caller).await?;
    team_list.reverse();
    let teams: HashMap<TeamId, String> = team_list
        .iter()
        .map(|t| (t.id.clone(), t.name.clone()))
        .collect();
    let emails: HashMap<UserId, String> = members
        .iter()
        .map(|m| (m.member.user.id.clone(), m.member.user.email.clone()))
        .collect();
    let notice = extras
        .alert
        .clone()
        .or_else(|| notice.map(|n| (AlertKind::Success, n.to_string())));
    let form = &extras.add_form;
    let body = html! {
        @if extras.link.is_some() { (replace_url("/settings/teams")) }
        div class="page-head" {
            h1 { "Teams & members" }
            p class="lead" { "Owners and admins manage agents, keys, teams and people; members see everything and change nothing." }
        }
        @if let Some(link) = &extras.link {
            section class="card keypanel" aria-labelledby="link-title" {
                h2 id="link-title" { "Sign-in link for " (link.email) }
                p class="warning" role="alert" {
                    strong { "Copy it now: it is shown only once. " }
                    "Send it to " (link.email) " yourself (keyward sends no email). It works once, within " (SIGN_IN_LINK_HOURS) " hours, and lets them choose a password."
                }
                div class="secret" {
                    code id="sign-in-link" { (signed.origin) (sign_in_link_path(&link.token)) }
                    (copy_button("sign-in-link"))
                }
            }
        }
        @if let Some((kind, text)) = &notice { (alert(*kind, text)) }
        section class="card" aria-labelledby="members-title" {
            h2 id="members-title" { "Members" }
            (members_table(signed, &members, &teams))
        }
        @if signed.can_manage() {
            section class="card" aria-labelledby="add-title" {
                h2 id="add-title" { "Add a member" }
                p class="muted" { "A new person gets a one-time sign-in link, shown here once; they choose their own password." }
                form method="post" action="/settings/teams/members" class="row end" {
                    (csrf_field(signed))
                    div class="field grow" {
                        label for="new-email" { "Email" }
                        input id="new-email" name="email" type="email" required value=[form.get("email")];
                    }
                    div class="field" {
                        label for="new-role" { "Role" }
                        select id="new-role" name="role" {
                            @for r in roles_for(signed) {
                                option value=(r.as_str()) selected[form.get("role").unwrap_or("member") == r.as_str()] { (r.as_str()) }
                            }
                        }
                    }
                    div class="field" { button type="submit" class="button primary" { "Add member" } }
                }
            }
        }
        section class="card" aria-labelledby="teams-title" {
            h2 id="teams-title" { "Teams" }
            p class="muted" { "A key can be scoped to one team: it then sees only that team's websites and keys." }
            @if team_list.is_empty() {
                div class="empty" { p { strong { "No teams yet." } @if signed.can_manage() { " Create one below." } } }
            } @else {
                ul class="teams" { @for t in &team_list { (team_card(signed, t, &members, &emails)) } }
            }
            @if signed.can_manage() {
                form method="post" action="/settings/teams" class="row end create-team" {
                    (csrf_field(signed))
                    div class="field grow" {
                        label for="team-name" { "New team name" }
                        input id="team-name" name="name" type="text" required maxlength="100" placeholder="e.g. Editorial";
                    }
                    div class="field" { button type="submit" class="button primary" { "Create team" } }
                }
            }
        }
    };
    Ok(html_response(
        extras.status.unwrap_or(StatusCode::OK),
        app_page(signed, Nav::Teams, "Teams & members", body),
    ))
}

/// Shows a refused form's message on the page; other errors become error pages.
async fn refused(
    state: &AppState,
    signed: &SignedIn,
    e: ServiceError,
    add_form: FormData,
) -> Result<Response, PageError> {
    let (status, message) = match e {
        ServiceError::Invalid { message, .. } => (StatusCode::BAD_REQUEST, sentence(&message)),
        ServiceError::Conflict(m) => (StatusCode::CONFLICT, sentence(&m)),
        other => return Err(other.into()),
    };
    let extras = Extras {
        alert: Some((AlertKind::Error, message)),
        status: Some(status),
        add_form,
        ..Extras::default()
    };
    render(state, signed, extras, None).await
}

/// `GET /settings/teams`
pub async fn index(
    State(state): State<AppState>,
    signed: SignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q = query(raw);
    render(
        &state,
        &signed,
        Extras::default(),
        done_notice(q.get("done")),
    )
    .await
}

/// `POST /settings/teams`: a new team.
pub async fn create_team(
    State(state): State<AppState>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let name = f.form.get("name").unwrap_or("");
    match state.service.create_team(&f.signed.caller(), name).await {
        Ok(_) => Ok(see_other("/settings/teams?done=team")),
        Err(e) => refused(&state, &f.signed, e, FormData::default()).await,
    }
}

/// `POST /settings/teams/members`: adds a person and shows their one-time link.
pub async fn add_member(
    State(state): State<AppState>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let role = parse_role(f.form.get("role"))?;
    let email = f.form.get("email").unwrap_or("");
    match state
        .service
        .add_member(&f.signed.caller(), email, role)
        .await
    {
        Ok(added) => {
            let extras = match added.link_token {
                Some(token) => Extras {
                    link: Some(LinkPanel {
                        email: added.member.user.email.clone(),
                        token,
                    }),
                    ..Extras::default()
                },
                None => Extras {
                    alert: Some((
                        AlertKind::Success,
                        format!(
                            "{} was added as {}. They already have a password and can sign in with it.",
                            added.member.user.email, role
                        ),
                    )),
                    ..Extras::default()
                },
            };
            render(&state, &f.signed, extras, None).await
        }
        Err(e) => refused(&state, &f.signed, e, f.form.clone()).await,
    }
}

/// `POST /settings/teams/members/{user}/link`: a fresh one-time link for someone pending.
pub async fn renew_link(
    State(state): State<AppState>,
    Path(user): Path<String>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let user = parse_user(&user)?;
    match state
        .service
        .renew_sign_in_link(&f.signed.caller(), &user)
        .await
    {
        Ok((member, token)) => {
            let extras = Extras {
                link: Some(LinkPanel {
                    email: member.user.email,
                    token,
                }),
                ..Extras::default()
            };
            render(&state, &f.signed, extras, None).await
        }
        Err(e) => refused(&state, &f.signed, e, FormData::default()).await,
    }
}

/// `POST /settings/teams/members/{user}/role`
pub async fn change_role(
    State(state): State<AppState>,
    Path(user): Path<String>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let user = parse_user(&user)?;
    let role = parse_role(f.form.get("role"))?;
    match state
        .service
        .change_role(&f.signed.caller(), &user, role)
        .await
    {
        Ok(_) => Ok(see_other("/settings/teams?done=role")),
        Err(e) => refused(&state, &f.signed, e, FormData::default()).await,
    }
}

/// `GET /settings/teams/members/{user}/remove`: asks first.
pub async fn confirm_remove(
    State(state): State<AppState>,
    signed: SignedIn,
    Path(user): Path<String>,
) -> Result<Response, PageError> {
    if !signed.can_manage() {
        return Err(PageError::Forbidden(
            "Your role can see this but not change it. Ask an owner or an admin of your organization.".into(),
        ));
    }
    let user = parse_user(&user)?;
    let members = state.service.list_members(&signed.caller()).await?;
    let m = members
        .iter()
        .find(|m| m.member.user.id == user)
        .ok_or(PageError::NotFound)?;
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/settings/teams" { "Teams & members" } " › " span aria-current="page" { "Remove member" } }
        section class="card confirm" aria-labelledby="confirm-title" {
            h1 id="confirm-title" { "Remove " (m.member.user.email) "?" }
            p { "They leave the organization and all its teams, and are signed out at once. Keys they own keep working until someone revokes them." }
            form method="post" action={"/settings/teams/members/" (user) "/remove"} class="stack" {
                (csrf_field(&signed))
                div class="buttons" {
                    button type="submit" class="button danger" { "Remove " (m.member.user.email) }
                    a class="button secondary" href="/settings/teams" { "Cancel" }
                }
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        app_page(&signed, Nav::Teams, "Remove member", body),
    ))
}

/// `POST /settings/teams/members/{user}/remove`
pub async fn remove_member(
    State(state): State<AppState>,
    Path(user): Path<String>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let user = parse_user(&user)?;
    match state.service.remove_member(&f.signed.caller(), &user).await {
        Ok(()) => Ok(see_other("/settings/teams?done=removed")),
        Err(e) => refused(&state, &f.signed, e, FormData::default()).await,
    }
}

/// `POST /settings/teams/{team}/members`
pub async fn add_to_team(
    State(state): State<AppState>,
    Path(team): Path<String>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let team = parse_team(&team)?;
    let user = f
        .form
        .get("user")
        .and_then(|u| UserId::parse(u).ok())
        .ok_or_else(|| PageError::BadRequest("Choose a person to add.".into()))?;
    match state
        .service
        .add_team_member(&f.signed.caller(), &team, &user)
        .await
    {
        Ok(()) => Ok(see_other("/settings/teams?done=team_added")),
        Err(e) => refused(&state, &f.signed, e, FormData::default()).await,
    }
}

/// `POST /settings/teams/{team}/members/{user}/remove`
pub async fn remove_from_team(
    State(state): State<AppState>,
    Path((team, user)): Path<(String, String)>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let team = parse_team(&team)?;
    let user = parse_user(&user)?;
    match state
        .service
        .remove_team_member(&f.signed.caller(), &team, &user)
        .await
    {
        Ok(()) => Ok(see_other("/settings/teams?done=team_removed")),
        Err(e) => refused(&state, &f.signed, e, FormData::default()).await,
    }
}
