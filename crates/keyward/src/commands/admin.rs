//! `keyward org|user|team …`

use std::io::{BufRead, IsTerminal};

use keyward_server::service::NewOrg;
use keyward_server::views::{ListView, MemberView, OrgView, TeamView};
use keyward_server::{Caller, Service};
use keyward_store::Page;
use secrecy::SecretString;
use serde_json::json;

use super::{CliError, CliResult, Output};
use crate::cli::{OrgCommand, TeamCommand, UserCommand};

pub async fn org(service: &Service, command: OrgCommand, out: Output) -> CliResult {
    match command {
        OrgCommand::Create { name, slug, plan } => {
            let org = service.create_org(NewOrg { name, slug, plan }).await?;
            out.print(&OrgView::new(&org), || {
                format!(
                    "Created organization {} ({}, slug {}) on the {} plan.",
                    org.name, org.id, org.slug, org.plan
                )
            })
        }
        OrgCommand::List(args) => {
            let req = super::page_request(&args)?;
            // Organizations are few: page them here, newest first, like every API list.
            let mut orgs = service.list_orgs().await?;
            orgs.sort_by(|a, b| (b.created_at, b.id.as_str()).cmp(&(a.created_at, a.id.as_str())));
            let mut items: Vec<_> = orgs
                .into_iter()
                .filter(|o| {
                    req.cursor
                        .as_ref()
                        .is_none_or(|c| (o.created_at, o.id.as_str()) < (c.at, c.id.as_str()))
                })
                .take(req.limit as usize + 1)
                .collect();
            let has_more = items.len() > req.limit as usize;
            items.truncate(req.limit as usize);
            let next = if has_more {
                items.last().map(|o| keyward_store::Cursor {
                    at: o.created_at,
                    id: o.id.to_string(),
                })
            } else {
                None
            };
            let page = Page { items, next };
            let body = ListView::new(&page, req.limit, OrgView::new);
            out.print(&body, || {
                if page.items.is_empty() {
                    return "No organizations yet. Create one with: keyward org create --name NAME"
                        .into();
                }
                let mut lines = vec![format!(
                    "{:<30} {:<24} {:<12} {}",
                    "ID", "SLUG", "PLAN", "NAME"
                )];
                for o in &page.items {
                    lines.push(format!(
                        "{:<30} {:<24} {:<12} {}",
                        o.id, o.slug, o.plan, o.name
                    ));
                }
                lines.join("\n") + &super::next_page_hint(page.next.as_ref())
            })
        }
        OrgCommand::Update { org, plan } => {
            let org = service.find_org(&org).await?;
            let org = service.change_plan(&Caller::cli(org.id), &plan).await?;
            out.print(&OrgView::new(&org), || {
                format!("{} is now on the {} plan.", org.name, org.plan)
            })
        }
    }
}

/// Reads a password: from a prompt (twice) on a terminal, else one line of stdin.
fn read_password(prompt: &str) -> CliResult<SecretString> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt)
            .map_err(|e| CliError::failure(format!("cannot read the password: {e}")))?;
        let again = rpassword::prompt_password("Repeat the password: ")
            .map_err(|e| CliError::failure(format!("cannot read the password: {e}")))?;
        if first != again {
            return Err(CliError::failure("the passwords do not match"));
        }
        Ok(SecretString::from(first))
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::failure(format!("cannot read the password from stdin: {e}")))?;
        Ok(SecretString::from(
            line.trim_end_matches(['\r', '\n']).to_string(),
        ))
    }
}

pub async fn user(service: &Service, command: UserCommand, out: Output) -> CliResult {
    match command {
        UserCommand::Create { org, email, role } => {
            let org = service.find_org(&org).await?;
            let caller = Caller::cli(org.id.clone());
            let password =
                read_password(&format!("Password for {email} (at least 10 characters): "))?;
            let member = service
                .create_user(&caller, &email, role, Some(password))
                .await?;
            out.print(&MemberView::new(&member), || {
                format!(
                    "Added {} ({}) to {} as {}.",
                    member.user.email, member.user.id, org.name, member.role
                )
            })
        }
        UserCommand::SetPassword { email } => {
            let password = read_password(&format!(
                "New password for {email} (at least 10 characters): "
            ))?;
            let user = service.set_password(&email, password).await?;
            let body = json!({"id": user.id, "email": user.email, "password_changed": true});
            out.print(&body, || format!("Changed the password of {}.", user.email))
        }
    }
}

pub async fn team(service: &Service, command: TeamCommand, out: Output) -> CliResult {
    match command {
        TeamCommand::Create { org, name } => {
            let org = service.find_org(&org).await?;
            let team = service
                .create_team(&Caller::cli(org.id.clone()), &name)
                .await?;
            out.print(&TeamView::new(&team), || {
                format!("Created team {} ({}) in {}.", team.name, team.id, org.name)
            })
        }
    }
}
