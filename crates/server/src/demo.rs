//! Demo data for `keyward serve --demo`: an organization to try everything with.

use keyward_core::Role;
use secrecy::SecretString;

use crate::service::{NewAgent, NewOrg};
use crate::{Caller, Service, ServiceError};

pub const DEMO_EMAIL: &str = "demo@keyward.local";

/// What the demo loader made, to print once.
pub struct Demo {
    pub email: String,
    pub password: String,
    pub api_key: String,
}

/// Loads the demo on an empty store; on a store with data it loads nothing (`None`).
pub async fn load(service: &Service) -> Result<Option<Demo>, ServiceError> {
    {
        let mut conn = service.store().read().await?;
        if keyward_store::orgs::any_exist(&mut conn).await? {
            return Ok(None);
        }
    }
    let org = service
        .create_org(NewOrg {
            name: "Demo Company".into(),
            slug: Some("demo".into()),
            plan: "pro".into(),
        })
        .await?;
    let caller = Caller::cli(org.id.clone());
    let mut password = String::new();
    keyward_core::base62::push_random(&mut password, &mut rand::rng(), 16);
    let owner = service
        .create_user(
            &caller,
            DEMO_EMAIL,
            Role::Owner,
            Some(SecretString::from(password.clone())),
        )
        .await?;
    let team = service.create_team(&caller, "Editorial").await?;
    service
        .add_team_member(&caller, &team.id, &owner.user.id)
        .await?;
    let all = service.config().capabilities.all().names();
    let agent = service
        .create_agent(
            &Caller {
                actor: crate::service::Actor::User {
                    id: owner.user.id.clone(),
                    role: Role::Owner,
                },
                ..caller.clone()
            },
            NewAgent {
                name: "Demo agent".into(),
                description: Some("Every capability, for trying the API".into()),
                capabilities: all,
            },
        )
        .await?;
    load_content(service, &caller, &team.id).await?;
    Ok(Some(Demo {
        email: owner.user.email,
        password,
        api_key: agent.first_key.secret.expose().to_string(),
    }))
}

/// Two websites (one owned by the demo team), their categories and tags, and a dozen blogs,
/// some of them drafts, so every content endpoint has something to show.
async fn load_content(
    service: &Service,
    caller: &Caller,
    team: &keyward_core::TeamId,
) -> Result<(), ServiceError> {
    use keyward_store::content::Taxonomy;

    use crate::service::{BlogInput, WebsiteInput};

    let sites = [
        ("Demo Company Blog", "blog.demo.example", None),
        (
            "Editorial Desk",
            "editorial.demo.example",
            Some(team.clone()),
        ),
    ];
    type Post = (
        &'static str,
        &'static str,
        &'static str,
        &'static [&'static str],
        bool,
    );
    let posts: [Post; 12] = [
        (
            "Introducing our API",
            "news",
            "Meet the API that powers our content.",
            &["api", "launch"],
            true,
        ),
        (
            "Five ways to rotate keys safely",
            "guides",
            "Rolling keys with a grace period keeps integrations up.",
            &["security"],
            true,
        ),
        (
            "Rate limits, explained",
            "guides",
            "A rolling window admits at most a fixed number of requests.",
            &["api"],
            true,
        ),
        (
            "What we shipped in March",
            "news",
            "Usage charts, audit filters and team-scoped keys.",
            &["launch"],
            true,
        ),
        (
            "Designing for least privilege",
            "guides",
            "Give each agent only the capabilities it needs.",
            &["security"],
            true,
        ),
        (
            "Roadmap notes (internal)",
            "news",
            "Ideas we are still weighing.",
            &[],
            false,
        ),
        (
            "Style guide",
            "editorial",
            "How we write: short sentences, plain words.",
            &["writing"],
            true,
        ),
        (
            "Interview: our first customer",
            "editorial",
            "How a newsroom publishes with our API.",
            &["writing", "api"],
            true,
        ),
        (
            "Headline workshop",
            "editorial",
            "Ten headlines, rewritten.",
            &["writing"],
            true,
        ),
        (
            "Draft: autumn campaign",
            "editorial",
            "Copy for the autumn campaign, not final.",
            &[],
            false,
        ),
        (
            "Publishing checklist",
            "editorial",
            "Before you press publish.",
            &["writing"],
            true,
        ),
        (
            "Draft: glossary",
            "editorial",
            "Terms we use and what they mean.",
            &[],
            false,
        ),
    ];
    let mut site_ids = Vec::new();
    for (name, domain, owner) in sites {
        let input = WebsiteInput {
            name: Some(name.into()),
            domain: Some(domain.into()),
            team: Some(owner),
        };
        site_ids.push(service.create_website(caller, input).await?.id);
    }
    for (i, (title, category, intro, tags, published)) in posts.iter().enumerate() {
        let site = &site_ids[usize::from(*category == "editorial")];
        let category =
            find_or_create_term(service, caller, Taxonomy::Category, site, category).await?;
        let mut tag_ids = Vec::new();
        for tag in tags.iter() {
            let term = find_or_create_term(service, caller, Taxonomy::Tag, site, tag).await?;
            tag_ids.push(keyward_core::TagId::from_stored(term.id));
        }
        let body = format!(
            "{intro}\n\n## Why it matters\n\nPost {} of the demo data: edit it, filter it, or delete it.\n\n## Next steps\n\nTry `GET /v1/blogs?category={}`.\n",
            i + 1,
            category.slug
        );
        let input = BlogInput {
            website: Some(site.clone()),
            title: Some((*title).into()),
            body: Some(body),
            category: Some(Some(keyward_core::CategoryId::from_stored(category.id))),
            tags: Some(tag_ids),
            status: Some(if *published { "published" } else { "draft" }.into()),
            ..BlogInput::default()
        };
        service.create_blog(caller, input).await?;
    }
    Ok(())
}

async fn find_or_create_term(
    service: &Service,
    caller: &Caller,
    kind: keyward_store::content::Taxonomy,
    site: &keyward_core::WebsiteId,
    slug: &str,
) -> Result<keyward_store::content::Term, ServiceError> {
    let existing = service
        .list_terms(caller, kind, Some(site), &keyward_store::PageRequest::all())
        .await?;
    if let Some(term) = existing.items.into_iter().find(|t| t.slug == slug) {
        return Ok(term);
    }
    let mut name = slug.to_string();
    if let Some(first) = name.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let input = crate::service::TermInput {
        website: Some(site.clone()),
        name: Some(name),
        slug: Some(slug.into()),
    };
    service.create_term(caller, kind, input).await
}
