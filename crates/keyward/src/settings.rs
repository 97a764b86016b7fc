//! Layered configuration: built-in defaults → `keyward.toml` → `KEYWARD_*` environment
//! variables → command-line flags, the later winning. Every error names where the bad value
//! came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use ipnet::IpNet;
use keyward_core::{CapabilityCatalog, ForwardRule, ForwardRules, KeyPrefix, Plan, RateLimit};
use keyward_server::Config;
use serde::Deserialize;

/// The whole `keyward.toml`. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub redis_fallback: Option<RedisFallback>,
    pub change_watch_ms: Option<u64>,
    pub key_prefix: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub usage_retention_days: Option<u32>,
    #[serde(default)]
    pub plans: BTreeMap<String, PlanSettings>,
    pub generator: Option<GeneratorSettings>,
    pub dashboard: Option<DashboardSettings>,
    pub capabilities: Option<CapabilitySettings>,
    pub forward: Option<ForwardSettings>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedisFallback {
    #[default]
    Local,
    Deny,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSettings {
    pub api_access: Option<bool>,
    pub rate_limit: Option<RateLimit>,
    pub max_keys: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSettings {
    pub kind: Option<GeneratorKind>,
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub api_key_env: Option<String>,
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorKind {
    Offline,
    Openai,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSettings {
    pub secure_cookies: Option<bool>,
    pub session_hours: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilitySettings {
    #[serde(default)]
    pub custom: Vec<CustomCapability>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomCapability {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSettings {
    #[serde(default)]
    pub routes: Vec<ForwardRoute>,
    /// What a proxied request no rule matches needs; without it, such a request is denied.
    pub default_capability: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardRoute {
    pub method: Option<String>,
    pub path_prefix: String,
    pub capability: String,
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub redis_url: Option<String>,
}

/// The resolved settings every command runs with.
#[derive(Debug)]
pub struct Settings {
    pub listen: String,
    pub database_url: String,
    pub redis_url: Option<String>,
    pub redis_fallback: RedisFallback,
    pub usage_retention_days: u32,
    pub app: Config,
    /// Where the file layer came from, if any (for messages).
    pub config_path: Option<PathBuf>,
}

/// Reads the environment through a function so tests can pass their own.
pub fn load(flags: &Overrides, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
    let path = flags
        .config
        .clone()
        .or_else(|| env("KEYWARD_CONFIG").map(PathBuf::from))
        .or_else(|| {
            Path::new("keyward.toml")
                .exists()
                .then(|| PathBuf::from("keyward.toml"))
        });
    let file = match &path {
        Some(p) => read_file(p)?,
        None => FileSettings::default(),
    };
    let source = path
        .as_ref()
        .map_or("keyward.toml".to_string(), |p| p.display().to_string());

    let pick = |flag: &Option<String>,
                var: &str,
                file: &Option<String>,
                default: &str|
     -> (String, String) {
        if let Some(v) = flag {
            (v.clone(), "command line".to_string())
        } else if let Some(v) = env(var) {
            (v, var.to_string())
        } else if let Some(v) = file {
            (v.clone(), source.clone())
        } else {
            (default.to_string(), "default".to_string())
        }
    };

    let (listen, _) = pick(
        &flags.listen,
        "KEYWARD_LISTEN",
        &file.listen,
        "127.0.0.1:8080",
    );
    let (database_url, _) = pick(
        &flags.database_url,
        "KEYWARD_DATABASE_URL",
        &file.database_url,
        "sqlite://keyward.db",
    );
    let (redis_url, _) = pick(&flags.redis_url, "KEYWARD_REDIS_URL", &file.redis_url, "");
    let (prefix, prefix_source) = pick(&None, "KEYWARD_KEY_PREFIX", &file.key_prefix, "kw");
    let key_prefix =
        KeyPrefix::parse(&prefix).map_err(|e| anyhow!("{prefix_source}: key_prefix: {e}"))?;

    let trusted_proxies = match &file.trusted_proxies {
        None => vec![IpNet::from(std::net::IpAddr::from([127, 0, 0, 1]))],
        Some(list) => list
            .iter()
            .map(|s| {
                parse_net(s).ok_or_else(|| {
                    anyhow!("{source}: trusted_proxies: {s:?} is not an IP address or CIDR range")
                })
            })
            .collect::<anyhow::Result<_>>()?,
    };

    let mut plans: BTreeMap<String, Plan> = Plan::built_in()
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    for (name, given) in &file.plans {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            bail!("{source}: plans.{name}: plan names are lowercase letters, digits, - and _");
        }
        let base = plans.get(name).cloned();
        let rate_limit = match (given.rate_limit, &base) {
            (Some(r), _) => RateLimit::new(r.limit, r.window_seconds)
                .map_err(|e| anyhow!("{source}: plans.{name}.rate_limit: {e}"))?,
            (None, Some(b)) => b.rate_limit,
            (None, None) => bail!("{source}: plans.{name}: a new plan needs a rate_limit"),
        };
        let plan = Plan {
            name: name.clone(),
            api_access: given
                .api_access
                .or(base.as_ref().map(|b| b.api_access))
                .unwrap_or(true),
            rate_limit,
            max_keys: given.max_keys.or(base.as_ref().and_then(|b| b.max_keys)),
        };
        plans.insert(name.clone(), plan);
    }

    let capabilities = match &file.capabilities {
        None => CapabilityCatalog::default(),
        Some(c) => CapabilityCatalog::with_custom(
            c.custom
                .iter()
                .map(|c| (c.name.as_str(), c.description.as_str())),
        )
        .map_err(|e| anyhow!("{source}: capabilities.custom: {e}"))?,
    };
    let forward = forward_rules(file.forward.as_ref(), &capabilities, &source)?;
    let change_watch_ms = file.change_watch_ms.unwrap_or(250);
    if !(10..=1000).contains(&change_watch_ms) {
        bail!("{source}: change_watch_ms must be from 10 to 1000 (changes must reach every node within a second)");
    }
    if let Some(g) = &file.generator {
        if g.timeout_seconds == Some(0) {
            bail!("{source}: generator.timeout_seconds must be at least 1");
        }
        if g.kind == Some(GeneratorKind::Openai) && g.base_url.as_deref().unwrap_or("").is_empty() {
            bail!("{source}: generator.base_url is needed when generator.kind = \"openai\"");
        }
        for (name, value) in [("model", &g.model), ("api_key_env", &g.api_key_env)] {
            if value.as_deref() == Some("") {
                bail!("{source}: generator.{name} must not be empty");
            }
        }
    }
    let mut dashboard = keyward_server::config::DashboardConfig::default();
    if let Some(d) = &file.dashboard {
        if d.session_hours.is_some_and(|h| !(1..=720).contains(&h)) {
            bail!("{source}: dashboard.session_hours must be from 1 to 720");
        }
        dashboard.secure_cookies = d.secure_cookies.unwrap_or(dashboard.secure_cookies);
        dashboard.session_hours = d.session_hours.unwrap_or(dashboard.session_hours);
    }
    let usage_retention_days = file.usage_retention_days.unwrap_or(90);
    if usage_retention_days == 0 {
        bail!("{source}: usage_retention_days must be at least 1");
    }

    Ok(Settings {
        listen,
        database_url,
        redis_url: Some(redis_url.clone()).filter(|u| !u.is_empty()),
        redis_fallback: file.redis_fallback.unwrap_or_default(),
        usage_retention_days,
        app: Config {
            key_prefix,
            plans,
            capabilities,
            forward,
            trusted_proxies,
            change_watch: Duration::from_millis(change_watch_ms),
            redis_url: Some(redis_url).filter(|u| !u.is_empty()),
            redis_fallback: match file.redis_fallback.unwrap_or_default() {
                RedisFallback::Local => keyward_server::limiter::Fallback::Local,
                RedisFallback::Deny => keyward_server::limiter::Fallback::Deny,
            },
            usage_retention_days,
            key_cache_capacity: keyward_server::cache::DEFAULT_CAPACITY,
            generator: generator_config(file.generator.as_ref()),
            worker: Default::default(),
            dashboard,
            clock: keyward_server::Clock::system(),
        },
        config_path: path,
    })
}

/// `[[forward.routes]]` and `[forward] default_capability`, checked against the catalog
/// (custom capabilities included). Errors name the rule by index and path prefix.
fn forward_rules(
    forward: Option<&ForwardSettings>,
    catalog: &CapabilityCatalog,
    source: &str,
) -> anyhow::Result<ForwardRules> {
    let Some(forward) = forward else {
        return Ok(ForwardRules::default());
    };
    let mut rules = Vec::with_capacity(forward.routes.len());
    for (i, route) in forward.routes.iter().enumerate() {
        let name = format!(
            "forward.routes[{i}] (path_prefix = {:?})",
            route.path_prefix
        );
        let capability = catalog
            .parse(&route.capability)
            .map_err(|e| anyhow!("{source}: {name}: capability: {e}"))?;
        let rule = ForwardRule::new(route.method.as_deref(), &route.path_prefix, capability)
            .map_err(|e| anyhow!("{source}: {name}: {e}"))?;
        rules.push(rule);
    }
    let default_capability = forward
        .default_capability
        .as_deref()
        .map(|c| {
            catalog
                .parse(c)
                .map_err(|e| anyhow!("{source}: forward.default_capability: {e}"))
        })
        .transpose()?;
    Ok(ForwardRules::new(rules, default_capability))
}

/// The `[generator]` table over the built-in defaults.
fn generator_config(g: Option<&GeneratorSettings>) -> keyward_server::generator::GeneratorConfig {
    use keyward_server::generator::{GeneratorConfig, Kind};
    let mut config = GeneratorConfig::default();
    let Some(g) = g else { return config };
    if let Some(kind) = g.kind {
        config.kind = match kind {
            GeneratorKind::Offline => Kind::Offline,
            GeneratorKind::Openai => Kind::OpenAi,
        };
    }
    if let Some(url) = &g.base_url {
        config.base_url = url.clone();
    }
    if let Some(model) = &g.model {
        config.model = model.clone();
    }
    if let Some(env) = &g.api_key_env {
        config.api_key_env = Some(env.clone());
    }
    if let Some(secs) = g.timeout_seconds {
        config.timeout = Duration::from_secs(secs);
    }
    config
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        match line {
            Some(line) => anyhow!("{}:{line}: {}", path.display(), e.message().trim_end()),
            None => anyhow!("{}: {}", path.display(), e.message().trim_end()),
        }
    })
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn layers_override_in_order() {
        let f = write("listen = \"127.0.0.1:9000\"\nkey_prefix = \"acme\"\n");
        let flags = Overrides {
            config: Some(f.path().into()),
            ..Default::default()
        };
        let s = load(&flags, |_| None).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000");
        assert_eq!(s.app.key_prefix.as_str(), "acme");
        let s = load(&flags, |v| {
            (v == "KEYWARD_LISTEN").then(|| "0.0.0.0:1".to_string())
        })
        .unwrap();
        assert_eq!(s.listen, "0.0.0.0:1");
        let flags = Overrides {
            listen: Some("127.0.0.1:2".into()),
            ..flags
        };
        let s = load(&flags, |v| {
            (v == "KEYWARD_LISTEN").then(|| "0.0.0.0:1".to_string())
        })
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:2");
    }

    #[test]
    fn unknown_keys_are_named() {
        let f = write("listen = \"127.0.0.1:9000\"\nlisten_port = 3\n");
        let flags = Overrides {
            config: Some(f.path().into()),
            ..Default::default()
        };
        let err = load(&flags, |_| None).unwrap_err().to_string();
        assert!(err.contains("listen_port"), "{err}");
        let f = write("[plans.pro]\nmax_key = 3\n");
        let flags = Overrides {
            config: Some(f.path().into()),
            ..Default::default()
        };
        let err = load(&flags, |_| None).unwrap_err().to_string();
        assert!(err.contains("max_key"), "{err}");
    }

    #[test]
    fn the_whole_documented_file_loads() {
        let f = write(include_str!("../../../docs/keyward.example.toml"));
        let flags = Overrides {
            config: Some(f.path().into()),
            ..Default::default()
        };
        let s = load(&flags, |_| None).unwrap();
        assert!(s.app.capabilities.parse("reports:read").is_ok());
        assert_eq!(s.app.plan("pro").unwrap().max_keys, Some(1000));
        assert!(!s.app.dashboard.secure_cookies);
        assert_eq!(s.app.dashboard.session_hours, 12);
    }

    #[test]
    fn dashboard_settings_reach_the_server_config() {
        let f = write("[dashboard]\nsecure_cookies = true\nsession_hours = 2\n");
        let flags = Overrides {
            config: Some(f.path().into()),
            ..Default::default()
        };
        let s = load(&flags, |_| None).unwrap();
        assert!(s.app.dashboard.secure_cookies);
        assert_eq!(s.app.dashboard.session_hours, 2);
        let f = write("[dashboard]\nsession_hours = 0\n");
        let flags = Overrides {
            config: Some(f.path().into()),
            ..Default::default()
        };
        let err = load(&flags, |_| None).unwrap_err().to_string();
        assert!(err.contains("session_hours"), "{err}");
    }

    #[test]
    fn forward_routes_reach_the_server_config() {
        let f = write(
            "[capabilities]\ncustom = [{ name = \"reports:read\" }]\n\
             [forward]\ndefault_capability = \"content:read\"\n\
             [[forward.routes]]\nmethod = \"GET\"\npath_prefix = \"/reports\"\ncapability = \"reports:read\"\n\
             [[forward.routes]]\npath_prefix = \"/\"\ncapability = \"keys:read\"\n",
        );
        let flags = Overrides {
            config: Some(f.path().into()),
            ..Default::default()
        };
        let s = load(&flags, |_| None).unwrap();
        let rules = s.app.forward.rules();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].to_string(), "GET /reports -> reports:read");
        assert_eq!(rules[1].to_string(), "* / -> keys:read");
        assert_eq!(
            s.app.forward.default_capability().map(|c| c.as_str()),
            Some("content:read")
        );
    }

    #[test]
    fn bad_forward_rules_are_named() {
        let cases = [
            ("[[forward.routes]]\npath_prefix = \"/r\"\ncapability = \"reports:read\"\n", "forward.routes[0] (path_prefix = \"/r\"): capability: unknown capability"),
            ("[[forward.routes]]\npath_prefix = \"/a\"\ncapability = \"keys:read\"\n[[forward.routes]]\nmethod = \"get\"\npath_prefix = \"/b\"\ncapability = \"keys:read\"\n", "forward.routes[1] (path_prefix = \"/b\"): method \"get\""),
            ("[[forward.routes]]\npath_prefix = \"reports\"\ncapability = \"keys:read\"\n", "must start with /"),
            ("[[forward.routes]]\npath_prefix = \"/a//b\"\ncapability = \"keys:read\"\n", "write it as \"/a/b\""),
            ("[[forward.routes]]\npath_prefix = \"/a\"\n", "missing field `capability`"),
            ("[[forward.routes]]\npath = \"/a\"\ncapability = \"keys:read\"\n", "unknown field `path`"),
            ("[forward]\ndefault_capability = \"nope\"\n", "forward.default_capability: unknown capability"),
        ];
        for (text, want) in cases {
            let f = write(text);
            let flags = Overrides {
                config: Some(f.path().into()),
                ..Default::default()
            };
            let err = load(&flags, |_| None).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn bad_prefix_names_its_source() {
        let err = load(&Overrides::default(), |v| {
            (v == "KEYWARD_KEY_PREFIX").then(|| "key".to_string())
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("KEYWARD_KEY_PREFIX"), "{err}");
    }
}
