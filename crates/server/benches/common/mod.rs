//! What the benchmarks set up alike: a service over a fresh SQLite store, with one
//! organization and one agent allowed to read content.

// Compiled into each benchmark, which does not use every part.
#![allow(dead_code)]

use std::sync::Arc;

use keyward_server::service::{CreatedAgent, NewAgent, NewOrg};
use keyward_server::{Caller, Config, Service};
use keyward_store::orgs::Org;
use keyward_store::Store;

/// The service, its organization (on `plan`) and agent; the store lives as long as `dir`.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub service: Service,
    pub org: Org,
    pub agent: CreatedAgent,
}

pub async fn setup(config: Config, plan: &str, agent_name: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&url).await.expect("store");
    store.migrate().await.expect("migrate");
    let service = Service::new(store, Arc::new(config));
    let org = service
        .create_org(NewOrg {
            name: "Bench".into(),
            slug: None,
            plan: plan.into(),
        })
        .await
        .expect("org");
    let agent = service
        .create_agent(
            &Caller::cli(org.id.clone()),
            NewAgent {
                name: agent_name.into(),
                description: None,
                capabilities: vec!["content:read".into()],
            },
        )
        .await
        .expect("agent");
    Setup {
        dir,
        service,
        org,
        agent,
    }
}
