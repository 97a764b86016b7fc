//! Websites, categories, tags and blogs.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use keyward_core::{BlogId, CategoryId, TagId, TeamId, WebsiteId};
use keyward_store::content::{BlogFilter, Taxonomy};
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};

use super::{path_id, ListParams};
use crate::http::auth::{Auth, ContentRead, ContentWrite};
use crate::http::extract::{etagged, Json as Body, Query};
use crate::http::{ApiError, AppState};
use crate::service::{BlogInput, TermInput, WebsiteInput};
use crate::views::{BlogView, ListView, TermView, WebsiteView};

fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn parse_field<T>(
    field: &str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, keyward_core::id::InvalidId>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|v| {
            parse(v).map_err(|_| {
                ApiError::invalid(field, format!("No such {}.", field.trim_end_matches("_id")))
            })
        })
        .transpose()
}

// ---- websites

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebsiteBody {
    name: Option<String>,
    domain: Option<String>,
    /// The owning team, or `null` for the whole organization.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    team_id: Option<Option<String>>,
}

impl WebsiteBody {
    fn input(self) -> Result<WebsiteInput, ApiError> {
        let team = match self.team_id {
            None => None,
            Some(None) => Some(None),
            Some(Some(t)) => {
                Some(Some(TeamId::parse(&t).map_err(|_| {
                    ApiError::invalid("team_id", "No such team.")
                })?))
            }
        };
        Ok(WebsiteInput {
            name: self.name,
            domain: self.domain,
            team,
        })
    }
}

#[utoipa::path(
    operation_id = "list_websites",
    get,
    path = "/websites",
    tag = "content",
    summary = "List websites (content:read)",
    params(ListParams),
    responses((status = 200, body = ListView<WebsiteView>), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list_websites(
    State(state): State<AppState>,
    auth: Auth<ContentRead>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let page = params.page()?;
    let sites = state.service.list_websites(&auth.caller(), &page).await?;
    Ok(etagged(
        &headers,
        &ListView::new(&sites, page.limit, WebsiteView::new),
    ))
}

#[utoipa::path(
    operation_id = "create_website",
    post,
    path = "/websites",
    tag = "content",
    summary = "Create a website (content:write)",
    request_body = WebsiteBody,
    responses((status = 201, body = WebsiteView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create_website(
    State(state): State<AppState>,
    auth: Auth<ContentWrite>,
    Body(body): Body<WebsiteBody>,
) -> Result<(StatusCode, Json<WebsiteView>), ApiError> {
    if body.name.is_none() {
        return Err(ApiError::invalid("name", "name is required."));
    }
    if body.domain.is_none() {
        return Err(ApiError::invalid("domain", "domain is required."));
    }
    let site = state
        .service
        .create_website(&auth.caller(), body.input()?)
        .await?;
    Ok((StatusCode::CREATED, Json(WebsiteView::new(&site))))
}

#[utoipa::path(
    operation_id = "get_website",
    get,
    path = "/websites/{id}",
    tag = "content",
    summary = "A website (content:read)",
    params(("id" = String, Path, description = "The website's id")),
    responses((status = 200, body = WebsiteView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get_website(
    State(state): State<AppState>,
    auth: Auth<ContentRead>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(WebsiteId::parse, &id)?;
    let site = state.service.get_website(&auth.caller(), &id).await?;
    Ok(etagged(&headers, &WebsiteView::new(&site)))
}

#[utoipa::path(
    operation_id = "update_website",
    patch,
    path = "/websites/{id}",
    tag = "content",
    summary = "Change a website (content:write)",
    params(("id" = String, Path, description = "The website's id")),
    request_body = WebsiteBody,
    responses((status = 200, body = WebsiteView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn update_website(
    State(state): State<AppState>,
    auth: Auth<ContentWrite>,
    Path(id): Path<String>,
    Body(body): Body<WebsiteBody>,
) -> Result<Json<WebsiteView>, ApiError> {
    let id = path_id(WebsiteId::parse, &id)?;
    let site = state
        .service
        .update_website(&auth.caller(), &id, body.input()?)
        .await?;
    Ok(Json(WebsiteView::new(&site)))
}

// ---- categories and tags

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TermParams {
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `pagination.next_cursor` of the previous page.
    cursor: Option<String>,
    website_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TermBody {
    website_id: Option<String>,
    name: Option<String>,
    slug: Option<String>,
}

impl TermBody {
    fn input(self) -> Result<TermInput, ApiError> {
        Ok(TermInput {
            website: parse_field("website_id", self.website_id.as_deref(), WebsiteId::parse)?,
            name: self.name,
            slug: self.slug,
        })
    }
}

fn term_id(kind: Taxonomy, id: &str) -> Result<String, ApiError> {
    let ok = match kind {
        Taxonomy::Category => CategoryId::parse(id).is_ok(),
        Taxonomy::Tag => TagId::parse(id).is_ok(),
    };
    if ok {
        Ok(id.to_string())
    } else {
        Err(ApiError::not_found())
    }
}

async fn list_terms(
    state: AppState,
    auth: Auth<ContentRead>,
    headers: HeaderMap,
    params: TermParams,
    kind: Taxonomy,
) -> Result<Response, ApiError> {
    let page = super::page_of(params.limit.as_deref(), params.cursor.as_deref())?;
    // A website that cannot exist matches nothing, like one the key cannot see.
    let website = match params.website_id.as_deref() {
        None => None,
        Some(w) => Some(
            WebsiteId::parse(w).map_err(|_| ApiError::invalid("website_id", "No such website."))?,
        ),
    };
    let terms = state
        .service
        .list_terms(&auth.caller(), kind, website.as_ref(), &page)
        .await?;
    Ok(etagged(
        &headers,
        &ListView::new(&terms, page.limit, TermView::new),
    ))
}

async fn create_term(
    state: AppState,
    auth: Auth<ContentWrite>,
    body: TermBody,
    kind: Taxonomy,
) -> Result<(StatusCode, Json<TermView>), ApiError> {
    if body.website_id.is_none() {
        return Err(ApiError::invalid("website_id", "website_id is required."));
    }
    if body.name.is_none() {
        return Err(ApiError::invalid("name", "name is required."));
    }
    let term = state
        .service
        .create_term(&auth.caller(), kind, body.input()?)
        .await?;
    Ok((StatusCode::CREATED, Json(TermView::new(&term))))
}

async fn get_term(
    state: AppState,
    auth: Auth<ContentRead>,
    headers: HeaderMap,
    id: String,
    kind: Taxonomy,
) -> Result<Response, ApiError> {
    let id = term_id(kind, &id)?;
    let term = state.service.get_term(&auth.caller(), kind, &id).await?;
    Ok(etagged(&headers, &TermView::new(&term)))
}

async fn update_term(
    state: AppState,
    auth: Auth<ContentWrite>,
    id: String,
    body: TermBody,
    kind: Taxonomy,
) -> Result<Json<TermView>, ApiError> {
    let id = term_id(kind, &id)?;
    let term = state
        .service
        .update_term(&auth.caller(), kind, &id, body.input()?)
        .await?;
    Ok(Json(TermView::new(&term)))
}

async fn delete_term(
    state: AppState,
    auth: Auth<ContentWrite>,
    id: String,
    kind: Taxonomy,
) -> Result<StatusCode, ApiError> {
    let id = term_id(kind, &id)?;
    state.service.delete_term(&auth.caller(), kind, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    operation_id = "list_categories",
    get,
    path = "/categories",
    tag = "content",
    summary = "List categories (content:read)",
    params(TermParams),
    responses((status = 200, body = ListView<TermView>), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list_categories(
    State(s): State<AppState>,
    a: Auth<ContentRead>,
    h: HeaderMap,
    Query(p): Query<TermParams>,
) -> Result<Response, ApiError> {
    list_terms(s, a, h, p, Taxonomy::Category).await
}

#[utoipa::path(
    operation_id = "create_category",
    post,
    path = "/categories",
    tag = "content",
    summary = "Create a category (content:write)",
    request_body = TermBody,
    responses((status = 201, body = TermView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create_category(
    State(s): State<AppState>,
    a: Auth<ContentWrite>,
    Body(b): Body<TermBody>,
) -> Result<(StatusCode, Json<TermView>), ApiError> {
    create_term(s, a, b, Taxonomy::Category).await
}

#[utoipa::path(
    operation_id = "get_category",
    get,
    path = "/categories/{id}",
    tag = "content",
    summary = "A category (content:read)",
    params(("id" = String, Path, description = "The category's id")),
    responses((status = 200, body = TermView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get_category(
    State(s): State<AppState>,
    a: Auth<ContentRead>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    get_term(s, a, h, id, Taxonomy::Category).await
}

#[utoipa::path(
    operation_id = "update_category",
    patch,
    path = "/categories/{id}",
    tag = "content",
    summary = "Change a category (content:write)",
    params(("id" = String, Path, description = "The category's id")),
    request_body = TermBody,
    responses((status = 200, body = TermView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn update_category(
    State(s): State<AppState>,
    a: Auth<ContentWrite>,
    Path(id): Path<String>,
    Body(b): Body<TermBody>,
) -> Result<Json<TermView>, ApiError> {
    update_term(s, a, id, b, Taxonomy::Category).await
}

#[utoipa::path(
    operation_id = "delete_category",
    delete,
    path = "/categories/{id}",
    tag = "content",
    summary = "Delete a category; its blogs lose it (content:write)",
    params(("id" = String, Path, description = "The category's id")),
    responses((status = 204, description = "Deleted"), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn delete_category(
    State(s): State<AppState>,
    a: Auth<ContentWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_term(s, a, id, Taxonomy::Category).await
}

#[utoipa::path(
    operation_id = "list_tags",
    get,
    path = "/tags",
    tag = "content",
    summary = "List tags (content:read)",
    params(TermParams),
    responses((status = 200, body = ListView<TermView>), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list_tags(
    State(s): State<AppState>,
    a: Auth<ContentRead>,
    h: HeaderMap,
    Query(p): Query<TermParams>,
) -> Result<Response, ApiError> {
    list_terms(s, a, h, p, Taxonomy::Tag).await
}

#[utoipa::path(
    operation_id = "create_tag",
    post,
    path = "/tags",
    tag = "content",
    summary = "Create a tag (content:write)",
    request_body = TermBody,
    responses((status = 201, body = TermView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create_tag(
    State(s): State<AppState>,
    a: Auth<ContentWrite>,
    Body(b): Body<TermBody>,
) -> Result<(StatusCode, Json<TermView>), ApiError> {
    create_term(s, a, b, Taxonomy::Tag).await
}

#[utoipa::path(
    operation_id = "get_tag",
    get,
    path = "/tags/{id}",
    tag = "content",
    summary = "A tag (content:read)",
    params(("id" = String, Path, description = "The tag's id")),
    responses((status = 200, body = TermView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get_tag(
    State(s): State<AppState>,
    a: Auth<ContentRead>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    get_term(s, a, h, id, Taxonomy::Tag).await
}

#[utoipa::path(
    operation_id = "update_tag",
    patch,
    path = "/tags/{id}",
    tag = "content",
    summary = "Change a tag (content:write)",
    params(("id" = String, Path, description = "The tag's id")),
    request_body = TermBody,
    responses((status = 200, body = TermView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn update_tag(
    State(s): State<AppState>,
    a: Auth<ContentWrite>,
    Path(id): Path<String>,
    Body(b): Body<TermBody>,
) -> Result<Json<TermView>, ApiError> {
    update_term(s, a, id, b, Taxonomy::Tag).await
}

#[utoipa::path(
    operation_id = "delete_tag",
    delete,
    path = "/tags/{id}",
    tag = "content",
    summary = "Delete a tag; its blogs lose it (content:write)",
    params(("id" = String, Path, description = "The tag's id")),
    responses((status = 204, description = "Deleted"), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn delete_tag(
    State(s): State<AppState>,
    a: Auth<ContentWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_term(s, a, id, Taxonomy::Tag).await
}

// ---- blogs

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BlogParams {
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `pagination.next_cursor` of the previous page.
    cursor: Option<String>,
    website_id: Option<String>,
    category: Option<String>,
    tag: Option<String>,
    slug: Option<String>,
    /// `published` (default); `draft` or `any` need content:write.
    status: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlogBody {
    website_id: Option<String>,
    title: Option<String>,
    body: Option<String>,
    excerpt: Option<String>,
    slug: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    category_id: Option<Option<String>>,
    tag_ids: Option<Vec<String>>,
    status: Option<String>,
}

impl BlogBody {
    fn input(self) -> Result<BlogInput, ApiError> {
        let category = match self.category_id {
            None => None,
            Some(None) => Some(None),
            Some(Some(c)) => Some(Some(CategoryId::parse(&c).map_err(|_| {
                ApiError::invalid("category_id", "No such category on this website.")
            })?)),
        };
        let tags = self
            .tag_ids
            .map(|ids| {
                ids.iter()
                    .map(|t| {
                        TagId::parse(t).map_err(|_| {
                            ApiError::invalid("tag_ids", format!("No tag {t} on this website."))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(BlogInput {
            website: parse_field("website_id", self.website_id.as_deref(), WebsiteId::parse)?,
            title: self.title,
            body: self.body,
            excerpt: self.excerpt,
            slug: self.slug,
            category,
            tags,
            status: self.status,
        })
    }
}

#[utoipa::path(
    operation_id = "list_blogs",
    get,
    path = "/blogs",
    tag = "content",
    summary = "List blogs: published only unless status=draft|any (content:write)",
    params(BlogParams),
    responses((status = 200, body = ListView<BlogView>), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list_blogs(
    State(state): State<AppState>,
    auth: Auth<ContentRead>,
    headers: HeaderMap,
    Query(p): Query<BlogParams>,
) -> Result<Response, ApiError> {
    let page = super::page_of(p.limit.as_deref(), p.cursor.as_deref())?;
    let website = match p.website_id.as_deref() {
        None => None,
        Some(w) => Some(
            WebsiteId::parse(w).map_err(|_| ApiError::invalid("website_id", "No such website."))?,
        ),
    };
    let filter = BlogFilter {
        website,
        category: p.category,
        tag: p.tag,
        slug: p.slug,
        status: p.status,
    };
    let blogs = state
        .service
        .list_blogs(&auth.caller(), filter, &page)
        .await?;
    Ok(etagged(
        &headers,
        &ListView::new(&blogs, page.limit, BlogView::new),
    ))
}

#[utoipa::path(
    operation_id = "create_blog",
    post,
    path = "/blogs",
    tag = "content",
    summary = "Create a blog (content:write)",
    request_body = BlogBody,
    responses((status = 201, body = BlogView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create_blog(
    State(state): State<AppState>,
    auth: Auth<ContentWrite>,
    Body(body): Body<BlogBody>,
) -> Result<(StatusCode, Json<BlogView>), ApiError> {
    for (field, missing) in [
        ("website_id", body.website_id.is_none()),
        ("title", body.title.is_none()),
        ("body", body.body.is_none()),
    ] {
        if missing {
            return Err(ApiError::invalid(field, format!("{field} is required.")));
        }
    }
    let blog = state
        .service
        .create_blog(&auth.caller(), body.input()?)
        .await?;
    Ok((StatusCode::CREATED, Json(BlogView::new(&blog))))
}

#[utoipa::path(
    operation_id = "get_blog",
    get,
    path = "/blogs/{id}",
    tag = "content",
    summary = "A blog; a draft needs content:write",
    params(("id" = String, Path, description = "The blog's id")),
    responses((status = 200, body = BlogView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn get_blog(
    State(state): State<AppState>,
    auth: Auth<ContentRead>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(BlogId::parse, &id)?;
    let blog = state.service.get_blog(&auth.caller(), &id).await?;
    Ok(etagged(&headers, &BlogView::new(&blog)))
}

#[utoipa::path(
    operation_id = "update_blog",
    patch,
    path = "/blogs/{id}",
    tag = "content",
    summary = "Change a blog (content:write)",
    params(("id" = String, Path, description = "The blog's id")),
    request_body = BlogBody,
    responses((status = 200, body = BlogView), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn update_blog(
    State(state): State<AppState>,
    auth: Auth<ContentWrite>,
    Path(id): Path<String>,
    Body(body): Body<BlogBody>,
) -> Result<Json<BlogView>, ApiError> {
    let id = path_id(BlogId::parse, &id)?;
    let blog = state
        .service
        .update_blog(&auth.caller(), &id, body.input()?)
        .await?;
    Ok(Json(BlogView::new(&blog)))
}

#[utoipa::path(
    operation_id = "delete_blog",
    delete,
    path = "/blogs/{id}",
    tag = "content",
    summary = "Delete a blog (content:write)",
    params(("id" = String, Path, description = "The blog's id")),
    responses((status = 204, description = "Deleted"), crate::http::openapi::Errors),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn delete_blog(
    State(state): State<AppState>,
    auth: Auth<ContentWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(BlogId::parse, &id)?;
    state.service.delete_blog(&auth.caller(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
