//! `keyward dev …`: tools for development and benchmarks.

use std::io::{BufWriter, Write};
use std::time::Instant;

use keyward_core::ApiKey;
use keyward_server::Caller;
use keyward_store::keys::{self, KeyRecord};

use super::{CliError, CliResult, Output};
use crate::cli::DevCommand;

/// Keys written per transaction.
const BATCH: u64 = 5_000;

pub async fn run(service: &keyward_server::Service, command: DevCommand, out: Output) -> CliResult {
    match command {
        DevCommand::SeedKeys {
            org,
            agent,
            count,
            out: path,
        } => {
            let org = service.find_org(&org).await?;
            let caller = Caller::cli(org.id.clone());
            let agent = service.find_agent(&caller, &agent).await?;
            let file = std::fs::File::create(&path)
                .map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))?;
            let mut file = BufWriter::new(file);
            let start = Instant::now();
            let prefix = service.config().key_prefix.clone();
            let mut written = 0u64;
            while written < count {
                let n = BATCH.min(count - written);
                let now = service.now();
                let mut tx = service.store().begin().await?;
                for i in 0..n {
                    let secret = ApiKey::generate(&prefix);
                    let name = format!("seed-{}", written + i + 1);
                    let record = KeyRecord::seeded(&org.id, &agent.id, name, &secret, now);
                    keys::insert(&mut tx, &record).await?;
                    writeln!(file, "{}", secret.expose()).map_err(|e| {
                        CliError::failure(format!("cannot write {}: {e}", path.display()))
                    })?;
                }
                keyward_store::commit(tx).await?;
                written += n;
                if !out.json && (written.is_multiple_of(100_000) || written == count) {
                    eprintln!(
                        "seeded {written}/{count} keys ({:.1} s)",
                        start.elapsed().as_secs_f64()
                    );
                }
            }
            file.flush()
                .map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))?;
            let body = serde_json::json!({"seeded": count, "agent_id": agent.id, "seconds": start.elapsed().as_secs_f64()});
            out.print(&body, || {
                format!(
                    "Seeded {count} keys for agent {} into {}.",
                    agent.name,
                    path.display()
                )
            })
        }
    }
}
