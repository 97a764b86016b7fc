//! Cross-node invalidation (SPEC §10): a node that commits a change authentication depends on
//! announces it on a Redis channel, and every node clears its key cache when it hears one.
//!
//! This is the fast path, typically a millisecond or two. The database's change counter,
//! polled every `change_watch_ms`, stays the safety net for what pub/sub cannot promise:
//! a message lost while a node was disconnected, or a change made by the CLI, which does not
//! publish. After every (re)subscription a node clears its cache, since it may have missed
//! messages while it was away.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::cache::KeyCache;

/// The channel every node publishes to and listens on.
const CHANNEL: &str = "keyward:auth-changed";
/// Waits between reconnection attempts of the subscriber, doubling up to the maximum.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// One node's end of the invalidation channel.
pub struct ChangeBus {
    client: redis::Client,
    /// Identifies this node's messages, so that it does not clear its cache twice.
    node: String,
    /// Signalled by the service after each auth-affecting commit.
    changed: Arc<Notify>,
}

impl ChangeBus {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        Ok(Self {
            client,
            node: format!("{:016x}", rand::rng().random::<u64>()),
            changed: Arc::new(Notify::new()),
        })
    }

    /// What the service signals after a committed change.
    pub fn signal(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// Starts the publisher and the subscriber; both run until aborted.
    pub fn spawn(self, cache: KeyCache) -> [JoinHandle<()>; 2] {
        let publisher = tokio::spawn(publish(
            self.client.clone(),
            self.node.clone(),
            self.changed,
        ));
        let subscriber = tokio::spawn(subscribe(self.client, self.node, cache));
        [publisher, subscriber]
    }
}

/// Publishes one message per wake-up: changes signalled while a publish is under way are
/// covered by the next one, since a message only says "clear your cache".
async fn publish(client: redis::Client, node: String, changed: Arc<Notify>) {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(1);
    let mut conn = match redis::aio::ConnectionManager::new_lazy_with_config(client, config) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "cannot publish auth changes over Redis; other nodes rely on the database's change counter");
            return;
        }
    };
    loop {
        changed.notified().await;
        let sent: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(&node)
            .query_async(&mut conn)
            .await;
        if let Err(e) = sent {
            // Other nodes still see the change through the database within a second.
            tracing::debug!(error = %e, "could not publish an auth change");
        }
    }
}

async fn subscribe(client: redis::Client, node: String, cache: KeyCache) {
    let mut wait = RETRY_MIN;
    loop {
        // Bounded: an unreachable Redis must not hold the subscriber forever.
        let connected =
            tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub()).await;
        match connected {
            Err(_) => tracing::debug!("connecting to Redis for auth changes timed out"),
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot subscribe to auth changes"),
            Ok(Ok(mut pubsub)) => {
                let subscribed = pubsub.subscribe(CHANNEL).await;
                if let Err(e) = &subscribed {
                    tracing::warn!(error = %e, "cannot subscribe to auth changes; other nodes' changes arrive through the database");
                }
                if subscribed.is_ok() {
                    // Messages sent while we were not listening are lost: start clean.
                    cache.invalidate_all();
                    wait = RETRY_MIN;
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        if msg.get_payload_bytes() != node.as_bytes() {
                            cache.invalidate_all();
                        }
                    }
                    tracing::debug!("auth change subscription lost; reconnecting");
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}
