//! Ask keyward whether a key your API was given may pass: `POST /v1/keys/verify`, with
//! reqwest (feature `json`) and serde_json.

use serde_json::{json, Value};

/// keyward's answer: `valid`, `code`, `message`, `key`, `agent`, `capabilities`,
/// `rate_limit`. `service_key` is a key whose agent holds `keys:verify`.
pub async fn verify_key(
    client: &reqwest::Client,
    keyward_url: &str,
    service_key: &str,
    presented_key: &str,
    capability: Option<&str>,
) -> Result<Value, reqwest::Error> {
    let mut body = json!({ "key": presented_key });
    if let Some(capability) = capability {
        body["capability"] = json!(capability);
    }
    client
        .post(format!("{keyward_url}/v1/keys/verify"))
        .bearer_auth(service_key)
        .json(&body)
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}
