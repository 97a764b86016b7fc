//! Websites, categories, tags and blogs.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use keyward_core::{BlogId, CategoryId, TagId, TeamId, WebsiteId};
use keyward_store::content::{BlogFilter, Taxonomy};
use serde::{Deserialize, Deserializer};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebsiteBody {
    name: Option<String>,
    domain: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
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

pub async fn list_websites(
    State(state): State<AppState>,
    auth: Auth<ContentRead>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let page = params.page()?;
    let sites = state.service.list_websites(&auth.caller, &page).await?;
    Ok(etagged(
        &headers,
        &ListView::new(&sites, page.limit, WebsiteView::new),
    ))
}

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
        .create_website(&auth.caller, body.input()?)
        .await?;
    Ok((StatusCode::CREATED, Json(WebsiteView::new(&site))))
}

pub async fn get_website(
    State(state): State<AppState>,
    auth: Auth<ContentRead>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(WebsiteId::parse, &id)?;
    let site = state.service.get_website(&auth.caller, &id).await?;
    Ok(etagged(&headers, &WebsiteView::new(&site)))
}

pub async fn update_website(
    State(state): State<AppState>,
    auth: Auth<ContentWrite>,
    Path(id): Path<String>,
    Body(body): Body<WebsiteBody>,
) -> Result<Json<WebsiteView>, ApiError> {
    let id = path_id(WebsiteId::parse, &id)?;
    let site = state
        .service
        .update_website(&auth.caller, &id, body.input()?)
        .await?;
    Ok(Json(WebsiteView::new(&site)))
}

// ---- categories and tags

#[derive(Deserialize)]
pub struct TermParams {
    #[serde(flatten)]
    list: ListParams,
    website_id: Option<String>,
}

#[derive(Deserialize)]
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
    let page = params.list.page()?;
    // A website that cannot exist matches nothing, like one the key cannot see.
    let website = match params.website_id.as_deref() {
        None => None,
        Some(w) => Some(
            WebsiteId::parse(w).map_err(|_| ApiError::invalid("website_id", "No such website."))?,
        ),
    };
    let terms = state
        .service
        .list_terms(&auth.caller, kind, website.as_ref(), &page)
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
        .create_term(&auth.caller, kind, body.input()?)
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
    let term = state.service.get_term(&auth.caller, kind, &id).await?;
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
        .update_term(&auth.caller, kind, &id, body.input()?)
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
    state.service.delete_term(&auth.caller, kind, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

macro_rules! term_handlers {
    ($kind:expr, $list:ident, $create:ident, $get:ident, $update:ident, $delete:ident) => {
        pub async fn $list(
            State(s): State<AppState>,
            a: Auth<ContentRead>,
            h: HeaderMap,
            Query(p): Query<TermParams>,
        ) -> Result<Response, ApiError> {
            list_terms(s, a, h, p, $kind).await
        }
        pub async fn $create(
            State(s): State<AppState>,
            a: Auth<ContentWrite>,
            Body(b): Body<TermBody>,
        ) -> Result<(StatusCode, Json<TermView>), ApiError> {
            create_term(s, a, b, $kind).await
        }
        pub async fn $get(
            State(s): State<AppState>,
            a: Auth<ContentRead>,
            h: HeaderMap,
            Path(id): Path<String>,
        ) -> Result<Response, ApiError> {
            get_term(s, a, h, id, $kind).await
        }
        pub async fn $update(
            State(s): State<AppState>,
            a: Auth<ContentWrite>,
            Path(id): Path<String>,
            Body(b): Body<TermBody>,
        ) -> Result<Json<TermView>, ApiError> {
            update_term(s, a, id, b, $kind).await
        }
        pub async fn $delete(
            State(s): State<AppState>,
            a: Auth<ContentWrite>,
            Path(id): Path<String>,
        ) -> Result<StatusCode, ApiError> {
            delete_term(s, a, id, $kind).await
        }
    };
}

term_handlers!(
    Taxonomy::Category,
    list_categories,
    create_category,
    get_category,
    update_category,
    delete_category
);
term_handlers!(
    Taxonomy::Tag,
    list_tags,
    create_tag,
    get_tag,
    update_tag,
    delete_tag
);

// ---- blogs

#[derive(Deserialize)]
pub struct BlogParams {
    #[serde(flatten)]
    list: ListParams,
    website_id: Option<String>,
    category: Option<String>,
    tag: Option<String>,
    slug: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlogBody {
    website_id: Option<String>,
    title: Option<String>,
    body: Option<String>,
    excerpt: Option<String>,
    slug: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
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

pub async fn list_blogs(
    State(state): State<AppState>,
    auth: Auth<ContentRead>,
    headers: HeaderMap,
    Query(p): Query<BlogParams>,
) -> Result<Response, ApiError> {
    let page = p.list.page()?;
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
        .list_blogs(&auth.caller, filter, &page)
        .await?;
    Ok(etagged(
        &headers,
        &ListView::new(&blogs, page.limit, BlogView::new),
    ))
}

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
        .create_blog(&auth.caller, body.input()?)
        .await?;
    Ok((StatusCode::CREATED, Json(BlogView::new(&blog))))
}

pub async fn get_blog(
    State(state): State<AppState>,
    auth: Auth<ContentRead>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(BlogId::parse, &id)?;
    let blog = state.service.get_blog(&auth.caller, &id).await?;
    Ok(etagged(&headers, &BlogView::new(&blog)))
}

pub async fn update_blog(
    State(state): State<AppState>,
    auth: Auth<ContentWrite>,
    Path(id): Path<String>,
    Body(body): Body<BlogBody>,
) -> Result<Json<BlogView>, ApiError> {
    let id = path_id(BlogId::parse, &id)?;
    let blog = state
        .service
        .update_blog(&auth.caller, &id, body.input()?)
        .await?;
    Ok(Json(BlogView::new(&blog)))
}

pub async fn delete_blog(
    State(state): State<AppState>,
    auth: Auth<ContentWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(BlogId::parse, &id)?;
    state.service.delete_blog(&auth.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
