//! The command line of SPEC §9.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use keyward_core::{HumanDuration, Role};

const AFTER_HELP: &str = "\
Configuration is layered: built-in defaults, then keyward.toml (from --config, KEYWARD_CONFIG or
./keyward.toml), then KEYWARD_* environment variables, then flags. See docs/keyward.example.toml.

Examples:
  keyward serve --demo                      # try it: demo data on a local SQLite file
  keyward org create --name \"Acme Inc\" --plan pro
  keyward agent create --org acme-inc --name Billing --capabilities content:read,keys:read
  keyward key create --org acme-inc --agent Billing --name \"CI\" --expires-in 30d
  keyward key revoke key_... --reason \"leaked in a log\"";

#[derive(Parser, Debug)]
#[command(name = "keyward", version, about = "A self-hosted API key platform: issue, check, limit and audit API keys.", after_help = AFTER_HELP)]
pub struct Cli {
    /// Configuration file (default: $KEYWARD_CONFIG, else ./keyward.toml if present)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB (default: sqlite://keyward.db)
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Print one JSON document on stdout: the same body the HTTP API answers
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server (migrates the database first)
    Serve(ServeArgs),
    /// Create or update the database schema, then exit
    Migrate,
    /// Organizations: your customers, each on a plan
    #[command(subcommand)]
    Org(OrgCommand),
    /// People who sign in to the dashboard
    #[command(subcommand)]
    User(UserCommand),
    /// Teams inside an organization
    #[command(subcommand)]
    Team(TeamCommand),
    /// API agents: named sets of capabilities shared by their keys
    #[command(subcommand)]
    Agent(AgentCommand),
    /// API keys: create, list, update, revoke, roll
    #[command(subcommand)]
    Key(KeyCommand),
    /// Tools for development and benchmarks (not for production data)
    #[command(subcommand, hide = true)]
    Dev(DevCommand),
}

#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Create many keys for an agent fast (batched inserts), writing the raw keys to a file.
    /// For benchmarks: the file is the only place the keys appear.
    SeedKeys {
        /// Organization id or slug
        #[arg(long)]
        org: String,
        /// Agent id or name
        #[arg(long)]
        agent: String,
        /// How many keys to create
        #[arg(long)]
        count: u64,
        /// Where to write the raw keys, one per line
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Redis URL for global rate limits and revocation across nodes
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// On an empty store, load a demo organization and print its sign-in and API key
    #[arg(long)]
    pub demo: bool,
}

#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Create an organization
    Create {
        /// Display name
        #[arg(long)]
        name: String,
        /// URL-safe short name (default: derived from the name)
        #[arg(long)]
        slug: Option<String>,
        /// Plan: free, pro, enterprise or one from keyward.toml
        #[arg(long, default_value = "pro")]
        plan: String,
    },
    /// List organizations
    List(PageArgs),
    /// Change an organization's plan
    Update {
        /// Organization id or slug
        org: String,
        /// The new plan
        #[arg(long)]
        plan: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a person to an organization (the password is read from a prompt or stdin)
    Create {
        /// Organization id or slug
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "member")]
        role: Role,
    },
    /// Set a user's password (read from a prompt or stdin)
    SetPassword { email: String },
}

#[derive(Subcommand, Debug)]
pub enum TeamCommand {
    /// Create a team
    Create {
        /// Organization id or slug
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Create an agent; its first key, "Production", is printed once
    Create {
        /// Organization id or slug
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Comma-separated, e.g. content:read,generate: the built-in capabilities and the
        /// deployment's own from `[capabilities] custom` in keyward.toml
        #[arg(long, value_delimiter = ',', required = true)]
        capabilities: Vec<String>,
    },
    /// List an organization's agents
    List {
        /// Organization id or slug
        #[arg(long)]
        org: String,
        #[command(flatten)]
        page: PageArgs,
    },
}

/// Paging, exactly as the HTTP API's lists: newest first, `--limit` per page, and the
/// `next_cursor` of one page as the `--cursor` of the next.
#[derive(Args, Debug, Clone)]
pub struct PageArgs {
    /// Items per page, 1 to 100
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: u32,
    /// The `next_cursor` of the previous page
    #[arg(long)]
    pub cursor: Option<String>,
}

/// `N/DURATION`, like `100/60s`, or `none` (on update) to remove an override.
#[derive(Clone, Copy, Debug)]
pub struct RateLimitArg(pub Option<keyward_core::RateLimit>);

impl std::str::FromStr for RateLimitArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "none" {
            return Ok(Self(None));
        }
        let bad =
            || format!("{s:?} is not a rate limit; write N/DURATION, like 100/60s or 5000/1h");
        let (n, d) = s.split_once('/').ok_or_else(bad)?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        let d: HumanDuration = d.trim().parse().map_err(|e| format!("{e}"))?;
        keyward_core::RateLimit::new(n, d.seconds())
            .map(|r| Self(Some(r)))
            .map_err(|e| e.to_string())
    }
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create a key for an agent; the key is printed once
    Create {
        /// Agent id or name
        #[arg(long)]
        agent: String,
        /// Organization id or slug (needed when the agent name is not unique)
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        name: String,
        /// Scope the key to one team (id or name); default: all teams
        #[arg(long)]
        team: Option<String>,
        /// Email of the member who owns the key
        #[arg(long)]
        owner: Option<String>,
        /// production, staging, development or your own label
        #[arg(long)]
        environment: Option<String>,
        /// Expire after DURATION, like 90s, 30m, 24h, 30d
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<HumanDuration>,
        /// Per-key limit N/DURATION, like 100/60s (any rate is allowed here)
        #[arg(long, value_name = "N/DURATION")]
        rate_limit: Option<RateLimitArg>,
    },
    /// List keys (hints only; secrets are never stored)
    List {
        /// Organization id or slug
        #[arg(long)]
        org: String,
        /// Only keys of this agent (id or name)
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Change a key's name, rate limit or expiry
    Update {
        key_id: String,
        #[arg(long)]
        name: Option<String>,
        /// N/DURATION, or `none` to use the plan's limit
        #[arg(long, value_name = "N/DURATION")]
        rate_limit: Option<RateLimitArg>,
        /// Expire DURATION from now
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<HumanDuration>,
    },
    /// Revoke a key now and for good
    Revoke {
        key_id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Replace a key with a new one; the old one keeps working for the grace period
    Roll {
        key_id: String,
        /// How long the old key keeps working (default 24h; 0s ends it now)
        #[arg(long, value_name = "DURATION")]
        grace: Option<HumanDuration>,
    },
}
