//! `keyward agent …` and `keyward key …`

use keyward_core::{KeyId, UserId};
use keyward_server::service::{KeyChanges, NewAgent, NewKey};
use keyward_server::views::{
    rfc3339, AgentCreatedView, AgentView, KeyView, KeyWithSecret, ListView, RolledView,
};
use keyward_server::{Caller, Service};
use keyward_store::agents::Agent;
use keyward_store::keys::KeyRecord;

use super::{CliError, CliResult, Output};
use crate::cli::{AgentCommand, KeyCommand};

const SHOWN_ONCE: &str =
    "This key is shown once and cannot be retrieved again: keyward stores only its hash.\n\
Store it in your secret manager now.";

fn secret_block(secret: &str) -> String {
    format!("\n    {secret}\n\n{SHOWN_ONCE}")
}

fn describe_key(k: &KeyRecord) -> String {
    format!(
        "{} {:?} ({}, {}{})",
        k.id,
        k.name,
        k.environment,
        k.team
            .as_ref()
            .map_or("all teams".to_string(), |t| format!("team {t}")),
        k.expires_at
            .map_or(String::new(), |at| format!(", expires {}", rfc3339(at))),
    )
}

pub async fn agent(service: &Service, command: AgentCommand, out: Output) -> CliResult {
    match command {
        AgentCommand::Create {
            org,
            name,
            description,
            capabilities,
        } => {
            let org = service.find_org(&org).await?;
            let caller = Caller::cli(org.id.clone());
            let created = service
                .create_agent(
                    &caller,
                    NewAgent {
                        name,
                        description,
                        capabilities,
                    },
                )
                .await?;
            let body = AgentCreatedView::new(&created, service.now());
            out.print(&body, || {
                format!(
                    "Created agent {} ({}) with {}.\nIts first key, {}:\n{}",
                    created.agent.name,
                    created.agent.id,
                    created.agent.capabilities.names().join(", "),
                    describe_key(&created.first_key.record),
                    secret_block(created.first_key.secret.expose())
                )
            })
        }
        AgentCommand::List { org, page } => {
            let req = super::page_request(&page)?;
            let org = service.find_org(&org).await?;
            let page = service.list_agents(&Caller::cli(org.id), &req).await?;
            let body = ListView::new(&page, req.limit, AgentView::new);
            out.print(&body, || {
                if page.items.is_empty() {
                    return "No agents yet. Create one with: keyward agent create --org ORG --name NAME --capabilities CAP,...".into();
                }
                let mut lines = vec![format!("{:<30} {:<24} {:>6}  {}", "ID", "NAME", "KEYS", "CAPABILITIES")];
                for s in &page.items {
                    lines.push(format!(
                        "{:<30} {:<24} {:>6}  {}",
                        s.agent.id,
                        s.agent.name,
                        s.active_keys,
                        s.agent.capabilities.names().join(",")
                    ));
                }
                lines.join("\n") + &super::next_page_hint(page.next.as_ref())
            })
        }
    }
}

/// Finds the agent a `--agent` flag names: with `--org`, in that organization; without it,
/// across all organizations, refusing a name that more than one organization uses.
async fn resolve_agent(
    service: &Service,
    agent: &str,
    org: Option<&str>,
) -> CliResult<(Caller, Agent)> {
    if let Some(org) = org {
        let org = service.find_org(org).await?;
        let caller = Caller::cli(org.id);
        let agent = service.find_agent(&caller, agent).await?;
        return Ok((caller, agent));
    }
    let mut conn = service.store().read().await?;
    let found = keyward_store::agents::locate(&mut conn, agent).await?;
    drop(conn);
    match found.as_slice() {
        [] => Err(CliError::failure(format!("no agent with id or name {agent:?}"))),
        [(org, _)] => {
            let caller = Caller::cli(org.clone());
            let agent = service.find_agent(&caller, agent).await?;
            Ok((caller, agent))
        }
        _ => Err(CliError::usage(format!(
            "the agent name {agent:?} is used in {} organizations; add --org ORG or give the agent's id",
            found.len()
        ))),
    }
}

/// The operator's caller for the organization a key belongs to.
async fn caller_for_key(service: &Service, key_id: &str) -> CliResult<(Caller, KeyId)> {
    let id = KeyId::parse(key_id).map_err(|e| CliError::usage(e.to_string()))?;
    let mut conn = service.store().read().await?;
    let org = keyward_store::keys::locate(&mut conn, &id).await?;
    let org = org.ok_or_else(|| CliError::failure(format!("no key with id {key_id}")))?;
    Ok((Caller::cli(org), id))
}

pub async fn key(service: &Service, command: KeyCommand, out: Output) -> CliResult {
    let now = service.now();
    match command {
        KeyCommand::Create {
            agent,
            org,
            name,
            team,
            owner,
            environment,
            expires_in,
            rate_limit,
        } => {
            let (caller, agent) = resolve_agent(service, &agent, org.as_deref()).await?;
            let team = match team {
                Some(t) => Some(service.find_team(&caller, &t).await?.id),
                None => None,
            };
            let owner: Option<UserId> = match owner {
                Some(email) => Some(service.find_member_by_email(&caller, &email).await?.user.id),
                None => None,
            };
            let input = NewKey {
                name,
                team,
                owner,
                environment,
                expires_at: expires_in.map(|d| now + d.seconds() as i64 * 1000),
                rate_limit: rate_limit.and_then(|r| r.0),
            };
            let created = service.create_key(&caller, &agent.id, input).await?;
            out.print(&KeyWithSecret::new(&created, now), || {
                format!(
                    "Created key {} for agent {}:\n{}",
                    describe_key(&created.record),
                    agent.name,
                    secret_block(created.secret.expose())
                )
            })
        }
        KeyCommand::List {
            org,
            agent,
            page: page_args,
        } => {
            let req = super::page_request(&page_args)?;
            let org = service.find_org(&org).await?;
            let caller = Caller::cli(org.id);
            let agent = match agent {
                Some(a) => Some(service.find_agent(&caller, &a).await?.id),
                None => None,
            };
            let page = service.list_keys(&caller, agent.as_ref(), &req).await?;
            let body = ListView::new(&page, req.limit, |k| KeyView::new(k, now));
            out.print(&body, || {
                if page.items.is_empty() {
                    return "No keys yet. Create one with: keyward key create --org ORG --agent AGENT --name NAME".into();
                }
                let mut lines = vec![format!("{:<30} {:<20} {:<24} {:<9} {:<12} {}", "ID", "HINT", "NAME", "STATUS", "ENVIRONMENT", "AGENT")];
                for k in &body.data {
                    lines.push(format!(
                        "{:<30} {:<20} {:<24} {:<9} {:<12} {}",
                        k.id,
                        k.hint,
                        k.name,
                        k.status.as_str(),
                        k.environment,
                        k.agent_id
                    ));
                }
                lines.join("\n")
            })
        }
        KeyCommand::Update {
            key_id,
            name,
            rate_limit,
            expires_in,
        } => {
            let (caller, id) = caller_for_key(service, &key_id).await?;
            if name.is_none() && rate_limit.is_none() && expires_in.is_none() {
                return Err(CliError::usage(
                    "nothing to change: give --name, --rate-limit or --expires-in",
                ));
            }
            let changes = KeyChanges {
                name,
                rate_limit: rate_limit.map(|r| r.0),
                expires_at: expires_in.map(|d| Some(now + d.seconds() as i64 * 1000)),
            };
            let key = service.update_key(&caller, &id, changes).await?;
            out.print(&KeyView::new(&key, now), || {
                format!("Updated key {}.", describe_key(&key))
            })
        }
        KeyCommand::Revoke { key_id, reason } => {
            let (caller, id) = caller_for_key(service, &key_id).await?;
            let key = service.revoke_key(&caller, &id, reason.as_deref()).await?;
            out.print(&KeyView::new(&key, now), || {
                format!(
                    "Revoked key {} ({}). Requests with it are refused from now on.",
                    key.id, key.hint
                )
            })
        }
        KeyCommand::Roll { key_id, grace } => {
            let (caller, id) = caller_for_key(service, &key_id).await?;
            let rolled = service
                .roll_key(&caller, &id, grace.map(|g| g.seconds()))
                .await?;
            out.print(&RolledView::new(&rolled, now), || {
                format!(
                    "Rolled key {} into {}. The old key keeps working until {}.\nThe new key:\n{}",
                    rolled.old_key.id,
                    rolled.new_key.record.id,
                    rolled.old_key.expires_at.map_or("-".into(), rfc3339),
                    secret_block(rolled.new_key.secret.expose())
                )
            })
        }
    }
}
