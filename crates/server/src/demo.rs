//! Demo data for `keyward serve --demo`: an organization to try everything with.

use keyward_core::Role;
use secrecy::SecretString;

use crate::service::{NewAgent, NewOrg};
use crate::{Caller, Service, ServiceError};

pub const DEMO_EMAIL: &str = "demo@keyward.local";

/// What the demo loader made, to print once.
pub struct Demo {
    pub email: String,
    pub password: String,
    pub api_key: String,
}

/// Loads the demo on an empty store; on a store with data it loads nothing (`None`).
pub async fn load(service: &Service) -> Result<Option<Demo>, ServiceError> {
    {
        let mut conn = service.store().read().await?;
        if keyward_store::orgs::any_exist(&mut conn).await? {
            return Ok(None);
        }
    }
    let org = service
        .create_org(NewOrg {
            name: "Demo Company".into(),
            slug: Some("demo".into()),
            plan: "pro".into(),
        })
        .await?;
    let caller = Caller::cli(org.id.clone());
    let mut password = String::new();
    keyward_core::base62::push_random(&mut password, &mut rand::rng(), 16);
    let owner = service
        .create_user(
            &caller,
            DEMO_EMAIL,
            Role::Owner,
            Some(SecretString::from(password.clone())),
        )
        .await?;
    let team = service.create_team(&caller, "Editorial").await?;
    service
        .add_team_member(&caller, &team.id, &owner.user.id)
        .await?;
    let all = service.config().capabilities.all().names();
    let agent = service
        .create_agent(
            &Caller {
                actor: crate::service::Actor::User {
                    id: owner.user.id.clone(),
                    role: Role::Owner,
                },
                ..caller
            },
            NewAgent {
                name: "Demo agent".into(),
                description: Some("Every capability, for trying the API".into()),
                capabilities: all,
            },
        )
        .await?;
    Ok(Some(Demo {
        email: owner.user.email,
        password,
        api_key: agent.first_key.secret.expose().to_string(),
    }))
}
