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
use crate::dashboard::layout::{
    alert, app_page, fmt_clock, fmt_date, fmt_time, html_response, AlertKind, Nav,
};
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

/// A value as a person reads it: lists joined, `*_at` numbers as times, long text cut.
fn value_text(key: &str, v: &serde_json::Value) -> String {
    use serde_json::Value;
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        Value::Number(n) if key.ends_with("_at") => n
            .as_i64()
            .map_or_else(|| n.to_string(), crate::dashboard::layout::fmt_time),
        Value::Array(items) if items.is_empty() => "none".into(),
        Value::Array(items) => items
            .iter()
            .map(|i| value_text("", i))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    }
}

/// An event's details as `name: value` pairs; a `before`/`after` pair shows only what
/// changed, as `old → new`.
fn details(v: &serde_json::Value) -> Vec<(String, String)> {
    use serde_json::Value;
    let Some(map) = v.as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let (Some(before), Some(after)) = (map.get("before"), map.get("after")) {
        match (before, after) {
            (Value::Object(b), Value::Object(a)) => {
                let mut names: Vec<&String> = b.keys().chain(a.keys()).collect();
                names.sort();
                names.dedup();
                for name in names {
                    let (old, new) = (b.get(name), a.get(name));
                    if old != new {
                        let show = |x: Option<&Value>| value_text(name, x.unwrap_or(&Value::Null));
                        out.push((name.clone(), format!("{} → {}", show(old), show(new))));
                    }
                }
            }
            (b, a) => out.push((
                "change".into(),
                format!("{} → {}", value_text("", b), value_text("", a)),
            )),
        }
    }
    for (k, v) in map {
        if k != "before" && k != "after" && !v.is_null() {
            out.push((k.clone(), value_text(k, v)));
        }
    }
    out
}

fn filters_query(q: &crate::dashboard::csrf::FormData) -> String {
    ["action", "actor", "target", "from", "to"]
        .iter()
        .filter_map(|k| q.get(k).map(|v| format!("&{k}={}", enc(v))))
        .collect()
}

/// Names of the things events point at, by id.
struct Names {
    people: HashMap<String, String>,
    agents: HashMap<String, String>,
    teams: HashMap<String, String>,
    keys: HashMap<String, String>,
}

fn event_row(e: &Event, names: &Names) -> Markup {
    let (people, agents) = (&names.people, &names.agents);
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
        "team" => names.teams.get(&e.target_id).cloned(),
        "key" => names.keys.get(&e.target_id).cloned(),
        _ => None,
    };
    html! {
        tr {
            td class="nowrap" { time datetime=(crate::views::rfc3339(e.at)) title=(fmt_time(e.at)) { (fmt_date(e.at)) br; span class="muted" { (fmt_clock(e.at)) } } }
            td { code class="action" { (e.action) } }
            td { (actor) }
            td {
                span class="muted" { (e.target_type) " " }
                @if e.target_type == "agent" && agents.contains_key(&e.target_id) {
                    a href={"/settings/api/agents/" (e.target_id)} { (target_name.clone().unwrap_or_default()) }
                } @else if let Some(name) = &target_name {
                    span title=(e.target_id) { (name) }
                } @else {
                    code class="id" { (e.target_id) }
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
    // Keys are named by their name and hint; only those on this page are looked up.
    let mut keys = HashMap::new();
    for e in events.items.iter().filter(|e| e.target_type == "key") {
        if keys.contains_key(&e.target_id) {
            continue;
        }
        if let Ok(id) = keyward_core::KeyId::parse(&e.target_id) {
            if let Ok(k) = state.service.get_key(&caller, &id).await {
                keys.insert(e.target_id.clone(), format!("{} ({})", k.name, k.hint));
            }
        }
    }
    let teams = state
        .service
        .list_teams(&caller)
        .await?
        .into_iter()
        .map(|t| (t.id.to_string(), t.name))
        .collect();
    let names = Names {
        people,
        agents,
        teams,
        keys,
    };
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
                        tbody { @for e in &events.items { (event_row(e, &names)) } }
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
        let changed = details(&serde_json::json!({
            "before": {"name": "A", "capabilities": ["content:read", "keys:read"]},
            "after": {"name": "A", "capabilities": ["content:read"]},
        }));
        assert_eq!(
            changed,
            vec![(
                "capabilities".to_string(),
                "content:read, keys:read → content:read".to_string()
            )]
        );
        let plan = details(&serde_json::json!({"before": "pro", "after": "enterprise"}));
        assert_eq!(plan[0].1, "pro → enterprise");
        let at = details(&serde_json::json!({"expires_at": 1_795_315_260_000_i64}));
        assert_eq!(at[0].1, "2026-11-22 02:41 UTC");
    }
}
