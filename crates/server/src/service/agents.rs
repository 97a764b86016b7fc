//! Agents: named capability sets shared by their keys.

use keyward_core::capability::CapabilityError;
use keyward_core::{AgentId, CapabilitySet};
use keyward_store::agents::{Agent, AgentSummary};
use keyward_store::{agents, audit, keys, Conn, Page, PageRequest};
use serde_json::json;

use super::{clean_name, Caller, CreatedKey, NewKey, Service, ServiceError};

/// Name of the key every new agent starts with.
pub const FIRST_KEY_NAME: &str = "Production";

#[derive(Clone, Debug, Default)]
pub struct NewAgent {
    pub name: String,
    pub description: Option<String>,
    pub capabilities: Vec<String>,
}

#[derive(Debug)]
pub struct CreatedAgent {
    pub agent: Agent,
    pub first_key: CreatedKey,
}

/// Changes to an agent; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct AgentChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub capabilities: Option<Vec<String>>,
}

fn clean_description(d: Option<&str>) -> Result<String, ServiceError> {
    let d = d.map(str::trim).unwrap_or("");
    if d.chars().count() > 500 {
        return Err(ServiceError::invalid(
            "description",
            "description must be at most 500 characters",
        ));
    }
    Ok(d.to_string())
}

impl Service {
    fn parse_capabilities(&self, names: &[String]) -> Result<CapabilitySet, ServiceError> {
        self.config()
            .capabilities
            .parse_set(names.iter().map(String::as_str))
            .map_err(|e| {
                let known = match e {
                    CapabilityError::Unknown(_) => format!(
                        "; this deployment knows {}",
                        self.config().capabilities.all().names().join(", ")
                    ),
                    CapabilityError::BadName(_) | CapabilityError::Duplicate(_) => String::new(),
                };
                ServiceError::invalid("capabilities", format!("{e}{known}"))
            })
    }

    /// A team-scoped caller may change an agent only if none of its keys lies outside the team.
    async fn require_agent_inside_team(
        &self,
        conn: &mut Conn,
        caller: &Caller,
        agent: &AgentId,
    ) -> Result<(), ServiceError> {
        if let Some(team) = &caller.team {
            if keys::count_outside_team(conn, &caller.org, agent, team).await? > 0 {
                return Err(ServiceError::Forbidden(
                    "this agent has keys outside your team; only an organization-wide key can change it".into(),
                ));
            }
        }
        Ok(())
    }

    /// Creates an agent and its first key, `Production`.
    pub async fn create_agent(
        &self,
        caller: &Caller,
        input: NewAgent,
    ) -> Result<CreatedAgent, ServiceError> {
        caller.require("keys:write")?;
        let name = clean_name("name", &input.name)?;
        let description = clean_description(input.description.as_deref())?;
        let capabilities = self.parse_capabilities(&input.capabilities)?;
        caller.require_within(&capabilities)?;
        let now = self.now();
        let agent = Agent {
            id: AgentId::generate(),
            org: caller.org.clone(),
            name,
            description,
            capabilities,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        let mut tx = self.store().begin().await?;
        agents::insert(&mut tx, &agent).await?;
        let event = caller.event(
            now,
            "agent.created",
            ("agent", agent.id.as_str()),
            json!({"name": agent.name, "capabilities": agent.capabilities}),
        );
        audit::insert(&mut tx, &event).await?;
        let first = NewKey {
            name: FIRST_KEY_NAME.into(),
            ..NewKey::default()
        };
        let first_key = self.insert_key(&mut tx, caller, &agent, first, now).await?;
        keyward_store::commit(tx).await?;
        Ok(CreatedAgent { agent, first_key })
    }

    pub async fn list_agents(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<AgentSummary>, ServiceError> {
        caller.require("keys:read")?;
        let mut conn = self.store().read().await?;
        Ok(agents::list(
            &mut conn,
            &caller.org,
            caller.team.as_ref(),
            page,
            self.now(),
        )
        .await?)
    }

    pub async fn get_agent(
        &self,
        caller: &Caller,
        id: &AgentId,
    ) -> Result<AgentSummary, ServiceError> {
        caller.require("keys:read")?;
        let mut conn = self.store().read().await?;
        let agent = agents::get(&mut conn, &caller.org, id)
            .await?
            .ok_or(ServiceError::NotFound("agent"))?;
        let active_keys =
            keys::count_active(&mut conn, &caller.scope(), Some(id), self.now()).await?;
        Ok(AgentSummary { agent, active_keys })
    }

    /// Finds an agent of the caller's organization by id or name.
    pub async fn find_agent(
        &self,
        caller: &Caller,
        id_or_name: &str,
    ) -> Result<Agent, ServiceError> {
        let mut conn = self.store().read().await?;
        let found = match AgentId::parse(id_or_name) {
            Ok(id) => agents::get(&mut conn, &caller.org, &id).await?,
            Err(_) => agents::get_by_name(&mut conn, &caller.org, id_or_name).await?,
        };
        found.ok_or(ServiceError::NotFound("agent"))
    }

    /// Renames an agent or changes its capabilities; a capability change applies to every
    /// key of the agent at once.
    pub async fn update_agent(
        &self,
        caller: &Caller,
        id: &AgentId,
        changes: AgentChanges,
    ) -> Result<AgentSummary, ServiceError> {
        caller.require("keys:write")?;
        let new_caps = changes
            .capabilities
            .as_deref()
            .map(|c| self.parse_capabilities(c))
            .transpose()?;
        if let Some(caps) = &new_caps {
            caller.require_within(caps)?;
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut agent = self.manageable_agent(&mut tx, caller, id).await?;
        self.require_agent_inside_team(&mut tx, caller, id).await?;
        let before = agent.clone();
        if let Some(name) = changes.name {
            agent.name = clean_name("name", &name)?;
        }
        if let Some(description) = changes.description {
            agent.description = clean_description(Some(&description))?;
        }
        if let Some(caps) = new_caps {
            agent.capabilities = caps;
        }
        if agent != before {
            agent.updated_at = now;
            agents::update(&mut tx, &caller.org, &agent).await?;
            let event = caller.event(
                now,
                "agent.updated",
                ("agent", agent.id.as_str()),
                json!({
                    "before": {"name": before.name, "description": before.description, "capabilities": before.capabilities},
                    "after": {"name": agent.name, "description": agent.description, "capabilities": agent.capabilities},
                }),
            );
            audit::insert(&mut tx, &event).await?;
        }
        let active_keys = keys::count_active(&mut tx, &caller.scope(), Some(id), now).await?;
        keys::bump_auth_version(&mut tx).await?;
        keyward_store::commit(tx).await?;
        self.auth_changed();
        Ok(AgentSummary { agent, active_keys })
    }

    /// Deletes an agent: every key of it is revoked, and the records stay for the audit trail.
    pub async fn delete_agent(&self, caller: &Caller, id: &AgentId) -> Result<(), ServiceError> {
        caller.require("keys:write")?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let agent = self.manageable_agent(&mut tx, caller, id).await?;
        self.require_agent_inside_team(&mut tx, caller, id).await?;
        let revoked = keys::revoke_all_of_agent(
            &mut tx,
            &caller.org,
            id,
            now,
            &caller.actor_ref(),
            "agent deleted",
        )
        .await?;
        agents::mark_deleted(&mut tx, &caller.org, id, now).await?;
        let event = caller.event(
            now,
            "agent.deleted",
            ("agent", id.as_str()),
            json!({"name": agent.name, "capabilities": agent.capabilities, "revoked_keys": revoked}),
        );
        audit::insert(&mut tx, &event).await?;
        keys::bump_auth_version(&mut tx).await?;
        keyward_store::commit(tx).await?;
        self.auth_changed();
        Ok(())
    }
}
