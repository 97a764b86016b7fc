//! The service layer: every change to keys, agents, teams, users and organizations goes
//! through here, whether it came from the HTTP API, the dashboard or the command line. It
//! enforces the rules that do not depend on the front door: validation, no escalation,
//! team scope, plan limits, and an audit event in the same transaction as each change.

mod agents;
mod audit;
mod auth;
mod content;
mod generation;
mod keys;
mod members;
pub(crate) mod orgs;
mod sessions;
mod setup;
mod usage;

use std::sync::Arc;

use keyward_core::{
    Capability, CapabilitySet, EventId, KeyId, OrgId, Role, TeamId, UnixMillis, UserId,
};
use keyward_store::audit::Event;
use keyward_store::keys::ActorRef;
use keyward_store::{Scope, Store, StoreError};

pub use agents::{AgentChanges, CreatedAgent, NewAgent, FIRST_KEY_NAME};
pub use audit::AuditQuery;
pub use auth::{AuthFailure, Principal, Refusal};
pub use content::{derive_excerpt, BlogInput, TermInput, WebsiteInput};
pub use generation::NewGeneration;
pub use keys::{CreatedKey, KeyChanges, NewKey, RolledKey};
pub use members::{sign_in_link_path, AddedMember, MemberListing, SIGN_IN_LINK_HOURS};
pub use orgs::NewOrg;
pub use sessions::{tokens_match, Client, NewSession, Session, SignInRefusal};
pub use setup::FirstRun;
pub use usage::{month_start, Account, UsageQuery, UsageSeries};

use crate::Config;

/// The application's service layer. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    store: Store,
    config: Arc<Config>,
    keys: crate::cache::KeyCache,
    /// Tells the other nodes (through [`crate::bus`]) about committed auth changes.
    announce: Option<Arc<tokio::sync::Notify>>,
}

impl Service {
    pub fn new(store: Store, config: Arc<Config>) -> Self {
        let keys = crate::cache::KeyCache::new(config.key_cache_capacity);
        Self {
            store,
            config,
            keys,
            announce: None,
        }
    }

    /// Signals `announce` after every committed change that affects authentication.
    pub fn announce_changes_to(&mut self, announce: Arc<tokio::sync::Notify>) {
        self.announce = Some(announce);
    }

    /// The cache of authenticated keys (shared by every clone of this service).
    pub fn key_cache(&self) -> &crate::cache::KeyCache {
        &self.keys
    }

    /// Called after a change that affects authentication has committed, so the very next
    /// request on this node sees it. Other nodes hear of it through Redis when configured,
    /// and through the database's change counter in any case.
    pub(crate) fn auth_changed(&self) {
        self.keys.invalidate_all();
        if let Some(announce) = &self.announce {
            announce.notify_one();
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn now(&self) -> UnixMillis {
        self.config.clock.now()
    }
}

/// Who is acting, and with what power.
#[derive(Clone, Debug)]
pub enum Actor {
    /// The operator at the command line: full power in any organization.
    Cli,
    /// A person signed in to the dashboard.
    User { id: UserId, role: Role },
    /// An API key, with its agent's capabilities.
    Key {
        id: KeyId,
        capabilities: CapabilitySet,
        owner: Option<UserId>,
    },
}

/// A request to the service layer: the actor, the tenant it acts in, and where it came from.
#[derive(Clone, Debug)]
pub struct Caller {
    pub org: OrgId,
    /// `Some` for a team-scoped key: it acts only inside this team.
    pub team: Option<TeamId>,
    pub actor: Actor,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Caller {
    /// A caller acting for the actor that queued background work (e.g. a generation job),
    /// inside its organization.
    pub fn on_behalf_of(org: OrgId, actor: &ActorRef) -> Self {
        let actor = match actor.kind.as_str() {
            "key" => Actor::Key {
                id: KeyId::from_stored(actor.id.clone()),
                capabilities: CapabilitySet::default(),
                owner: None,
            },
            "user" => Actor::User {
                id: UserId::from_stored(actor.id.clone()),
                role: Role::Member,
            },
            _ => Actor::Cli,
        };
        Self {
            org,
            team: None,
            actor,
            ip: None,
            user_agent: Some("keyward-worker".into()),
        }
    }

    pub fn cli(org: OrgId) -> Self {
        Self {
            org,
            team: None,
            actor: Actor::Cli,
            ip: None,
            user_agent: Some(format!("keyward-cli/{}", env!("CARGO_PKG_VERSION"))),
        }
    }

    /// The tenant boundary every query of this caller runs in.
    pub fn scope(&self) -> Scope {
        Scope {
            org: self.org.clone(),
            team: self.team.clone(),
        }
    }

    pub fn actor_ref(&self) -> ActorRef {
        match &self.actor {
            Actor::Cli => ActorRef {
                kind: "cli".into(),
                id: "cli".into(),
            },
            Actor::User { id, .. } => ActorRef {
                kind: "user".into(),
                id: id.to_string(),
            },
            Actor::Key { id, .. } => ActorRef {
                kind: "key".into(),
                id: id.to_string(),
            },
        }
    }

    /// Refuses unless the caller holds `capability`. People need a managing role for
    /// anything that writes; the command line may do anything.
    pub fn require(&self, capability: &str) -> Result<(), ServiceError> {
        let ok = match &self.actor {
            Actor::Cli => true,
            Actor::User { role, .. } => role.can_manage() || !is_write(capability),
            Actor::Key { capabilities, .. } => capabilities.grants(capability),
        };
        if ok {
            Ok(())
        } else {
            Err(ServiceError::InsufficientCapability(capability.to_string()))
        }
    }

    /// Refuses if `caps` holds anything the caller lacks: no key gains power by creating,
    /// widening or managing something more capable than itself.
    pub fn require_within(&self, caps: &CapabilitySet) -> Result<(), ServiceError> {
        match &self.actor {
            Actor::Key { capabilities, .. } => match caps.missing_from(capabilities) {
                Some(missing) => Err(ServiceError::InsufficientCapability(missing.to_string())),
                None => Ok(()),
            },
            Actor::Cli | Actor::User { .. } => Ok(()),
        }
    }

    /// Whether the caller may give a key a rate limit above its plan's (operators and people
    /// in the dashboard may; keys may not).
    fn may_exceed_plan_rate(&self) -> bool {
        !matches!(self.actor, Actor::Key { .. })
    }

    /// The user a key created by this caller belongs to when none is named.
    fn default_owner(&self) -> Option<UserId> {
        match &self.actor {
            Actor::Cli => None,
            Actor::User { id, .. } => Some(id.clone()),
            Actor::Key { owner, .. } => owner.clone(),
        }
    }

    /// An audit event by this caller.
    fn event(
        &self,
        at: UnixMillis,
        action: &str,
        target: (&str, &str),
        details: serde_json::Value,
    ) -> Event {
        Event {
            id: EventId::generate(),
            org: self.org.clone(),
            at,
            actor: self.actor_ref(),
            action: action.to_string(),
            target_type: target.0.to_string(),
            target_id: target.1.to_string(),
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            details,
        }
    }
}

fn is_write(capability: &str) -> bool {
    capability == Capability::CONTENT_WRITE || capability == Capability::KEYS_WRITE
}

/// What the service layer answers when it refuses or fails.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The thing does not exist, or lies outside the caller's organization or team.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    KeyLimitReached(String),
    #[error("this action needs the capability {0}")]
    InsufficientCapability(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ServiceError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => ServiceError::Conflict(message),
            other => ServiceError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// Checks a display name: trimmed, 1–100 characters, no control characters.
pub fn clean_name(field: &str, name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ServiceError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if name.chars().count() > 100 {
        return Err(ServiceError::invalid(
            field,
            format!("{field} must be at most 100 characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(name.to_string())
}
