//! Key lifecycle: create, list, update, revoke, roll.

use keyward_core::{AgentId, ApiKey, KeyId, KeyStatus, RateLimit, TeamId, UnixMillis, UserId};
use keyward_store::agents::Agent;
use keyward_store::keys::KeyRecord;
use keyward_store::{agents, audit, keys, orgs, teams, users, Conn, Page, PageRequest};
use serde_json::json;

use super::{clean_name, Caller, Service, ServiceError};

/// Default grace period of a rolled key.
pub const DEFAULT_GRACE_SECONDS: u64 = 86_400;

/// Input for a new key.
#[derive(Clone, Debug, Default)]
pub struct NewKey {
    pub name: String,
    /// `None`: all teams (for a team-scoped caller: its own team).
    pub team: Option<TeamId>,
    /// `None`: the caller's own user, if it has one.
    pub owner: Option<UserId>,
    /// `None`: `production`.
    pub environment: Option<String>,
    pub expires_at: Option<UnixMillis>,
    pub rate_limit: Option<RateLimit>,
}

/// A key just made: the record and, this once, its secret.
#[derive(Debug)]
pub struct CreatedKey {
    pub record: KeyRecord,
    pub secret: ApiKey,
}

/// Changes to a key; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct KeyChanges {
    pub name: Option<String>,
    /// `Some(None)` removes the override.
    pub rate_limit: Option<Option<RateLimit>>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<UnixMillis>>,
}

#[derive(Debug)]
pub struct RolledKey {
    pub new_key: CreatedKey,
    pub old_key: KeyRecord,
}

pub(crate) fn clean_environment(env: Option<&str>) -> Result<String, ServiceError> {
    let env = env.map(str::trim).unwrap_or("production");
    if env.is_empty() || env.chars().count() > 64 || env.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "environment",
            "environment must be 1 to 64 characters, e.g. production, staging or development",
        ));
    }
    Ok(env.to_string())
}

impl Service {
    /// Checks a rate-limit override against the organization's plan.
    async fn check_rate_limit(
        &self,
        conn: &mut Conn,
        caller: &Caller,
        limit: &RateLimit,
    ) -> Result<(), ServiceError> {
        if caller.may_exceed_plan_rate() {
            return Ok(());
        }
        let org = orgs::get(conn, &caller.org)
            .await?
            .ok_or(ServiceError::NotFound("organization"))?;
        let plan = self.config().plan(&org.plan).map(|p| p.rate_limit);
        match plan {
            Some(plan) if limit.is_at_most(&plan) => Ok(()),
            Some(plan) => Err(ServiceError::invalid(
                "rate_limit",
                format!(
                    "the rate limit may not exceed the plan's {} requests per {} seconds",
                    plan.limit, plan.window_seconds
                ),
            )),
            None => Err(ServiceError::invalid(
                "rate_limit",
                "the organization's plan is not configured",
            )),
        }
    }

    /// Refuses when the organization's plan allows no more keys.
    async fn check_key_limit(
        &self,
        conn: &mut Conn,
        caller: &Caller,
        now: UnixMillis,
    ) -> Result<(), ServiceError> {
        // Locked so that two creations cannot both pass the count.
        orgs::lock(conn, &caller.org).await?;
        let org = orgs::get(conn, &caller.org)
            .await?
            .ok_or(ServiceError::NotFound("organization"))?;
        let Some(max) = self.config().plan(&org.plan).and_then(|p| p.max_keys) else {
            return Ok(());
        };
        let count = keys::count_counted(conn, &caller.org, now).await?;
        if count as u64 >= max {
            return Err(ServiceError::KeyLimitReached(format!(
                "the {} plan allows at most {max} active keys; revoke a key or move to a larger plan",
                org.plan
            )));
        }
        Ok(())
    }

    /// An agent the caller may manage keys of: in its organization, not deleted, and no more
    /// capable than the caller.
    pub(crate) async fn manageable_agent(
        &self,
        conn: &mut Conn,
        caller: &Caller,
        id: &AgentId,
    ) -> Result<Agent, ServiceError> {
        let agent = agents::get_for_update(conn, &caller.org, id)
            .await?
            .ok_or(ServiceError::NotFound("agent"))?;
        caller.require_within(&agent.capabilities)?;
        Ok(agent)
    }

    /// Validates, inserts and audits a new key inside `conn`'s transaction.
    pub(crate) async fn insert_key(
        &self,
        conn: &mut Conn,
        caller: &Caller,
        agent: &Agent,
        input: NewKey,
        now: UnixMillis,
    ) -> Result<CreatedKey, ServiceError> {
        let name = clean_name("name", &input.name)?;
        let environment = clean_environment(input.environment.as_deref())?;
        let team = match (&caller.team, input.team) {
            (Some(own), None) => Some(own.clone()),
            (Some(own), Some(asked)) if &asked != own => {
                return Err(ServiceError::invalid("team_id", "no such team"));
            }
            (_, asked) => asked,
        };
        if let Some(team) = &team {
            teams::get(conn, &caller.org, team)
                .await?
                .ok_or_else(|| ServiceError::invalid("team_id", "no such team"))?;
        }
        let owner = input.owner.or_else(|| caller.default_owner());
        if let Some(owner) = &owner {
            users::member(conn, &caller.org, owner)
                .await?
                .ok_or_else(|| {
                    ServiceError::invalid(
                        "owner_id",
                        "the owner must be a member of the organization",
                    )
                })?;
        }
        if let Some(at) = input.expires_at {
            if at <= now {
                return Err(ServiceError::invalid(
                    "expires_at",
                    "the expiry must be in the future",
                ));
            }
        }
        if let Some(limit) = &input.rate_limit {
            self.check_rate_limit(conn, caller, limit).await?;
        }
        self.check_key_limit(conn, caller, now).await?;

        let secret = ApiKey::generate(&self.config().key_prefix);
        let record = KeyRecord {
            id: KeyId::generate(),
            org: caller.org.clone(),
            agent: agent.id.clone(),
            name,
            hint: secret.hint(),
            hash: secret.hash(),
            team,
            owner,
            environment,
            created_at: now,
            created_by: caller.actor_ref(),
            expires_at: input.expires_at,
            revoked_at: None,
            revoked_by: None,
            revoked_reason: None,
            last_used_at: None,
            rate_limit: input.rate_limit,
            rolled_from: None,
            rolled_to: None,
        };
        keys::insert(conn, &record).await?;
        let event = caller.event(
            now,
            "key.created",
            ("key", record.id.as_str()),
            json!({
                "agent_id": record.agent, "name": record.name, "hint": record.hint, "team_id": record.team,
                "environment": record.environment, "expires_at": record.expires_at,
            }),
        );
        audit::insert(conn, &event).await?;
        Ok(CreatedKey { record, secret })
    }

    /// Creates a key for an agent.
    pub async fn create_key(
        &self,
        caller: &Caller,
        agent: &AgentId,
        input: NewKey,
    ) -> Result<CreatedKey, ServiceError> {
        caller.require("keys:write")?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let agent = self.manageable_agent(&mut tx, caller, agent).await?;
        let created = self.insert_key(&mut tx, caller, &agent, input, now).await?;
        keyward_store::commit(tx).await?;
        Ok(created)
    }

    /// Keys the caller can see, optionally of one agent, newest first.
    pub async fn list_keys(
        &self,
        caller: &Caller,
        agent: Option<&AgentId>,
        page: &PageRequest,
    ) -> Result<Page<KeyRecord>, ServiceError> {
        caller.require("keys:read")?;
        let mut conn = self.store().read().await?;
        if let Some(agent) = agent {
            agents::get(&mut conn, &caller.org, agent)
                .await?
                .ok_or(ServiceError::NotFound("agent"))?;
        }
        Ok(keys::list(&mut conn, &caller.scope(), agent, page).await?)
    }

    pub async fn get_key(&self, caller: &Caller, id: &KeyId) -> Result<KeyRecord, ServiceError> {
        caller.require("keys:read")?;
        let mut conn = self.store().read().await?;
        keys::get(&mut conn, &caller.scope(), id)
            .await?
            .ok_or(ServiceError::NotFound("key"))
    }

    /// Loads a key the caller may change: visible in its scope, of an agent within its power.
    async fn manageable_key(
        &self,
        conn: &mut Conn,
        caller: &Caller,
        id: &KeyId,
    ) -> Result<KeyRecord, ServiceError> {
        let key = keys::get_for_update(conn, &caller.scope(), id)
            .await?
            .ok_or(ServiceError::NotFound("key"))?;
        let agent = agents::get_including_deleted(conn, &caller.org, &key.agent)
            .await?
            .ok_or(ServiceError::NotFound("agent"))?;
        caller.require_within(&agent.capabilities)?;
        Ok(key)
    }

    pub async fn update_key(
        &self,
        caller: &Caller,
        id: &KeyId,
        changes: KeyChanges,
    ) -> Result<KeyRecord, ServiceError> {
        caller.require("keys:write")?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut key = self.manageable_key(&mut tx, caller, id).await?;
        let before = (key.name.clone(), key.rate_limit, key.expires_at);
        if let Some(name) = changes.name {
            key.name = clean_name("name", &name)?;
        }
        if let Some(limit) = changes.rate_limit {
            if let Some(limit) = &limit {
                self.check_rate_limit(&mut tx, caller, limit).await?;
            }
            key.rate_limit = limit;
        }
        if let Some(expires_at) = changes.expires_at {
            let status =
                KeyStatus::of(key.revoked_at, key.expires_at, key.rolled_to.is_some(), now);
            if !status.is_usable() || key.rolled_to.is_some() {
                return Err(ServiceError::Conflict(format!(
                    "the expiry of a {} key cannot change",
                    if key.rolled_to.is_some() {
                        "rolled"
                    } else {
                        status.as_str()
                    }
                )));
            }
            if expires_at.is_some_and(|at| at <= now) {
                return Err(ServiceError::invalid(
                    "expires_at",
                    "the expiry must be in the future; revoke the key to stop it now",
                ));
            }
            key.expires_at = expires_at;
        }
        if (key.name.clone(), key.rate_limit, key.expires_at) != before {
            keys::update(&mut tx, &caller.scope(), &key).await?;
            let event = caller.event(
                now,
                "key.updated",
                ("key", key.id.as_str()),
                json!({
                    "before": {"name": before.0, "rate_limit": before.1, "expires_at": before.2},
                    "after": {"name": key.name, "rate_limit": key.rate_limit, "expires_at": key.expires_at},
                }),
            );
            audit::insert(&mut tx, &event).await?;
        }
        keys::bump_auth_version(&mut tx).await?;
        keyward_store::commit(tx).await?;
        self.auth_changed();
        Ok(key)
    }

    /// Revokes a key at once and for good. Revoking a revoked key changes nothing.
    pub async fn revoke_key(
        &self,
        caller: &Caller,
        id: &KeyId,
        reason: Option<&str>,
    ) -> Result<KeyRecord, ServiceError> {
        caller.require("keys:write")?;
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if reason.is_some_and(|r| r.chars().count() > 500) {
            return Err(ServiceError::invalid(
                "reason",
                "the reason must be at most 500 characters",
            ));
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let key = self.manageable_key(&mut tx, caller, id).await?;
        if keys::revoke(
            &mut tx,
            &caller.scope(),
            id,
            now,
            &caller.actor_ref(),
            reason,
        )
        .await?
        {
            let event = caller.event(
                now,
                "key.revoked",
                ("key", id.as_str()),
                json!({"reason": reason, "hint": key.hint}),
            );
            audit::insert(&mut tx, &event).await?;
        }
        let key = keys::get(&mut tx, &caller.scope(), id)
            .await?
            .ok_or(ServiceError::NotFound("key"))?;
        keys::bump_auth_version(&mut tx).await?;
        keyward_store::commit(tx).await?;
        self.auth_changed();
        Ok(key)
    }

    /// Replaces a key with a new one; the old one keeps working for `grace_seconds`.
    pub async fn roll_key(
        &self,
        caller: &Caller,
        id: &KeyId,
        grace_seconds: Option<u64>,
    ) -> Result<RolledKey, ServiceError> {
        caller.require("keys:write")?;
        let grace = grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
        if grace > 30 * 86_400 {
            return Err(ServiceError::invalid(
                "grace_seconds",
                "the grace period may be at most 30 days (2592000 seconds)",
            ));
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let old = self.manageable_key(&mut tx, caller, id).await?;
        if old.rolled_to.is_some() {
            return Err(ServiceError::Conflict(
                "this key was already rolled; roll its replacement instead".into(),
            ));
        }
        let status = KeyStatus::of(old.revoked_at, old.expires_at, false, now);
        if !status.is_usable() {
            return Err(ServiceError::Conflict(format!(
                "a {} key cannot be rolled",
                status.as_str()
            )));
        }
        let agent = agents::get(&mut tx, &caller.org, &old.agent)
            .await?
            .ok_or(ServiceError::NotFound("agent"))?;
        let secret = ApiKey::generate(&self.config().key_prefix);
        let new = KeyRecord {
            id: KeyId::generate(),
            hint: secret.hint(),
            hash: secret.hash(),
            created_at: now,
            created_by: caller.actor_ref(),
            revoked_at: None,
            revoked_by: None,
            revoked_reason: None,
            last_used_at: None,
            rolled_from: Some(old.id.clone()),
            rolled_to: None,
            ..old.clone()
        };
        keys::insert(&mut tx, &new).await?;
        let grace_end = now.saturating_add((grace as i64).saturating_mul(1000));
        let old_expiry = old.expires_at.map_or(grace_end, |own| own.min(grace_end));
        if !keys::mark_rolled(&mut tx, &caller.scope(), &old.id, &new.id, old_expiry, now).await? {
            return Err(ServiceError::Conflict(
                "this key was just rolled or revoked by another request".into(),
            ));
        }
        let event = caller.event(
            now,
            "key.rolled",
            ("key", old.id.as_str()),
            json!({"new_key_id": new.id, "agent_id": agent.id, "grace_seconds": grace, "old_key_expires_at": old_expiry}),
        );
        audit::insert(&mut tx, &event).await?;
        let old = keys::get(&mut tx, &caller.scope(), id)
            .await?
            .ok_or(ServiceError::NotFound("key"))?;
        keys::bump_auth_version(&mut tx).await?;
        keyward_store::commit(tx).await?;
        self.auth_changed();
        Ok(RolledKey {
            new_key: CreatedKey {
                record: new,
                secret,
            },
            old_key: old,
        })
    }
}
