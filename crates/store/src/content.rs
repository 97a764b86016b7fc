//! The content API's records: websites, categories, tags and blogs.
//!
//! Every query takes a [`Scope`]: the organization always, and for a team-scoped caller the
//! team, which limits it to websites owned by that team and to their content.

use keyward_core::{BlogId, CategoryId, OrgId, TagId, TeamId, UnixMillis, WebsiteId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::keys::ActorRef;
use crate::page::{Cursor, Page, PageRequest};
use crate::{Conn, Scope, StoreError};

fn scope_team(scope: &Scope) -> &str {
    scope.team.as_ref().map(|t| t.as_str()).unwrap_or("")
}

/// Visible websites: binds `$1` (organization) and `$2` (team or '').
const WEBSITE_SCOPE: &str = "w.organization_id = $1 AND ($2 = '' OR w.team_id = $2)";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Website {
    pub id: WebsiteId,
    pub org: OrgId,
    pub team: Option<TeamId>,
    pub name: String,
    pub domain: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

fn website_from_row(row: &AnyRow) -> Result<Website, sqlx::Error> {
    Ok(Website {
        id: WebsiteId::from_stored(row.try_get("id")?),
        org: OrgId::from_stored(row.try_get("organization_id")?),
        team: row
            .try_get::<Option<String>, _>("team_id")?
            .map(TeamId::from_stored),
        name: row.try_get("name")?,
        domain: row.try_get("domain")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const WEBSITE_COLUMNS: &str =
    "w.id, w.organization_id, w.team_id, w.name, w.domain, w.created_at, w.updated_at";

fn domain_taken(domain: &str) -> String {
    format!("a website with the domain {domain:?} already exists")
}

pub async fn insert_website(conn: &mut Conn, w: &Website) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO websites (id, organization_id, team_id, name, domain, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(w.id.as_str())
    .bind(w.org.as_str())
    .bind(w.team.as_ref().map(|t| t.as_str()))
    .bind(&w.name)
    .bind(&w.domain)
    .bind(w.created_at)
    .bind(w.updated_at)
    .execute(conn)
    .await
    .map_err(|e| StoreError::on_unique(e, || domain_taken(&w.domain)))?;
    Ok(())
}

pub async fn get_website(
    conn: &mut Conn,
    scope: &Scope,
    id: &WebsiteId,
) -> Result<Option<Website>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {WEBSITE_COLUMNS} FROM websites w WHERE {WEBSITE_SCOPE} AND w.id = $3"
    ))
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(website_from_row).transpose()?)
}

pub async fn list_websites(
    conn: &mut Conn,
    scope: &Scope,
    page: &PageRequest,
) -> Result<Page<Website>, StoreError> {
    let (at, id) = page.bounds();
    let rows = sqlx::query(&format!(
        "SELECT {WEBSITE_COLUMNS} FROM websites w WHERE {WEBSITE_SCOPE}
           AND (w.created_at < $3 OR (w.created_at = $3 AND w.id < $4))
         ORDER BY w.created_at DESC, w.id DESC LIMIT $5"
    ))
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(at)
    .bind(id)
    .bind(page.fetch_limit())
    .fetch_all(conn)
    .await?;
    let items = rows
        .iter()
        .map(website_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |w| Cursor {
        at: w.created_at,
        id: w.id.to_string(),
    }))
}

pub async fn update_website(conn: &mut Conn, scope: &Scope, w: &Website) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE websites SET team_id = $3, name = $4, domain = $5, updated_at = $6
         WHERE id = $7 AND organization_id = $1 AND ($2 = '' OR team_id = $2)",
    )
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(w.team.as_ref().map(|t| t.as_str()))
    .bind(&w.name)
    .bind(&w.domain)
    .bind(w.updated_at)
    .bind(w.id.as_str())
    .execute(conn)
    .await
    .map_err(|e| StoreError::on_unique(e, || domain_taken(&w.domain)))?;
    Ok(())
}

/// Categories and tags share one shape; this names the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taxonomy {
    Category,
    Tag,
}

impl Taxonomy {
    fn table(self) -> &'static str {
        match self {
            Taxonomy::Category => "categories",
            Taxonomy::Tag => "tags",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Taxonomy::Category => "category",
            Taxonomy::Tag => "tag",
        }
    }
}

/// A category or a tag of one website.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// `cat_…` or `tag_…`.
    pub id: String,
    pub org: OrgId,
    pub website: WebsiteId,
    pub name: String,
    pub slug: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

fn term_from_row(row: &AnyRow) -> Result<Term, sqlx::Error> {
    Ok(Term {
        id: row.try_get("id")?,
        org: OrgId::from_stored(row.try_get("organization_id")?),
        website: WebsiteId::from_stored(row.try_get("website_id")?),
        name: row.try_get("name")?,
        slug: row.try_get("slug")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn slug_taken(kind: Taxonomy, slug: &str) -> String {
    format!(
        "a {} with the slug {slug:?} already exists on this website",
        kind.noun()
    )
}

pub async fn insert_term(conn: &mut Conn, kind: Taxonomy, t: &Term) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO {} (id, organization_id, website_id, name, slug, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        kind.table()
    ))
    .bind(&t.id)
    .bind(t.org.as_str())
    .bind(t.website.as_str())
    .bind(&t.name)
    .bind(&t.slug)
    .bind(t.created_at)
    .bind(t.updated_at)
    .execute(conn)
    .await
    .map_err(|e| StoreError::on_unique(e, || slug_taken(kind, &t.slug)))?;
    Ok(())
}

/// A term of a website visible in `scope`.
pub async fn get_term(
    conn: &mut Conn,
    scope: &Scope,
    kind: Taxonomy,
    id: &str,
) -> Result<Option<Term>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT t.id, t.organization_id, t.website_id, t.name, t.slug, t.created_at, t.updated_at
         FROM {} t JOIN websites w ON w.id = t.website_id AND w.organization_id = t.organization_id
         WHERE {WEBSITE_SCOPE} AND t.id = $3",
        kind.table()
    ))
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(term_from_row).transpose()?)
}

/// Terms visible in `scope`, optionally of one website, newest first.
pub async fn list_terms(
    conn: &mut Conn,
    scope: &Scope,
    kind: Taxonomy,
    website: Option<&WebsiteId>,
    page: &PageRequest,
) -> Result<Page<Term>, StoreError> {
    let (at, id) = page.bounds();
    let rows = sqlx::query(&format!(
        "SELECT t.id, t.organization_id, t.website_id, t.name, t.slug, t.created_at, t.updated_at
         FROM {} t JOIN websites w ON w.id = t.website_id AND w.organization_id = t.organization_id
         WHERE {WEBSITE_SCOPE} AND ($3 = '' OR t.website_id = $3)
           AND (t.created_at < $4 OR (t.created_at = $4 AND t.id < $5))
         ORDER BY t.created_at DESC, t.id DESC LIMIT $6",
        kind.table()
    ))
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(website.map(|w| w.as_str()).unwrap_or(""))
    .bind(at)
    .bind(id)
    .bind(page.fetch_limit())
    .fetch_all(conn)
    .await?;
    let items = rows
        .iter()
        .map(term_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |t| Cursor {
        at: t.created_at,
        id: t.id.clone(),
    }))
}

/// Rows of websites visible in a scope: binds `$1` (organization) and `$2` (team or '').
const IN_SCOPE: &str = "organization_id = $1 AND website_id IN
    (SELECT w.id FROM websites w WHERE w.organization_id = $1 AND ($2 = '' OR w.team_id = $2))";

pub async fn update_term(
    conn: &mut Conn,
    scope: &Scope,
    kind: Taxonomy,
    t: &Term,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "UPDATE {} SET name = $3, slug = $4, updated_at = $5 WHERE {IN_SCOPE} AND id = $6",
        kind.table()
    ))
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(&t.name)
    .bind(&t.slug)
    .bind(t.updated_at)
    .bind(&t.id)
    .execute(conn)
    .await
    .map_err(|e| StoreError::on_unique(e, || slug_taken(kind, &t.slug)))?;
    Ok(())
}

/// Deletes a term; blogs lose the category or the tag.
pub async fn delete_term(
    conn: &mut Conn,
    scope: &Scope,
    kind: Taxonomy,
    id: &str,
    now: UnixMillis,
) -> Result<(), StoreError> {
    match kind {
        Taxonomy::Category => {
            sqlx::query(&format!("UPDATE blogs SET category_id = NULL, updated_at = $3 WHERE {IN_SCOPE} AND category_id = $4"))
                .bind(scope.org.as_str())
                .bind(scope_team(scope))
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        Taxonomy::Tag => {
            sqlx::query(
                "DELETE FROM blog_tags WHERE organization_id = $1 AND tag_id = $3 AND tag_id IN
                    (SELECT t.id FROM tags t JOIN websites w ON w.id = t.website_id
                     WHERE t.organization_id = $1 AND ($2 = '' OR w.team_id = $2))",
            )
            .bind(scope.org.as_str())
            .bind(scope_team(scope))
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query(&format!(
        "DELETE FROM {} WHERE {IN_SCOPE} AND id = $3",
        kind.table()
    ))
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blog {
    pub id: BlogId,
    pub org: OrgId,
    pub website: WebsiteId,
    pub title: String,
    pub slug: String,
    pub excerpt: String,
    pub body: String,
    /// `draft` or `published`.
    pub status: String,
    pub category: Option<CategoryId>,
    pub tags: Vec<TagId>,
    pub author: ActorRef,
    pub published_at: Option<UnixMillis>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

const BLOG_COLUMNS: &str =
    "b.id, b.organization_id, b.website_id, b.title, b.slug, b.excerpt, b.body, b.status,
    b.category_id, b.author_type, b.author_id, b.published_at, b.created_at, b.updated_at";

fn blog_from_row(row: &AnyRow) -> Result<Blog, sqlx::Error> {
    Ok(Blog {
        id: BlogId::from_stored(row.try_get("id")?),
        org: OrgId::from_stored(row.try_get("organization_id")?),
        website: WebsiteId::from_stored(row.try_get("website_id")?),
        title: row.try_get("title")?,
        slug: row.try_get("slug")?,
        excerpt: row.try_get("excerpt")?,
        body: row.try_get("body")?,
        status: row.try_get("status")?,
        category: row
            .try_get::<Option<String>, _>("category_id")?
            .map(CategoryId::from_stored),
        tags: Vec::new(),
        author: ActorRef {
            kind: row.try_get("author_type")?,
            id: row.try_get("author_id")?,
        },
        published_at: row.try_get("published_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn blog_slug_taken(slug: &str) -> String {
    format!("a blog with the slug {slug:?} already exists on this website")
}

async fn write_tags(conn: &mut Conn, b: &Blog) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM blog_tags WHERE organization_id = $1 AND blog_id = $2")
        .bind(b.org.as_str())
        .bind(b.id.as_str())
        .execute(&mut *conn)
        .await?;
    for tag in &b.tags {
        sqlx::query("INSERT INTO blog_tags (organization_id, blog_id, tag_id) VALUES ($1, $2, $3)")
            .bind(b.org.as_str())
            .bind(b.id.as_str())
            .bind(tag.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Fills in the tags of `blogs` with one query.
async fn load_tags(conn: &mut Conn, org: &OrgId, blogs: &mut [Blog]) -> Result<(), StoreError> {
    if blogs.is_empty() {
        return Ok(());
    }
    let placeholders: Vec<String> = (0..blogs.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT bt.blog_id, bt.tag_id FROM blog_tags bt JOIN tags t ON t.id = bt.tag_id
         WHERE bt.organization_id = $1 AND bt.blog_id IN ({}) ORDER BY t.created_at, t.id",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(org.as_str());
    for b in blogs.iter() {
        query = query.bind(b.id.as_str());
    }
    let rows = query.fetch_all(conn).await?;
    for row in rows {
        let blog: String = row.try_get("blog_id")?;
        let tag: String = row.try_get("tag_id")?;
        if let Some(b) = blogs.iter_mut().find(|b| b.id.as_str() == blog) {
            b.tags.push(TagId::from_stored(tag));
        }
    }
    Ok(())
}

pub async fn insert_blog(conn: &mut Conn, b: &Blog) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO blogs (id, organization_id, website_id, title, slug, excerpt, body, status, category_id,
            author_type, author_id, published_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(b.id.as_str())
    .bind(b.org.as_str())
    .bind(b.website.as_str())
    .bind(&b.title)
    .bind(&b.slug)
    .bind(&b.excerpt)
    .bind(&b.body)
    .bind(&b.status)
    .bind(b.category.as_ref().map(|c| c.as_str()))
    .bind(&b.author.kind)
    .bind(&b.author.id)
    .bind(b.published_at)
    .bind(b.created_at)
    .bind(b.updated_at)
    .execute(&mut *conn)
    .await
    .map_err(|e| StoreError::on_unique(e, || blog_slug_taken(&b.slug)))?;
    write_tags(conn, b).await
}

pub async fn update_blog(conn: &mut Conn, scope: &Scope, b: &Blog) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "UPDATE blogs SET title = $3, slug = $4, excerpt = $5, body = $6, status = $7, category_id = $8,
            published_at = $9, updated_at = $10
         WHERE {IN_SCOPE} AND id = $11"
    ))
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(&b.title)
    .bind(&b.slug)
    .bind(&b.excerpt)
    .bind(&b.body)
    .bind(&b.status)
    .bind(b.category.as_ref().map(|c| c.as_str()))
    .bind(b.published_at)
    .bind(b.updated_at)
    .bind(b.id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(|e| StoreError::on_unique(e, || blog_slug_taken(&b.slug)))?;
    write_tags(conn, b).await
}

pub async fn delete_blog(conn: &mut Conn, scope: &Scope, id: &BlogId) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM blog_tags WHERE organization_id = $1 AND blog_id = $3 AND blog_id IN
            (SELECT b.id FROM blogs b JOIN websites w ON w.id = b.website_id
             WHERE b.organization_id = $1 AND ($2 = '' OR w.team_id = $2))",
    )
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(id.as_str())
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!("DELETE FROM blogs WHERE {IN_SCOPE} AND id = $3"))
        .bind(scope.org.as_str())
        .bind(scope_team(scope))
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// A blog of a website visible in `scope`; drafts only when `drafts` is true.
pub async fn get_blog(
    conn: &mut Conn,
    scope: &Scope,
    id: &BlogId,
    drafts: bool,
) -> Result<Option<Blog>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {BLOG_COLUMNS} FROM blogs b JOIN websites w ON w.id = b.website_id AND w.organization_id = b.organization_id
         WHERE {WEBSITE_SCOPE} AND b.id = $3 AND (b.status = 'published' OR $4 = 1)"
    ))
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(id.as_str())
    .bind(i64::from(drafts))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut blogs = vec![blog_from_row(&row)?];
    load_tags(conn, &scope.org, &mut blogs).await?;
    Ok(blogs.pop())
}

/// Which blogs a list shows.
#[derive(Clone, Debug, Default)]
pub struct BlogFilter {
    pub website: Option<WebsiteId>,
    /// A category id or slug.
    pub category: Option<String>,
    /// A tag id or slug.
    pub tag: Option<String>,
    pub slug: Option<String>,
    /// `published` (the default), `draft`, or `any`.
    pub status: Option<String>,
}

pub async fn list_blogs(
    conn: &mut Conn,
    scope: &Scope,
    f: &BlogFilter,
    page: &PageRequest,
) -> Result<Page<Blog>, StoreError> {
    let (at, id) = page.bounds();
    let rows = sqlx::query(&format!(
        "SELECT {BLOG_COLUMNS} FROM blogs b JOIN websites w ON w.id = b.website_id AND w.organization_id = b.organization_id
         WHERE {WEBSITE_SCOPE}
           AND ($3 = 'any' OR b.status = $3)
           AND ($4 = '' OR b.website_id = $4)
           AND ($5 = '' OR b.slug = $5)
           AND ($6 = '' OR b.category_id IN
                (SELECT c.id FROM categories c WHERE c.organization_id = $1 AND c.website_id = b.website_id AND (c.id = $6 OR c.slug = $6)))
           AND ($7 = '' OR EXISTS
                (SELECT 1 FROM blog_tags bt JOIN tags t ON t.id = bt.tag_id
                 WHERE bt.organization_id = $1 AND bt.blog_id = b.id AND (t.id = $7 OR t.slug = $7)))
           AND (b.created_at < $8 OR (b.created_at = $8 AND b.id < $9))
         ORDER BY b.created_at DESC, b.id DESC LIMIT $10"
    ))
    .bind(scope.org.as_str())
    .bind(scope_team(scope))
    .bind(f.status.as_deref().unwrap_or("published"))
    .bind(f.website.as_ref().map(|w| w.as_str()).unwrap_or(""))
    .bind(f.slug.as_deref().unwrap_or(""))
    .bind(f.category.as_deref().unwrap_or(""))
    .bind(f.tag.as_deref().unwrap_or(""))
    .bind(at)
    .bind(id)
    .bind(page.fetch_limit())
    .fetch_all(&mut *conn)
    .await?;
    let mut items = rows
        .iter()
        .map(blog_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    load_tags(conn, &scope.org, &mut items).await?;
    Ok(Page::from_rows(items, page, |b| Cursor {
        at: b.created_at,
        id: b.id.to_string(),
    }))
}

/// Whether a website already has a blog with this slug.
pub async fn blog_slug_exists(
    conn: &mut Conn,
    org: &OrgId,
    website: &WebsiteId,
    slug: &str,
) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM blogs WHERE organization_id = $1 AND website_id = $2 AND slug = $3",
    )
    .bind(org.as_str())
    .bind(website.as_str())
    .bind(slug)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}
