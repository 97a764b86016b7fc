//! `POST /v1/keys/verify`: another service asks whether a key its own client presented would
//! pass, exactly as a request to keyward with that key would (SPEC §3, §4).

use std::fmt;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyward_core::Capability;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use crate::http::auth::{consume, rate_limited, Answered, Auth, KeysVerify};
use crate::http::extract::Json as Body;
use crate::http::{ApiError, AppState};
use crate::recorder::Outcome;
use crate::service::{AuthFailure, Principal, Refusal};
use crate::views::{KeyView, RateLimitState, VerifyTemplate, VerifyView, WhoamiAgent};

/// The key to check. Held as a secret from the moment it is parsed: `Debug` never shows it,
/// and no answer, log line or error repeats it.
struct PresentedKey(SecretString);

impl fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresentedKey([redacted])")
    }
}

impl<'de> Deserialize<'de> for PresentedKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| PresentedKey(SecretString::from(s)))
    }
}

#[derive(Deserialize, Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyKey {
    /// The API key to check, exactly as the client presented it. Never echoed back.
    #[schema(value_type = String, example = "kw_…")]
    key: PresentedKey,
    /// A capability the key must also grant, e.g. `reports:read`. A well-formed name the key's
    /// agent lacks, also one this deployment does not know, answers `insufficient_capability`;
    /// a name that is not even well-formed (1–64 characters of `a-z 0-9 : _ - .`, starting
    /// with a letter) is a 400 `invalid_request` on `capability`.
    capability: Option<String>,
}

/// `POST /v1/keys/verify`.
///
/// The checked key goes through the same checks as a request: format, lookup, revocation,
/// expiry, plan, then its own rate limit (consumed, and its usage counted, exactly as a
/// request's), then the capability if one was asked. A key of another organization, or outside
/// a team-scoped caller's team, is `invalid_api_key` with nothing about it revealed and
/// nothing consumed.
#[utoipa::path(
    operation_id = "verify_key",
    post,
    path = "/keys/verify",
    tag = "verification",
    summary = "Check a key another service was given: valid or the §3 code a request with it would get (keys:verify)",
    description = "Always 200 once the caller itself is authenticated and holds `keys:verify`: \
        `valid` says whether a request with the checked key (and the capability, if one is asked) \
        would pass, and `code` the SPEC §3 code it would get otherwise. The checked key's rate \
        limit is consumed and its usage counted, as a request's would be. A key of another \
        organization (or outside a team-scoped caller's team) is `invalid_api_key`, with `key` \
        and `agent` null. The checked key is never echoed.",
    request_body = VerifyKey,
    responses((status = 200, body = VerifyView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn verify(
    State(state): State<AppState>,
    auth: Auth<KeysVerify>,
    Body(body): Body<VerifyKey>,
) -> Result<Response, ApiError> {
    let (code, answer) = check(&state, &auth, body).await?;
    state.metrics.verification(code);
    Ok(answer)
}

/// A view's code and its answer.
fn answer(view: VerifyView) -> (&'static str, Response) {
    (view.code, Json(view).into_response())
}

/// The answer about the checked key, with its code, before it is counted by that code.
async fn check(
    state: &AppState,
    auth: &Auth<KeysVerify>,
    body: VerifyKey,
) -> Result<(&'static str, Response), ApiError> {
    // A malformed name is the caller's mistake, refused before the key is looked at (and
    // without repeating it: a confused caller may have put a key there).
    let capability = body
        .capability
        .as_deref()
        .map(|c| {
            Capability::parse_name(c).map_err(|_| {
                ApiError::invalid(
                    "capability",
                    "capability must be a capability name like reports:read: 1 to 64 characters of a-z, 0-9, ':', '_', '-' and '.', starting with a letter.",
                )
            })
        })
        .transpose()?;
    let checked = state
        .service
        .authenticate_detailed(body.key.0.expose_secret())
        .await?;
    let now = state.service.now();
    let principal = match checked {
        Ok(principal) if visible(&auth.principal, &principal.key) => principal,
        Ok(_) => return Ok(answer(refused(AuthFailure::Invalid))),
        Err(Refusal {
            failure,
            found: Some(found),
        }) if visible(&auth.principal, &found.key) => {
            let mut view = refused(failure);
            view.key = Some(KeyView::new(&found.key, now));
            view.agent = Some(WhoamiAgent::of(&found));
            return Ok(answer(view));
        }
        // Malformed, unknown, or somebody else's: nothing to show.
        Err(Refusal { failure, found }) => {
            let failure = if found.is_some() {
                AuthFailure::Invalid
            } else {
                failure
            };
            return Ok(answer(refused(failure)));
        }
    };

    let (decision, limit, _) = consume(state, &principal).await?;
    let window = RateLimitState {
        limit: decision.limit,
        remaining: decision.remaining,
        reset: decision.reset_at,
    };
    let (code, message, outcome) = if !decision.allowed {
        state.metrics.rate_limited();
        let e = rate_limited(&decision, limit);
        (e.code, Some(e.message.into_owned()), Outcome::RateLimited)
    } else if let Some(missing) = capability
        .as_ref()
        .filter(|c| !principal.capabilities.grants(c.as_str()))
    {
        let e = ApiError::insufficient_capability(missing.as_str());
        (e.code, Some(e.message.into_owned()), Outcome::ClientError)
    } else {
        ("valid", None, Outcome::Success)
    };
    state
        .recorder
        .record(&principal.usage, state.service.now(), outcome);
    if code == "valid" {
        // The body lives as long as the answer: a piece of the thread's buffer (`arena`).
        let template = principal
            .verified
            .get_or_init(|| VerifyTemplate::new(&principal, now));
        let body = template
            .as_ref()
            .and_then(|t| t.pieces(&principal, now, &window, crate::http::arena::concat));
        if let Some(body) = body {
            return Ok((code, Answered::Json(body).into_response()));
        }
    }
    Ok(answer(VerifyView::reached(
        &principal,
        now,
        code,
        message,
        Some(window),
    )))
}

/// Whether the calling key may see this key: same organization and, for a team-scoped
/// caller, the same team (SPEC §5: a team-scoped key acts only inside its team).
fn visible(caller: &Principal, key: &keyward_store::keys::KeyRecord) -> bool {
    let caller = &caller.key;
    key.org == caller.org && (caller.team.is_none() || key.team == caller.team)
}

/// A refusal before the limiter: nothing about the key unless the caller adds it.
fn refused(failure: AuthFailure) -> VerifyView {
    let e = ApiError::auth(failure);
    VerifyView {
        valid: false,
        code: e.code,
        message: Some(e.message.into_owned()),
        key: None,
        agent: None,
        capabilities: Vec::new(),
        rate_limit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal before the limiter answers its §3 code and message and shows nothing.
    /// (`plan_without_api_access` cannot be reached over HTTP: a key of the caller's own
    /// organization shares the caller's plan, which would have refused the caller first.)
    #[test]
    fn refusals_before_the_limiter_show_nothing() {
        for (failure, code) in [
            (
                AuthFailure::Malformed(keyward_core::MalformedKey::BadChecksum),
                "malformed_api_key",
            ),
            (AuthFailure::Invalid, "invalid_api_key"),
            (AuthFailure::Revoked, "revoked_api_key"),
            (AuthFailure::Expired, "expired_api_key"),
            (AuthFailure::PlanWithoutApiAccess, "plan_without_api_access"),
        ] {
            let view = refused(failure);
            assert!(!view.valid);
            assert_eq!(view.code, code);
            assert_eq!(
                view.message,
                Some(ApiError::auth(failure).message.into_owned())
            );
            assert!(view.key.is_none() && view.agent.is_none() && view.rate_limit.is_none());
            assert!(view.capabilities.is_empty());
        }
    }
}
