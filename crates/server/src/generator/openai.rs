//! A generator backed by any OpenAI-compatible chat completions endpoint: a local Ollama,
//! vLLM or llama.cpp server, or a hosted API reached through an HTTP proxy.

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Client, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::markdown::{draft_from_markdown, one_line};
use super::{
    Draft, GenerateFuture, GenerationError, GenerationRequest, Generator, GeneratorConfig,
};

/// Some variety without drifting off the brief.
const TEMPERATURE: f64 = 0.7;

/// A long post is a few tens of kilobytes; anything far beyond that is not an answer worth
/// holding in memory.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Calls `POST {base_url}/chat/completions`, with a timeout per attempt and retries on
/// failures that may pass (network, timeouts, 429, 5xx).
#[derive(Debug)]
pub struct OpenAiGenerator {
    client: Client,
    endpoint: Url,
    model: String,
    /// Sent as `Authorization: Bearer …` when present; `SecretString` keeps it out of `Debug`.
    api_key: Option<SecretString>,
    timeout: Duration,
    retry_delays: Vec<Duration>,
}

impl OpenAiGenerator {
    /// Builds the generator, reading the API key from the environment variable named by
    /// `config.api_key_env`. An unset or blank variable means no key, as a local server
    /// needs none.
    pub fn from_env(config: &GeneratorConfig) -> Result<Self, GenerationError> {
        let api_key = config
            .api_key_env
            .as_deref()
            .and_then(|var| std::env::var(var).ok())
            .map(|key| key.trim().to_owned())
            .filter(|key| !key.is_empty())
            .map(SecretString::from);
        if api_key.is_none() {
            tracing::info!(
                api_key_env = config.api_key_env.as_deref().unwrap_or(""),
                "no generator API key set; requests go without an Authorization header"
            );
        }
        Self::new(config, api_key)
    }

    /// Builds the generator with an explicit API key (or none). Checks everything that can be
    /// checked without a request, so a broken configuration shows at startup.
    pub fn new(
        config: &GeneratorConfig,
        api_key: Option<SecretString>,
    ) -> Result<Self, GenerationError> {
        let not_configured = |why: &str| GenerationError::NotConfigured(why.to_owned());
        let endpoint = endpoint(&config.base_url)?;
        if config.model.trim().is_empty() {
            return Err(not_configured("generator.model is empty"));
        }
        if config.timeout.is_zero() {
            return Err(not_configured(
                "generator.timeout_seconds must be at least 1",
            ));
        }
        if let Some(key) = &api_key {
            bearer(key)?;
        }
        let client = Client::builder()
            .user_agent(concat!("keyward/", env!("CARGO_PKG_VERSION")))
            // An API endpoint has no business redirecting, and following one would replay a
            // POST with the key to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| not_configured("the HTTP client could not be set up"))?;
        Ok(Self {
            client,
            endpoint,
            model: config.model.trim().to_owned(),
            api_key,
            timeout: config.timeout,
            retry_delays: config.retry_delays.clone(),
        })
    }

    async fn run(&self, req: &GenerationRequest) -> Result<Draft, GenerationError> {
        let body = self.request_body(req);
        let mut delays = self.retry_delays.iter();
        let mut attempt = 1;
        let content = loop {
            match self.attempt(&body).await {
                Ok(content) => break content,
                Err(err) if err.is_retryable() => match delays.next() {
                    Some(delay) => {
                        tracing::warn!(attempt, error = %err, retry_in = ?delay, "generator attempt failed; retrying");
                        tokio::time::sleep(*delay).await;
                        attempt += 1;
                    }
                    None => return Err(err),
                },
                Err(err) => return Err(err),
            }
        };
        draft_from_markdown(&content, &req.topic)
    }

    /// One request, bounded as a whole (connect, send, wait, read) by the timeout, so a server
    /// that trickles its answer cannot hold a job for longer than that.
    async fn attempt(&self, body: &Value) -> Result<String, GenerationError> {
        let mut request = self.client.post(self.endpoint.clone()).json(body);
        if let Some(key) = &self.api_key {
            request = request.header(AUTHORIZATION, bearer(key)?);
        }
        let exchange = async {
            let mut response = request.send().await.map_err(transport)?;
            let status = response.status();
            if !status.is_success() {
                // The body is not kept: it is the upstream's text, and some APIs echo part of
                // the key in their 401 answers.
                return Err(GenerationError::UpstreamStatus {
                    status: status.as_u16(),
                });
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(GenerationError::BadResponse(
                        "the answer was larger than 4 MiB".to_owned(),
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            content_of(&bytes)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(GenerationError::Timeout {
                after: self.timeout,
            }))
    }

    fn request_body(&self, req: &GenerationRequest) -> Value {
        json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": system_prompt(req)},
                {"role": "user", "content": user_prompt(req)},
            ],
            "temperature": TEMPERATURE,
            // Some servers stream by default; this client reads one JSON answer.
            "stream": false,
        })
    }

    /// No message is built from the key, but a library or an upstream could echo it in text
    /// we pass on; this is the last line of defence before a message is stored and shown.
    fn redact(&self, err: GenerationError) -> GenerationError {
        let Some(key) = &self.api_key else {
            return err;
        };
        let key = key.expose_secret();
        let scrub = |message: String| message.replace(key, "[redacted]");
        match err {
            GenerationError::BadResponse(m) => GenerationError::BadResponse(scrub(m)),
            GenerationError::Transport(m) => GenerationError::Transport(scrub(m)),
            GenerationError::NotConfigured(m) => GenerationError::NotConfigured(scrub(m)),
            other @ (GenerationError::Timeout { .. } | GenerationError::UpstreamStatus { .. }) => {
                other
            }
        }
    }
}

impl Generator for OpenAiGenerator {
    fn generate<'a>(&'a self, req: &'a GenerationRequest) -> GenerateFuture<'a> {
        Box::pin(async move { self.run(req).await.map_err(|err| self.redact(err)) })
    }

    fn name(&self) -> &'static str {
        "openai"
    }
}

/// `{base_url}/chat/completions`, with or without a trailing slash on `base_url`. Messages
/// name the setting, not its value, which could carry credentials.
fn endpoint(base_url: &str) -> Result<Url, GenerationError> {
    let not_configured = |why: &str| GenerationError::NotConfigured(why.to_owned());
    let base = base_url.trim().trim_end_matches('/');
    let url = Url::parse(&format!("{base}/chat/completions"))
        .map_err(|_| not_configured("generator.base_url is not a valid URL"))?;
    match url.scheme() {
        "http" => Ok(url),
        // keyward is built without a TLS stack (see the workspace's reqwest features).
        "https" => Err(not_configured(
            "generator.base_url uses https, but this build of keyward has no TLS support; \
             use an http:// endpoint, such as a local server or a TLS-terminating proxy",
        )),
        _ => Err(not_configured("generator.base_url must be an http:// URL")),
    }
}

/// The `Authorization` value, marked sensitive so that `Debug` output and HTTP tracing
/// redact it.
fn bearer(key: &SecretString) -> Result<HeaderValue, GenerationError> {
    let mut value =
        HeaderValue::try_from(format!("Bearer {}", key.expose_secret())).map_err(|_| {
            GenerationError::NotConfigured(
                "the API key contains characters not allowed in an HTTP header".to_owned(),
            )
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Describes a reqwest failure by its causes ("connection refused", "connection reset"), never
/// by its URL, which reqwest's own message includes.
fn transport(err: reqwest::Error) -> GenerationError {
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    GenerationError::Transport(message)
}

/// `choices[0].message.content` of a chat completion. Parse errors are not passed on: serde's
/// messages can quote the upstream's text.
fn content_of(bytes: &[u8]) -> Result<String, GenerationError> {
    let answer: Value = serde_json::from_slice(bytes)
        .map_err(|_| GenerationError::BadResponse("the answer was not JSON".to_owned()))?;
    match answer.pointer("/choices/0/message/content") {
        Some(Value::String(content)) => Ok(content.clone()),
        _ => Err(GenerationError::BadResponse(
            "the answer had no text at choices[0].message.content".to_owned(),
        )),
    }
}

fn system_prompt(req: &GenerationRequest) -> String {
    let site = one_line(&req.website_name);
    let writer = if site.is_empty() {
        "You are a skilled blog writer.".to_owned()
    } else {
        format!("You are a skilled writer for the website \"{site}\".")
    };
    format!(
        "{writer} You write original, accurate, well-structured blog posts in Markdown.\n\
         Answer with the post and nothing else. The first line is `# ` followed by the title, \
         then a blank line, then the body. Open with a short introductory paragraph, use `##` \
         headings for sections, and end with a brief conclusion. Do not wrap the answer in a \
         code block and do not add notes before or after the post."
    )
}

fn user_prompt(req: &GenerationRequest) -> String {
    let keywords: Vec<String> = req
        .keywords
        .iter()
        .map(|k| one_line(k))
        .filter(|k| !k.is_empty())
        .collect();
    let tone = one_line(req.tone.as_deref().unwrap_or(""));
    let sections = match req.length {
        super::Length::Short => "2 to 3",
        super::Length::Medium => "4 to 5",
        super::Length::Long => "6 to 7",
    };
    let mut prompt = format!("Write a blog post.\nTopic: {}\n", one_line(&req.topic));
    if !keywords.is_empty() {
        prompt.push_str(&format!(
            "Keywords to work in naturally: {}\n",
            keywords.join(", ")
        ));
    }
    prompt.push_str(&format!(
        "Tone: {}\nLength: about {} words, in {sections} sections.\n",
        if tone.is_empty() {
            "clear and informative"
        } else {
            &tone
        },
        req.length.target_words()
    ));
    prompt
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use axum::Router;

    use super::super::{Kind, Length};
    use super::*;

    const KEY: &str = "sk-test-5ecret-DO-NOT-LEAK";

    /// What the fake server saw of one request.
    struct Seen {
        method: Method,
        path: String,
        authorization: Option<String>,
        content_type: Option<String>,
        body: Value,
    }

    enum Reply {
        Answer(StatusCode, String),
        /// Never answers (well, not for half a minute).
        Stall,
    }

    /// An in-process OpenAI-compatible server whose answer to the n-th request (from 0) is
    /// chosen by the test.
    #[derive(Clone)]
    struct Fake {
        hits: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<Seen>>>,
        reply: Arc<dyn Fn(usize) -> Reply + Send + Sync>,
    }

    impl Fake {
        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    async fn record(
        State(fake): State<Fake>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let n = fake.hits.fetch_add(1, Ordering::SeqCst);
        let text = |name| {
            headers
                .get(name)
                .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
        };
        fake.seen.lock().unwrap().push(Seen {
            method,
            path: uri.path().to_owned(),
            authorization: text(header::AUTHORIZATION),
            content_type: text(header::CONTENT_TYPE),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        match (fake.reply)(n) {
            Reply::Answer(status, body) => {
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            Reply::Stall => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                StatusCode::OK.into_response()
            }
        }
    }

    /// Starts the fake server and returns it with a `base_url` for it. The listener is bound
    /// before this returns, so requests queue until the server task runs: no readiness wait.
    async fn fake(reply: impl Fn(usize) -> Reply + Send + Sync + 'static) -> (Fake, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Fake {
            hits: Arc::default(),
            seen: Arc::default(),
            reply: Arc::new(reply),
        };
        let app = Router::new().fallback(record).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        // The trailing slash is deliberate: it must be tolerated.
        (fake, format!("http://{addr}/v1/"))
    }

    fn completion(content: &str) -> Reply {
        let body = json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        });
        Reply::Answer(StatusCode::OK, body.to_string())
    }

    const ANSWER: &str = "# Worms Make Compost Work\n\nA worm bin turns **kitchen scraps** into rich soil.\n\n## Getting started\n\nPick a bin.";

    fn config(base_url: &str) -> GeneratorConfig {
        GeneratorConfig {
            kind: Kind::OpenAi,
            base_url: base_url.to_owned(),
            model: "test-model".to_owned(),
            api_key_env: None,
            timeout: Duration::from_secs(5),
            retry_delays: vec![Duration::from_millis(10), Duration::from_millis(20)],
        }
    }

    fn with_key(config: &GeneratorConfig) -> OpenAiGenerator {
        OpenAiGenerator::new(config, Some(SecretString::from(KEY))).unwrap()
    }

    fn request() -> GenerationRequest {
        GenerationRequest {
            topic: "composting with worms".to_owned(),
            keywords: vec!["kitchen scraps".to_owned(), "worm bins".to_owned()],
            tone: Some("friendly".to_owned()),
            length: Length::Long,
            website_name: "Green Thumb".to_owned(),
        }
    }

    /// The error, checked to be safe to show: neither its message nor its `Debug` holds the key.
    async fn failure(generator: &OpenAiGenerator) -> GenerationError {
        let err = generator.generate(&request()).await.unwrap_err();
        assert!(!err.to_string().contains(KEY), "{err}");
        assert!(!format!("{err:?}").contains(KEY), "{err:?}");
        err
    }

    #[tokio::test]
    async fn sends_a_chat_completion_and_turns_the_answer_into_a_draft() {
        let (fake, base_url) = fake(|_| completion(ANSWER)).await;
        let generator = with_key(&config(&base_url));
        assert_eq!(generator.name(), "openai");

        let draft = generator.generate(&request()).await.unwrap();
        assert_eq!(draft.title, "Worms Make Compost Work");
        assert_eq!(
            draft.excerpt,
            "A worm bin turns kitchen scraps into rich soil."
        );
        assert!(draft
            .body
            .starts_with("A worm bin turns **kitchen scraps**"));
        assert!(draft.body.contains("## Getting started"));

        assert_eq!(fake.hits(), 1);
        let seen = fake.seen.lock().unwrap();
        let seen = &seen[0];
        assert_eq!(seen.method, Method::POST);
        assert_eq!(seen.path, "/v1/chat/completions");
        assert_eq!(
            seen.authorization.as_deref(),
            Some(&*format!("Bearer {KEY}"))
        );
        assert_eq!(seen.content_type.as_deref(), Some("application/json"));
        let body = &seen.body;
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["stream"], false);
        assert!(body["temperature"].is_number());
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["role"], "system");
        assert!(messages[0]["content"].as_str().unwrap().contains("`# `"));
        assert!(messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("Green Thumb"));
        assert_eq!(messages[1]["role"], "user");
        let user = messages[1]["content"].as_str().unwrap();
        for needle in [
            "composting with worms",
            "kitchen scraps, worm bins",
            "friendly",
            "1200 words",
        ] {
            assert!(user.contains(needle), "{needle} not in {user:?}");
        }
    }

    #[tokio::test]
    async fn sends_no_authorization_without_a_key() {
        let (fake, base_url) = fake(|_| completion(ANSWER)).await;
        let generator =
            OpenAiGenerator::new(&config(base_url.trim_end_matches('/')), None).unwrap();
        generator.generate(&request()).await.unwrap();
        let seen = fake.seen.lock().unwrap();
        assert_eq!(seen[0].path, "/v1/chat/completions");
        assert_eq!(seen[0].authorization, None);
    }

    #[tokio::test]
    async fn an_answer_without_a_title_line_is_titled_by_the_topic() {
        let (_fake, base_url) =
            fake(|_| completion("Worms are quiet workers.\n\n## Why\n\nBecause.")).await;
        let draft = with_key(&config(&base_url))
            .generate(&request())
            .await
            .unwrap();
        assert_eq!(draft.title, "composting with worms");
        assert_eq!(draft.excerpt, "Worms are quiet workers.");
    }

    #[tokio::test]
    async fn a_stalled_server_times_out_after_about_the_timeout() {
        let (fake, base_url) = fake(|_| Reply::Stall).await;
        let timeout = Duration::from_millis(300);
        let generator = with_key(&GeneratorConfig {
            timeout,
            retry_delays: Vec::new(),
            ..config(&base_url)
        });
        let started = Instant::now();
        let err = failure(&generator).await;
        let took = started.elapsed();
        assert_eq!(err, GenerationError::Timeout { after: timeout });
        assert_eq!(err.to_string(), "the generator did not answer within 300ms");
        assert!(
            took >= timeout && took < Duration::from_secs(1),
            "took {took:?}"
        );
        assert_eq!(fake.hits(), 1);
    }

    #[tokio::test]
    async fn timeouts_are_retried() {
        let (fake, base_url) = fake(|n| {
            if n < 2 {
                Reply::Stall
            } else {
                completion(ANSWER)
            }
        })
        .await;
        let generator = with_key(&GeneratorConfig {
            timeout: Duration::from_millis(200),
            ..config(&base_url)
        });
        let draft = generator.generate(&request()).await.unwrap();
        assert_eq!(draft.title, "Worms Make Compost Work");
        assert_eq!(fake.hits(), 3);
    }

    #[tokio::test]
    async fn a_500_is_retried_then_reported() {
        let (fake, base_url) = fake(|_| {
            Reply::Answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(r#"{{"error": "bad key {KEY}"}}"#),
            )
        })
        .await;
        let err = failure(&with_key(&config(&base_url))).await;
        assert_eq!(err, GenerationError::UpstreamStatus { status: 500 });
        assert_eq!(
            err.to_string(),
            "the generator answered with HTTP status 500"
        );
        assert_eq!(fake.hits(), 3, "one attempt and two retries");
    }

    #[tokio::test]
    async fn a_429_or_503_that_clears_up_is_recovered_from() {
        let (fake, base_url) = fake(|n| match n {
            0 => Reply::Answer(StatusCode::TOO_MANY_REQUESTS, String::new()),
            1 => Reply::Answer(StatusCode::SERVICE_UNAVAILABLE, String::new()),
            _ => completion(ANSWER),
        })
        .await;
        let draft = with_key(&config(&base_url))
            .generate(&request())
            .await
            .unwrap();
        assert_eq!(draft.title, "Worms Make Compost Work");
        assert_eq!(fake.hits(), 3);
    }

    #[tokio::test]
    async fn a_400_or_401_is_not_retried_and_its_body_is_not_repeated() {
        for status in [StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED] {
            // Like OpenAI's own 401, the body quotes the key it was given.
            let (fake, base_url) = fake(move |_| {
                Reply::Answer(
                    status,
                    json!({"error": {"message": format!("Incorrect API key provided: {KEY}")}})
                        .to_string(),
                )
            })
            .await;
            let err = failure(&with_key(&config(&base_url))).await;
            assert_eq!(
                err,
                GenerationError::UpstreamStatus {
                    status: status.as_u16()
                }
            );
            assert!(!err.to_string().contains("Incorrect"));
            assert_eq!(fake.hits(), 1, "{status} must not be retried");
        }
    }

    #[tokio::test]
    async fn a_malformed_answer_is_a_bad_response_and_not_retried() {
        let bodies = [
            format!("<html>{KEY}</html>"),
            r#"{"error": {"message": "model not found"}}"#.to_owned(),
            r#"{"choices": []}"#.to_owned(),
            r#"{"choices": [{"message": {"content": null}}]}"#.to_owned(),
            r#"{"choices": [{"message": {"content": 42}}]}"#.to_owned(),
            r#"{"choices": [{"message": {"content": "  "}}]}"#.to_owned(),
        ];
        for body in bodies {
            let reply_body = body.clone();
            let (fake, base_url) =
                fake(move |_| Reply::Answer(StatusCode::OK, reply_body.clone())).await;
            let err = failure(&with_key(&config(&base_url))).await;
            assert!(
                matches!(err, GenerationError::BadResponse(_)),
                "{body}: {err:?}"
            );
            assert_eq!(err.code(), "bad_response");
            assert_eq!(fake.hits(), 1, "{body}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_transport_error_that_names_no_url() {
        // A port that was just free: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let generator = with_key(&config(&format!("http://127.0.0.1:{port}/v1")));
        let err = failure(&generator).await;
        let GenerationError::Transport(message) = &err else {
            panic!("expected a transport error, got {err:?}");
        };
        assert!(
            !message.contains("127.0.0.1") && !message.contains(&port.to_string()),
            "{message}"
        );
        assert!(
            err.to_string()
                .starts_with("could not reach the generator: "),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_key_is_redacted_even_from_text_that_echoes_it() {
        let generator = with_key(&config("http://127.0.0.1:9/v1"));
        let err = generator.redact(GenerationError::Transport(format!("peer said {KEY}!")));
        assert_eq!(
            err,
            GenerationError::Transport("peer said [redacted]!".to_owned())
        );
        // Nor does the generator's own Debug show it.
        assert!(!format!("{generator:?}").contains(KEY));
    }

    #[test]
    fn configuration_is_checked_up_front() {
        let endpoint_of = |base: &str| endpoint(base).map(|u| u.to_string());
        assert_eq!(
            endpoint_of("http://h:1/v1").unwrap(),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            endpoint_of(" http://h:1/v1// ").unwrap(),
            "http://h:1/v1/chat/completions"
        );
        let refused = |config: GeneratorConfig, key: Option<&str>| {
            let err = OpenAiGenerator::new(&config, key.map(SecretString::from)).unwrap_err();
            assert_eq!(err.code(), "not_configured");
            err.to_string()
        };
        let base = config("http://127.0.0.1:9/v1");
        assert!(refused(config("https://api.openai.com/v1"), None).contains("no TLS support"));
        assert!(refused(config("not a url"), None).contains("not a valid URL"));
        assert!(refused(config("ftp://user:hunter2@h/v1"), None).contains("http://"));
        assert!(!refused(config("ftp://user:hunter2@h/v1"), None).contains("hunter2"));
        assert!(refused(
            GeneratorConfig {
                model: " ".into(),
                ..base.clone()
            },
            None
        )
        .contains("model"));
        assert!(refused(
            GeneratorConfig {
                timeout: Duration::ZERO,
                ..base.clone()
            },
            None
        )
        .contains("timeout"));
        let bad_key = "sk-line\nbreak";
        let message = refused(base.clone(), Some(bad_key));
        assert!(
            message.contains("API key") && !message.contains("sk-line"),
            "{message}"
        );
    }

    #[test]
    fn an_unset_or_blank_key_variable_means_no_key() {
        let generator = OpenAiGenerator::from_env(&GeneratorConfig {
            api_key_env: Some("KEYWARD_GENERATOR_TEST_SURELY_UNSET_VARIABLE".to_owned()),
            ..config("http://127.0.0.1:9/v1")
        })
        .unwrap();
        assert!(generator.api_key.is_none());
    }
}
