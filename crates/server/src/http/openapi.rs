//! The OpenAPI 3.1 document, built from the same handlers and types the router uses
//! (`utoipa-axum`'s `OpenApiRouter`), so the routes and their documentation cannot drift.

use std::collections::BTreeMap;

use keyward_core::CapabilityCatalog;
use utoipa::openapi::schema::{ArrayItems, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

/// The one error shape of every error answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// A stable machine-readable code, e.g. `invalid_api_key` or `rate_limited`.
    code: String,
    /// A sentence for people: what went wrong and what to do.
    message: String,
    /// The HTTP status, repeated.
    status: u16,
    /// The `X-Request-Id` of this request.
    request_id: String,
    /// The offending field, for `invalid_request`.
    #[schema(required = false)]
    field: String,
}

/// The error answers every operation can give, in the one error shape.
pub struct Errors;

impl IntoResponses for Errors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let error = |description: &str| {
            RefOr::T(
                utoipa::openapi::ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        BTreeMap::from([
            (
                "4XX".to_string(),
                error("The request was refused; `error.code` says why (see SPEC §3)."),
            ),
            (
                "5XX".to_string(),
                error("keyward failed; the body carries only the request id."),
            ),
        ])
    }
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `Authorization: Bearer kw_…`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key: `X-API-Key: kw_…`",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyward",
        description = "A self-hosted API key platform: keys, agents and capabilities, rate limits, usage, audit, and a content API.",
        license(name = "Apache-2.0")
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    paths(super::v1::forward::check_envoy),
    modifiers(&Security),
    tags(
        (name = "identity", description = "Who a key is"),
        (name = "management", description = "Agents, keys and teams"),
        (name = "verification", description = "Checking keys for other services: the verify API and forward auth for reverse proxies"),
        (name = "content", description = "Websites, blogs, categories and tags"),
        (name = "generation", description = "Content generation jobs"),
        (name = "account", description = "The organization, its plan and usage"),
        (name = "audit", description = "The audit log"),
        (name = "operations", description = "Health, readiness, metrics and this document")
    )
)]
pub struct ApiDoc;

/// Writes the deployment's capabilities (built-in and `[capabilities] custom` from
/// keyward.toml) into the document where agents take them: an `enum` on the names and a
/// description listing each, so custom capabilities are documented like built-in ones.
pub fn describe_capabilities(doc: &mut utoipa::openapi::OpenApi, catalog: &CapabilityCatalog) {
    let names: Vec<serde_json::Value> = catalog
        .entries()
        .iter()
        .map(|e| serde_json::Value::from(e.name.as_str()))
        .collect();
    let mut text = String::from(
        "Capability names, at most the caller's own. This deployment knows (built-in, then its own from keyward.toml):",
    );
    for e in catalog.entries() {
        let own = if e.built_in { "" } else { " (custom)" };
        text.push_str(&format!("\n- `{}`{own}: {}", e.name, e.description));
    }
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for schema in ["CreateAgent", "UpdateAgent"] {
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
            continue;
        };
        let Some(RefOr::T(Schema::Array(array))) = object.properties.get_mut("capabilities") else {
            continue;
        };
        array.description = Some(text.clone());
        if let ArrayItems::RefOrSchema(item) = &mut array.items {
            if let RefOr::T(Schema::Object(item)) = item.as_mut() {
                item.enum_values = Some(names.clone());
            }
        }
    }
}
