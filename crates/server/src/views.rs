//! The JSON shapes of SPEC §6.1. The HTTP API and the command line's `--json` both print
//! these, so the two always agree.

use keyward_core::{KeyStatus, Plan, RateLimit, UnixMillis};
use keyward_store::agents::AgentSummary;
use keyward_store::audit::Event;
use keyward_store::keys::KeyRecord;
use keyward_store::orgs::Org;
use keyward_store::teams::Team;
use keyward_store::users::Member;
use keyward_store::Page;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::service::{CreatedAgent, CreatedKey, Principal, RolledKey};

/// RFC 3339 UTC text of a stored time.
pub fn rfc3339(ms: UnixMillis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Parses RFC 3339 text into a stored time.
pub fn parse_rfc3339(s: &str) -> Option<UnixMillis> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

fn opt_time(ms: Option<UnixMillis>) -> Option<String> {
    ms.map(rfc3339)
}

/// A key's status: `expiring` expires within 7 days, or was rolled and is in its grace period.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum KeyStatusSchema {
    Active,
    Expiring,
    Expired,
    Revoked,
}

/// At most `limit` requests in any `window_seconds` seconds.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RateLimitSchema {
    #[schema(minimum = 1)]
    pub limit: u64,
    #[schema(minimum = 1)]
    pub window_seconds: u64,
}

#[derive(Serialize, Debug, Clone, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub agent_id: String,
    pub organization_id: String,
    pub name: String,
    pub hint: String,
    pub team_id: Option<String>,
    pub owner_id: Option<String>,
    pub environment: String,
    #[schema(value_type = KeyStatusSchema)]
    pub status: KeyStatus,
    #[schema(value_type = Option<RateLimitSchema>)]
    pub rate_limit: Option<RateLimit>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    pub rolled_from: Option<String>,
    pub rolled_to: Option<String>,
}

impl KeyView {
    pub fn new(k: &KeyRecord, now: UnixMillis) -> Self {
        Self {
            id: k.id.to_string(),
            agent_id: k.agent.to_string(),
            organization_id: k.org.to_string(),
            name: k.name.clone(),
            hint: k.hint.clone(),
            team_id: k.team.as_ref().map(ToString::to_string),
            owner_id: k.owner.as_ref().map(ToString::to_string),
            environment: k.environment.clone(),
            status: KeyStatus::of(k.revoked_at, k.expires_at, k.rolled_to.is_some(), now),
            rate_limit: k.rate_limit,
            created_at: rfc3339(k.created_at),
            expires_at: opt_time(k.expires_at),
            revoked_at: opt_time(k.revoked_at),
            last_used_at: opt_time(k.last_used_at),
            rolled_from: k.rolled_from.as_ref().map(ToString::to_string),
            rolled_to: k.rolled_to.as_ref().map(ToString::to_string),
        }
    }
}

/// A key object with its secret: only ever in the response that created the key.
#[derive(Serialize, Debug, ToSchema)]
pub struct KeyWithSecret {
    #[serde(flatten)]
    pub key: KeyView,
    pub secret: String,
}

impl KeyWithSecret {
    pub fn new(created: &CreatedKey, now: UnixMillis) -> Self {
        Self {
            key: KeyView::new(&created.record, now),
            secret: created.secret.expose().to_string(),
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct RolledView {
    pub new_key: KeyWithSecret,
    pub old_key: KeyView,
}

impl RolledView {
    pub fn new(rolled: &RolledKey, now: UnixMillis) -> Self {
        Self {
            new_key: KeyWithSecret::new(&rolled.new_key, now),
            old_key: KeyView::new(&rolled.old_key, now),
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct AgentView {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: String,
    pub capabilities: Vec<String>,
    pub active_keys: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl AgentView {
    pub fn new(s: &AgentSummary) -> Self {
        let a = &s.agent;
        Self {
            id: a.id.to_string(),
            organization_id: a.org.to_string(),
            name: a.name.clone(),
            description: a.description.clone(),
            capabilities: a.capabilities.names(),
            active_keys: s.active_keys,
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct AgentCreatedView {
    #[serde(flatten)]
    pub agent: AgentView,
    pub first_key: KeyWithSecret,
}

impl AgentCreatedView {
    pub fn new(created: &CreatedAgent, now: UnixMillis) -> Self {
        let summary = AgentSummary {
            agent: created.agent.clone(),
            active_keys: 1,
        };
        Self {
            agent: AgentView::new(&summary),
            first_key: KeyWithSecret::new(&created.first_key, now),
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct OrgView {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub plan: String,
    pub created_at: String,
}

impl OrgView {
    pub fn new(o: &Org) -> Self {
        Self {
            id: o.id.to_string(),
            name: o.name.clone(),
            slug: o.slug.clone(),
            plan: o.plan.clone(),
            created_at: rfc3339(o.created_at),
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct TeamView {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub created_at: String,
}

impl TeamView {
    pub fn new(t: &Team) -> Self {
        Self {
            id: t.id.to_string(),
            organization_id: t.org.to_string(),
            name: t.name.clone(),
            created_at: rfc3339(t.created_at),
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct MemberView {
    pub id: String,
    pub email: String,
    pub organization_id: String,
    pub role: String,
    pub created_at: String,
}

impl MemberView {
    pub fn new(m: &Member) -> Self {
        Self {
            id: m.user.id.to_string(),
            email: m.user.email.clone(),
            organization_id: m.org.to_string(),
            role: m.role.to_string(),
            created_at: rfc3339(m.user.created_at),
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct RefView {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Serialize, Debug, ToSchema)]
pub struct EventView {
    pub id: String,
    pub at: String,
    pub action: String,
    pub actor: RefView,
    pub target: RefView,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl EventView {
    pub fn new(e: &Event) -> Self {
        Self {
            id: e.id.to_string(),
            at: rfc3339(e.at),
            action: e.action.clone(),
            actor: RefView {
                kind: e.actor.kind.clone(),
                id: e.actor.id.clone(),
            },
            target: RefView {
                kind: e.target_type.clone(),
                id: e.target_id.clone(),
            },
            ip: e.ip.clone(),
            user_agent: e.user_agent.clone(),
            details: e.details.clone(),
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct Pagination {
    pub limit: u32,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

/// The list envelope of SPEC §6.
#[derive(Serialize, Debug, ToSchema)]
pub struct ListView<T> {
    pub data: Vec<T>,
    pub pagination: Pagination,
}

impl<T> ListView<T> {
    pub fn new<R>(page: &Page<R>, limit: u32, view: impl Fn(&R) -> T) -> Self {
        Self {
            data: page.items.iter().map(view).collect(),
            pagination: Pagination {
                limit,
                has_more: page.next.is_some(),
                next_cursor: page.next.as_ref().map(|c| c.encode()),
            },
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct WhoamiAgent {
    pub id: String,
    pub name: String,
    pub capabilities: Vec<String>,
}

impl WhoamiAgent {
    /// The agent of `p`'s key.
    pub fn of(p: &Principal) -> Self {
        WhoamiAgent {
            id: p.key.agent.to_string(),
            name: p.agent_name.clone(),
            capabilities: p.capabilities.names(),
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct WhoamiOrg {
    pub id: String,
    pub name: String,
    pub slug: String,
}

#[derive(Serialize, Debug, ToSchema)]
pub struct WhoamiPlan {
    pub name: String,
    #[schema(value_type = RateLimitSchema)]
    pub rate_limit: RateLimit,
}

#[derive(Serialize, Debug, ToSchema)]
pub struct WhoamiView {
    pub key: KeyView,
    pub agent: WhoamiAgent,
    pub organization: WhoamiOrg,
    pub plan: WhoamiPlan,
    pub capabilities: Vec<String>,
}

impl WhoamiView {
    pub fn new(p: &Principal, now: UnixMillis) -> Self {
        let plan: &Plan = &p.plan;
        Self {
            // This very request is a use of the key; the cached record may predate the last
            // flush of `last_used_at`.
            key: KeyView {
                last_used_at: Some(rfc3339(now)),
                ..KeyView::new(&p.key, now)
            },
            agent: WhoamiAgent::of(p),
            organization: WhoamiOrg {
                id: p.key.org.to_string(),
                name: p.org_name.clone(),
                slug: p.org_slug.clone(),
            },
            plan: WhoamiPlan {
                name: plan.name.clone(),
                // The plan's own limit; a key's override is in the key object.
                rate_limit: plan.rate_limit,
            },
            capabilities: p.capabilities.names(),
        }
    }
}

/// A `whoami` answer rendered once per cached key: everything but `last_used_at` (this very
/// request's time), which is spliced in. Most of a `whoami` request's own work was building
/// and serializing the view; the template leaves one copy and one time to format.
#[derive(Clone, Debug)]
pub struct WhoamiTemplate {
    /// The key's status when rendered: a key can turn from active to expiring while cached,
    /// and then the template no longer applies.
    status: KeyStatus,
    /// Up to and including `"last_used_at":`.
    head: Vec<u8>,
    /// From the comma that follows its value: see [`shared_tail`].
    tail: std::sync::Arc<[u8]>,
}

impl WhoamiTemplate {
    /// Renders the answer for `p` as of `now`, split around `last_used_at`.
    pub fn new(p: &Principal, now: UnixMillis) -> Option<Self> {
        let mut view = WhoamiView::new(p, now);
        view.key.last_used_at = None;
        let json = serde_json::to_vec(&view).ok()?;
        // Unambiguous: inside a JSON string every quote is escaped, so `,"` can only be the
        // structure's own, and `last_used_at` is the first key object field of that name.
        const FIELD: &[u8] = b",\"last_used_at\":";
        const NULL: &[u8] = b"null";
        let at = json.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
        if !json[at..].starts_with(NULL) {
            return None;
        }
        Some(Self {
            status: view.key.status,
            head: json[..at].to_vec(),
            tail: shared_tail(&json[at + NULL.len()..]),
        })
    }

    /// Asks for the lines of the key's own part of the answer (the shared tail stays cached).
    pub fn prefetch(&self) {
        keyward_core::hint::prefetch_bytes(&self.head);
    }

    /// Where the key's own part of the answer is, and its length (see
    /// [`crate::cache::Hints`]).
    pub fn own_bytes(&self) -> (usize, usize) {
        (self.head.as_ptr().addr(), self.head.len())
    }

    /// The answer for `p` at `now`, put together from [`WhoamiTemplate::pieces`].
    #[cfg(test)]
    pub fn body(&self, p: &Principal, now: UnixMillis) -> Option<Vec<u8>> {
        self.pieces(p, now, |pieces| pieces.concat())
    }

    /// Calls `f` with the pieces of the answer for `p` at `now` in order, for a caller that
    /// puts them together where it likes (`v1::whoami::answer`: into a buffer shared by many
    /// answers, without an allocation); `None` when the key's status changed since rendering.
    pub fn pieces<R>(
        &self,
        p: &Principal,
        now: UnixMillis,
        f: impl FnOnce(&[&[u8]]) -> R,
    ) -> Option<R> {
        if p.standing().status(now) != self.status {
            return None;
        }
        // The time, quoted: `"2026-11-22T07:58:24.331Z"`.
        Some(with_rfc3339(now, |at| {
            f(&[&self.head, b"\"", at.as_bytes(), b"\"", &self.tail])
        }))
    }
}

/// What follows `last_used_at` in a `whoami` answer (the key's roll links, its agent,
/// organization, plan and capabilities) is the same for most keys of an agent. The last one
/// made on this thread is reused when equal, so such keys share one copy: a request then reads
/// it from the processor's cache instead of reading each key's own copy from memory.
fn shared_tail(tail: &[u8]) -> std::sync::Arc<[u8]> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<std::sync::Arc<[u8]>>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return std::sync::Arc::from(tail);
        };
        match &*last {
            Some(shared) if **shared == *tail => shared.clone(),
            _ => {
                let made: std::sync::Arc<[u8]> = std::sync::Arc::from(tail);
                *last = Some(made.clone());
                made
            }
        }
    })
}

/// Calls `f` with [`rfc3339`] of `ms`. The text of the last millisecond asked for is kept per
/// thread: under load many answers fall in the same millisecond, and formatting a time costs
/// more than the rest of a `whoami` body.
fn with_rfc3339<R>(ms: UnixMillis, f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static LAST: std::cell::RefCell<(UnixMillis, String)> =
            const { std::cell::RefCell::new((UnixMillis::MIN, String::new())) };
    }
    LAST.with(|last| match last.try_borrow_mut() {
        Ok(mut last) => {
            if last.0 != ms {
                *last = (ms, rfc3339(ms));
            }
            f(&last.1)
        }
        // Only if `f` itself asked again; never on this path, but no reason to panic.
        Err(_) => f(&rfc3339(ms)),
    })
}

#[derive(Serialize, Debug, ToSchema)]
pub struct WebsiteView {
    pub id: String,
    pub organization_id: String,
    pub team_id: Option<String>,
    pub name: String,
    pub domain: String,
    pub created_at: String,
    pub updated_at: String,
}

impl WebsiteView {
    pub fn new(w: &keyward_store::content::Website) -> Self {
        Self {
            id: w.id.to_string(),
            organization_id: w.org.to_string(),
            team_id: w.team.as_ref().map(ToString::to_string),
            name: w.name.clone(),
            domain: w.domain.clone(),
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
        }
    }
}

/// A category or a tag.
#[derive(Serialize, Debug, ToSchema)]
pub struct TermView {
    pub id: String,
    pub organization_id: String,
    pub website_id: String,
    pub name: String,
    pub slug: String,
    pub created_at: String,
    pub updated_at: String,
}

impl TermView {
    pub fn new(t: &keyward_store::content::Term) -> Self {
        Self {
            id: t.id.clone(),
            organization_id: t.org.to_string(),
            website_id: t.website.to_string(),
            name: t.name.clone(),
            slug: t.slug.clone(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct BlogView {
    pub id: String,
    pub organization_id: String,
    pub website_id: String,
    pub title: String,
    pub slug: String,
    pub excerpt: String,
    pub body: String,
    pub status: String,
    pub category_id: Option<String>,
    pub tag_ids: Vec<String>,
    pub author: RefView,
    pub published_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl BlogView {
    pub fn new(b: &keyward_store::content::Blog) -> Self {
        Self {
            id: b.id.to_string(),
            organization_id: b.org.to_string(),
            website_id: b.website.to_string(),
            title: b.title.clone(),
            slug: b.slug.clone(),
            excerpt: b.excerpt.clone(),
            body: b.body.clone(),
            status: b.status.clone(),
            category_id: b.category.as_ref().map(ToString::to_string),
            tag_ids: b.tags.iter().map(ToString::to_string).collect(),
            author: RefView {
                kind: b.author.kind.clone(),
                id: b.author.id.clone(),
            },
            published_at: opt_time(b.published_at),
            created_at: rfc3339(b.created_at),
            updated_at: rfc3339(b.updated_at),
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct UsagePoint {
    pub t: String,
    pub requests: i64,
    pub success: i64,
    pub client_errors: i64,
    pub rate_limited: i64,
}

fn points(series: &[(UnixMillis, keyward_store::usage::Counts)]) -> Vec<UsagePoint> {
    series
        .iter()
        .map(|(t, c)| UsagePoint {
            t: rfc3339(*t),
            requests: c.requests,
            success: c.success,
            client_errors: c.client_errors,
            rate_limited: c.rate_limited,
        })
        .collect()
}

#[derive(Serialize, Debug, ToSchema)]
pub struct KeyUsageView {
    pub key_id: String,
    pub data: Vec<UsagePoint>,
}

#[derive(Serialize, Debug, ToSchema)]
pub struct UsageView {
    #[schema(value_type = String, example = "hour")]
    pub granularity: &'static str,
    pub from: String,
    pub to: String,
    pub data: Vec<UsagePoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyUsageView>>,
}

impl UsageView {
    pub fn new(s: &crate::service::UsageSeries) -> Self {
        use keyward_store::usage::Granularity;
        Self {
            granularity: match s.granularity {
                Granularity::Minute => "minute",
                Granularity::Hour => "hour",
                Granularity::Day => "day",
            },
            from: rfc3339(s.from),
            to: rfc3339(s.to),
            data: points(&s.total),
            keys: s.keys.as_ref().map(|ks| {
                ks.iter()
                    .map(|(k, series)| KeyUsageView {
                        key_id: k.to_string(),
                        data: points(series),
                    })
                    .collect()
            }),
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct AccountPlanView {
    pub name: String,
    pub api_access: bool,
    #[schema(value_type = RateLimitSchema)]
    pub rate_limit: RateLimit,
    pub max_keys: Option<u64>,
}

#[derive(Serialize, Debug, ToSchema)]
pub struct AccountUsageView {
    pub period_start: String,
    pub requests_this_month: i64,
    pub active_keys: i64,
}

#[derive(Serialize, Debug, ToSchema)]
pub struct AccountView {
    pub organization: OrgView,
    pub plan: AccountPlanView,
    pub usage: AccountUsageView,
}

impl AccountView {
    pub fn new(a: &crate::service::Account) -> Self {
        Self {
            organization: OrgView::new(&a.org),
            plan: AccountPlanView {
                name: a.plan.name.clone(),
                api_access: a.plan.api_access,
                rate_limit: a.plan.rate_limit,
                max_keys: a.plan.max_keys,
            },
            usage: AccountUsageView {
                period_start: rfc3339(a.month_start),
                requests_this_month: a.requests_this_month,
                active_keys: a.counted_keys,
            },
        }
    }
}

#[derive(Serialize, Debug, ToSchema)]
pub struct GenerationView {
    pub id: String,
    pub organization_id: String,
    pub website_id: String,
    pub status: String,
    pub topic: String,
    pub keywords: Vec<String>,
    pub tone: Option<String>,
    pub length: String,
    pub error: Option<String>,
    pub blog_id: Option<String>,
    pub blog: Option<BlogView>,
    pub attempts: i64,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl GenerationView {
    pub fn new(j: &keyward_store::jobs::Job, blog: Option<&keyward_store::content::Blog>) -> Self {
        Self {
            id: j.id.to_string(),
            organization_id: j.org.to_string(),
            website_id: j.website.to_string(),
            status: j.status.clone(),
            topic: j.topic.clone(),
            keywords: j.keywords.clone(),
            tone: j.tone.clone(),
            length: j.length.clone(),
            error: j.error.clone(),
            blog_id: j.blog.as_ref().map(ToString::to_string),
            blog: blog.map(BlogView::new),
            attempts: j.attempts,
            created_at: rfc3339(j.created_at),
            started_at: opt_time(j.started_at),
            finished_at: opt_time(j.finished_at),
        }
    }
}

/// Where a key stands in its rate-limit window, as in the `X-RateLimit-*` headers.
#[derive(Serialize, Debug, ToSchema)]
pub struct RateLimitState {
    /// Requests allowed per window.
    pub limit: u64,
    /// Requests left in the window after this check.
    pub remaining: u64,
    /// Unix time in milliseconds at which the oldest counted request leaves the window.
    pub reset: i64,
}

/// The outcome of `POST /v1/keys/verify`: what a request with the checked key would get.
#[derive(Serialize, Debug, ToSchema)]
pub struct VerifyView {
    /// Whether a request with the key (and the capability, if one was asked) would pass.
    pub valid: bool,
    /// `valid`, or the SPEC §3 code a request with the key would get: `malformed_api_key`,
    /// `invalid_api_key`, `revoked_api_key`, `expired_api_key`, `plan_without_api_access`,
    /// `rate_limited` or `insufficient_capability`.
    #[schema(example = "valid")]
    pub code: &'static str,
    /// Why the key is not valid, as the error message of that code would say; `null` when valid.
    pub message: Option<String>,
    /// The checked key, when it exists in the caller's organization (and team, for a
    /// team-scoped caller); `null` for malformed and unknown keys and for keys of anyone else.
    pub key: Option<KeyView>,
    /// The checked key's agent, under the same condition as `key`.
    pub agent: Option<WhoamiAgent>,
    /// What the key may do now: its agent's capabilities when the key authenticates
    /// (`valid`, `rate_limited`, `insufficient_capability`), otherwise empty.
    pub capabilities: Vec<String>,
    /// The checked key's rate-limit window after this check, when the check reached the
    /// limiter (`valid`, `rate_limited`, `insufficient_capability`); otherwise `null`.
    pub rate_limit: Option<RateLimitState>,
}

impl VerifyView {
    /// The answer for a key of the caller's that reached the limiter: `code` is `valid`, or
    /// the refusal there (`rate_limited`, `insufficient_capability`) with its `message`.
    pub fn reached(
        p: &Principal,
        now: UnixMillis,
        code: &'static str,
        message: Option<String>,
        rate_limit: Option<RateLimitState>,
    ) -> Self {
        VerifyView {
            valid: code == "valid",
            code,
            message,
            key: Some(KeyView::new(&p.key, now)),
            agent: Some(WhoamiAgent::of(p)),
            capabilities: p.capabilities.names(),
            rate_limit,
        }
    }
}

/// The `POST /v1/keys/verify` answer for a key that passes, rendered on its first check while
/// the key is cached. All of it but the rate-limit window (the key object, agent and
/// capabilities) is the same for every check of the key, so a check writes only the window's
/// three numbers after it, instead of building and serializing the view: a service that asks
/// before each of its own requests asks about the same keys again and again.
#[derive(Clone, Debug)]
pub struct VerifyTemplate {
    /// The key's status when rendered (see [`WhoamiTemplate`]).
    status: KeyStatus,
    /// Up to and including `"rate_limit":`.
    head: Box<[u8]>,
}

impl VerifyTemplate {
    /// Renders the answer for `p` as of `now`, up to its window.
    pub fn new(p: &Principal, now: UnixMillis) -> Option<Self> {
        let view = VerifyView::reached(p, now, "valid", None, None);
        let json = serde_json::to_vec(&view).ok()?;
        // The window is the view's last field: `"rate_limit":null}` ends the text.
        let head = json.strip_suffix(b"null}")?;
        if !head.ends_with(b",\"rate_limit\":") {
            return None;
        }
        Some(Self {
            status: view.key.as_ref()?.status,
            head: head.into(),
        })
    }

    /// Calls `f` with the pieces of the answer for `p` at `now` with `window`, in order;
    /// `None` when the key's status changed since rendering.
    pub fn pieces<R>(
        &self,
        p: &Principal,
        now: UnixMillis,
        window: &RateLimitState,
        f: impl FnOnce(&[&[u8]]) -> R,
    ) -> Option<R> {
        if p.standing().status(now) != self.status {
            return None;
        }
        let (mut limit, mut remaining, mut reset) = (
            itoa::Buffer::new(),
            itoa::Buffer::new(),
            itoa::Buffer::new(),
        );
        Some(f(&[
            &self.head,
            b"{\"limit\":",
            limit.format(window.limit).as_bytes(),
            b",\"remaining\":",
            remaining.format(window.remaining).as_bytes(),
            b",\"reset\":",
            reset.format(window.reset).as_bytes(),
            b"}}",
        ]))
    }
}

/// The identity headers of a forward-auth answer for a key (its id, agent, organization,
/// team and capabilities), made on the key's first such answer while it is cached: the same
/// for every answer, which then copies handles to them instead of checking and copying five
/// values and joining the capabilities. A value that is not a valid header value is left
/// out, as it would be if made per answer (ids and capability names always are valid).
#[derive(Clone, Debug)]
pub struct ForwardIdentity(Box<[(axum::http::HeaderName, axum::http::HeaderValue)]>);

impl ForwardIdentity {
    pub fn new(p: &Principal) -> Self {
        use axum::http::{HeaderName, HeaderValue};
        let team = p.key.team.as_ref().map_or("", |t| t.as_str());
        let capabilities = p.capabilities.names().join(",");
        let values = [
            ("x-keyward-key-id", p.key.id.as_str()),
            ("x-keyward-agent-id", p.key.agent.as_str()),
            ("x-keyward-org-id", p.key.org.as_str()),
            ("x-keyward-team-id", team),
            ("x-keyward-capabilities", capabilities.as_str()),
        ];
        Self(
            values
                .into_iter()
                .filter_map(|(name, value)| {
                    let value = HeaderValue::from_str(value).ok()?;
                    Some((HeaderName::from_static(name), value))
                })
                .collect(),
        )
    }

    /// The headers, in order.
    pub fn headers(&self) -> &[(axum::http::HeaderName, axum::http::HeaderValue)] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_core::{AgentId, CapabilitySet, KeyHash, KeyId, OrgId};
    use keyward_store::keys::ActorRef;

    fn principal(name: &str, expires_at: Option<UnixMillis>) -> Principal {
        Principal::new(
            KeyRecord {
                id: KeyId::generate(),
                org: OrgId::generate(),
                agent: AgentId::generate(),
                name: name.to_string(),
                hint: "kw_ab…yz".to_string(),
                hash: KeyHash::from_digest(&[7; 32]),
                team: None,
                owner: None,
                environment: "live".to_string(),
                created_at: 1_000,
                created_by: ActorRef {
                    kind: "cli".to_string(),
                    id: "cli".to_string(),
                },
                expires_at,
                revoked_at: None,
                revoked_by: None,
                revoked_reason: None,
                last_used_at: Some(2_000),
                rate_limit: None,
                rolled_from: None,
                rolled_to: None,
            },
            // Names a client chose may hold anything, the field's own name included.
            "agent \"last_used_at\":null,".to_string(),
            CapabilitySet::from_stored(["keys:read", "content:read"]),
            false,
            ",\"last_used_at\":null, ünïcode".to_string(),
            "acme".to_string(),
            Plan {
                name: "pro".to_string(),
                api_access: true,
                rate_limit: RateLimit {
                    limit: 100,
                    window_seconds: 60,
                },
                max_keys: None,
            },
        )
    }

    #[test]
    fn whoami_template_renders_exactly_the_view() {
        for name in [
            "plain",
            ",\"last_used_at\":null,\"x\":",
            "\\\",\"last_used_at\":null",
        ] {
            let p = principal(name, None);
            let template = WhoamiTemplate::new(&p, 10_000).expect("template");
            for now in [10_000, 10_001, 1_800_000_000_000] {
                let expected = serde_json::to_vec(&WhoamiView::new(&p, now)).unwrap();
                assert_eq!(template.body(&p, now), Some(expected), "name {name:?}");
            }
        }
    }

    #[test]
    fn keys_of_one_agent_share_the_answers_tail_and_each_renders_exactly() {
        let a = principal("a", None);
        let mut key = a.key.clone();
        key.id = KeyId::generate();
        key.name = "b".to_string();
        let b = Principal::new(
            key,
            a.agent_name.clone(),
            a.capabilities.clone(),
            false,
            a.org_name.clone(),
            a.org_slug.clone(),
            a.plan.clone(),
        );
        let other = principal("c", None);
        let ta = WhoamiTemplate::new(&a, 0).expect("template");
        let tb = WhoamiTemplate::new(&b, 0).expect("template");
        let tc = WhoamiTemplate::new(&other, 0).expect("template");
        assert!(std::sync::Arc::ptr_eq(&ta.tail, &tb.tail));
        assert!(!std::sync::Arc::ptr_eq(&ta.tail, &tc.tail));
        for (p, t) in [(&a, &ta), (&b, &tb), (&other, &tc)] {
            let expected = serde_json::to_vec(&WhoamiView::new(p, 5)).unwrap();
            assert_eq!(t.body(p, 5), Some(expected));
        }
    }

    /// The verify template's answer is the serializer's, byte for byte, for every window,
    /// and gives way when the key's status changes.
    #[test]
    fn verify_template_renders_exactly_and_gives_way_when_the_status_changes() {
        let expires = 100 * 86_400_000;
        for name in ["plain", "quote \" and \\ backslash", "caf\u{e9} \u{1F600}"] {
            let p = principal(name, Some(expires));
            let template = VerifyTemplate::new(&p, 0).expect("template");
            for (now, limit, remaining, reset) in [
                (0, 100, 99, 60_000),
                (5, 1, 0, 1_800_000_000_000),
                (9, u64::MAX, 0, -1),
            ] {
                let window = || RateLimitState {
                    limit,
                    remaining,
                    reset,
                };
                let expected = serde_json::to_vec(&VerifyView::reached(
                    &p,
                    now,
                    "valid",
                    None,
                    Some(window()),
                ))
                .unwrap();
                let body = template.pieces(&p, now, &window(), |pieces| pieces.concat());
                assert_eq!(body, Some(expected), "name {name:?}");
            }
            let window = RateLimitState {
                limit: 1,
                remaining: 0,
                reset: 0,
            };
            // Within seven days of expiry the key is `expiring`: the template no longer applies.
            assert_eq!(
                template.pieces(&p, expires - 86_400_000, &window, |pieces| pieces.concat()),
                None
            );
        }
    }

    #[test]
    fn whoami_template_gives_way_when_the_status_changes() {
        let expires = 100 * 86_400_000;
        let p = principal("k", Some(expires));
        let template = WhoamiTemplate::new(&p, 0).expect("template");
        assert!(template.body(&p, 1).is_some());
        // Within seven days of expiry the key is `expiring`: the template no longer applies.
        assert_eq!(template.body(&p, expires - 86_400_000), None);
    }
}
