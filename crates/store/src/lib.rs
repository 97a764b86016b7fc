//! keyward storage: one implementation that runs on SQLite and on PostgreSQL.
//!
//! Queries are written once in the SQL both engines accept (`$N` placeholders, integers for
//! times) and run through sqlx's `Any` driver; each engine has its own migrations tree.
//! Every function that touches tenant data takes the organization (and, where it applies, a
//! team [`Scope`]) as a parameter and filters in SQL: there is no helper that could forget it.
//! The functions take a connection, so the service layer can put a change and its audit event
//! in one transaction.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod agents;
pub mod audit;
mod batch;
mod connect;
pub mod content;
mod error;
pub mod jobs;
pub mod keys;
pub mod members;
mod migrate;
pub mod orgs;
pub mod page;
mod priority;
pub mod sessions;
pub mod teams;
pub mod usage;
pub mod users;

pub use connect::{commit, redact_url, Backend, Store, Tx};
pub use error::StoreError;
pub use page::{Cursor, Page, PageRequest};

use keyward_core::{OrgId, TeamId};

/// The tenant boundary of a query: an organization, optionally narrowed to one team.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub org: OrgId,
    /// `Some` for a team-scoped caller: only records of this team are visible.
    pub team: Option<TeamId>,
}

impl Scope {
    pub fn org(org: OrgId) -> Self {
        Self { org, team: None }
    }

    pub fn team(org: OrgId, team: TeamId) -> Self {
        Self {
            org,
            team: Some(team),
        }
    }
}

/// The connection type every query function takes.
pub type Conn = sqlx::AnyConnection;
