//! What each command does. Every command reads the same layered settings and acts through
//! the same service layer as the HTTP API.

mod admin;
mod dev;
mod keys;
mod serve;

use keyward_server::{Service, ServiceError};
use keyward_store::Store;
use serde::Serialize;

use crate::cli::{Cli, Command};
use crate::settings::{self, Overrides, Settings};

/// A failure with its exit status: 2 for usage errors, 1 for everything else.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub exit_code: u8,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit_code: 2,
        }
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit_code: 1,
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        // One line: the outermost context, then the causes.
        let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
        CliError::failure(chain.join(": "))
    }
}

impl From<ServiceError> for CliError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(what) => CliError::failure(format!("{what} not found")),
            ServiceError::Invalid { field, message } => {
                CliError::failure(format!("{field}: {message}"))
            }
            ServiceError::Internal(e) => CliError::from(e),
            other => CliError::failure(other.to_string()),
        }
    }
}

impl From<keyward_store::StoreError> for CliError {
    fn from(e: keyward_store::StoreError) -> Self {
        CliError::from(anyhow::Error::new(e))
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// The page request of `--limit` and `--cursor`.
pub fn page_request(args: &crate::cli::PageArgs) -> CliResult<keyward_store::PageRequest> {
    let cursor = match &args.cursor {
        None => None,
        Some(c) => Some(keyward_store::Cursor::decode(c).ok_or_else(|| {
            CliError::usage("--cursor is not a next_cursor this command printed")
        })?),
    };
    Ok(keyward_store::PageRequest {
        limit: args.limit,
        cursor,
    })
}

/// The line that tells a person how to get the next page, if there is one.
pub fn next_page_hint(next: Option<&keyward_store::Cursor>) -> String {
    next.map_or(String::new(), |c| {
        format!("\nMore: add --cursor {}", c.encode())
    })
}

/// How results are printed.
#[derive(Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `body` as the one JSON document, or `human` for people.
    pub fn print<T: Serialize>(&self, body: &T, human: impl FnOnce() -> String) -> CliResult {
        if self.json {
            let text =
                serde_json::to_string_pretty(body).map_err(|e| CliError::failure(e.to_string()))?;
            println!("{text}");
        } else {
            println!("{}", human());
        }
        Ok(())
    }
}

pub async fn run(cli: Cli) -> CliResult {
    let mut overrides = Overrides {
        config: cli.config.clone(),
        database_url: cli.database_url.clone(),
        ..Default::default()
    };
    if let Command::Serve(args) = &cli.command {
        if cli.json {
            return Err(CliError::usage(
                "serve does not take --json; it logs to stderr",
            ));
        }
        overrides.listen = args.listen.clone();
        overrides.redis_url = args.redis_url.clone();
    }
    let settings = settings::load(&overrides, |k| std::env::var(k).ok())?;
    let out = Output { json: cli.json };
    let command = match cli.command {
        Command::Serve(args) => return serve::run(settings, args.demo).await,
        command => command,
    };
    let service = open(&settings).await?;
    let done = match command {
        Command::Migrate => out.print(&serde_json::json!({"status": "migrated"}), || {
            "The database schema is up to date.".into()
        }),
        Command::Org(c) => admin::org(&service, c, out).await,
        Command::User(c) => admin::user(&service, c, out).await,
        Command::Team(c) => admin::team(&service, c, out).await,
        Command::Agent(c) => keys::agent(&service, c, out).await,
        Command::Key(c) => keys::key(&service, c, out).await,
        Command::Dev(c) => dev::run(&service, c, out).await,
        Command::Serve(_) => Ok(()), // answered above
    };
    // Closed, not dropped: SQLite's write-ahead log is folded into the file first, so the
    // next process to open it need not read the log back (after `dev seed-keys 1000000`, a
    // log of 45 MB that every start-up read: 0.13 s).
    service.store().close().await;
    done
}

/// Connects to the configured database and brings its schema up to date.
pub async fn open(settings: &Settings) -> CliResult<Service> {
    let shown = keyward_store::redact_url(&settings.database_url);
    let store = Store::connect(&settings.database_url).await.map_err(|e| {
        CliError::failure(format!(
            "cannot open the database {shown}: {}",
            error_chain(&e)
        ))
    })?;
    store.migrate().await.map_err(|e| {
        CliError::failure(format!(
            "cannot migrate the database {shown}: {}",
            error_chain(&e)
        ))
    })?;
    Ok(Service::new(
        store,
        std::sync::Arc::new(settings.app.clone()),
    ))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}
