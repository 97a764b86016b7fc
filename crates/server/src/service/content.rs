//! The content API: websites, categories, tags and blogs, scoped by organization and team.

use keyward_core::{BlogId, CategoryId, TagId, TeamId, UnixMillis, WebsiteId};
use keyward_store::content::{self, Blog, BlogFilter, Taxonomy, Term, Website};
use keyward_store::{audit, teams, Conn, Page, PageRequest};
use serde_json::json;

use super::orgs::slugify;
use super::{clean_name, Caller, Service, ServiceError};

const READ: &str = "content:read";
const WRITE: &str = "content:write";

/// Fields of a website; `None` leaves a field as it is (or takes its default on create).
#[derive(Clone, Debug, Default)]
pub struct WebsiteInput {
    pub name: Option<String>,
    pub domain: Option<String>,
    /// `Some(None)`: owned by the whole organization.
    pub team: Option<Option<TeamId>>,
}

/// Fields of a category or tag.
#[derive(Clone, Debug, Default)]
pub struct TermInput {
    pub website: Option<WebsiteId>,
    pub name: Option<String>,
    pub slug: Option<String>,
}

/// Fields of a blog.
#[derive(Clone, Debug, Default)]
pub struct BlogInput {
    pub website: Option<WebsiteId>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub excerpt: Option<String>,
    pub slug: Option<String>,
    pub category: Option<Option<CategoryId>>,
    pub tags: Option<Vec<TagId>>,
    pub status: Option<String>,
}

fn clean_domain(domain: &str) -> Result<String, ServiceError> {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = (1..=253).contains(&d.len())
        && d.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(d)
    } else {
        Err(ServiceError::invalid("domain", format!("{domain:?} is not a domain name; give a host like blog.example.com, without https://")))
    }
}

fn clean_slug(field: &str, slug: &str) -> Result<String, ServiceError> {
    let ok = (1..=100).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(slug.to_string())
    } else {
        Err(ServiceError::invalid(
            field,
            format!("{slug:?} is not a slug: use lowercase letters, digits and single hyphens"),
        ))
    }
}

/// A slug given, or one derived from `name`.
fn slug_or_derived(slug: Option<&str>, name: &str) -> Result<String, ServiceError> {
    match slug {
        Some(s) => clean_slug("slug", s.trim()),
        None => {
            let derived: String = slugify(name).chars().take(100).collect();
            if derived.is_empty() {
                Err(ServiceError::invalid(
                    "slug",
                    "no slug can be derived from the name; give one",
                ))
            } else {
                Ok(derived)
            }
        }
    }
}

fn clean_title(title: &str) -> Result<String, ServiceError> {
    let t = title.trim();
    if t.is_empty() || t.chars().count() > 200 || t.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "title",
            "title must be 1 to 200 characters",
        ));
    }
    Ok(t.to_string())
}

fn clean_body(body: &str) -> Result<String, ServiceError> {
    if body.trim().is_empty() {
        return Err(ServiceError::invalid("body", "body must not be empty"));
    }
    if body.len() > 500_000 {
        return Err(ServiceError::invalid(
            "body",
            "body must be at most 500000 bytes",
        ));
    }
    Ok(body.to_string())
}

fn clean_excerpt(excerpt: &str) -> Result<String, ServiceError> {
    let e = excerpt.trim();
    if e.chars().count() > 500 {
        return Err(ServiceError::invalid(
            "excerpt",
            "excerpt must be at most 500 characters",
        ));
    }
    Ok(e.to_string())
}

/// The first paragraph of a markdown body, without headings, cut to about 200 characters.
pub fn derive_excerpt(body: &str) -> String {
    let paragraph = body
        .split("\n\n")
        .map(str::trim)
        .find(|p| !p.is_empty() && !p.starts_with('#'))
        .unwrap_or("");
    let flat: String = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= 200 {
        flat
    } else {
        let cut: String = flat.chars().take(199).collect();
        format!("{}…", cut.trim_end())
    }
}

fn check_status(status: &str) -> Result<String, ServiceError> {
    match status {
        "draft" | "published" => Ok(status.to_string()),
        _ => Err(ServiceError::invalid(
            "status",
            "status must be draft or published",
        )),
    }
}

impl Service {
    /// A website the caller can see.
    async fn visible_website(
        &self,
        conn: &mut Conn,
        caller: &Caller,
        id: &WebsiteId,
        field: &str,
    ) -> Result<Website, ServiceError> {
        content::get_website(conn, &caller.scope(), id)
            .await?
            .ok_or_else(|| {
                if field.is_empty() {
                    ServiceError::NotFound("website")
                } else {
                    ServiceError::invalid(field, "no such website")
                }
            })
    }

    /// The team a new or moved website belongs to: a team-scoped caller's own team only.
    async fn website_team(
        &self,
        conn: &mut Conn,
        caller: &Caller,
        asked: Option<Option<TeamId>>,
    ) -> Result<Option<TeamId>, ServiceError> {
        let team = match (&caller.team, asked) {
            (Some(own), None) => Some(own.clone()),
            (Some(own), Some(Some(t))) if &t == own => Some(t),
            (Some(_), Some(_)) => {
                return Err(ServiceError::invalid(
                    "team_id",
                    "a team-scoped key can only place websites in its own team",
                ))
            }
            (None, asked) => asked.flatten(),
        };
        if let Some(t) = &team {
            teams::get(conn, &caller.org, t)
                .await?
                .ok_or_else(|| ServiceError::invalid("team_id", "no such team"))?;
        }
        Ok(team)
    }

    pub async fn create_website(
        &self,
        caller: &Caller,
        input: WebsiteInput,
    ) -> Result<Website, ServiceError> {
        caller.require(WRITE)?;
        let name = clean_name("name", input.name.as_deref().unwrap_or(""))?;
        let domain = clean_domain(input.domain.as_deref().unwrap_or(""))?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let team = self.website_team(&mut tx, caller, input.team).await?;
        let website = Website {
            id: WebsiteId::generate(),
            org: caller.org.clone(),
            team,
            name,
            domain,
            created_at: now,
            updated_at: now,
        };
        content::insert_website(&mut tx, &website).await?;
        let event = caller.event(
            now,
            "website.created",
            ("website", website.id.as_str()),
            json!({"name": website.name, "domain": website.domain, "team_id": website.team}),
        );
        audit::insert(&mut tx, &event).await?;
        keyward_store::commit(tx).await?;
        Ok(website)
    }

    pub async fn list_websites(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<Website>, ServiceError> {
        caller.require(READ)?;
        let mut conn = self.store().read().await?;
        Ok(content::list_websites(&mut conn, &caller.scope(), page).await?)
    }

    pub async fn get_website(
        &self,
        caller: &Caller,
        id: &WebsiteId,
    ) -> Result<Website, ServiceError> {
        caller.require(READ)?;
        let mut conn = self.store().read().await?;
        self.visible_website(&mut conn, caller, id, "").await
    }

    pub async fn update_website(
        &self,
        caller: &Caller,
        id: &WebsiteId,
        input: WebsiteInput,
    ) -> Result<Website, ServiceError> {
        caller.require(WRITE)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut w = self.visible_website(&mut tx, caller, id, "").await?;
        let before = w.clone();
        if let Some(name) = &input.name {
            w.name = clean_name("name", name)?;
        }
        if let Some(domain) = &input.domain {
            w.domain = clean_domain(domain)?;
        }
        if input.team.is_some() {
            w.team = self.website_team(&mut tx, caller, input.team).await?;
        }
        if w != before {
            w.updated_at = now;
            content::update_website(&mut tx, &caller.scope(), &w).await?;
            let event = caller.event(
                now,
                "website.updated",
                ("website", w.id.as_str()),
                json!({"before": {"name": before.name, "domain": before.domain, "team_id": before.team},
                       "after": {"name": w.name, "domain": w.domain, "team_id": w.team}}),
            );
            audit::insert(&mut tx, &event).await?;
        }
        keyward_store::commit(tx).await?;
        Ok(w)
    }

    pub async fn create_term(
        &self,
        caller: &Caller,
        kind: Taxonomy,
        input: TermInput,
    ) -> Result<Term, ServiceError> {
        caller.require(WRITE)?;
        let website_id = input
            .website
            .ok_or_else(|| ServiceError::invalid("website_id", "website_id is required"))?;
        let name = clean_name("name", input.name.as_deref().unwrap_or(""))?;
        let slug = slug_or_derived(input.slug.as_deref(), &name)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let website = self
            .visible_website(&mut tx, caller, &website_id, "website_id")
            .await?;
        let id = match kind {
            Taxonomy::Category => CategoryId::generate().to_string(),
            Taxonomy::Tag => TagId::generate().to_string(),
        };
        let term = Term {
            id,
            org: caller.org.clone(),
            website: website.id,
            name,
            slug,
            created_at: now,
            updated_at: now,
        };
        content::insert_term(&mut tx, kind, &term).await?;
        let event = caller.event(
            now,
            &format!("{}.created", kind.noun()),
            (kind.noun(), &term.id),
            json!({"website_id": term.website, "name": term.name, "slug": term.slug}),
        );
        audit::insert(&mut tx, &event).await?;
        keyward_store::commit(tx).await?;
        Ok(term)
    }

    pub async fn list_terms(
        &self,
        caller: &Caller,
        kind: Taxonomy,
        website: Option<&WebsiteId>,
        page: &PageRequest,
    ) -> Result<Page<Term>, ServiceError> {
        caller.require(READ)?;
        let mut conn = self.store().read().await?;
        Ok(content::list_terms(&mut conn, &caller.scope(), kind, website, page).await?)
    }

    pub async fn get_term(
        &self,
        caller: &Caller,
        kind: Taxonomy,
        id: &str,
    ) -> Result<Term, ServiceError> {
        caller.require(READ)?;
        let mut conn = self.store().read().await?;
        content::get_term(&mut conn, &caller.scope(), kind, id)
            .await?
            .ok_or(ServiceError::NotFound(kind.noun()))
    }

    pub async fn update_term(
        &self,
        caller: &Caller,
        kind: Taxonomy,
        id: &str,
        input: TermInput,
    ) -> Result<Term, ServiceError> {
        caller.require(WRITE)?;
        if input.website.is_some() {
            return Err(ServiceError::invalid(
                "website_id",
                format!("a {} cannot move to another website", kind.noun()),
            ));
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut term = content::get_term(&mut tx, &caller.scope(), kind, id)
            .await?
            .ok_or(ServiceError::NotFound(kind.noun()))?;
        let before = term.clone();
        if let Some(name) = &input.name {
            term.name = clean_name("name", name)?;
        }
        if let Some(slug) = &input.slug {
            term.slug = clean_slug("slug", slug.trim())?;
        }
        if term != before {
            term.updated_at = now;
            content::update_term(&mut tx, &caller.scope(), kind, &term).await?;
            let event = caller.event(
                now,
                &format!("{}.updated", kind.noun()),
                (kind.noun(), &term.id),
                json!({"before": {"name": before.name, "slug": before.slug}, "after": {"name": term.name, "slug": term.slug}}),
            );
            audit::insert(&mut tx, &event).await?;
        }
        keyward_store::commit(tx).await?;
        Ok(term)
    }

    pub async fn delete_term(
        &self,
        caller: &Caller,
        kind: Taxonomy,
        id: &str,
    ) -> Result<(), ServiceError> {
        caller.require(WRITE)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let term = content::get_term(&mut tx, &caller.scope(), kind, id)
            .await?
            .ok_or(ServiceError::NotFound(kind.noun()))?;
        content::delete_term(&mut tx, &caller.scope(), kind, &term.id, now).await?;
        let event = caller.event(
            now,
            &format!("{}.deleted", kind.noun()),
            (kind.noun(), &term.id),
            json!({"website_id": term.website, "name": term.name, "slug": term.slug}),
        );
        audit::insert(&mut tx, &event).await?;
        keyward_store::commit(tx).await?;
        Ok(())
    }

    /// Checks that a category and tags belong to the blog's website.
    async fn check_terms(
        &self,
        conn: &mut Conn,
        caller: &Caller,
        website: &WebsiteId,
        category: Option<&CategoryId>,
        tags: &[TagId],
    ) -> Result<(), ServiceError> {
        if let Some(c) = category {
            let term =
                content::get_term(conn, &caller.scope(), Taxonomy::Category, c.as_str()).await?;
            if term.is_none_or(|t| &t.website != website) {
                return Err(ServiceError::invalid(
                    "category_id",
                    "no such category on this website",
                ));
            }
        }
        for t in tags {
            let term = content::get_term(conn, &caller.scope(), Taxonomy::Tag, t.as_str()).await?;
            if term.is_none_or(|term| &term.website != website) {
                return Err(ServiceError::invalid(
                    "tag_ids",
                    format!("no tag {t} on this website"),
                ));
            }
        }
        if tags.len() > 50 {
            return Err(ServiceError::invalid(
                "tag_ids",
                "a blog may have at most 50 tags",
            ));
        }
        Ok(())
    }

    pub async fn create_blog(
        &self,
        caller: &Caller,
        input: BlogInput,
    ) -> Result<Blog, ServiceError> {
        caller.require(WRITE)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let blog = self.insert_blog(&mut tx, caller, input, now).await?;
        keyward_store::commit(tx).await?;
        Ok(blog)
    }

    /// Validates, inserts and audits a blog inside `conn`'s transaction.
    pub(crate) async fn insert_blog(
        &self,
        conn: &mut Conn,
        caller: &Caller,
        input: BlogInput,
        now: UnixMillis,
    ) -> Result<Blog, ServiceError> {
        let website_id = input
            .website
            .ok_or_else(|| ServiceError::invalid("website_id", "website_id is required"))?;
        let title = clean_title(input.title.as_deref().unwrap_or(""))?;
        let body = clean_body(input.body.as_deref().unwrap_or(""))?;
        let excerpt = match &input.excerpt {
            Some(e) => clean_excerpt(e)?,
            None => derive_excerpt(&body),
        };
        let slug = slug_or_derived(input.slug.as_deref(), &title)?;
        let status = check_status(input.status.as_deref().unwrap_or("draft"))?;
        let category = input.category.flatten();
        let mut tags = input.tags.unwrap_or_default();
        tags.sort();
        tags.dedup();
        let website = self
            .visible_website(conn, caller, &website_id, "website_id")
            .await?;
        self.check_terms(conn, caller, &website.id, category.as_ref(), &tags)
            .await?;
        let blog = Blog {
            id: BlogId::generate(),
            org: caller.org.clone(),
            website: website.id,
            title,
            slug,
            excerpt,
            body,
            published_at: (status == "published").then_some(now),
            status,
            category,
            tags,
            author: caller.actor_ref(),
            created_at: now,
            updated_at: now,
        };
        content::insert_blog(conn, &blog).await?;
        let event = caller.event(
            now,
            "blog.created",
            ("blog", blog.id.as_str()),
            json!({"website_id": blog.website, "title": blog.title, "slug": blog.slug, "status": blog.status}),
        );
        audit::insert(conn, &event).await?;
        Ok(blog)
    }

    /// Blogs the caller can see. Drafts (`status=draft|any`) need `content:write`.
    pub async fn list_blogs(
        &self,
        caller: &Caller,
        filter: BlogFilter,
        page: &PageRequest,
    ) -> Result<Page<Blog>, ServiceError> {
        caller.require(READ)?;
        match filter.status.as_deref() {
            None | Some("published") => {}
            Some("draft") | Some("any") => caller.require(WRITE)?,
            Some(_) => {
                return Err(ServiceError::invalid(
                    "status",
                    "status must be published, draft or any",
                ))
            }
        }
        let mut conn = self.store().read().await?;
        Ok(content::list_blogs(&mut conn, &caller.scope(), &filter, page).await?)
    }

    /// A blog; a draft is 404 without `content:write`.
    pub async fn get_blog(&self, caller: &Caller, id: &BlogId) -> Result<Blog, ServiceError> {
        caller.require(READ)?;
        let drafts = caller.require(WRITE).is_ok();
        let mut conn = self.store().read().await?;
        content::get_blog(&mut conn, &caller.scope(), id, drafts)
            .await?
            .ok_or(ServiceError::NotFound("blog"))
    }

    pub async fn update_blog(
        &self,
        caller: &Caller,
        id: &BlogId,
        input: BlogInput,
    ) -> Result<Blog, ServiceError> {
        caller.require(WRITE)?;
        if input.website.is_some() {
            return Err(ServiceError::invalid(
                "website_id",
                "a blog cannot move to another website",
            ));
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let mut b = content::get_blog(&mut tx, &caller.scope(), id, true)
            .await?
            .ok_or(ServiceError::NotFound("blog"))?;
        let before = b.clone();
        if let Some(t) = &input.title {
            b.title = clean_title(t)?;
        }
        if let Some(body) = &input.body {
            b.body = clean_body(body)?;
        }
        if let Some(e) = &input.excerpt {
            b.excerpt = clean_excerpt(e)?;
        }
        if let Some(s) = &input.slug {
            b.slug = clean_slug("slug", s.trim())?;
        }
        if let Some(c) = input.category {
            b.category = c;
        }
        if let Some(mut tags) = input.tags {
            tags.sort();
            tags.dedup();
            b.tags = tags;
        }
        if let Some(s) = &input.status {
            b.status = check_status(s)?;
            if b.status == "published" && b.published_at.is_none() {
                b.published_at = Some(now);
            }
        }
        self.check_terms(&mut tx, caller, &b.website, b.category.as_ref(), &b.tags)
            .await?;
        if b != before {
            b.updated_at = now;
            content::update_blog(&mut tx, &caller.scope(), &b).await?;
            let changed: Vec<&str> = [
                ("title", b.title != before.title),
                ("body", b.body != before.body),
                ("excerpt", b.excerpt != before.excerpt),
                ("slug", b.slug != before.slug),
                ("category_id", b.category != before.category),
                ("tag_ids", b.tags != before.tags),
                ("status", b.status != before.status),
            ]
            .into_iter()
            .filter_map(|(f, c)| c.then_some(f))
            .collect();
            let event = caller.event(
                now,
                "blog.updated",
                ("blog", b.id.as_str()),
                json!({"changed": changed, "status": b.status}),
            );
            audit::insert(&mut tx, &event).await?;
        }
        keyward_store::commit(tx).await?;
        Ok(b)
    }

    pub async fn delete_blog(&self, caller: &Caller, id: &BlogId) -> Result<(), ServiceError> {
        caller.require(WRITE)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let b = content::get_blog(&mut tx, &caller.scope(), id, true)
            .await?
            .ok_or(ServiceError::NotFound("blog"))?;
        content::delete_blog(&mut tx, &caller.scope(), &b.id).await?;
        let event = caller.event(
            now,
            "blog.deleted",
            ("blog", b.id.as_str()),
            json!({"website_id": b.website, "title": b.title, "slug": b.slug}),
        );
        audit::insert(&mut tx, &event).await?;
        keyward_store::commit(tx).await?;
        Ok(())
    }
}
