//! `keyward serve`

use std::io::Write;

use keyward_server::{demo, Application};
use tracing_subscriber::EnvFilter;

use super::{open, CliError, CliResult};
use crate::settings::Settings;

pub async fn run(settings: Settings, load_demo: bool) -> CliResult {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();

    if let Some(path) = &settings.config_path {
        tracing::info!(config = %path.display(), "configuration file read");
    }
    if let Some(url) = &settings.redis_url {
        tracing::info!(
            redis = %keyward_store::redact_url(url),
            fallback = ?settings.redis_fallback,
            "rate limits are shared through Redis"
        );
    }
    tracing::debug!(
        usage_retention_days = settings.usage_retention_days,
        "usage retention"
    );
    // Refuse a generator configuration that cannot work before anything starts.
    keyward_server::generator::try_build(&settings.app.generator)
        .map_err(|e| CliError::failure(format!("[generator]: {e}")))?;
    let service = open(&settings).await?;
    tracing::info!(database = %keyward_store::redact_url(&settings.database_url), "storage ready");

    let demo = if load_demo {
        let loaded = demo::load(&service).await?;
        if loaded.is_none() {
            tracing::info!("--demo: the store already has data, so no demo data was loaded");
        }
        Some(loaded)
    } else {
        None
    };

    let app = Application::build(
        &settings.listen,
        service.store().clone(),
        settings.app.clone(),
    )
    .await?;
    let addr = app.local_addr();
    // While nobody can sign in, a one-time link lets the first person set keyward up.
    let setup_token = service.issue_setup_token().await?;
    let mut stdout = std::io::stdout().lock();
    let mut say = |line: String| {
        let _ = writeln!(stdout, "{line}");
    };
    say(format!("Listening on http://{addr}"));
    match demo {
        Some(Some(d)) => {
            say(format!("Demo sign-in: {} / {}", d.email, d.password));
            say(format!("Demo API key (shown once): {}", d.api_key));
            say(format!(
                "Try it: curl -H \"Authorization: Bearer {}\" http://{addr}/v1/whoami",
                d.api_key
            ));
        }
        Some(None) => say("Demo data not loaded: the store already has data.".to_string()),
        None => {}
    }
    if let Some(token) = setup_token {
        say(format!("Setup: http://{addr}/setup?token={token}"));
    }
    let _ = stdout.flush();
    drop(stdout);

    tracing::info!(%addr, "keyward is serving");
    let served = app.run_until(shutdown_signal()).await;
    // Its last writes are in (the usage flush ran): the log is folded into the file so that
    // the next start need not read it back. Bounded, in case a connection is still held.
    let closing = service.store().close();
    if tokio::time::timeout(std::time::Duration::from_secs(5), closing)
        .await
        .is_err()
    {
        tracing::warn!("the database did not close within 5 s");
    }
    served.map_err(CliError::from)?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
