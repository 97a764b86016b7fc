//! People signing in to the dashboard: sessions kept in the database, throttled sign-in,
//! signing out, and changing one's own password.
//!
//! A session token is 32 random base62 characters (about 190 bits) handed to the browser in
//! a cookie; the database holds only its SHA-256, so several processes sharing the database
//! all know every session, and a copy of the database signs nobody in.

use keyward_core::{Role, UnixMillis};
use keyward_store::orgs::Org;
use keyward_store::sessions::{self, SessionRecord};
use keyward_store::users::User;
use keyward_store::{audit, orgs, users, Conn};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::Digest;

use super::{Actor, Caller, Service, ServiceError};
use crate::password;

/// A signed-in person, as every dashboard request sees them.
#[derive(Clone, Debug)]
pub struct Session {
    pub token_hash: String,
    pub user: User,
    pub org: Org,
    /// Read from the membership on every request, so a role change applies at once.
    pub role: Role,
    pub csrf_token: String,
    pub expires_at: UnixMillis,
}

impl Session {
    /// The service-layer caller acting as this person in their organization.
    pub fn caller(&self, client: &Client) -> Caller {
        Caller {
            org: self.org.id.clone(),
            team: None,
            actor: Actor::User {
                id: self.user.id.clone(),
                role: self.role,
            },
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
        }
    }
}

/// A session just opened: the token for the cookie (this once) and the session.
#[derive(Debug)]
pub struct NewSession {
    pub token: SecretString,
    pub session: Session,
}

/// Where a request came from: the client's address (through trusted proxies) and user agent.
#[derive(Clone, Debug, Default)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Why a sign-in was refused. Deliberately vague about which part was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInRefusal {
    /// Unknown email, wrong password, or an account without a password yet.
    Invalid,
    /// Too many recent failures for this account or this client address.
    Throttled { retry_after_secs: u64 },
}

/// A fresh random token (32 base62 characters).
pub(crate) fn new_token() -> String {
    let mut s = String::with_capacity(32);
    keyward_core::base62::push_random(&mut s, &mut rand::rng(), 32);
    s
}

/// What the database stores of a token.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Compares two tokens in time that does not depend on where they differ.
pub fn tokens_match(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn account_subject(email: &str) -> String {
    let email: String = email.trim().to_lowercase().chars().take(254).collect();
    format!("account:{email}")
}

impl Service {
    /// Opens a session for `user` in `org` inside `conn`'s transaction and audits the sign-in.
    pub(crate) async fn open_session(
        &self,
        conn: &mut Conn,
        user: &User,
        org: &Org,
        role: Role,
        client: &Client,
        now: UnixMillis,
    ) -> Result<NewSession, ServiceError> {
        let token = new_token();
        let hours = i64::from(self.config().dashboard.session_hours.max(1));
        let record = SessionRecord {
            token_hash: token_hash(&token),
            user: user.id.clone(),
            org: org.id.clone(),
            csrf_token: new_token(),
            created_at: now,
            expires_at: now + hours * 3_600_000,
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
        };
        sessions::prune_sessions(conn, now).await?;
        sessions::insert_session(conn, &record).await?;
        let session = Session {
            token_hash: record.token_hash,
            user: user.clone(),
            org: org.clone(),
            role,
            csrf_token: record.csrf_token,
            expires_at: record.expires_at,
        };
        let event = session.caller(client).event(
            now,
            "user.signed_in",
            ("user", user.id.as_str()),
            json!({"email": user.email}),
        );
        audit::insert(conn, &event).await?;
        Ok(NewSession {
            token: SecretString::from(token),
            session,
        })
    }

    /// Refuses while the account or the client address has too many recent failures.
    async fn throttled(
        &self,
        conn: &mut Conn,
        subjects: &[(String, u32)],
        now: UnixMillis,
    ) -> Result<Option<SignInRefusal>, ServiceError> {
        let window = self.config().dashboard.throttle.window.as_millis() as i64;
        for (subject, limit) in subjects {
            let (n, oldest) = sessions::failures_since(conn, subject, now - window).await?;
            if n >= i64::from(*limit) {
                let free_at = oldest.unwrap_or(now) + window;
                let secs = ((free_at - now).max(1) + 999) / 1000;
                return Ok(Some(SignInRefusal::Throttled {
                    retry_after_secs: secs as u64,
                }));
            }
        }
        Ok(None)
    }

    /// Signs a person in with email and password.
    ///
    /// Throttled per account and per client address (the real client's, through trusted
    /// proxies): past the limits no password is even checked. Every checked failure is
    /// recorded (in the database, so all processes count together), slows the answer a
    /// little more, and is audited as `user.sign_in_failed` when the account exists.
    /// Unknown emails take as long as known ones (a dummy hash is checked).
    pub async fn sign_in(
        &self,
        email: &str,
        password: SecretString,
        client: &Client,
    ) -> Result<Result<NewSession, SignInRefusal>, ServiceError> {
        let throttle = self.config().dashboard.throttle.clone();
        let now = self.now();
        let email = email.trim().to_lowercase();
        let mut subjects = vec![(account_subject(&email), throttle.per_account)];
        if let Some(ip) = &client.ip {
            subjects.push((format!("ip:{ip}"), throttle.per_ip));
        }
        let (user, hash, failures) = {
            let mut conn = self.store().read().await?;
            if let Some(refusal) = self.throttled(&mut conn, &subjects, now).await? {
                tracing::warn!(ip = ?client.ip, "sign-in refused: too many failures");
                return Ok(Err(refusal));
            }
            let window = throttle.window.as_millis() as i64;
            let (failures, _) =
                sessions::failures_since(&mut conn, &subjects[0].0, now - window).await?;
            let user = users::get_by_email(&mut conn, &email).await?;
            let hash = match &user {
                Some(u) => users::password_hash(&mut conn, &u.id).await?,
                None => None,
            };
            (user, hash, failures)
        };
        let has_password = hash.is_some();
        let verified = password::verify(password, hash).await;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        if verified {
            if let Some(user) = &user {
                let memberships = users::memberships_of(&mut tx, &user.id).await?;
                // A person in several organizations signs in to the one they joined first.
                if let Some(m) = memberships.first() {
                    let org = orgs::get(&mut tx, &m.org)
                        .await?
                        .ok_or(ServiceError::NotFound("organization"))?;
                    sessions::clear_failures(&mut tx, &subjects[0].0).await?;
                    let opened = self
                        .open_session(&mut tx, user, &org, m.role, client, now)
                        .await?;
                    keyward_store::commit(tx).await?;
                    return Ok(Ok(opened));
                }
            }
        }
        let window = throttle.window.as_millis() as i64;
        for (subject, _) in &subjects {
            sessions::record_failure(&mut tx, subject, now, now - window).await?;
        }
        if let Some(user) = &user {
            let reason = if has_password {
                "wrong_password"
            } else {
                "no_password_set"
            };
            for m in users::memberships_of(&mut tx, &user.id).await? {
                let caller = Caller {
                    org: m.org.clone(),
                    team: None,
                    actor: Actor::User {
                        id: user.id.clone(),
                        role: m.role,
                    },
                    ip: client.ip.clone(),
                    user_agent: client.user_agent.clone(),
                };
                let event = caller.event(
                    now,
                    "user.sign_in_failed",
                    ("user", user.id.as_str()),
                    json!({"email": user.email, "reason": reason}),
                );
                audit::insert(&mut tx, &event).await?;
            }
        } else {
            tracing::info!(ip = ?client.ip, "sign-in failed for an unknown email");
        }
        keyward_store::commit(tx).await?;
        // Each failure of the account makes the next answer slower.
        let delay = throttle
            .delay_step
            .saturating_mul(u32::try_from(failures + 1).unwrap_or(u32::MAX))
            .min(throttle.max_delay);
        tokio::time::sleep(delay).await;
        Ok(Err(SignInRefusal::Invalid))
    }

    /// The live session for a cookie's token, with the person's current role; `None` when
    /// the token is unknown or expired, or the person has left the organization.
    pub async fn session(&self, token: &str) -> Result<Option<Session>, ServiceError> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let now = self.now();
        let mut conn = self.store().read().await?;
        let Some(record) = sessions::find_session(&mut conn, &token_hash(token), now).await? else {
            return Ok(None);
        };
        let Some(member) = users::member(&mut conn, &record.org, &record.user).await? else {
            return Ok(None);
        };
        let Some(org) = orgs::get(&mut conn, &record.org).await? else {
            return Ok(None);
        };
        Ok(Some(Session {
            token_hash: record.token_hash,
            user: member.user,
            org,
            role: member.role,
            csrf_token: record.csrf_token,
            expires_at: record.expires_at,
        }))
    }

    /// Ends a session (signing out). Unknown sessions are no error.
    pub async fn sign_out(&self, session: &Session) -> Result<(), ServiceError> {
        let mut tx = self.store().begin().await?;
        sessions::delete_session(&mut tx, &session.token_hash).await?;
        keyward_store::commit(tx).await?;
        Ok(())
    }

    /// A person changes their own password: the current one is checked, every other session
    /// of theirs ends, and `user.password_changed` is audited in each of their organizations.
    pub async fn change_own_password(
        &self,
        session: &Session,
        client: &Client,
        current: SecretString,
        new: SecretString,
    ) -> Result<(), ServiceError> {
        password::check_strength(&new)
            .map_err(|e| ServiceError::invalid("new_password", e.to_string()))?;
        if current.expose_secret() == new.expose_secret() {
            return Err(ServiceError::invalid(
                "new_password",
                "the new password must differ from the current one",
            ));
        }
        let stored = {
            let mut conn = self.store().read().await?;
            users::password_hash(&mut conn, &session.user.id).await?
        };
        if !password::verify(current, stored).await {
            return Err(ServiceError::invalid(
                "current_password",
                "the current password is not correct",
            ));
        }
        let hash = password::hash(new)
            .await
            .map_err(|e| ServiceError::Internal(e.into()))?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        users::set_password_hash(&mut tx, &session.user.id, &hash).await?;
        sessions::retire_links_of_user(&mut tx, &session.user.id, now).await?;
        sessions::delete_sessions_of_user(&mut tx, &session.user.id, Some(&session.token_hash))
            .await?;
        self.audit_password_change(&mut tx, &session.user, client, now)
            .await?;
        keyward_store::commit(tx).await?;
        Ok(())
    }

    /// `user.password_changed` by the person themself, in each of their organizations.
    pub(crate) async fn audit_password_change(
        &self,
        conn: &mut Conn,
        user: &User,
        client: &Client,
        now: UnixMillis,
    ) -> Result<(), ServiceError> {
        for m in users::memberships_of(conn, &user.id).await? {
            let caller = Caller {
                org: m.org.clone(),
                team: None,
                actor: Actor::User {
                    id: user.id.clone(),
                    role: m.role,
                },
                ip: client.ip.clone(),
                user_agent: client.user_agent.clone(),
            };
            let event = caller.event(
                now,
                "user.password_changed",
                ("user", user.id.as_str()),
                json!({}),
            );
            audit::insert(conn, &event).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_compared_in_full() {
        let a = new_token();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_token());
        assert!(tokens_match(&a, &a.clone()));
        assert!(!tokens_match(&a, &a[..31]));
        assert_eq!(token_hash("abc").len(), 64);
    }
}
