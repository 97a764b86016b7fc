//! A small W3C WebDriver client over the HTTP client the tests already have: enough to
//! drive headless Chromium through Debian's `chromedriver` (no driver or browser is ever
//! downloaded).

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A found element.
#[derive(Clone, Debug)]
pub struct Element(String);

/// One browser session and the chromedriver process behind it (killed on drop).
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where the browser tests find their tools, or why they are skipped.
pub fn tools() -> Option<(String, String)> {
    let driver = std::env::var("KEYWARD_TEST_CHROMEDRIVER").ok();
    let chromium = std::env::var("KEYWARD_TEST_CHROMIUM").ok();
    match (driver, chromium) {
        (Some(d), Some(c)) if !d.is_empty() && !c.is_empty() => Some((d, c)),
        _ => {
            eprintln!(
                "skipped: the browser tests need KEYWARD_TEST_CHROMEDRIVER and KEYWARD_TEST_CHROMIUM \
                 (e.g. /usr/bin/chromedriver and /usr/bin/chromium from Debian's chromium-driver and chromium)"
            );
            None
        }
    }
}

impl Browser {
    /// Starts chromedriver on a free port (it prints the one it got) and a headless
    /// Chromium with a fresh profile; `None` (after saying why) when the tools are not set.
    pub async fn start() -> Option<Self> {
        let (driver_path, chromium) = tools()?;
        let mut driver = Command::new(&driver_path)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_path}: {e}"));
        let stdout = driver.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<u16>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                // "ChromeDriver was started successfully on port 39331."
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    if let Ok(port) = rest.trim_end_matches('.').trim().parse() {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromedriver did not say which port it listens on");
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--disable-dev-shm-usage".into(),
            "--no-proxy-server".into(),
            "--hide-scrollbars".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "pageLoadStrategy": "normal",
                "timeouts": {"implicit": 5000, "pageLoad": 30000, "script": 10000},
                "goog:chromeOptions": {"binary": chromium, "args": args},
            }}}))
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .unwrap();
        let id = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_string();
        Some(Self {
            http,
            session: format!("{base}/session/{id}"),
            driver,
            _profile: profile,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let reply: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(err) = reply["value"]["error"].as_str() {
            panic!(
                "WebDriver {path}: {err}: {}",
                reply["value"]["message"].as_str().unwrap_or("")
            );
        }
        reply["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    pub async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap_or("").to_string()
    }

    /// The first element matching `css`, waiting up to the implicit timeout for it.
    pub async fn find(&self, css: &str) -> Element {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        Element(
            v[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element {css}: {v}"))
                .to_string(),
        )
    }

    pub async fn find_xpath(&self, xpath: &str) -> Element {
        let v = self
            .post("/element", json!({"using": "xpath", "value": xpath}))
            .await;
        Element(
            v[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element {xpath}: {v}"))
                .to_string(),
        )
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.click_element(&e).await;
    }

    /// Clicks something that loads another page, and waits until that page has loaded
    /// (a click returns as soon as it is delivered, not when the form's answer arrives).
    pub async fn click_to_load(&self, css: &str) {
        let e = self.find(css).await;
        self.load_after(&e).await;
    }

    pub async fn load_after(&self, e: &Element) {
        self.execute("window.__kwOldPage = true;", json!([])).await;
        self.click_element(e).await;
        self.wait_for_new_page().await;
    }

    /// Waits until the page that set `window.__kwOldPage` has been replaced and loaded.
    pub async fn wait_for_new_page(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let done = self
                .execute(
                    "return !window.__kwOldPage && document.readyState === 'complete';",
                    json!([]),
                )
                .await;
            if done == json!(true) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no new page after clicking"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn click_element(&self, e: &Element) {
        self.post(&format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    /// Replaces the value of the input matching `css` by typing `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{}/clear", e.0), json!({}))
            .await;
        self.post(&format!("/element/{}/value", e.0), json!({"text": text}))
            .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.get(&format!("/element/{}/text", e.0))
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// A DOM property (`checked`, `disabled`, `value`…) of the element matching `css`.
    pub async fn property(&self, css: &str, name: &str) -> Value {
        let e = self.find(css).await;
        self.get(&format!("/element/{}/property/{name}", e.0)).await
    }

    /// The page's visible text.
    pub async fn body_text(&self) -> String {
        self.text("body").await
    }

    pub async fn source(&self) -> String {
        self.get("/source").await.as_str().unwrap_or("").to_string()
    }

    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// A PNG of the whole page at the current width.
    pub async fn screenshot(&self, path: &Path) {
        let rect = self.get("/window/rect").await;
        let width = rect["width"].as_u64().unwrap_or(1280) as u32;
        let height = rect["height"].as_u64().unwrap_or(900) as u32;
        let full = self
            .execute(
                "return Math.ceil(document.documentElement.scrollHeight);",
                json!([]),
            )
            .await
            .as_u64()
            .unwrap_or(u64::from(height)) as u32;
        self.set_window(width, full.clamp(height, 4000)).await;
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
        self.set_window(width, height).await;
    }

    /// A PNG of what the window shows now.
    pub async fn screenshot_viewport(&self, path: &Path) {
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    pub async fn quit(&self) {
        let _ = self
            .http
            .delete(self.session.clone())
            .send()
            .await
            .map(|_| ());
    }
}
