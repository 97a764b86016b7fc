//! Off-the-hot-path bookkeeping: `last_used_at` is gathered in memory and written in batches,
//! so a request never waits for a database write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyward_core::{KeyId, OrgId, UnixMillis};
use keyward_store::{keys, Store};

/// Collects key uses; [`UsageRecorder::flush`] writes them.
#[derive(Clone, Default)]
pub struct UsageRecorder {
    pending: Arc<Mutex<HashMap<KeyId, (OrgId, UnixMillis)>>>,
}

/// Most keys kept between flushes; beyond it new entries wait for the next flush. The map is
/// keyed by authenticated keys only, so its size is bounded by real keys, not by attackers.
const MAX_PENDING: usize = 1_000_000;

impl UsageRecorder {
    pub fn record(&self, org: &OrgId, key: &KeyId, at: UnixMillis) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if let Some(entry) = pending.get_mut(key) {
            entry.1 = entry.1.max(at);
        } else if pending.len() < MAX_PENDING {
            pending.insert(key.clone(), (org.clone(), at));
        }
    }

    /// Writes everything gathered so far.
    pub async fn flush(&self, store: &Store) {
        let batch: Vec<(OrgId, KeyId, UnixMillis)> = match self.pending.lock() {
            Ok(mut pending) => pending.drain().map(|(k, (o, at))| (o, k, at)).collect(),
            Err(_) => return,
        };
        if batch.is_empty() {
            return;
        }
        let result = async {
            let mut tx = store.begin().await?;
            keys::touch_last_used(&mut tx, &batch).await?;
            keyward_store::commit(tx).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, keys = batch.len(), "could not record key usage; will retry");
            if let Ok(mut pending) = self.pending.lock() {
                for (org, key, at) in batch {
                    let entry = pending.entry(key).or_insert((org, at));
                    entry.1 = entry.1.max(at);
                }
            }
        }
    }

    /// Flushes every `every` until the returned task is aborted.
    pub fn spawn_flusher(&self, store: Store, every: Duration) -> tokio::task::JoinHandle<()> {
        let recorder = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                recorder.flush(&store).await;
            }
        })
    }
}
