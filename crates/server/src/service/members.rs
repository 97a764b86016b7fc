//! Members of an organization: adding people with a one-time sign-in link, changing roles,
//! removing people, and taking them out of teams. Owners and admins manage; members read.

use keyward_core::{OrgId, Role, TeamId, UserId};
use keyward_store::orgs::Org;
use keyward_store::users::{Member, User};
use keyward_store::{audit, members, orgs, sessions, teams, users};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::orgs::clean_email;
use super::sessions::{new_token, token_hash, Client, NewSession};
use super::{Actor, Caller, Service, ServiceError};
use crate::password;

/// How long a one-time sign-in link works.
pub const SIGN_IN_LINK_HOURS: i64 = 72;

/// A member as the teams page lists them.
#[derive(Clone, Debug)]
pub struct MemberListing {
    pub member: Member,
    pub teams: Vec<TeamId>,
    /// `false` while the person has not yet chosen a password through their link.
    pub has_password: bool,
}

/// A person just added; `link_token` is the one-time sign-in link's token, shown once (none
/// when the person already had a password from another organization).
#[derive(Debug)]
pub struct AddedMember {
    pub member: Member,
    pub link_token: Option<SecretString>,
}

/// Who may manage people: owners and admins in the dashboard, and the operator.
fn require_manager(caller: &Caller) -> Result<Role, ServiceError> {
    match &caller.actor {
        Actor::Cli => Ok(Role::Owner),
        Actor::User { role, .. } if role.can_manage() => Ok(*role),
        Actor::User { .. } => Err(ServiceError::Forbidden(
            "only owners and admins can change members and teams".into(),
        )),
        Actor::Key { .. } => Err(ServiceError::Forbidden(
            "members and teams are managed in the dashboard".into(),
        )),
    }
}

impl Service {
    /// Everyone in the caller's organization with their teams, oldest first.
    pub async fn list_members(&self, caller: &Caller) -> Result<Vec<MemberListing>, ServiceError> {
        caller.require("keys:read")?;
        let mut conn = self.store().read().await?;
        let all = users::members(&mut conn, &caller.org).await?;
        let pairs = members::team_memberships(&mut conn, &caller.org).await?;
        let with_password = members::with_password(&mut conn, &caller.org).await?;
        Ok(all
            .into_iter()
            .map(|member| MemberListing {
                teams: pairs
                    .iter()
                    .filter(|(_, u)| u == &member.user.id)
                    .map(|(t, _)| t.clone())
                    .collect(),
                has_password: with_password.contains(&member.user.id),
                member,
            })
            .collect())
    }

    /// Adds a person with a role. A new person gets a one-time sign-in link (no email is
    /// sent: the page shows it once). Only an owner may add another owner.
    pub async fn add_member(
        &self,
        caller: &Caller,
        email: &str,
        role: Role,
    ) -> Result<AddedMember, ServiceError> {
        let own = require_manager(caller)?;
        if role == Role::Owner && own != Role::Owner {
            return Err(ServiceError::Forbidden(
                "only an owner can add another owner".into(),
            ));
        }
        let email = clean_email(email)?;
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
                users::insert(&mut tx, &user, None).await?;
                user
            }
        };
        users::add_membership(&mut tx, &caller.org, &user.id, role, now).await?;
        let has_password = users::password_hash(&mut tx, &user.id).await?.is_some();
        let event = caller.event(
            now,
            "member.added",
            ("user", user.id.as_str()),
            json!({"email": user.email, "role": role.as_str(), "sign_in_link": !has_password}),
        );
        audit::insert(&mut tx, &event).await?;
        let link_token = if has_password {
            None
        } else {
            Some(
                self.insert_link(&mut tx, &caller.org, &user.id, now)
                    .await?,
            )
        };
        keyward_store::commit(tx).await?;
        Ok(AddedMember {
            member: Member {
                user,
                org: caller.org.clone(),
                role,
            },
            link_token,
        })
    }

    async fn insert_link(
        &self,
        conn: &mut keyward_store::Conn,
        org: &OrgId,
        user: &UserId,
        now: keyward_core::UnixMillis,
    ) -> Result<SecretString, ServiceError> {
        let token = new_token();
        sessions::retire_links_of_user(conn, user, now).await?;
        sessions::insert_link(
            conn,
            &token_hash(&token),
            org,
            user,
            now,
            now + SIGN_IN_LINK_HOURS * 3_600_000,
        )
        .await?;
        Ok(SecretString::from(token))
    }

    /// A fresh one-time link for a member who has not chosen a password yet (the earlier
    /// link stops working). People with a password sign in with it instead.
    pub async fn renew_sign_in_link(
        &self,
        caller: &Caller,
        user: &UserId,
    ) -> Result<(Member, SecretString), ServiceError> {
        require_manager(caller)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let member = users::member(&mut tx, &caller.org, user)
            .await?
            .ok_or(ServiceError::NotFound("member"))?;
        if users::password_hash(&mut tx, user).await?.is_some() {
            return Err(ServiceError::Conflict(
                "this person already has a password; they sign in with it".into(),
            ));
        }
        let token = self.insert_link(&mut tx, &caller.org, user, now).await?;
        keyward_store::commit(tx).await?;
        Ok((member, token))
    }

    /// Loads a member the caller may change: admins cannot change owners.
    async fn changeable_member(
        &self,
        conn: &mut keyward_store::Conn,
        caller: &Caller,
        own: Role,
        user: &UserId,
    ) -> Result<Member, ServiceError> {
        let member = users::member(conn, &caller.org, user)
            .await?
            .ok_or(ServiceError::NotFound("member"))?;
        if member.role == Role::Owner && own != Role::Owner {
            return Err(ServiceError::Forbidden(
                "only an owner can change or remove an owner".into(),
            ));
        }
        Ok(member)
    }

    /// Changes a member's role. The last owner stays an owner.
    pub async fn change_role(
        &self,
        caller: &Caller,
        user: &UserId,
        role: Role,
    ) -> Result<Member, ServiceError> {
        let own = require_manager(caller)?;
        if role == Role::Owner && own != Role::Owner {
            return Err(ServiceError::Forbidden(
                "only an owner can make someone an owner".into(),
            ));
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut member = self.changeable_member(&mut tx, caller, own, user).await?;
        if member.role == role {
            return Ok(member);
        }
        if member.role == Role::Owner && members::count_owners(&mut tx, &caller.org).await? <= 1 {
            return Err(ServiceError::Conflict(
                "the organization needs at least one owner; make someone else an owner first"
                    .into(),
            ));
        }
        members::set_role(&mut tx, &caller.org, user, role).await?;
        let event = caller.event(
            now,
            "member.role_changed",
            ("user", user.as_str()),
            json!({"email": member.user.email, "before": member.role.as_str(), "after": role.as_str()}),
        );
        audit::insert(&mut tx, &event).await?;
        keyward_store::commit(tx).await?;
        member.role = role;
        Ok(member)
    }

    /// Removes a person from the organization and its teams and ends their sessions in it.
    /// Their keys stay (with them as owner) until someone revokes them.
    pub async fn remove_member(&self, caller: &Caller, user: &UserId) -> Result<(), ServiceError> {
        let own = require_manager(caller)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let member = self.changeable_member(&mut tx, caller, own, user).await?;
        if member.role == Role::Owner && members::count_owners(&mut tx, &caller.org).await? <= 1 {
            return Err(ServiceError::Conflict(
                "the last owner cannot be removed".into(),
            ));
        }
        members::remove(&mut tx, &caller.org, user).await?;
        sessions::delete_sessions_in_org(&mut tx, &caller.org, user).await?;
        let event = caller.event(
            now,
            "member.removed",
            ("user", user.as_str()),
            json!({"email": member.user.email, "role": member.role.as_str()}),
        );
        audit::insert(&mut tx, &event).await?;
        keyward_store::commit(tx).await?;
        Ok(())
    }

    /// Takes a person out of a team.
    pub async fn remove_team_member(
        &self,
        caller: &Caller,
        team: &TeamId,
        user: &UserId,
    ) -> Result<(), ServiceError> {
        require_manager(caller)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        teams::get(&mut tx, &caller.org, team)
            .await?
            .ok_or(ServiceError::NotFound("team"))?;
        if !members::remove_from_team(&mut tx, &caller.org, team, user).await? {
            return Err(ServiceError::NotFound("team member"));
        }
        let event = caller.event(
            now,
            "team.member_removed",
            ("team", team.as_str()),
            json!({"user_id": user}),
        );
        audit::insert(&mut tx, &event).await?;
        keyward_store::commit(tx).await?;
        Ok(())
    }

    /// The person and organization of a one-time sign-in link that still works.
    pub async fn sign_in_link(&self, token: &str) -> Result<Option<(User, Org)>, ServiceError> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let mut conn = self.store().read().await?;
        let Some((user, org)) =
            sessions::find_link(&mut conn, &token_hash(token), self.now()).await?
        else {
            return Ok(None);
        };
        let Some(member) = users::member(&mut conn, &org, &user).await? else {
            return Ok(None);
        };
        let Some(org) = orgs::get(&mut conn, &org).await? else {
            return Ok(None);
        };
        Ok(Some((member.user, org)))
    }

    /// Uses a one-time link: sets the person's password and signs them in. A link works
    /// once, even when two processes race for it.
    pub async fn redeem_sign_in_link(
        &self,
        token: &str,
        new_password: SecretString,
        client: &Client,
    ) -> Result<NewSession, ServiceError> {
        password::check_strength(&new_password)
            .map_err(|e| ServiceError::invalid("password", e.to_string()))?;
        let gone = || {
            ServiceError::Forbidden(
                "this sign-in link has been used or has expired; ask an admin for a new one".into(),
            )
        };
        if self.sign_in_link(token).await?.is_none() {
            return Err(gone());
        }
        let hash = password::hash(new_password)
            .await
            .map_err(|e| ServiceError::Internal(e.into()))?;
        let now = self.now();
        let hashed = token_hash(token);
        let mut tx = self.store().begin().await?;
        let (user_id, org_id) = sessions::find_link(&mut tx, &hashed, now)
            .await?
            .ok_or_else(gone)?;
        if !sessions::use_link(&mut tx, &hashed, now).await? {
            return Err(gone());
        }
        let member = users::member(&mut tx, &org_id, &user_id)
            .await?
            .ok_or_else(gone)?;
        let org = orgs::get(&mut tx, &org_id)
            .await?
            .ok_or(ServiceError::NotFound("organization"))?;
        users::set_password_hash(&mut tx, &user_id, &hash).await?;
        sessions::retire_links_of_user(&mut tx, &user_id, now).await?;
        self.audit_password_change(&mut tx, &member.user, client, now)
            .await?;
        let opened = self
            .open_session(&mut tx, &member.user, &org, member.role, client, now)
            .await?;
        keyward_store::commit(tx).await?;
        Ok(opened)
    }
}

/// The path of a sign-in link with this token (the dashboard puts its address in front).
pub fn sign_in_link_path(token: &SecretString) -> String {
    format!("/login/link?token={}", token.expose_secret())
}
