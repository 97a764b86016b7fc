//! Settings › API: agents, their keys (shown once), capabilities, usage charts.
//!
//! Every change goes through the same service functions as `/v1` and the command line,
//! acting as the signed-in person; the service refuses members, whatever the page shows.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyward_core::{AgentId, KeyId, KeyStatus, RateLimit, TeamId, UnixMillis, UserId};
use keyward_store::agents::AgentSummary;
use keyward_store::keys::KeyRecord;
use keyward_store::PageRequest;
use maud::{html, Markup};

use super::{enc, query, see_other};
use crate::dashboard::charts::{self, Bar, Range};
use crate::dashboard::csrf::{FormData, SignedForm};
use crate::dashboard::error::{sentence, PageError};
use crate::dashboard::layout::{
    alert, app_page, copy_button, csrf_field, fmt_time, html_response, relative, relative_cell,
    replace_url, status_badge, time_cell, AlertKind, Nav,
};
use crate::dashboard::session::SignedIn;
use crate::http::AppState;
use crate::service::{AgentChanges, CreatedKey, NewAgent, NewKey, ServiceError, UsageQuery};

/// Most keys listed on an agent's page, newest first.
const KEYS_SHOWN: u32 = 500;
/// Most agents listed.
const AGENTS_SHOWN: u32 = 200;

fn agent_path(id: &AgentId) -> String {
    format!("/settings/api/agents/{id}")
}

fn parse_agent(id: &str) -> Result<AgentId, PageError> {
    AgentId::parse(id).map_err(|_| PageError::NotFound)
}

fn parse_key(id: &str) -> Result<KeyId, PageError> {
    KeyId::parse(id).map_err(|_| PageError::NotFound)
}

/// Messages after a change, by a fixed code in the query (never text from the request).
fn done_notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "welcome" => {
            "Welcome! Your organization is ready. Create an agent to get its first API key."
        }
        "capabilities" => "Capabilities saved. Every key of this agent has them now.",
        "revoked" => "Key revoked. Requests with it fail from now on.",
        "deleted" => "Agent deleted; all its keys are revoked.",
        _ => return None,
    })
}

/// The status code of a refused form, and its message.
fn refused(e: ServiceError) -> Result<(StatusCode, String), PageError> {
    match e {
        ServiceError::Invalid { message, .. } => Ok((StatusCode::BAD_REQUEST, sentence(&message))),
        ServiceError::Conflict(m) | ServiceError::KeyLimitReached(m) => {
            Ok((StatusCode::CONFLICT, sentence(&m)))
        }
        other => Err(other.into()),
    }
}

/// A checkbox per capability of the catalog. `unlisted` are capabilities an agent holds that
/// the configuration no longer declares: shown so they are not dropped unseen (saving with one
/// still checked is refused until it is unchecked or declared again).
fn capability_fields(
    state: &AppState,
    checked: impl Fn(&str) -> bool,
    unlisted: &[String],
    disabled: bool,
    id_prefix: &str,
) -> Markup {
    html! {
        ul class="caps" {
            @for name in unlisted {
                @let id = format!("{id_prefix}-{}", name.replace([':', '.'], "-"));
                li {
                    input type="checkbox" id=(id) name="capability" value=(name) checked disabled[disabled];
                    label for=(id) {
                        code { (name) } " " span class="badge pending" { "not configured" }
                        span class="cap-desc" { "No longer declared in keyward.toml; keys keep it until it is unchecked." }
                    }
                }
            }
            @for entry in state.service.config().capabilities.entries() {
                @let name = entry.name.as_str();
                @let id = format!("{id_prefix}-{}", name.replace([':', '.'], "-"));
                li {
                    input type="checkbox" id=(id) name="capability" value=(name)
                        checked[checked(name)] disabled[disabled];
                    label for=(id) {
                        code { (name) }
                        @if !entry.built_in { " " span class="badge custom" { "custom" } }
                        span class="cap-desc" { (entry.description) }
                    }
                }
            }
        }
    }
}

fn caps_list(names: &[String]) -> Markup {
    html! {
        @if names.is_empty() {
            span class="muted" { "None" }
        } @else {
            ul class="chips" { @for c in names { li { code { (c) } } } }
        }
    }
}

fn agents_page(
    state: &AppState,
    signed: &SignedIn,
    agents: &[AgentSummary],
    more: bool,
    notice: Option<(AlertKind, &str)>,
    form: &FormData,
) -> Markup {
    app_page(
        signed,
        Nav::Api,
        "API",
        html! {
            div class="page-head" {
                h1 { "API" }
                p class="lead" {
                    "An agent is a named set of capabilities. Every key of an agent shares them, so changing an agent changes what all its keys may do, at once."
                }
            }
            @if let Some((kind, text)) = notice { (alert(kind, text)) }
            section class="card" aria-labelledby="agents-title" {
                div class="card-head" {
                    h2 id="agents-title" { "Agents" }
                    @if signed.can_manage() && !agents.is_empty() {
                        a class="button secondary" href="#create-agent" { "Create agent" }
                    }
                }
                @if agents.is_empty() {
                    div class="empty" {
                        p { strong { "No agents yet." } }
                        @if signed.can_manage() {
                            p { "Create one below — it comes with its first key, " em { "Production" } "." }
                        } @else {
                            p { "An owner or admin can create one." }
                        }
                    }
                } @else {
                    div class="table-wrap" {
                        table {
                            thead { tr {
                                th scope="col" { "Name" }
                                th scope="col" { "Description" }
                                th scope="col" class="num" { "Active keys" }
                                th scope="col" { "Capabilities" }
                            } }
                            tbody {
                                @for a in agents {
                                    tr {
                                        td { a href=(agent_path(&a.agent.id)) class="strong" { (a.agent.name) } }
                                        td class="desc" {
                                            @if a.agent.description.is_empty() { span class="muted" { "—" } }
                                            @else { (a.agent.description) }
                                        }
                                        td class="num" { (a.active_keys) }
                                        td { (caps_list(&a.agent.capabilities.names())) }
                                    }
                                }
                            }
                        }
                    }
                    @if more { p class="muted small" { "Showing the " (AGENTS_SHOWN) " newest agents." } }
                }
            }
            @if signed.can_manage() {
                section class="card" id="create-agent" aria-labelledby="create-title" {
                    h2 id="create-title" { "Create an agent" }
                    p class="muted" { "Its first key, " em { "Production" } ", is shown once when the agent is created." }
                    form method="post" action="/settings/api/agents" class="stack" {
                        (csrf_field(signed))
                        div class="row" {
                            div class="field" {
                                label for="agent-name" { "Name" }
                                input id="agent-name" name="name" type="text" required maxlength="100"
                                    placeholder="e.g. Billing service" value=[form.get("name")];
                            }
                            div class="field grow" {
                                label for="agent-description" { "Description " span class="muted" { "(optional)" } }
                                input id="agent-description" name="description" type="text" maxlength="500"
                                    placeholder="What uses these keys?" value=[form.get("description")];
                            }
                        }
                        fieldset {
                            legend { "Capabilities" }
                            (capability_fields(state, |c| form.has("capability", c), &[], false, "new-cap"))
                        }
                        div { button type="submit" class="button primary" { "Create agent" } }
                    }
                }
            }
        },
    )
}

async fn list_agents(
    state: &AppState,
    signed: &SignedIn,
) -> Result<(Vec<AgentSummary>, bool), PageError> {
    let page = state
        .service
        .list_agents(&signed.caller(), &PageRequest::first(AGENTS_SHOWN))
        .await?;
    Ok((page.items, page.next.is_some()))
}

/// `GET /settings/api`
pub async fn index(
    State(state): State<AppState>,
    signed: SignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q = query(raw);
    let (agents, more) = list_agents(&state, &signed).await?;
    let notice = done_notice(q.get("done")).map(|t| (AlertKind::Success, t));
    Ok(html_response(
        StatusCode::OK,
        agents_page(&state, &signed, &agents, more, notice, &FormData::default()),
    ))
}

/// `POST /settings/api/agents`: creates the agent and shows its first key, once.
pub async fn create_agent(
    State(state): State<AppState>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let form = &f.form;
    let input = NewAgent {
        name: form.get("name").unwrap_or("").to_string(),
        description: form.get("description").map(str::to_string),
        capabilities: form
            .all("capability")
            .into_iter()
            .map(str::to_string)
            .collect(),
    };
    match state.service.create_agent(&f.signed.caller(), input).await {
        Ok(created) => {
            let extras = AgentExtras {
                new_key: Some(NewKeyPanel {
                    key: &created.first_key,
                    note: "The agent is ready. Here is its first key, Production.",
                }),
                ..AgentExtras::default()
            };
            render_agent(&state, &f.signed, &created.agent.id, extras).await
        }
        Err(e) => {
            let (status, message) = refused(e)?;
            let (agents, more) = list_agents(&state, &f.signed).await?;
            Ok(html_response(
                status,
                agents_page(
                    &state,
                    &f.signed,
                    &agents,
                    more,
                    Some((AlertKind::Error, &message)),
                    form,
                ),
            ))
        }
    }
}

/// A key shown once at the top of the agent's page.
struct NewKeyPanel<'a> {
    key: &'a CreatedKey,
    note: &'a str,
}

#[derive(Default)]
struct AgentExtras<'a> {
    new_key: Option<NewKeyPanel<'a>>,
    alert: Option<(AlertKind, String)>,
    /// Query of the page: usage range and key.
    query: FormData,
    /// The "generate a key" form as sent, when it is shown again with an error.
    key_form: Option<FormData>,
    status: Option<StatusCode>,
}

fn key_panel(p: &NewKeyPanel<'_>) -> Markup {
    let k = &p.key.record;
    html! {
        section class="card keypanel" aria-labelledby="new-key-title" {
            h2 id="new-key-title" { "New key: " (k.name) }
            p { (p.note) }
            p class="warning" role="alert" {
                strong { "Copy it now: it cannot be shown again. " }
                "keyward keeps only a hash of the key. If it gets lost, roll or revoke it and generate a new one."
            }
            div class="secret" {
                code id="new-key" { (p.key.secret.expose()) }
                (copy_button("new-key"))
            }
            p class="muted small" {
                "Send it as " code { "Authorization: Bearer <key>" } " or " code { "X-API-Key: <key>" } "."
            }
        }
    }
}

fn scope_cell(k: &KeyRecord, teams: &HashMap<TeamId, String>) -> Markup {
    match &k.team {
        None => html! { "All teams" },
        Some(t) => html! { (teams.get(t).map_or(t.as_str(), String::as_str)) },
    }
}

fn owner_cell(k: &KeyRecord, people: &HashMap<UserId, String>) -> Markup {
    match &k.owner {
        None => html! { span class="muted" { "—" } },
        Some(u) => match people.get(u).and_then(|e| e.split_once('@')) {
            // Long addresses break after the @, not in the middle of a word.
            Some((local, domain)) => html! { (local) "@" wbr; (domain) },
            None => html! { (u.as_str()) },
        },
    }
}

fn rate_text(r: &RateLimit) -> String {
    match r.window_seconds {
        1 => format!("{}/s", r.limit),
        60 => format!("{}/min", r.limit),
        3600 => format!("{}/h", r.limit),
        86_400 => format!("{}/day", r.limit),
        w => format!("{}/{w}s", r.limit),
    }
}

fn keys_table(
    signed: &SignedIn,
    agent: &AgentId,
    keys: &[KeyRecord],
    teams: &HashMap<TeamId, String>,
    people: &HashMap<UserId, String>,
    now: UnixMillis,
) -> Markup {
    html! {
        @if keys.is_empty() {
            div class="empty" {
                p { strong { "No keys yet" } " — generate one below." }
            }
        } @else {
            div class="table-wrap" {
                table class="keys" {
                    thead { tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Key" }
                        th scope="col" { "Teams" }
                        th scope="col" { "Owner" }
                        th scope="col" { "Environment" }
                        th scope="col" { "Created" }
                        th scope="col" { "Last used" }
                        th scope="col" { "Expires" }
                        th scope="col" { "Status" }
                        th scope="col" { span class="visually-hidden" { "Actions" } }
                    } }
                    tbody {
                        @for k in keys {
                            @let status = KeyStatus::of(k.revoked_at, k.expires_at, k.rolled_to.is_some(), now);
                            tr id={"key-" (k.id)} {
                                td {
                                    span class="strong" { (k.name) }
                                    @if let Some(r) = &k.rate_limit { br; span class="muted small" title="Rate-limit override" { (rate_text(r)) } }
                                    @if k.rolled_to.is_some() { br; span class="muted small" { "rolled" } }
                                }
                                td { code class="hint" { (k.hint) } }
                                td { (scope_cell(k, teams)) }
                                td class="owner" { (owner_cell(k, people)) }
                                td { (k.environment) }
                                td class="nowrap" { (time_cell(Some(k.created_at), "")) }
                                td class="nowrap" { (relative_cell(k.last_used_at, now, "Never")) }
                                td class="nowrap" { (time_cell(k.expires_at, "Never")) }
                                td { (status_badge(status)) }
                                td class="actions" {
                                    div class="action-list" {
                                        a href={(agent_path(agent)) "?key=" (k.id) "#usage"} aria-label={"Usage of " (k.name)} { "Usage" }
                                        @if signed.can_manage() && status.is_usable() {
                                            @if k.rolled_to.is_none() {
                                                a href={(agent_path(agent)) "/keys/" (k.id) "/roll"} aria-label={"Roll " (k.name)} { "Roll" }
                                            }
                                            a class="danger" href={(agent_path(agent)) "/keys/" (k.id) "/revoke"} aria-label={"Revoke " (k.name)} { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn key_form(
    signed: &SignedIn,
    agent: &AgentId,
    teams: &HashMap<TeamId, String>,
    team_order: &[TeamId],
    people: &[(UserId, String)],
    form: &FormData,
) -> Markup {
    let scope = form.get("scope").unwrap_or("all");
    let owner = form
        .get("owner")
        .map(str::to_string)
        .unwrap_or_else(|| signed.session.user.id.to_string());
    let expiry = form.get("expiry").unwrap_or("never");
    let window = form.get("rate_window").unwrap_or("60");
    html! {
        form method="post" action={(agent_path(agent)) "/keys"} class="stack" id="generate-form" {
            (csrf_field(signed))
            div class="row" {
                div class="field" {
                    label for="key-name" { "Name" }
                    input id="key-name" name="name" type="text" required maxlength="100" placeholder="e.g. CI" value=[form.get("name")];
                }
                div class="field" {
                    label for="key-environment" { "Environment" }
                    input id="key-environment" name="environment" type="text" list="environments" maxlength="64"
                        value=(form.get("environment").unwrap_or("production"));
                    datalist id="environments" {
                        option value="production" {} option value="staging" {} option value="development" {}
                    }
                }
            }
            fieldset class="scope" {
                legend { "Teams" }
                div class="radios" {
                    label { input type="radio" name="scope" value="all" id="scope-all" checked[scope != "team"]; " All teams" }
                    label { input type="radio" name="scope" value="team" id="scope-team" checked[scope == "team"] disabled[team_order.is_empty()]; " Specific team" }
                }
                @if team_order.is_empty() {
                    p class="help" { "No teams yet. Create one under " a href="/settings/teams" { "Teams & members" } " to scope keys to it." }
                } @else {
                    div class="field team-field" {
                        label for="key-team" { "Team" }
                        select id="key-team" name="team" {
                            option value="" { "Choose a team…" }
                            @for t in team_order {
                                option value=(t) selected[form.get("team") == Some(t.as_str())] { (teams.get(t).map_or("", String::as_str)) }
                            }
                        }
                        p class="help" { "A team-scoped key sees and manages only its team's websites and keys." }
                    }
                }
            }
            div class="row" {
                div class="field" {
                    label for="key-owner" { "Key owner" }
                    select id="key-owner" name="owner" {
                        @for (id, email) in people {
                            option value=(id) selected[owner == id.as_str()] { (email) }
                        }
                    }
                }
                div class="field" {
                    label for="key-expiry" { "Expires" }
                    select id="key-expiry" name="expiry" {
                        @for (v, label) in [("never", "Never"), ("7", "In 7 days"), ("30", "In 30 days"), ("90", "In 90 days"), ("date", "On a date…")] {
                            option value=(v) selected[expiry == v] { (label) }
                        }
                    }
                }
                div class="field date-field" {
                    label for="key-expires-on" { "Expiry date " span class="muted" { "(UTC, end of day)" } }
                    input id="key-expires-on" name="expires_on" type="date" value=[form.get("expires_on")];
                }
            }
            fieldset {
                legend { "Rate limit " span class="muted" { "(optional; empty uses the plan's)" } }
                div class="row" {
                    div class="field" {
                        label for="key-rate" { "Requests" }
                        input id="key-rate" name="rate_limit" type="number" min="1" max="1000000000" inputmode="numeric" value=[form.get("rate_limit")];
                    }
                    div class="field" {
                        label for="key-window" { "per" }
                        select id="key-window" name="rate_window" {
                            @for (v, label) in [("1", "second"), ("60", "minute"), ("3600", "hour"), ("86400", "day")] {
                                option value=(v) selected[window == v] { (label) }
                            }
                        }
                    }
                }
            }
            div { button type="submit" class="button primary" { "Generate key" } }
        }
    }
}

/// Reads the "generate a new key" form.
fn parse_key_form(form: &FormData, now: UnixMillis) -> Result<NewKey, String> {
    let team = match form.get("scope") {
        Some("team") => Some(
            form.get("team")
                .and_then(|t| TeamId::parse(t).ok())
                .ok_or("Choose the team for a team-scoped key.")?,
        ),
        _ => None,
    };
    let owner = form
        .get("owner")
        .map(|o| UserId::parse(o).map_err(|_| "Choose the key's owner from the list."))
        .transpose()?;
    let expires_at = match form.get("expiry").unwrap_or("never") {
        "never" => None,
        "date" => {
            let date = form
                .get("expires_on")
                .and_then(parse_date)
                .ok_or("Pick the expiry date.")?;
            Some(date + 86_400_000)
        }
        days => {
            let days: i64 = days.parse().map_err(|_| "Choose when the key expires.")?;
            Some(now + days * 86_400_000)
        }
    };
    let rate_limit = match form.get("rate_limit") {
        None => None,
        Some(n) => {
            let limit: u64 = n
                .parse()
                .map_err(|_| "The rate limit must be a whole number of requests.")?;
            let window: u64 = form
                .get("rate_window")
                .unwrap_or("60")
                .parse()
                .map_err(|_| "Choose the rate limit's period.")?;
            Some(RateLimit::new(limit, window).map_err(|e| sentence(&e.to_string()))?)
        }
    };
    Ok(NewKey {
        name: form.get("name").unwrap_or("").to_string(),
        team,
        owner,
        environment: form.get("environment").map(str::to_string),
        expires_at,
        rate_limit,
    })
}

/// `YYYY-MM-DD` → the first millisecond of that UTC day.
pub fn parse_date(s: &str) -> Option<UnixMillis> {
    let mut parts = s.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let month = time::Month::try_from(month).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let t = date.midnight().assume_utc();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

async fn render_agent(
    state: &AppState,
    signed: &SignedIn,
    id: &AgentId,
    extras: AgentExtras<'_>,
) -> Result<Response, PageError> {
    let caller = signed.caller();
    let svc = &state.service;
    let agent = svc.get_agent(&caller, id).await?;
    let keys = svc
        .list_keys(&caller, Some(id), &PageRequest::first(KEYS_SHOWN))
        .await?
        .items;
    let team_list = svc.list_teams(&caller).await?;
    let teams: HashMap<TeamId, String> = team_list
        .iter()
        .map(|t| (t.id.clone(), t.name.clone()))
        .collect();
    let team_order: Vec<TeamId> = team_list.iter().rev().map(|t| t.id.clone()).collect();
    let members = svc.list_members(&caller).await?;
    let people_list: Vec<(UserId, String)> = members
        .iter()
        .map(|m| (m.member.user.id.clone(), m.member.user.email.clone()))
        .collect();
    let people: HashMap<UserId, String> = people_list.iter().cloned().collect();
    let now = svc.now();

    // Usage: the agent's keys together, or one key of it.
    let range = Range::parse(extras.query.get("range"));
    let focus = extras
        .query
        .get("key")
        .and_then(|k| KeyId::parse(k).ok())
        .and_then(|k| keys.iter().find(|r| r.id == k).cloned());
    let series = svc
        .usage(
            &caller,
            UsageQuery {
                key: focus.as_ref().map(|k| k.id.clone()),
                agent: focus.is_none().then(|| id.clone()),
                from: None,
                to: None,
                granularity: range.granularity(),
                per_key: false,
            },
        )
        .await?;
    let bars: Vec<Bar> = series.total.iter().map(|(t, c)| Bar::of(*t, c)).collect();
    let totals = charts::totals(&bars);
    let last_used = match &focus {
        Some(k) => k.last_used_at,
        None => keys.iter().filter_map(|k| k.last_used_at).max(),
    };
    let usage_link = |r: Range| match &focus {
        Some(k) => format!("{}?range={}&key={}#usage", agent_path(id), r.param(), k.id),
        None => format!("{}?range={}#usage", agent_path(id), r.param()),
    };

    let a = &agent.agent;
    let caps = a.capabilities.names();
    let catalog = &svc.config().capabilities;
    let unlisted: Vec<String> = caps
        .iter()
        .filter(|c| catalog.parse(c).is_err())
        .cloned()
        .collect();
    let notice = extras.alert.clone().or_else(|| {
        done_notice(extras.query.get("done")).map(|t| (AlertKind::Success, t.to_string()))
    });
    let key_form_data = extras.key_form.clone().unwrap_or_default();
    let page = app_page(
        signed,
        Nav::Api,
        &a.name,
        html! {
            @if extras.new_key.is_some() { (replace_url(&agent_path(id))) }
            nav class="crumbs" aria-label="Breadcrumb" { a href="/settings/api" { "API" } " › " span aria-current="page" { (a.name) } }
            div class="page-head" {
                h1 { (a.name) }
                @if !a.description.is_empty() { p class="lead" { (a.description) } }
                p class="muted small" {
                    code { (a.id) } " · created " (fmt_time(a.created_at)) " · " (agent.active_keys) " active key" @if agent.active_keys != 1 { "s" }
                }
            }
            @if let Some(p) = &extras.new_key { (key_panel(p)) }
            @if let Some((kind, text)) = &notice { (alert(*kind, text)) }

            section class="card" aria-labelledby="keys-title" {
                div class="card-head" {
                    h2 id="keys-title" { "Keys" }
                    @if signed.can_manage() { a class="button secondary" href="#generate" { "Generate a new key" } }
                }
                (keys_table(signed, id, &keys, &teams, &people, now))
            }

            @if signed.can_manage() {
                section class="card" id="generate" aria-labelledby="generate-title" {
                    h2 id="generate-title" { "Generate a new key" }
                    p class="muted" { "The key is shown once, right after it is made. People in the dashboard may set any rate limit." }
                    (key_form(signed, id, &teams, &team_order, &people_list, &key_form_data))
                }
            }

            section class="card" id="usage" aria-labelledby="usage-title" {
                div class="card-head" {
                    h2 id="usage-title" {
                        "Usage"
                        @if let Some(k) = &focus { " of key " (k.name) " " code class="hint" { (k.hint) } }
                        @else { " of all keys" }
                    }
                    nav class="tabs" aria-label="Period" {
                        @for r in Range::ALL {
                            @if r == range { a href=(usage_link(r)) aria-current="true" { (r.label()) } }
                            @else { a href=(usage_link(r)) { (r.label()) } }
                        }
                    }
                }
                @if focus.is_some() { p class="small" { a href={(agent_path(id)) "?range=" (range.param()) "#usage"} { "← All keys of this agent" } } }
                dl class="totals" {
                    div { dt { "Requests" } dd { (totals.requests) } }
                    div { dt { "Errors" } dd class=[(totals.errors > 0).then_some("err")] { (totals.errors) } }
                    div { dt { "Rate-limited" } dd class=[(totals.limited > 0).then_some("lim")] { (totals.limited) } }
                    div { dt { "Last used" } dd {
                        @match last_used {
                            Some(t) => { time datetime=(crate::views::rfc3339(t)) title=(fmt_time(t)) { (relative(t, now)) } }
                            None => { "Never" }
                        }
                    } }
                }
                (charts::chart("usage-chart", range, &bars))
                ul class="legend" aria-hidden="true" {
                    li { span class="swatch ok" {} "Successful" }
                    li { span class="swatch err" {} "Errors" }
                    li { span class="swatch lim" {} "Rate-limited" }
                }
                p class="muted small" { "Times in UTC. Usage and last use are written every second." }
            }

            section class="card" aria-labelledby="caps-title" {
                h2 id="caps-title" { "Capabilities" }
                p class="muted" { "Changes apply to every key of this agent at once." }
                form method="post" action={(agent_path(id)) "/capabilities"} class="stack" {
                    (csrf_field(signed))
                    fieldset {
                        legend class="visually-hidden" { "Capabilities of " (a.name) }
                        (capability_fields(state, |c| caps.iter().any(|x| x == c), &unlisted, !signed.can_manage(), "cap"))
                    }
                    @if signed.can_manage() { div { button type="submit" class="button primary" { "Save capabilities" } } }
                }
            }

            @if signed.can_manage() {
                section class="card danger-zone" aria-labelledby="danger-title" {
                    h2 id="danger-title" { "Delete this agent" }
                    p { "Deleting the agent revokes all its keys at once. Their records stay in the audit trail." }
                    a class="button danger" href={(agent_path(id)) "/delete"} { "Delete agent…" }
                }
            }
        },
    );
    Ok(html_response(extras.status.unwrap_or(StatusCode::OK), page))
}

/// `GET /settings/api/agents/{id}`
pub async fn agent(
    State(state): State<AppState>,
    signed: SignedIn,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let id = parse_agent(&id)?;
    let extras = AgentExtras {
        query: query(raw),
        ..AgentExtras::default()
    };
    render_agent(&state, &signed, &id, extras).await
}

/// `GET` on a form-only path of an agent: the agent's page.
pub async fn back_to_agent(Path(id): Path<String>) -> Result<Response, PageError> {
    Ok(see_other(&agent_path(&parse_agent(&id)?)))
}

/// `POST /settings/api/agents/{id}/keys`: makes the key and shows it, once.
pub async fn create_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let id = parse_agent(&id)?;
    let caller = f.signed.caller();
    let result = match parse_key_form(&f.form, state.service.now()) {
        Ok(input) => state
            .service
            .create_key(&caller, &id, input)
            .await
            .map_err(refused),
        Err(message) => Err(Ok((StatusCode::BAD_REQUEST, message))),
    };
    match result {
        Ok(created) => {
            let extras = AgentExtras {
                new_key: Some(NewKeyPanel {
                    key: &created,
                    note: "The key is ready.",
                }),
                ..AgentExtras::default()
            };
            render_agent(&state, &f.signed, &id, extras).await
        }
        Err(refusal) => {
            let (status, message) = refusal?;
            let extras = AgentExtras {
                alert: Some((
                    AlertKind::Error,
                    format!("The key was not generated: {message}"),
                )),
                key_form: Some(f.form.clone()),
                status: Some(status),
                ..AgentExtras::default()
            };
            render_agent(&state, &f.signed, &id, extras).await
        }
    }
}

/// `POST /settings/api/agents/{id}/capabilities`
pub async fn capabilities(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let id = parse_agent(&id)?;
    let changes = AgentChanges {
        capabilities: Some(
            f.form
                .all("capability")
                .into_iter()
                .map(str::to_string)
                .collect(),
        ),
        ..AgentChanges::default()
    };
    match state
        .service
        .update_agent(&f.signed.caller(), &id, changes)
        .await
    {
        Ok(_) => Ok(see_other(&format!("{}?done=capabilities", agent_path(&id)))),
        Err(e) => {
            let (status, message) = refused(e)?;
            let extras = AgentExtras {
                alert: Some((AlertKind::Error, message)),
                status: Some(status),
                ..AgentExtras::default()
            };
            render_agent(&state, &f.signed, &id, extras).await
        }
    }
}

/// The key `key` of agent `agent`, for the confirmation pages.
async fn key_of_agent(
    state: &AppState,
    signed: &SignedIn,
    agent: &str,
    key: &str,
) -> Result<(AgentSummary, KeyRecord), PageError> {
    let agent = parse_agent(agent)?;
    let key = parse_key(key)?;
    let caller = signed.caller();
    let agent = state.service.get_agent(&caller, &agent).await?;
    let key = state.service.get_key(&caller, &key).await?;
    if key.agent != agent.agent.id {
        return Err(PageError::NotFound);
    }
    Ok((agent, key))
}

/// A page that asks before a change that cannot be undone.
struct Confirm<'a> {
    title: &'a str,
    body: Markup,
    action: String,
    fields: Markup,
    button: &'a str,
    danger: bool,
}

fn confirm_page(signed: &SignedIn, agent: &AgentSummary, c: Confirm<'_>) -> Markup {
    let back = agent_path(&agent.agent.id);
    app_page(
        signed,
        Nav::Api,
        c.title,
        html! {
            nav class="crumbs" aria-label="Breadcrumb" {
                a href="/settings/api" { "API" } " › " a href=(back) { (agent.agent.name) } " › " span aria-current="page" { (c.title) }
            }
            section class="card confirm" aria-labelledby="confirm-title" {
                h1 id="confirm-title" { (c.title) }
                (c.body)
                form method="post" action=(c.action) class="stack" {
                    (csrf_field(signed))
                    (c.fields)
                    div class="buttons" {
                        button type="submit" class={"button " (if c.danger { "danger" } else { "primary" })} { (c.button) }
                        a class="button secondary" href=(back) { "Cancel" }
                    }
                }
            }
        },
    )
}

fn manager_only(signed: &SignedIn) -> Result<(), PageError> {
    if signed.can_manage() {
        Ok(())
    } else {
        Err(PageError::Forbidden(
            "Your role can see this but not change it. Ask an owner or an admin of your organization.".into(),
        ))
    }
}

/// `GET /settings/api/agents/{id}/keys/{key}/revoke`
pub async fn confirm_revoke(
    State(state): State<AppState>,
    signed: SignedIn,
    Path((agent, key)): Path<(String, String)>,
) -> Result<Response, PageError> {
    manager_only(&signed)?;
    let (agent, key) = key_of_agent(&state, &signed, &agent, &key).await?;
    let action = format!("{}/keys/{}/revoke", agent_path(&agent.agent.id), key.id);
    Ok(html_response(
        StatusCode::OK,
        confirm_page(
            &signed,
            &agent,
            Confirm {
                title: "Revoke key",
                body: html! {
                    p { "Revoke the key " strong { (key.name) } " " code class="hint" { (key.hint) } " of " strong { (agent.agent.name) } "?" }
                    p class="warning" { "Every request with this key fails from the moment it is revoked, on every node. This cannot be undone." }
                },
                action,
                fields: html! {
                    div class="field" {
                        label for="reason" { "Reason " span class="muted" { "(optional, for the audit log)" } }
                        input id="reason" name="reason" type="text" maxlength="500" placeholder="e.g. leaked in a log";
                    }
                },
                button: "Revoke key",
                danger: true,
            },
        ),
    ))
}

/// `POST /settings/api/agents/{id}/keys/{key}/revoke`
pub async fn revoke(
    State(state): State<AppState>,
    Path((agent, key)): Path<(String, String)>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let (agent, key) = key_of_agent(&state, &f.signed, &agent, &key).await?;
    state
        .service
        .revoke_key(&f.signed.caller(), &key.id, f.form.get("reason"))
        .await?;
    Ok(see_other(&format!(
        "{}?done=revoked#key-{}",
        agent_path(&agent.agent.id),
        enc(key.id.as_str())
    )))
}

const GRACE: &[(u64, &str)] = &[
    (0, "None: the old key stops now"),
    (3600, "1 hour"),
    (86_400, "24 hours"),
    (7 * 86_400, "7 days"),
];

/// `GET /settings/api/agents/{id}/keys/{key}/roll`
pub async fn confirm_roll(
    State(state): State<AppState>,
    signed: SignedIn,
    Path((agent, key)): Path<(String, String)>,
) -> Result<Response, PageError> {
    manager_only(&signed)?;
    let (agent, key) = key_of_agent(&state, &signed, &agent, &key).await?;
    let action = format!("{}/keys/{}/roll", agent_path(&agent.agent.id), key.id);
    Ok(html_response(
        StatusCode::OK,
        confirm_page(
            &signed,
            &agent,
            Confirm {
                title: "Roll key",
                body: html! {
                    p { "Roll the key " strong { (key.name) } " " code class="hint" { (key.hint) } "?" }
                    p { "You get a new key with the same name, teams, owner, environment, rate limit and expiry, shown once. The old key keeps working for the grace period you choose, so you can deploy the new one first." }
                },
                action,
                fields: html! {
                    div class="field" {
                        label for="grace" { "Grace period for the old key" }
                        select id="grace" name="grace_seconds" {
                            @for (secs, label) in GRACE {
                                option value=(secs) selected[*secs == 86_400] { (label) }
                            }
                        }
                    }
                },
                button: "Roll key",
                danger: false,
            },
        ),
    ))
}

/// `POST /settings/api/agents/{id}/keys/{key}/roll`: shows the new key, once.
pub async fn roll(
    State(state): State<AppState>,
    Path((agent, key)): Path<(String, String)>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let (agent, key) = key_of_agent(&state, &f.signed, &agent, &key).await?;
    let grace = f
        .form
        .get("grace_seconds")
        .and_then(|g| g.parse::<u64>().ok())
        .filter(|g| GRACE.iter().any(|(s, _)| s == g));
    let rolled = state
        .service
        .roll_key(&f.signed.caller(), &key.id, grace)
        .await?;
    let note = match rolled.old_key.expires_at {
        Some(at) if at > state.service.now() => format!(
            "The old key {} keeps working until {}.",
            rolled.old_key.hint,
            fmt_time(at)
        ),
        _ => format!("The old key {} has stopped working.", rolled.old_key.hint),
    };
    let extras = AgentExtras {
        new_key: Some(NewKeyPanel {
            key: &rolled.new_key,
            note: &note,
        }),
        ..AgentExtras::default()
    };
    render_agent(&state, &f.signed, &agent.agent.id, extras).await
}

/// `GET /settings/api/agents/{id}/delete`
pub async fn confirm_delete(
    State(state): State<AppState>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    manager_only(&signed)?;
    let id = parse_agent(&id)?;
    let agent = state.service.get_agent(&signed.caller(), &id).await?;
    let action = format!("{}/delete", agent_path(&id));
    let button = format!("Delete {}", agent.agent.name);
    Ok(html_response(
        StatusCode::OK,
        confirm_page(
            &signed,
            &agent,
            Confirm {
                title: "Delete agent",
                body: html! {
                    p { "Delete the agent " strong { (agent.agent.name) } "?" }
                    p class="warning" {
                        "Its " (agent.active_keys) " active key" @if agent.active_keys != 1 { "s" }
                        " will be revoked at once, and every request with them will fail. This cannot be undone."
                    }
                },
                action,
                fields: html! {},
                button: &button,
                danger: true,
            },
        ),
    ))
}

/// `POST /settings/api/agents/{id}/delete`
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: SignedForm,
) -> Result<Response, PageError> {
    let id = parse_agent(&id)?;
    state.service.delete_agent(&f.signed.caller(), &id).await?;
    Ok(see_other("/settings/api?done=deleted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(parse_date("2026-11-22"), Some(1_795_305_600_000));
        assert_eq!(parse_date("2026-02-30"), None);
        assert_eq!(parse_date("soon"), None);
    }

    #[test]
    fn the_key_form_is_read_into_a_new_key() {
        let f = FormData::parse(
            b"name=CI&scope=team&team=team_abc&expiry=30&rate_limit=500&rate_window=60&environment=staging",
        );
        let k = parse_key_form(&f, 0).unwrap();
        assert_eq!(k.team.unwrap().as_str(), "team_abc");
        assert_eq!(k.expires_at, Some(30 * 86_400_000));
        assert_eq!(k.rate_limit.unwrap().limit, 500);
        assert_eq!(k.environment.as_deref(), Some("staging"));
        let f = FormData::parse(b"name=CI&scope=team&team=");
        assert!(parse_key_form(&f, 0).is_err());
        let f = FormData::parse(b"name=CI&expiry=date");
        assert!(parse_key_form(&f, 0).is_err());
    }
}
