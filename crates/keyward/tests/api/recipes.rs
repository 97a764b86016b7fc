//! The recipes of docs/INTEGRATIONS.md are the files in docs/examples, verbatim, and they work:
//! the Rust client is compiled into this test binary, the Python and Node ones are run.

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, with_reports, TestApp};

#[path = "../../../../docs/examples/verify.rs"]
mod verify_example;

const DOC: &str = include_str!("../../../../docs/INTEGRATIONS.md");
const PYTHON: &str = include_str!("../../../../docs/examples/verify.py");
const NODE: &str = include_str!("../../../../docs/examples/verify.mjs");
const RUST: &str = include_str!("../../../../docs/examples/verify.rs");

fn example(name: &str) -> String {
    format!("{}/../../docs/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_documented_recipes_are_the_tested_files() {
    for (name, text) in [
        ("nginx.conf", crate::nginx::RECIPE),
        ("verify.py", PYTHON),
        ("verify.mjs", NODE),
        ("verify.rs", RUST),
    ] {
        assert!(
            DOC.contains(text.trim()),
            "docs/INTEGRATIONS.md must show docs/examples/{name} verbatim"
        );
    }
}

/// An organization with a service key (keys:verify) and a client key holding `reports:read`.
async fn setup() -> (TestApp, String, String) {
    let app = spawn_app_with(with_reports).await;
    let t = app.tenant("Acme", "pro", &["keys:verify"]).await;
    let (_, _, client) = app
        .agent(&t.org, "Reports app", &["reports:read"], None)
        .await;
    (app, t.key, client)
}

#[tokio::test]
async fn the_rust_client_verifies_keys() {
    let (app, service, client) = setup().await;
    let http = reqwest::Client::new();
    let answer =
        verify_example::verify_key(&http, &app.base, &service, &client, Some("reports:read"))
            .await
            .unwrap();
    assert_eq!(
        (answer["valid"].clone(), answer["code"].clone()),
        (json!(true), json!("valid"))
    );
    let answer =
        verify_example::verify_key(&http, &app.base, &service, &client, Some("audit:read"))
            .await
            .unwrap();
    assert_eq!(answer["code"], "insufficient_capability");
    let answer = verify_example::verify_key(&http, &app.base, &service, "kw_nope", None)
        .await
        .unwrap();
    assert_eq!(answer["code"], "malformed_api_key");
    // A service key without keys:verify is an error, not an answer.
    assert!(
        verify_example::verify_key(&http, &app.base, &client, &client, None)
            .await
            .is_err()
    );
}

/// Runs an example script with the key on stdin; `None` when the interpreter is missing.
async fn run(
    program: &str,
    script: &str,
    app: &TestApp,
    service: &str,
    key: &str,
    capability: &str,
) -> Option<Value> {
    use tokio::io::AsyncWriteExt;
    let child = tokio::process::Command::new(program)
        .arg(example(script))
        .arg(capability)
        .env("KEYWARD_URL", &app.base)
        .env("KEYWARD_SERVICE_KEY", service)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped {script}: {program} is not installed");
            return None;
        }
        Err(e) => panic!("cannot run {program}: {e}"),
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{key}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{program} {script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[tokio::test]
async fn the_python_and_node_clients_verify_keys() {
    let (app, service, client) = setup().await;
    for (program, script) in [("python3", "verify.py"), ("node", "verify.mjs")] {
        let Some(answer) = run(program, script, &app, &service, &client, "reports:read").await
        else {
            continue;
        };
        assert_eq!(answer, json!({"valid": true, "code": "valid"}), "{script}");
        let answer = run(program, script, &app, &service, &client, "audit:read")
            .await
            .unwrap();
        assert_eq!(
            answer,
            json!({"valid": false, "code": "insufficient_capability"}),
            "{script}"
        );
        let answer = run(program, script, &app, &service, "kw_nope", "")
            .await
            .unwrap();
        assert_eq!(
            answer,
            json!({"valid": false, "code": "malformed_api_key"}),
            "{script}"
        );
    }
}
