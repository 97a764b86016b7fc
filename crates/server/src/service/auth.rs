//! Authenticating a presented API key.

use keyward_core::key::check_format;
use keyward_core::{
    CapabilitySet, CompactKeyId, KeyHash, KeyStatus, MalformedKey, OrgId, Plan, RateLimit,
    UnixMillis,
};
use std::sync::Arc;

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
    pub found: Option<Arc<Principal>>,
}

impl From<AuthFailure> for Refusal {
    fn from(failure: AuthFailure) -> Self {
        Self {
            failure,
            found: None,
        }
    }
}

/// A cached key judged: admitted, refused (and why), or the lookup failed.
pub type Judged = Result<Result<Arc<Principal>, AuthFailure>, ServiceError>;

/// An authenticated key and everything the request needs to know about it. Built by
/// [`Principal::new`] and not changed after: the key cache shares it between requests.
///
/// `repr(C)`, with what every request reads first, right after the allocation's reference
/// counts (which taking a handle to it touches anyway): the compact id, the limiter's and the
/// recorder's handles, [`Standing`] and the `whoami` answer, in the first three or four cache
/// lines instead of spread over the dozen the whole takes.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct Principal {
    /// The key's id in the compact form the in-process limiter is keyed by, kept here so
    /// that a check does not read the id's text, elsewhere in memory.
    pub compact_id: CompactKeyId,
    /// Where the in-process limiter keeps this key's state, so a check goes straight to it.
    pub limiter_slot: crate::limiter::Slot,
    /// The key's usage since the last flush (see [`crate::recorder::UsageCell`]).
    pub usage: Arc<crate::recorder::UsageCell>,
    standing: Standing,
    /// The key's `whoami` answer, rendered on its first `whoami` while cached.
    pub whoami: std::sync::OnceLock<Option<crate::views::WhoamiTemplate>>,
    pub key: KeyRecord,
    pub agent_name: String,
    pub capabilities: CapabilitySet,
    pub org_name: String,
    pub org_slug: String,
    pub plan: Plan,
    /// The key's answer to the verify API when it passes, rendered on its first such check
    /// while cached; read only by that API, so last, away from what every request reads.
    pub verified: std::sync::OnceLock<Option<crate::views::VerifyTemplate>>,
    /// The key's identity headers for forward auth, made on its first such answer.
    pub forwarded: std::sync::OnceLock<crate::views::ForwardIdentity>,
}

/// What admitting a request needs of its key, copied out of the key's, agent's and plan's
/// records when the [`Principal`] is built, so that it sits in one place.
#[derive(Clone, Copy, Debug)]
pub struct Standing {
    revoked_at: Option<UnixMillis>,
    expires_at: Option<UnixMillis>,
    /// The limit that applies: the key's own, else its plan's.
    pub limit: RateLimit,
    rolled: bool,
    /// The agent was deleted: its keys answer `revoked_api_key`.
    pub agent_deleted: bool,
    /// The plan allows API access.
    pub api_access: bool,
}

impl Standing {
    /// The key's status at `now`.
    pub fn status(&self, now: UnixMillis) -> KeyStatus {
        KeyStatus::of(self.revoked_at, self.expires_at, self.rolled, now)
    }
}

impl Principal {
    /// Puts together what was found of a key.
    pub fn new(
        key: KeyRecord,
        agent_name: String,
        capabilities: CapabilitySet,
        agent_deleted: bool,
        org_name: String,
        org_slug: String,
        plan: Plan,
    ) -> Self {
        let usage =
            crate::recorder::UsageCell::new(key.org.clone(), key.agent.clone(), key.id.clone());
        Self {
            compact_id: CompactKeyId::from(&key.id),
            limiter_slot: Default::default(),
            usage: Arc::new(usage),
            standing: Standing {
                revoked_at: key.revoked_at,
                expires_at: key.expires_at,
                limit: key.rate_limit.unwrap_or(plan.rate_limit),
                rolled: key.rolled_to.is_some(),
                agent_deleted,
                api_access: plan.api_access,
            },
            whoami: std::sync::OnceLock::new(),
            key,
            agent_name,
            capabilities,
            org_name,
            org_slug,
            plan,
            verified: std::sync::OnceLock::new(),
            forwarded: std::sync::OnceLock::new(),
        }
    }

    /// Where the memory is that requests read beyond this principal (see
    /// [`crate::cache::Hints`]), as far as it exists yet.
    pub fn hints(&self) -> crate::cache::Hints {
        let whoami = match self.whoami.get() {
            Some(Some(template)) => template.own_bytes(),
            _ => (0, 0),
        };
        crate::cache::Hints {
            limiter_state: self.limiter_slot.state_address(),
            limiter_buckets: self.limiter_slot.buckets_address(),
            usage: Arc::as_ptr(&self.usage).addr(),
            whoami,
        }
    }

    /// Asks for the lines of the fields every request reads, those laid out first (see the
    /// type's documentation), up to the end of the `whoami` answer's handle.
    pub fn prefetch_hot(&self) {
        let hot = std::mem::offset_of!(Self, whoami) + std::mem::size_of_val(&self.whoami);
        let start = std::ptr::from_ref(self).cast::<u8>();
        keyward_core::hint::prefetch_span(start, hot);
    }

    /// Asks for the memory that admitting and counting a request read next: the rest of this
    /// principal's fields, the limiter's state and buckets and the usage counts, which a
    /// key's first request after a while finds out of the processor's caches. Fetched
    /// together, their waits overlap instead of adding up (see [`keyward_core::hint`]).
    pub fn prefetch_state(&self, now: UnixMillis) {
        // The first line is in already (taking the handle wrote its reference count).
        keyward_core::hint::prefetch(&self.standing);
        self.limiter_slot.prefetch();
        keyward_core::hint::prefetch(&*self.usage);
        // Last, as where the request counts depends on the limit, on the line asked for first.
        self.limiter_slot.prefetch_buckets(self.standing.limit, now);
    }

    /// Asks for the key's own part of its `whoami` answer, if rendered already.
    pub fn prefetch_whoami(&self) {
        if let Some(Some(template)) = self.whoami.get() {
            template.prefetch();
        }
    }

    /// What admitting a request needs of the key.
    pub fn standing(&self) -> &Standing {
        &self.standing
    }

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
    /// hash (from the cache, or storage), then revocation, expiry and the plan. Storage
    /// failures are errors, not refusals.
    pub async fn authenticate(
        &self,
        presented: &str,
    ) -> Result<Result<Arc<Principal>, AuthFailure>, ServiceError> {
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
    ) -> Result<Result<Arc<Principal>, Refusal>, ServiceError> {
        if let Err(reason) = check_format(&self.config().key_prefix, presented) {
            return Ok(Err(AuthFailure::Malformed(reason).into()));
        }
        // The record is found by the hash of the secret; no comparison of secrets happens
        // anywhere, so nothing can leak through timing.
        self.authenticate_digest_detailed(&KeyHash::digest(presented))
            .await
    }

    /// Authentication of a well-formed key by its SHA-256: from the cache, or from storage.
    pub async fn authenticate_digest(
        &self,
        digest: &[u8; 32],
    ) -> Result<Result<Arc<Principal>, AuthFailure>, ServiceError> {
        Ok(self
            .authenticate_digest_detailed(digest)
            .await?
            .map_err(|refusal| refusal.failure))
    }

    async fn authenticate_digest_detailed(
        &self,
        digest: &[u8; 32],
    ) -> Result<Result<Arc<Principal>, Refusal>, ServiceError> {
        let found = self
            .key_cache()
            .get_or_load(digest, || self.load_principal(digest))
            .await;
        self.judge(found, self.now())
    }

    /// Authentication of a well-formed key by its SHA-256 from the cache alone, when its entry
    /// is there and fresh: the path of almost every request, with nothing to wait for. `None`
    /// when storage must be asked ([`Service::authenticate_digest`]). With the answer come
    /// the entry's hints, for [`crate::cache::KeyCache::update_hints`].
    /// `now` is the request's time (the caller reads the clock once per request); `arrived`
    /// the monotonic reading the key cache judges its entry's age by (see
    /// [`crate::cache::KeyCache::get_fresh`]).
    pub fn authenticate_cached(
        &self,
        digest: &[u8; 32],
        now: UnixMillis,
        arrived: std::time::Instant,
    ) -> Option<(Judged, crate::cache::Hints)> {
        let (found, hints) = self.key_cache().get_fresh(digest, arrived)?;
        let judged = self
            .judge(found, now)
            .map(|judged| judged.map_err(|refusal| refusal.failure));
        Some((judged, hints))
    }

    /// The answer for a looked-up key at `now`: refused when unknown, revoked (or its agent
    /// deleted), expired or on a plan without API access.
    fn judge(
        &self,
        found: Result<Option<Arc<Principal>>, crate::cache::LookupError>,
        now: UnixMillis,
    ) -> Result<Result<Arc<Principal>, Refusal>, ServiceError> {
        let found =
            found.map_err(|e| ServiceError::Internal(anyhow::anyhow!("key lookup failed: {e}")))?;
        let Some(principal) = found else {
            return Ok(Err(AuthFailure::Invalid.into()));
        };
        let refuse = |failure| {
            Ok(Err(Refusal {
                failure,
                found: Some(principal.clone()),
            }))
        };
        let standing = principal.standing();
        if standing.agent_deleted {
            return refuse(AuthFailure::Revoked);
        }
        match standing.status(now) {
            KeyStatus::Revoked => return refuse(AuthFailure::Revoked),
            KeyStatus::Expired => return refuse(AuthFailure::Expired),
            KeyStatus::Active | KeyStatus::Expiring => {}
        }
        if !standing.api_access {
            return refuse(AuthFailure::PlanWithoutApiAccess);
        }
        Ok(Ok(principal))
    }

    /// Reads a key and everything requests need about it, by hash.
    async fn load_principal(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<Principal>, keyward_store::StoreError> {
        let mut conn = self.store().read().await?;
        let Some(found) = keys::find_for_auth(&mut conn, &KeyHash::from_digest(digest)).await?
        else {
            return Ok(None);
        };
        let plan = match self.config().plan(&found.plan) {
            Some(plan) => plan.clone(),
            None => {
                tracing::warn!(plan = %found.plan, org = %found.key.org, "organization is on a plan the configuration does not define; refusing its keys");
                Plan {
                    name: found.plan.clone(),
                    api_access: false,
                    rate_limit: keyward_core::RateLimit {
                        limit: 1,
                        window_seconds: 1,
                    },
                    max_keys: Some(0),
                }
            }
        };
        Ok(Some(Principal::new(
            found.key,
            found.agent_name,
            found.agent_capabilities,
            found.agent_deleted,
            found.org_name,
            found.org_slug,
            plan,
        )))
    }
}
