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
    /// The Redis shared by every node, for global rate limits (SPEC §10); `None` limits on this
    /// node only.
    pub redis_url: Option<String>,
    /// What the limiter does while Redis is unreachable.
    pub redis_fallback: crate::limiter::Fallback,
    /// Days per-minute usage rows are kept (hourly and daily sums stay longer).
    pub usage_retention_days: u32,
    /// Most entries in the key cache (known and unknown keys together).
    pub key_cache_capacity: u64,
    /// Which content generator jobs run with.
    pub generator: crate::generator::GeneratorConfig,
    /// How the generation worker paces itself (leases, polling).
    pub worker: crate::worker::WorkerTiming,
    /// Sessions and sign-in of the dashboard.
    pub dashboard: DashboardConfig,
    pub clock: Clock,
}

/// `[dashboard]` of `keyward.toml`, and how hard failed sign-ins are throttled.
#[derive(Clone, Debug)]
pub struct DashboardConfig {
    /// Mark the session cookie `Secure` (and name it `__Host-…`); set it when served over TLS.
    pub secure_cookies: bool,
    /// How long a session lasts after signing in.
    pub session_hours: u32,
    pub throttle: SignInThrottle,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            session_hours: 12,
            throttle: SignInThrottle::default(),
        }
    }
}

/// Limits on failed sign-ins within a rolling window, per account and per client address.
#[derive(Clone, Debug)]
pub struct SignInThrottle {
    pub window: Duration,
    /// Failures of one account (email) before its sign-in is refused for the window.
    pub per_account: u32,
    /// Failures from one client address before its sign-ins are refused for the window.
    pub per_ip: u32,
    /// Each failure of an account makes its next failed answer this much slower...
    pub delay_step: Duration,
    /// ...up to this much.
    pub max_delay: Duration,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(15 * 60),
            per_account: 5,
            per_ip: 20,
            delay_step: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
        }
    }
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
            redis_url: None,
            redis_fallback: crate::limiter::Fallback::Local,
            usage_retention_days: 90,
            key_cache_capacity: crate::cache::DEFAULT_CAPACITY,
            generator: crate::generator::GeneratorConfig::default(),
            worker: crate::worker::WorkerTiming::default(),
            dashboard: DashboardConfig::default(),
            clock: Clock::system(),
        }
    }
}

impl Config {
    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }
}
