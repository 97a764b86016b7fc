//! Authenticating a presented API key.

use keyward_core::key::check_format;
use keyward_core::{CapabilitySet, KeyHash, KeyStatus, MalformedKey, OrgId, Plan};
use keyward_store::keys::{self, KeyRecord};

use super::{Actor, Caller, Service, ServiceError};

/// Why a presented key was refused, in the order SPEC §3 checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    Malformed(MalformedKey),
    /// Well-formed but unknown.
    Invalid,
    /// Revoked, or its agent deleted.
    Revoked,
    Expired,
    PlanWithoutApiAccess,
}

/// A refused key, with what was found of it: the verify API shows a key of the caller's own
/// organization (revoked, expired, ...) but must hide every trace of anyone else's.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub failure: AuthFailure,
    /// The key's record when it exists (revoked, expired, plan without API access).
    pub found: Option<Box<RefusedKey>>,
}

/// The record of a key that exists but was refused.
#[derive(Clone, Debug)]
pub struct RefusedKey {
    pub key: KeyRecord,
    pub agent_name: String,
    pub capabilities: CapabilitySet,
}

impl From<AuthFailure> for Refusal {
    fn from(failure: AuthFailure) -> Self {
        Self {
            failure,
            found: None,
        }
    }
}

/// An authenticated key and everything the request needs to know about it.
#[derive(Clone, Debug)]
pub struct Principal {
    pub key: KeyRecord,
    pub agent_name: String,
    pub capabilities: CapabilitySet,
    pub org_name: String,
    pub org_slug: String,
    pub plan: Plan,
}

impl Principal {
    pub fn org(&self) -> &OrgId {
        &self.key.org
    }

    /// The service-layer caller acting with this key's powers and scope.
    pub fn caller(&self, ip: Option<String>, user_agent: Option<String>) -> Caller {
        Caller {
            org: self.key.org.clone(),
            team: self.key.team.clone(),
            actor: Actor::Key {
                id: self.key.id.clone(),
                capabilities: self.capabilities.clone(),
                owner: self.key.owner.clone(),
            },
            ip,
            user_agent,
        }
    }
}

impl Service {
    /// Checks a presented key: format and checksum first (no storage), then the record by
    /// hash, then revocation, expiry and the plan. Storage failures are errors, not refusals.
    pub async fn authenticate(
        &self,
        presented: &str,
    ) -> Result<Result<Principal, AuthFailure>, ServiceError> {
        Ok(self
            .authenticate_detailed(presented)
            .await?
            .map_err(|refusal| refusal.failure))
    }

    /// [`Service::authenticate`], with the record of a key that exists but was refused.
    /// Every presented key, from a request or the verify API, goes through here.
    pub async fn authenticate_detailed(
        &self,
        presented: &str,
    ) -> Result<Result<Principal, Refusal>, ServiceError> {
        if let Err(reason) = check_format(&self.config().key_prefix, presented) {
            return Ok(Err(AuthFailure::Malformed(reason).into()));
        }
        // The record is found by the hash of the secret; no comparison of secrets happens
        // anywhere, so nothing can leak through timing.
        let hash = KeyHash::of(presented);
        let mut conn = self.store().read().await?;
        let Some(found) = keys::find_for_auth(&mut conn, &hash).await? else {
            return Ok(Err(AuthFailure::Invalid.into()));
        };
        drop(conn);
        let refuse = |failure: AuthFailure, found: keys::AuthRecord| Refusal {
            failure,
            found: Some(Box::new(RefusedKey {
                key: found.key,
                agent_name: found.agent_name,
                capabilities: found.agent_capabilities,
            })),
        };
        if found.agent_deleted {
            return Ok(Err(refuse(AuthFailure::Revoked, found)));
        }
        let now = self.now();
        match KeyStatus::of(
            found.key.revoked_at,
            found.key.expires_at,
            found.key.rolled_to.is_some(),
            now,
        ) {
            KeyStatus::Revoked => return Ok(Err(refuse(AuthFailure::Revoked, found))),
            KeyStatus::Expired => return Ok(Err(refuse(AuthFailure::Expired, found))),
            KeyStatus::Active | KeyStatus::Expiring => {}
        }
        let plan = match self.config().plan(&found.plan) {
            Some(plan) if plan.api_access => plan.clone(),
            Some(_) => return Ok(Err(refuse(AuthFailure::PlanWithoutApiAccess, found))),
            None => {
                tracing::warn!(plan = %found.plan, org = %found.key.org, "organization is on a plan the configuration does not define");
                return Ok(Err(refuse(AuthFailure::PlanWithoutApiAccess, found)));
            }
        };
        Ok(Ok(Principal {
            key: found.key,
            agent_name: found.agent_name,
            capabilities: found.agent_capabilities,
            org_name: found.org_name,
            org_slug: found.org_slug,
            plan,
        }))
    }
}
