//! Settings › Audit log: every change, newest first, with filters and pages.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyward_store::audit::Event;
use keyward_store::{Cursor, PageRequest};
use maud::{html, Markup};

use super::api::parse_date;
use super::{enc, query};
use crate::dashboard::error::PageError;
use crate::dashboard::layout::{alert, app_page, fmt_time, html_response, AlertKind, Nav};
use crate::dashboard::session::SignedIn;
use crate::http::AppState;
use crate::service::AuditQuery;

const PAGE_SIZE: u32 = 25;

/// The actions of SPEC §7, for the filter.
pub const ACTIONS: &[&str] = &[
    "agent.created",
    "agent.updated",
    "agent.deleted",
    "key.created",
    "key.updated",
    "key.revoked",
    "key.rolled",
    "team.created",
    "team.member_added",
    "team.member_removed",
    "member.added",
    "member.role_changed",
    "member.removed",
    "user.signed_in",
    "user.sign_in_failed",
    "user.password_changed",
    "org.created",
    "org.plan_changed",
    "website.created",
    "website.updated",
    "blog.created",
    "blog.updated",
    "blog.deleted",
    "generation.created",
];

/// A short reading of an event's details: `key: value` pairs, values cut short.
fn details(v: &serde_json::Value) -> Vec<(String, String)> {
    let Some(map) = v.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let short: String = text.chars().take(90).collect();
            let short = if short.len() < text.len() {
                format!("{short}…")
            } else {
                short
            };
            (k.clone(), short)
        })
        .collect()
}

fn filters_query(q: &crate::dashboard::csrf::FormData) -> String {
    ["action", "actor", "target", "from", "to"]
        .iter()
        .filter_map(|k| q.get(k).map(|v| format!("&{k}={}", enc(v))))
        .collect()
}

fn event_row(
    e: &Event,
    people: &HashMap<String, String>,
    agents: &HashMap<String, String>,
) -> Markup {
    let actor = match e.actor.kind.as_str() {
        "user" => html! {
            @match people.get(&e.actor.id) {
                Some(email) => { span title=(e.actor.id) { (email) } }
                None => { code { (e.actor.id) } }
            }
        },
        "cli" => html! { span class="badge" { "CLI" } },
        _ => html! { "key " code { (e.actor.id) } },
    };
    let target_name = match e.target_type.as_str() {
        "user" => people.get(&e.target_id).cloned(),
        "agent" => agents.get(&e.target_id).cloned(),
        _ => None,
    };
    html! {
        tr {
            td class="nowrap" { time datetime=(crate::views::rfc3339(e.at)) { (fmt_time(e.at)) } }
            td { code class="action" { (e.action) } }
            td { (actor) }
            td {
                span class="muted" { (e.target_type) " " }
                @if e.target_type == "agent" && agents.contains_key(&e.target_id) {
                    a href={"/settings/api/agents/" (e.target_id)} { (target_name.clone().unwrap_or_default()) }
                } @else if let Some(name) = &target_name {
                    span title=(e.target_id) { (name) }
                } @else {
                    code { (e.target_id) }
                }
            }
            td class="nowrap" { @if let Some(ip) = &e.ip { (ip) } @else { span class="muted" { "—" } } }
            td class="details" {
                @let d = details(&e.details);
                @if d.is_empty() { span class="muted" { "—" } }
                @else {
                    dl class="kv" { @for (k, v) in d { div { dt { (k) } dd { (v) } } } }
                }
            }
        }
    }
}

/// `GET /settings/audit?action&actor&target&from&to&cursor`
pub async fn index(
    State(state): State<AppState>,
    signed: SignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q = query(raw);
    let caller = signed.caller();
    let members = state.service.list_members(&caller).await?;
    let people: HashMap<String, String> = members
        .iter()
        .map(|m| (m.member.user.id.to_string(), m.member.user.email.clone()))
        .collect();
    let agents: HashMap<String, String> = state
        .service
        .list_agents(&caller, &PageRequest::all())
        .await?
        .items
        .into_iter()
        .map(|a| (a.agent.id.to_string(), a.agent.name))
        .collect();

    let mut problems = Vec::new();
    // The actor may be given by email; the log stores ids.
    let actor = q.get("actor").map(|a| {
        members
            .iter()
            .find(|m| m.member.user.email.eq_ignore_ascii_case(a))
            .map_or_else(|| a.to_string(), |m| m.member.user.id.to_string())
    });
    let mut day = |name: &str, label: &str| {
        q.get(name).and_then(|v| {
            let parsed = parse_date(v);
            if parsed.is_none() {
                problems.push(format!("{label} must be a date like 2026-01-31."));
            }
            parsed
        })
    };
    let from = day("from", "From");
    let to = day("to", "To").map(|d| d + 86_400_000);
    let filter = AuditQuery {
        action: q.get("action").map(str::to_string),
        actor_id: actor,
        target_id: q.get("target").map(str::to_string),
        from,
        to,
    };
    let cursor = q.get("cursor").and_then(Cursor::decode);
    let paged = cursor.is_some();
    let page = PageRequest {
        limit: PAGE_SIZE,
        cursor,
    };
    let events = state
        .service
        .list_audit_events(&caller, filter, &page)
        .await?;
    let filtered = ["action", "actor", "target", "from", "to"]
        .iter()
        .any(|k| q.get(k).is_some());
    let kept = filters_query(&q);

    let body = html! {
        div class="page-head" {
            h1 { "Audit log" }
            p class="lead" { "Every change to access and content in your organization, newest first. Times in UTC." }
        }
        @for p in &problems { (alert(AlertKind::Error, p)) }
        section class="card" aria-labelledby="filter-title" {
            h2 id="filter-title" class="visually-hidden" { "Filters" }
            form method="get" action="/settings/audit" class="filters" {
                div class="field" {
                    label for="f-action" { "Action" }
                    select id="f-action" name="action" {
                        option value="" { "All actions" }
                        @for a in ACTIONS { option value=(a) selected[q.get("action") == Some(*a)] { (a) } }
                    }
                }
                div class="field" {
                    label for="f-actor" { "Actor" }
                    input id="f-actor" name="actor" type="text" placeholder="email or id" value=[q.get("actor")];
                }
                div class="field" {
                    label for="f-target" { "Target id" }
                    input id="f-target" name="target" type="text" placeholder="e.g. key_…" value=[q.get("target")];
                }
                div class="field" {
                    label for="f-from" { "From" }
                    input id="f-from" name="from" type="date" value=[q.get("from")];
                }
                div class="field" {
                    label for="f-to" { "To" }
                    input id="f-to" name="to" type="date" value=[q.get("to")];
                }
                div class="buttons" {
                    button type="submit" class="button primary" { "Filter" }
                    @if filtered { a class="button secondary" href="/settings/audit" { "Clear" } }
                }
            }
        }
        section class="card" aria-labelledby="events-title" {
            h2 id="events-title" class="visually-hidden" { "Events" }
            @if events.items.is_empty() {
                div class="empty" {
                    @if filtered || paged { p { strong { "No events match." } " Try fewer filters." } }
                    @else { p { strong { "Nothing has happened yet." } } }
                }
            } @else {
                div class="table-wrap" {
                    table class="audit" {
                        thead { tr {
                            th scope="col" { "Time" }
                            th scope="col" { "Action" }
                            th scope="col" { "Actor" }
                            th scope="col" { "Target" }
                            th scope="col" { "IP" }
                            th scope="col" { "Details" }
                        } }
                        tbody { @for e in &events.items { (event_row(e, &people, &agents)) } }
                    }
                }
            }
            nav class="pager" aria-label="Pages" {
                @if paged { a href={"/settings/audit?" (kept.trim_start_matches('&'))} { "← Newest" } }
                @if let Some(next) = &events.next {
                    a href={"/settings/audit?cursor=" (enc(&next.encode())) (kept)} rel="next" { "Older events →" }
                }
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        app_page(&signed, Nav::Audit, "Audit log", body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_short_pairs() {
        let d = details(&serde_json::json!({"name": "x".repeat(200), "n": 3, "gone": null}));
        assert_eq!(d.len(), 2);
        assert!(d.iter().any(|(k, v)| k == "n" && v == "3"));
        assert!(d.iter().any(|(k, v)| k == "name" && v.ends_with('…')));
    }
}
