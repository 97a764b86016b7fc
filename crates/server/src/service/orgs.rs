//! Organizations, people and teams.

use keyward_core::{OrgId, Role, TeamId, UserId};
use keyward_store::orgs::Org;
use keyward_store::teams::Team;
use keyward_store::users::{Member, User};
use keyward_store::{audit, keys, orgs, teams, users};
use secrecy::SecretString;
use serde_json::json;

use super::{clean_name, Caller, Service, ServiceError};
use crate::password;

/// Input for a new organization.
#[derive(Clone, Debug)]
pub struct NewOrg {
    pub name: String,
    pub slug: Option<String>,
    pub plan: String,
}

/// Derives a URL-safe slug from a name: lowercase letters, digits and single hyphens.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').chars().take(48).collect()
}

fn check_slug(slug: &str) -> Result<(), ServiceError> {
    let ok = (1..=48).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "slug",
            format!(
                "{slug:?} is not a valid slug: use 1 to 48 lowercase letters, digits and hyphens"
            ),
        ))
    }
}

/// Normalizes and checks an email address (lowercase, one `@`, something on each side).
pub fn clean_email(email: &str) -> Result<String, ServiceError> {
    let email = email.trim().to_lowercase();
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.contains('@')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(email)
    } else {
        Err(ServiceError::invalid(
            "email",
            format!("{email:?} is not an email address"),
        ))
    }
}

impl Service {
    fn check_plan(&self, plan: &str) -> Result<(), ServiceError> {
        if self.config().plan(plan).is_some() {
            return Ok(());
        }
        let known: Vec<&str> = self.config().plans.keys().map(String::as_str).collect();
        Err(ServiceError::invalid(
            "plan",
            format!("unknown plan {plan:?}; the plans are {}", known.join(", ")),
        ))
    }

    /// Creates an organization (operators only).
    pub async fn create_org(&self, input: NewOrg) -> Result<Org, ServiceError> {
        let name = clean_name("name", &input.name)?;
        let slug = match input.slug {
            Some(s) => s.trim().to_string(),
            None => match slugify(&name) {
                derived if derived.is_empty() => {
                    format!("org-{}", &OrgId::generate().as_str()[4..12]).to_lowercase()
                }
                derived => derived,
            },
        };
        check_slug(&slug)?;
        self.check_plan(&input.plan)?;
        let now = self.now();
        let org = Org {
            id: OrgId::generate(),
            name,
            slug,
            plan: input.plan,
            created_at: now,
        };
        let caller = Caller::cli(org.id.clone());
        let mut tx = self.store().begin().await?;
        orgs::insert(&mut tx, &org).await?;
        let event = caller.event(
            now,
            "org.created",
            ("organization", org.id.as_str()),
            json!({"name": org.name, "slug": org.slug, "plan": org.plan}),
        );
        audit::insert(&mut tx, &event).await?;
        keyward_store::commit(tx).await?;
        Ok(org)
    }

    pub async fn list_orgs(&self) -> Result<Vec<Org>, ServiceError> {
        let mut conn = self.store().read().await?;
        Ok(orgs::list_all(&mut conn).await?)
    }

    /// Finds an organization by id or slug.
    pub async fn find_org(&self, id_or_slug: &str) -> Result<Org, ServiceError> {
        let mut conn = self.store().read().await?;
        let found = match OrgId::parse(id_or_slug) {
            Ok(id) => orgs::get(&mut conn, &id).await?,
            Err(_) => orgs::get_by_slug(&mut conn, id_or_slug).await?,
        };
        found.ok_or(ServiceError::NotFound("organization"))
    }

    pub async fn get_org(&self, caller: &Caller) -> Result<Org, ServiceError> {
        let mut conn = self.store().read().await?;
        orgs::get(&mut conn, &caller.org)
            .await?
            .ok_or(ServiceError::NotFound("organization"))
    }

    /// Moves an organization to another plan.
    pub async fn change_plan(&self, caller: &Caller, plan: &str) -> Result<Org, ServiceError> {
        if !matches!(caller.actor, super::Actor::Cli) {
            return Err(ServiceError::Forbidden(
                "only an operator can change an organization's plan".into(),
            ));
        }
        self.check_plan(plan)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut org = orgs::get(&mut tx, &caller.org)
            .await?
            .ok_or(ServiceError::NotFound("organization"))?;
        if org.plan != plan {
            orgs::set_plan(&mut tx, &org.id, plan).await?;
            let event = caller.event(
                now,
                "org.plan_changed",
                ("organization", org.id.as_str()),
                json!({"before": org.plan, "after": plan}),
            );
            audit::insert(&mut tx, &event).await?;
            org.plan = plan.to_string();
        }
        keys::bump_auth_version(&mut tx).await?;
        keyward_store::commit(tx).await?;
        self.auth_changed();
        Ok(org)
    }

    /// Adds a person to an organization, creating the user if the email is new. A password
    /// is required for a new user.
    pub async fn create_user(
        &self,
        caller: &Caller,
        email: &str,
        role: Role,
        password: Option<SecretString>,
    ) -> Result<Member, ServiceError> {
        caller.require("keys:write")?;
        let email = clean_email(email)?;
        let hash = match password {
            Some(p) => {
                password::check_strength(&p)
                    .map_err(|e| ServiceError::invalid("password", e.to_string()))?;
                Some(
                    password::hash(p)
                        .await
                        .map_err(|e| ServiceError::Internal(e.into()))?,
                )
            }
            None => None,
        };
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let user = match users::get_by_email(&mut tx, &email).await? {
            Some(existing) => existing,
            None => {
                let user = User {
                    id: UserId::generate(),
                    email: email.clone(),
                    name: String::new(),
                    created_at: now,
                };
                users::insert(&mut tx, &user, hash.as_deref()).await?;
                user
            }
        };
        users::add_membership(&mut tx, &caller.org, &user.id, role, now).await?;
        let event = caller.event(
            now,
            "member.added",
            ("user", user.id.as_str()),
            json!({"email": user.email, "role": role.as_str()}),
        );
        audit::insert(&mut tx, &event).await?;
        keyward_store::commit(tx).await?;
        Ok(Member {
            user,
            org: caller.org.clone(),
            role,
        })
    }

    /// Sets a user's password (operators, or the user themself through the dashboard).
    pub async fn set_password(
        &self,
        email: &str,
        password: SecretString,
    ) -> Result<User, ServiceError> {
        let email = clean_email(email)?;
        password::check_strength(&password)
            .map_err(|e| ServiceError::invalid("password", e.to_string()))?;
        let hash = password::hash(password)
            .await
            .map_err(|e| ServiceError::Internal(e.into()))?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let user = users::get_by_email(&mut tx, &email)
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        users::set_password_hash(&mut tx, &user.id, &hash).await?;
        // The audit log is per organization: record the change in each of the user's.
        for membership in users::memberships_of(&mut tx, &user.id).await? {
            let caller = Caller::cli(membership.org.clone());
            let event = caller.event(
                now,
                "user.password_changed",
                ("user", user.id.as_str()),
                json!({}),
            );
            audit::insert(&mut tx, &event).await?;
        }
        keyward_store::commit(tx).await?;
        Ok(user)
    }

    /// Finds a member of the caller's organization by email.
    pub async fn find_member_by_email(
        &self,
        caller: &Caller,
        email: &str,
    ) -> Result<Member, ServiceError> {
        let email = clean_email(email)?;
        let mut conn = self.store().read().await?;
        users::member_by_email(&mut conn, &caller.org, &email)
            .await?
            .ok_or_else(|| {
                ServiceError::invalid(
                    "owner",
                    format!("{email} is not a member of this organization"),
                )
            })
    }

    pub async fn create_team(&self, caller: &Caller, name: &str) -> Result<Team, ServiceError> {
        caller.require("keys:write")?;
        if caller.team.is_some() {
            return Err(ServiceError::Forbidden(
                "a team-scoped key cannot create teams".into(),
            ));
        }
        let name = clean_name("name", name)?;
        let now = self.now();
        let team = Team {
            id: TeamId::generate(),
            org: caller.org.clone(),
            name,
            created_at: now,
        };
        let mut tx = self.store().begin().await?;
        teams::insert(&mut tx, &team).await?;
        let event = caller.event(
            now,
            "team.created",
            ("team", team.id.as_str()),
            json!({"name": team.name}),
        );
        audit::insert(&mut tx, &event).await?;
        keyward_store::commit(tx).await?;
        Ok(team)
    }

    /// Adds a member of the organization to one of its teams.
    pub async fn add_team_member(
        &self,
        caller: &Caller,
        team: &TeamId,
        user: &UserId,
    ) -> Result<(), ServiceError> {
        caller.require("keys:write")?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        teams::get(&mut tx, &caller.org, team)
            .await?
            .ok_or(ServiceError::NotFound("team"))?;
        users::member(&mut tx, &caller.org, user)
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        teams::add_member(&mut tx, &caller.org, team, user, now).await?;
        let event = caller.event(
            now,
            "team.member_added",
            ("team", team.as_str()),
            json!({"user_id": user}),
        );
        audit::insert(&mut tx, &event).await?;
        keyward_store::commit(tx).await?;
        Ok(())
    }

    /// Teams the caller can see: all of the organization's, or a team-scoped key's own.
    pub async fn list_teams(&self, caller: &Caller) -> Result<Vec<Team>, ServiceError> {
        caller.require("keys:read")?;
        let mut conn = self.store().read().await?;
        Ok(teams::list(&mut conn, &caller.org, caller.team.as_ref()).await?)
    }

    /// Finds a team of the caller's organization by id or name.
    pub async fn find_team(&self, caller: &Caller, id_or_name: &str) -> Result<Team, ServiceError> {
        let mut conn = self.store().read().await?;
        let found = match TeamId::parse(id_or_name) {
            Ok(id) => teams::get(&mut conn, &caller.org, &id).await?,
            Err(_) => teams::get_by_name(&mut conn, &caller.org, id_or_name).await?,
        };
        found.ok_or(ServiceError::NotFound("team"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_emails() {
        assert_eq!(slugify("Acme Corp, Inc."), "acme-corp-inc");
        assert_eq!(slugify("  --Hello--World  "), "hello-world");
        assert_eq!(clean_email(" Ada@Example.COM ").unwrap(), "ada@example.com");
        assert!(clean_email("nope").is_err());
        assert!(clean_email("a@b").is_err());
    }
}
