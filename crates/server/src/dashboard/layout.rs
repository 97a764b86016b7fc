//! The page frame and the small pieces every page uses. maud escapes every value it
//! interpolates, so names typed by customers (agents, teams, organizations) cannot become
//! markup.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_core::{KeyStatus, UnixMillis};
use maud::{html, Markup, DOCTYPE};
use time::OffsetDateTime;

use super::session::SignedIn;

/// Which section of the settings a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Api,
    Teams,
    Audit,
    Account,
}

const NAV: &[(Nav, &str, &str)] = &[
    (Nav::Api, "/settings/api", "API"),
    (Nav::Teams, "/settings/teams", "Teams & members"),
    (Nav::Audit, "/settings/audit", "Audit log"),
    (Nav::Account, "/settings/account", "Account"),
];

/// The keyward mark: a key in a shield, drawn inline so it needs no request.
pub fn logo() -> Markup {
    html! {
        svg class="logo" viewBox="0 0 24 24" width="24" height="24" aria-hidden="true" focusable="false" {
            path class="logo-shield" d="M12 2 4 5v6c0 5 3.4 9.4 8 11 4.6-1.6 8-6 8-11V5l-8-3Z" {}
            circle class="logo-key" cx="12" cy="10" r="2.6" {}
            path class="logo-key" d="M12 12.6V17m0-2h2" {}
        }
    }
}

fn document(title: &str, body_class: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " · keyward" }
                link rel="stylesheet" href="/assets/dashboard.css";
                link rel="icon" href="/assets/favicon.svg" type="image/svg+xml";
                script src="/assets/dashboard.js" defer {}
            }
            body class=(body_class) {
                a class="skip" href="#main" { "Skip to content" }
                (content)
            }
        }
    }
}

/// A page of the signed-in dashboard: top bar, settings navigation, content.
pub fn app_page(signed: &SignedIn, nav: Nav, title: &str, content: Markup) -> Markup {
    let s = &signed.session;
    document(
        title,
        "app",
        html! {
            header class="topbar" {
                a class="brand" href="/settings/api" { (logo()) span { "keyward" } }
                span class="org" title="Organization" { (s.org.name) }
                div class="who" {
                    span class="email" { (s.user.email) }
                    span class={"badge role-" (s.role.as_str())} { (s.role.as_str()) }
                    form method="post" action="/logout" class="inline" {
                        (csrf_field(signed))
                        button type="submit" class="link" { "Sign out" }
                    }
                }
            }
            div class="shell" {
                nav class="sidenav" aria-label="Settings" {
                    p class="nav-title" { "Settings" }
                    ul {
                        @for (item, href, label) in NAV {
                            li {
                                @if *item == nav {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    @if !signed.can_manage() {
                        p class="notice readonly" role="note" {
                            strong { "Read-only. " }
                            "As a member you can see everything here but change nothing; owners and admins make changes."
                        }
                    }
                    (content)
                }
            }
        },
    )
}

/// A page for people who are not signed in (setup, sign-in, errors): one centred card.
pub fn public_page(title: &str, content: Markup) -> Markup {
    document(
        title,
        "public",
        html! {
            main id="main" class="public-main" tabindex="-1" {
                a class="brand big" href="/" { (logo()) span { "keyward" } }
                div class="card auth-card" { (content) }
            }
        },
    )
}

/// The hidden field every signed-in form carries.
pub fn csrf_field(signed: &SignedIn) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf()); }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertKind {
    Success,
    Error,
}

/// A message above a form or a page.
pub fn alert(kind: AlertKind, message: &str) -> Markup {
    match kind {
        AlertKind::Success => html! { div class="alert success" role="status" { (message) } },
        AlertKind::Error => html! { div class="alert error" role="alert" { (message) } },
    }
}

/// An HTML answer that no cache keeps (pages can hold a key shown once).
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut r = (status, markup.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn datetime(ms: UnixMillis) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// `2026-11-22 14:03 UTC`
pub fn fmt_time(ms: UnixMillis) -> String {
    datetime(ms).map_or_else(String::new, |t| {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        )
    })
}

/// `14:03:27 UTC`
pub fn fmt_clock(ms: UnixMillis) -> String {
    datetime(ms).map_or_else(String::new, |t| {
        format!("{:02}:{:02}:{:02} UTC", t.hour(), t.minute(), t.second())
    })
}

/// `2026-11-22`
pub fn fmt_date(ms: UnixMillis) -> String {
    datetime(ms).map_or_else(String::new, |t| {
        format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
    })
}

/// `3 minutes ago`, `in 5 days`.
pub fn relative(ms: UnixMillis, now: UnixMillis) -> String {
    let d = (now - ms) / 1000;
    let (n, unit) = match d.abs() {
        s if s < 60 => {
            return if d >= 0 {
                "just now".into()
            } else {
                "in under a minute".into()
            }
        }
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if d >= 0 {
        format!("{n} {unit}{plural} ago")
    } else {
        format!("in {n} {unit}{plural}")
    }
}

/// A time shown as a date with the exact time on hover.
pub fn time_cell(ms: Option<UnixMillis>, empty: &str) -> Markup {
    match ms {
        Some(ms) => {
            html! { time datetime=(crate::views::rfc3339(ms)) title=(fmt_time(ms)) { (fmt_date(ms)) } }
        }
        None => html! { span class="muted" { (empty) } },
    }
}

/// A time shown relative to now with the exact time on hover.
pub fn relative_cell(ms: Option<UnixMillis>, now: UnixMillis, empty: &str) -> Markup {
    match ms {
        Some(ms) => {
            html! { time datetime=(crate::views::rfc3339(ms)) title=(fmt_time(ms)) { (relative(ms, now)) } }
        }
        None => html! { span class="muted" { (empty) } },
    }
}

pub fn status_badge(status: KeyStatus) -> Markup {
    html! { span class={"badge status-" (status.as_str())} { (status.as_str()) } }
}

/// A button that copies the text of the element with id `target`.
pub fn copy_button(target: &str) -> Markup {
    html! {
        button type="button" class="button secondary copy" data-copy=(target) {
            "Copy"
        }
    }
}

/// Tells the browser to show `path` in the address bar: after a form that rendered a page
/// (such as a key shown once), reloading must not post the form again.
pub fn replace_url(path: &str) -> Markup {
    html! { meta name="kw-replace-url" content=(path); }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_well() {
        assert_eq!(fmt_time(1_795_315_260_000), "2026-11-22 02:41 UTC");
        assert_eq!(fmt_date(1_795_315_260_000), "2026-11-22");
        assert_eq!(relative(0, 30_000), "just now");
        assert_eq!(relative(0, 180_000), "3 minutes ago");
        assert_eq!(relative(0, 3_600_000), "1 hour ago");
        assert_eq!(relative(5 * 86_400_000, 0), "in 5 days");
    }

    #[test]
    fn user_text_is_escaped() {
        let m = alert(AlertKind::Error, "<script>alert(1)</script>");
        assert!(!m.into_string().contains("<script>"));
    }
}
