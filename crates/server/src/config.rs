//! The typed runtime configuration of the application. The binary builds it from its
//! layered settings (defaults, `keyward.toml`, environment, flags).

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use keyward_core::{CapabilityCatalog, ForwardRules, KeyPrefix, Plan};

use crate::Clock;

#[derive(Clone, Debug)]
pub struct Config {
    pub key_prefix: KeyPrefix,
    /// Plans by name.
    pub plans: BTreeMap<String, Plan>,
    pub capabilities: CapabilityCatalog,
    /// `[[forward.routes]]` and `[forward] default_capability`: what `GET /v1/auth/forward`
    /// requires of a proxied request. Empty (the default) denies every proxied request.
    pub forward: ForwardRules,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// How often changes made by other processes are picked up.
    pub change_watch: Duration,
    /// Days per-minute usage rows are kept (hourly and daily sums stay longer).
    pub usage_retention_days: u32,
    /// Most entries in the key cache (known and unknown keys together).
    pub key_cache_capacity: u64,
    /// Which content generator jobs run with.
    pub generator: crate::generator::GeneratorConfig,
    /// How the generation worker paces itself (leases, polling).
    pub worker: crate::worker::WorkerTiming,
    pub clock: Clock,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            key_prefix: KeyPrefix::default(),
            plans: Plan::built_in()
                .into_iter()
                .map(|p| (p.name.clone(), p))
                .collect(),
            capabilities: CapabilityCatalog::default(),
            forward: ForwardRules::default(),
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap_or_else(|_| IpNet::default())],
            change_watch: Duration::from_millis(250),
            usage_retention_days: 90,
            key_cache_capacity: crate::cache::DEFAULT_CAPACITY,
            generator: crate::generator::GeneratorConfig::default(),
            worker: crate::worker::WorkerTiming::default(),
            clock: Clock::system(),
        }
    }
}

impl Config {
    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }
}
