//! The dashboard in a real browser: headless Chromium driven through chromedriver. Runs when
//! KEYWARD_TEST_CHROMEDRIVER and KEYWARD_TEST_CHROMIUM are set (CI sets them); otherwise it
//! says it was skipped. Screenshots of the main pages go to `target/screenshots/`.

use std::path::PathBuf;

use keyward_core::AgentId;
use keyward_server::Caller;
use keyward_store::usage::{Counts, Increment};
use serde_json::{json, Value};

use crate::helpers::spawn_app;
use crate::webdriver::Browser;

const PASSWORD: &str = "correct horse battery";

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn api(base: &str, path: &str, key: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn dashboard_in_a_real_browser() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let shots = screenshots();
    let shot = |name: &str| shots.join(name);

    // First run: the one-time setup link creates the organization and its owner.
    let token = app.service.issue_setup_token().await.unwrap().unwrap();
    b.goto(&app.url(&format!("/setup?token={token}"))).await;
    b.fill("#organization", "Acme <Labs>").await;
    b.fill("#email", "ada@acme.test").await;
    b.fill("#password", PASSWORD).await;
    b.fill("#password_confirm", PASSWORD).await;
    b.screenshot(&shot("01-setup.png")).await;
    b.click_to_load("button[type=submit]").await;
    eprintln!("after setup: {} {}", b.url().await, b.body_text().await);
    assert!(b.text(".alert.success").await.contains("Welcome!"));
    assert!(b.url().await.ends_with("/settings/api?done=welcome"));
    assert!(b.text(".org").await.contains("Acme <Labs>"));

    // Sign out, and in again with email and password.
    b.click_to_load("form[action='/logout'] button").await;
    assert!(b.text(".alert.success").await.contains("signed out"));
    b.fill("#email", "ada@acme.test").await;
    b.fill("#password", "not the password").await;
    b.click_to_load("button[type=submit]").await;
    assert!(b.text(".alert.error").await.contains("not correct"));
    b.fill("#password", PASSWORD).await;
    b.screenshot(&shot("02-sign-in.png")).await;
    b.click_to_load("button[type=submit]").await;
    b.find("#create-agent").await;
    assert!(b.body_text().await.contains("No agents yet"));

    // A team, and a member with a one-time sign-in link.
    b.goto(&app.url("/settings/teams")).await;
    b.fill("#team-name", "Editorial").await;
    b.click_to_load(".create-team button").await;
    assert!(b.text(".alert.success").await.contains("Team created"));
    b.fill("#new-email", "mia@acme.test").await;
    b.click("#new-role option[value=member]").await;
    b.click_to_load("form[action='/settings/teams/members'] button")
        .await;
    let link = b.text("#sign-in-link").await;
    assert!(link.starts_with(&app.url("/login/link?token=")), "{link}");
    b.screenshot(&shot("03-teams.png")).await;

    // An agent with two capabilities; its first key is shown once.
    b.goto(&app.url("/settings/api")).await;
    b.fill("#agent-name", "Billing <bot>").await;
    b.fill("#agent-description", "Reads content and lists keys")
        .await;
    b.click("#new-cap-content-read").await;
    b.click("#new-cap-keys-read").await;
    b.click_to_load("#create-agent button[type=submit]").await;
    let production = b.text("#new-key").await;
    assert!(production.starts_with("kw_"));
    assert!(b.text(".keypanel").await.contains("cannot be shown again"));
    // The address bar shows the agent's page, so a reload does not post the form again.
    let agent_url = b.url().await;
    let agent_id = agent_url.rsplit('/').next().unwrap().to_string();
    let agent = AgentId::parse(&agent_id).unwrap();
    assert_eq!(b.text("h1").await, "Billing <bot>");

    // A key for one team, read from the page.
    b.fill("#key-name", "CI").await;
    b.click("#scope-team").await;
    b.click("#key-team option:nth-child(2)").await;
    b.fill("#key-environment", "staging").await;
    b.click("#key-expiry option[value='30']").await;
    b.click_to_load("#generate-form button[type=submit]").await;
    let key = b.text("#new-key").await;
    assert!(key.starts_with("kw_") && key != production);
    assert_eq!(b.text("#new-key-title").await, "New key: CI");
    b.click(".keypanel button.copy").await;
    let label = b.text(".keypanel button.copy").await;
    assert!(label == "Copied" || label == "Press Ctrl+C", "{label}");
    b.screenshot(&shot("04-key-shown-once.png")).await;
    let row = b.text("tbody tr:first-child").await;
    assert!(row.contains("CI") && row.contains("Editorial") && row.contains("staging"));
    assert!(
        row.contains("ada@acme.test") && row.contains("active"),
        "{row}"
    );

    // The key works over HTTP.
    let (status, whoami) = api(&app.base, "/v1/whoami", &key).await;
    assert_eq!(status, 200);
    assert_eq!(whoami["key"]["environment"], "staging");
    assert!(whoami["key"]["team_id"]
        .as_str()
        .unwrap()
        .starts_with("team_"));
    assert_eq!(api(&app.base, "/v1/teams", &key).await.0, 200);
    assert_eq!(api(&app.base, "/v1/websites", &key).await.0, 200);

    // Turning a capability off in the page applies to the key at once.
    b.click("#cap-keys-read").await;
    b.click_to_load("form[action$='/capabilities'] button")
        .await;
    assert!(b
        .text(".alert.success")
        .await
        .contains("Capabilities saved"));
    assert_eq!(b.property("#cap-keys-read", "checked").await, json!(false));
    let (status, body) = api(&app.base, "/v1/teams", &key).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "insufficient_capability");
    assert_eq!(api(&app.base, "/v1/websites", &key).await.0, 200);

    // Revoking it in the page (after a confirmation) makes the next request fail.
    let revoke = b
        .find_xpath("//tr[.//span[text()='CI']]//a[text()='Revoke']")
        .await;
    b.load_after(&revoke).await;
    assert!(b.body_text().await.contains("This cannot be undone"));
    b.fill("#reason", "browser test").await;
    b.screenshot(&shot("05-revoke-confirm.png")).await;
    b.click_to_load("button.danger").await;
    assert!(b.text(".alert.success").await.contains("Key revoked"));
    let (status, body) = api(&app.base, "/v1/websites", &key).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "revoked_api_key");
    assert!(b.text("tbody tr:first-child").await.contains("revoked"));

    // A day of traffic on the Production key, for the usage chart.
    let org = app
        .service
        .find_org("acme-labs")
        .await
        .unwrap_or_else(|_| panic!("the setup organization"));
    let keys = app
        .service
        .list_keys(
            &Caller::cli(org.id.clone()),
            Some(&agent),
            &keyward_store::PageRequest::all(),
        )
        .await
        .unwrap();
    let prod = keys.items.iter().find(|k| k.name == "Production").unwrap();
    let now = app.service.now();
    let batch: Vec<Increment> = (0..24_i64)
        .map(|h| {
            let requests = 40 + (h * 37) % 60;
            let errors = h % 5;
            let limited = if h % 7 == 3 { 6 } else { 0 };
            Increment {
                org: org.id.clone(),
                agent: agent.clone(),
                key: prod.id.clone(),
                minute: now - now % 60_000 - h * 3_600_000,
                counts: Counts {
                    requests,
                    success: requests - errors - limited,
                    client_errors: errors,
                    rate_limited: limited,
                    server_errors: 0,
                },
            }
        })
        .collect();
    let mut tx = app.service.store().begin().await.unwrap();
    keyward_store::usage::add(&mut tx, &batch).await.unwrap();
    keyward_store::keys::touch_last_used(
        &mut tx,
        &[(org.id.clone(), prod.id.clone(), now - 90_000)],
    )
    .await
    .unwrap();
    keyward_store::commit(tx).await.unwrap();
    b.goto(&format!("{agent_url}?range=24h")).await;
    let usage = b.text("#usage").await.to_lowercase();
    assert!(usage.contains("requests") && usage.contains("rate-limited"));
    assert!(usage.contains("last used"));
    b.screenshot(&shot("06-agent.png")).await;

    // Rolling a key (after a confirmation) shows the new one once; the old one has a grace period.
    let roll = b
        .find_xpath("//tr[.//span[text()='Production']]//a[text()='Roll']")
        .await;
    b.load_after(&roll).await;
    b.click("#grace option[value='3600']").await;
    b.click_to_load("button.primary[type=submit]").await;
    let rolled = b.text("#new-key").await;
    assert!(rolled.starts_with("kw_") && rolled != production);
    assert!(b.text(".keypanel").await.contains("keeps working until"));
    assert_eq!(api(&app.base, "/v1/websites", &production).await.0, 200);
    assert_eq!(api(&app.base, "/v1/websites", &rolled).await.0, 200);
    b.screenshot(&shot("07-key-rolled.png")).await;
    b.goto(&app.url("/settings/api")).await;
    b.screenshot(&shot("07-api.png")).await;

    // The audit log shows what happened, and filters.
    b.goto(&app.url("/settings/audit")).await;
    let log = b.body_text().await;
    for action in [
        "org.created",
        "user.signed_in",
        "user.sign_in_failed",
        "team.created",
        "member.added",
        "agent.created",
        "key.created",
        "agent.updated",
        "key.revoked",
        "key.rolled",
    ] {
        assert!(log.contains(action), "{action} missing from the audit page");
    }
    b.screenshot(&shot("08-audit.png")).await;
    b.click("#f-action option[value='key.revoked']").await;
    b.click_to_load(".filters button[type=submit]").await;
    b.find("table.audit").await;
    let rows = b
        .execute(
            "return document.querySelectorAll('table.audit tbody tr').length;",
            json!([]),
        )
        .await;
    assert_eq!(rows, json!(1));
    assert!(b.text("table.audit tbody").await.contains("browser test"));

    // A phone-width window.
    b.set_window(390, 844).await;
    b.goto(&agent_url).await;
    b.screenshot(&shot("09-phone-agent.png")).await;
    b.execute(
        "document.getElementById('usage').scrollIntoView();",
        json!([]),
    )
    .await;
    b.screenshot_viewport(&shot("09-phone-usage.png")).await;
    b.goto(&app.url("/settings/teams")).await;
    b.screenshot(&shot("10-phone-teams.png")).await;
    b.set_window(1280, 900).await;

    // The member signs in through their link: they see everything and change nothing.
    b.click_to_load("form[action='/logout'] button").await;
    b.goto(&link).await;
    b.fill("#password", PASSWORD).await;
    b.fill("#password_confirm", PASSWORD).await;
    b.click_to_load("button[type=submit]").await;
    assert!(b.text(".notice.readonly").await.contains("Read-only"));
    b.goto(&agent_url).await;
    let page = b.source().await;
    assert!(!page.contains("id=\"generate-form\""));
    assert!(!page.contains("Delete agent"));
    assert_eq!(
        b.property("#cap-content-read", "disabled").await,
        json!(true)
    );
    // Sending the form anyway (as a tampered page would) is refused by the server.
    b.execute(
        "const f = document.createElement('form');
         f.method = 'post'; f.action = arguments[0];
         for (const [k, v] of [['csrf', document.querySelector('input[name=csrf]').value],
                               ['capability', 'keys:write']]) {
           const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v;
           f.appendChild(i);
         }
         window.__kwOldPage = true;
         document.body.appendChild(f); f.submit();",
        json!([format!("{agent_url}/capabilities")]),
    )
    .await;
    b.wait_for_new_page().await;
    assert_eq!(b.text("h1").await, "Not allowed");
    assert!(b
        .body_text()
        .await
        .contains("Your role can see this but not change it"));
    b.screenshot(&shot("11-member-refused.png")).await;
    let still = app
        .service
        .get_agent(&Caller::cli(org.id.clone()), &agent)
        .await
        .unwrap();
    assert_eq!(still.agent.capabilities.names(), vec!["content:read"]);

    b.quit().await;
    eprintln!("screenshots in {}", shots.display());
}
