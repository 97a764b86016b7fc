//! First run: while nobody can sign in, `keyward serve` prints a one-time setup link with
//! which a person creates the first organization and becomes its owner.

use keyward_core::{OrgId, Role, UserId};
use keyward_store::orgs::Org;
use keyward_store::users::User;
use keyward_store::{audit, orgs, sessions, users};
use secrecy::SecretString;
use serde_json::json;

use super::orgs::{clean_email, slugify};
use super::sessions::{new_token, token_hash, Client, NewSession};
use super::{clean_name, Actor, Caller, Service, ServiceError};
use crate::password;

/// The plan a first-run organization starts on (when the configuration has it).
const SETUP_PLAN: &str = "pro";

/// What the person fills in on the setup page.
#[derive(Debug)]
pub struct FirstRun {
    pub organization: String,
    pub email: String,
    pub password: SecretString,
}

impl Service {
    /// A new one-time setup token, or `None` when someone can already sign in. Each process
    /// that starts on an empty store makes its own; the first one used closes them all.
    pub async fn issue_setup_token(&self) -> Result<Option<String>, ServiceError> {
        let mut tx = self.store().begin().await?;
        if users::any_exist(&mut tx).await? {
            return Ok(None);
        }
        let token = new_token();
        sessions::insert_setup_token(&mut tx, &token_hash(&token), self.now()).await?;
        keyward_store::commit(tx).await?;
        Ok(Some(token))
    }

    /// Whether anyone exists who could sign in.
    pub async fn is_set_up(&self) -> Result<bool, ServiceError> {
        let mut conn = self.store().read().await?;
        Ok(users::any_exist(&mut conn).await?)
    }

    /// Whether the setup page may be shown for this token: it is unused and nobody exists yet.
    pub async fn setup_open(&self, token: &str) -> Result<bool, ServiceError> {
        if token.is_empty() || token.len() > 128 {
            return Ok(false);
        }
        let mut conn = self.store().read().await?;
        Ok(!users::any_exist(&mut conn).await?
            && sessions::setup_token_unused(&mut conn, &token_hash(token)).await?)
    }

    /// Creates the first organization and its owner, uses up the token, and signs the owner in.
    pub async fn complete_setup(
        &self,
        token: &str,
        input: FirstRun,
        client: &Client,
    ) -> Result<NewSession, ServiceError> {
        let closed = || {
            ServiceError::Forbidden(
                "this setup link has been used, or keyward is already set up; sign in instead"
                    .into(),
            )
        };
        if !self.setup_open(token).await? {
            return Err(closed());
        }
        let name = clean_name("organization", &input.organization)?;
        let email = clean_email(&input.email)?;
        password::check_strength(&input.password)
            .map_err(|e| ServiceError::invalid("password", e.to_string()))?;
        let hash = password::hash(input.password)
            .await
            .map_err(|e| ServiceError::Internal(e.into()))?;
        let plan = if self.config().plan(SETUP_PLAN).is_some() {
            SETUP_PLAN.to_string()
        } else {
            self.config()
                .plans
                .values()
                .find(|p| p.api_access)
                .or_else(|| self.config().plans.values().next())
                .map(|p| p.name.clone())
                .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("no plan is configured")))?
        };
        let now = self.now();
        let mut tx = self.store().begin().await?;
        sessions::lock_setup(&mut tx, self.store().backend()).await?;
        if users::any_exist(&mut tx).await?
            || !sessions::use_setup_token(&mut tx, &token_hash(token), now).await?
        {
            return Err(closed());
        }
        let id = OrgId::generate();
        let mut slug = slugify(&name);
        // Organizations made at the command line may exist already; keep slugs unique.
        if slug.is_empty() || orgs::get_by_slug(&mut tx, &slug).await?.is_some() {
            let suffix = id.as_str()[4..10].to_lowercase();
            slug = format!("{}-{suffix}", if slug.is_empty() { "org" } else { &slug });
        }
        let org = Org {
            id,
            name,
            slug,
            plan,
            created_at: now,
        };
        orgs::insert(&mut tx, &org).await?;
        let user = User {
            id: UserId::generate(),
            email,
            name: String::new(),
            created_at: now,
        };
        users::insert(&mut tx, &user, Some(&hash)).await?;
        users::add_membership(&mut tx, &org.id, &user.id, Role::Owner, now).await?;
        let caller = Caller {
            org: org.id.clone(),
            team: None,
            actor: Actor::User {
                id: user.id.clone(),
                role: Role::Owner,
            },
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
        };
        for event in [
            caller.event(
                now,
                "org.created",
                ("organization", org.id.as_str()),
                json!({"name": org.name, "slug": org.slug, "plan": org.plan, "via": "setup"}),
            ),
            caller.event(
                now,
                "member.added",
                ("user", user.id.as_str()),
                json!({"email": user.email, "role": "owner"}),
            ),
        ] {
            audit::insert(&mut tx, &event).await?;
        }
        let opened = self
            .open_session(&mut tx, &user, &org, Role::Owner, client, now)
            .await?;
        keyward_store::commit(tx).await?;
        Ok(opened)
    }
}
