//! Content generation: turns a topic, keywords, tone and length into a draft blog post.
//!
//! The generator is pluggable (SPEC §6, "Generation"): [`OfflineGenerator`] is the built-in
//! default and works without any network, [`OpenAiGenerator`] talks to any OpenAI-compatible
//! `/chat/completions` endpoint (a local Ollama, vLLM, llama.cpp server, …). Callers hold an
//! `Arc<dyn Generator>` made by [`build`] and never need to know which one they have.
//!
//! Every [`GenerationError`] message is safe to store on a job and show to its owner: it never
//! carries the upstream API key, the upstream's response body or the endpoint URL.

mod markdown;
mod offline;
mod openai;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use offline::OfflineGenerator;
pub use openai::OpenAiGenerator;

/// What to write about. The HTTP layer parses and validates it; generators only tidy
/// whitespace, so a stray newline in a topic cannot break the draft's markdown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRequest {
    pub topic: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub tone: Option<String>,
    #[serde(default)]
    pub length: Length,
    /// The website the draft is for; generators may mention it.
    pub website_name: String,
}

/// How long a draft should be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Length {
    Short,
    #[default]
    Medium,
    Long,
}

impl Length {
    /// The approximate number of words a draft of this length has.
    pub fn target_words(self) -> usize {
        match self {
            Length::Short => 300,
            Length::Medium => 700,
            Length::Long => 1200,
        }
    }
}

/// A generated draft, ready to be saved as a draft blog post.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    pub title: String,
    /// Plain text, at most about 200 characters.
    pub excerpt: String,
    /// Markdown, without the title (which is stored separately).
    pub body: String,
}

/// Why a generation failed. The messages are written for the job's owner and are safe to
/// store: they never contain the API key, the upstream's body or the endpoint URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenerationError {
    /// An attempt took longer than the configured timeout.
    #[error("the generator did not answer within {after:?}")]
    Timeout { after: Duration },
    /// The upstream answered with a status other than 2xx.
    #[error("the generator answered with HTTP status {status}")]
    UpstreamStatus { status: u16 },
    /// The upstream answered 2xx, but not with something a draft can be made of.
    #[error("the generator's answer could not be used: {0}")]
    BadResponse(String),
    /// The request could not be sent or its answer not read (connection refused, reset, DNS).
    #[error("could not reach the generator: {0}")]
    Transport(String),
    /// The generator's configuration cannot work (bad `base_url`, unusable API key, …).
    #[error("the generator is not configured: {0}")]
    NotConfigured(String),
}

impl GenerationError {
    /// A short, stable, machine-readable name for the failure, for job records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            GenerationError::Timeout { .. } => "timeout",
            GenerationError::UpstreamStatus { .. } => "upstream_status",
            GenerationError::BadResponse(_) => "bad_response",
            GenerationError::Transport(_) => "transport",
            GenerationError::NotConfigured(_) => "not_configured",
        }
    }

    /// Whether trying again may help: network trouble, timeouts, 429 and 5xx. Other 4xx mean
    /// the request itself is wrong, and a bad answer is not a passing condition either.
    pub fn is_retryable(&self) -> bool {
        match self {
            GenerationError::Timeout { .. } | GenerationError::Transport(_) => true,
            GenerationError::UpstreamStatus { status } => *status == 429 || *status >= 500,
            GenerationError::BadResponse(_) | GenerationError::NotConfigured(_) => false,
        }
    }
}

/// The future [`Generator::generate`] returns: boxed so the trait can be used as
/// `Arc<dyn Generator>`.
pub type GenerateFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Draft, GenerationError>> + Send + 'a>>;

/// Something that writes drafts. Implementations do their own retries and timeouts, so a
/// caller awaits one call and records its outcome.
pub trait Generator: Send + Sync {
    /// Writes a draft for `req`.
    fn generate<'a>(&'a self, req: &'a GenerationRequest) -> GenerateFuture<'a>;

    /// A short name for logs and job records: `"offline"` or `"openai"`.
    fn name(&self) -> &'static str;
}

/// Which generator to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// The built-in, template-based generator ([`OfflineGenerator`]).
    #[default]
    Offline,
    /// An OpenAI-compatible chat completions endpoint ([`OpenAiGenerator`]).
    OpenAi,
}

/// The typed form of `keyward.toml`'s `[generator]` table (SPEC §9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratorConfig {
    pub kind: Kind,
    /// The API root, e.g. `http://127.0.0.1:11434/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub model: String,
    /// The environment variable holding the API key, read once at construction. Unset or
    /// empty means requests go without an `Authorization` header (fine for a local server).
    pub api_key_env: Option<String>,
    /// The limit for each attempt, from sending the request to reading the whole answer.
    pub timeout: Duration,
    /// The pause before each retry; its length is the number of retries.
    pub retry_delays: Vec<Duration>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            kind: Kind::Offline,
            base_url: "http://127.0.0.1:11434/v1".to_owned(),
            model: "llama3".to_owned(),
            api_key_env: Some("GENERATOR_API_KEY".to_owned()),
            timeout: Duration::from_secs(60),
            retry_delays: vec![Duration::from_millis(200), Duration::from_millis(800)],
        }
    }
}

/// Builds the configured generator, or says why the configuration cannot work. Use it at
/// startup to refuse a broken configuration early.
pub fn try_build(config: &GeneratorConfig) -> Result<Arc<dyn Generator>, GenerationError> {
    Ok(match config.kind {
        Kind::Offline => Arc::new(OfflineGenerator::new()),
        Kind::OpenAi => Arc::new(OpenAiGenerator::from_env(config)?),
    })
}

/// Builds the configured generator. It never fails: a configuration that cannot work gives a
/// generator whose every job fails with [`GenerationError::NotConfigured`] saying why, rather
/// than silently falling back to template text where the operator asked for a model.
pub fn build(config: &GeneratorConfig) -> Arc<dyn Generator> {
    match try_build(config) {
        Ok(generator) => generator,
        Err(err) => {
            tracing::error!(error = %err, "content generation will fail until this is fixed");
            Arc::new(Unavailable { reason: err })
        }
    }
}

/// Stands in for a generator whose configuration cannot work.
struct Unavailable {
    reason: GenerationError,
}

impl Generator for Unavailable {
    fn generate<'a>(&'a self, _req: &'a GenerationRequest) -> GenerateFuture<'a> {
        Box::pin(std::future::ready(Err(self.reason.clone())))
    }

    fn name(&self) -> &'static str {
        "openai"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> GenerationRequest {
        GenerationRequest {
            topic: "Composting at home".to_owned(),
            keywords: vec!["worms".to_owned()],
            tone: None,
            length: Length::Short,
            website_name: "Green Thumb".to_owned(),
        }
    }

    #[tokio::test]
    async fn default_config_builds_the_offline_generator() {
        let generator = build(&GeneratorConfig::default());
        assert_eq!(generator.name(), "offline");
        let draft = generator.generate(&request()).await.unwrap();
        assert!(draft.body.contains("Composting at home"));
    }

    #[tokio::test]
    async fn an_unusable_openai_config_fails_jobs_with_not_configured() {
        let config = GeneratorConfig {
            kind: Kind::OpenAi,
            base_url: "ftp://example.com".to_owned(),
            api_key_env: None,
            ..GeneratorConfig::default()
        };
        assert!(matches!(
            try_build(&config).err(),
            Some(GenerationError::NotConfigured(_))
        ));
        let generator = build(&config);
        assert_eq!(generator.name(), "openai");
        let err = generator.generate(&request()).await.unwrap_err();
        assert_eq!(err.code(), "not_configured");
        assert!(!err.is_retryable());
    }

    #[test]
    fn length_parses_lowercase_and_defaults_to_medium() {
        let req: GenerationRequest =
            serde_json::from_str(r#"{"topic": "t", "website_name": "w"}"#).unwrap();
        assert_eq!(req.length, Length::Medium);
        assert!(req.keywords.is_empty());
        let long: Length = serde_json::from_str(r#""long""#).unwrap();
        assert_eq!(long, Length::Long);
        assert!(serde_json::from_str::<Length>(r#""Long""#).is_err());
    }

    #[test]
    fn retryable_errors_are_network_timeouts_429_and_5xx() {
        let retryable = |e: GenerationError| e.is_retryable();
        assert!(retryable(GenerationError::Timeout {
            after: Duration::from_secs(1)
        }));
        assert!(retryable(GenerationError::Transport("reset".into())));
        assert!(retryable(GenerationError::UpstreamStatus { status: 429 }));
        assert!(retryable(GenerationError::UpstreamStatus { status: 503 }));
        assert!(!retryable(GenerationError::UpstreamStatus { status: 400 }));
        assert!(!retryable(GenerationError::UpstreamStatus { status: 401 }));
        assert!(!retryable(GenerationError::BadResponse("x".into())));
    }
}
