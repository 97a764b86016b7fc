//! The content API over HTTP: scoping, filters, pagination, drafts, ETags, validation.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp, ALL};

async fn website(app: &TestApp, key: &str, name: &str, domain: &str, team: Option<&str>) -> String {
    let mut body = json!({"name": name, "domain": domain});
    if let Some(t) = team {
        body["team_id"] = json!(t);
    }
    let r = app.post("/v1/websites", key, body).await;
    r.expect(201, "");
    r.body["id"].as_str().unwrap().to_string()
}

async fn blog(app: &TestApp, key: &str, body: Value) -> Value {
    let r = app.post("/v1/blogs", key, body).await;
    r.expect(201, "");
    r.body
}

#[tokio::test]
async fn websites_categories_tags_and_blogs() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let site = website(&app, &t.key, "Acme blog", "Blog.Acme.test", None).await;
    let got = app.get(&format!("/v1/websites/{site}"), &t.key).await;
    got.expect(200, "");
    assert_eq!(got.body["domain"], "blog.acme.test");
    assert_eq!(got.body["team_id"], json!(null));

    let cat = app
        .post(
            "/v1/categories",
            &t.key,
            json!({"website_id": site, "name": "Product News"}),
        )
        .await;
    cat.expect(201, "");
    assert_eq!(cat.body["slug"], "product-news");
    let cat_id = cat.body["id"].as_str().unwrap().to_string();
    let tag = app
        .post(
            "/v1/tags",
            &t.key,
            json!({"website_id": site, "name": "Rust", "slug": "rust"}),
        )
        .await;
    tag.expect(201, "");
    let tag_id = tag.body["id"].as_str().unwrap().to_string();
    app.post(
        "/v1/tags",
        &t.key,
        json!({"website_id": site, "name": "Rust again", "slug": "rust"}),
    )
    .await
    .expect(409, "conflict");

    let post = blog(
        &app,
        &t.key,
        json!({"website_id": site, "title": "Hello, World!", "body": "# Hi\n\nFirst paragraph here.\n\nMore.", "category_id": cat_id, "tag_ids": [tag_id], "status": "published"}),
    )
    .await;
    assert_eq!(post["slug"], "hello-world");
    assert_eq!(post["excerpt"], "First paragraph here.");
    assert_eq!(post["status"], "published");
    assert!(post["published_at"].is_string());
    assert_eq!(post["tag_ids"], json!([tag_id]));
    assert_eq!(
        post["author"],
        json!({"type": "key", "id": t.key_id.as_str()})
    );
    let draft = blog(
        &app,
        &t.key,
        json!({"website_id": site, "title": "Secret plans", "body": "Not yet."}),
    )
    .await;
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["published_at"], json!(null));
    app.post(
        "/v1/blogs",
        &t.key,
        json!({"website_id": site, "title": "Hello World", "body": "x", "slug": "hello-world"}),
    )
    .await
    .expect(409, "conflict");

    // Filters: published only by default; by website, category (id or slug), tag (id or slug), slug.
    let all = app.get("/v1/blogs", &t.key).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 1);
    for q in [
        format!("website_id={site}"),
        format!("category={cat_id}"),
        "category=product-news".to_string(),
        format!("tag={tag_id}"),
        "tag=rust".to_string(),
        "slug=hello-world".to_string(),
    ] {
        let r = app.get(&format!("/v1/blogs?{q}"), &t.key).await;
        r.expect(200, "");
        assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{q}");
        assert_eq!(r.body["data"][0]["id"], post["id"], "{q}");
    }
    for q in ["category=nope", "tag=nope", "slug=secret-plans"] {
        let r = app.get(&format!("/v1/blogs?{q}"), &t.key).await;
        assert_eq!(r.body["data"].as_array().unwrap().len(), 0, "{q}");
    }
    let any = app.get("/v1/blogs?status=any", &t.key).await;
    assert_eq!(any.body["data"].as_array().unwrap().len(), 2);
    let drafts = app.get("/v1/blogs?status=draft", &t.key).await;
    assert_eq!(drafts.body["data"][0]["id"], draft["id"]);
    app.get("/v1/blogs?status=deleted", &t.key)
        .await
        .expect(400, "invalid_request");

    // Update and delete, audited.
    let upd = app
        .patch(
            &format!("/v1/blogs/{}", draft["id"].as_str().unwrap()),
            &t.key,
            json!({"status": "published", "category_id": cat_id}),
        )
        .await;
    upd.expect(200, "");
    assert!(upd.body["published_at"].is_string());
    app.patch(
        &format!("/v1/blogs/{}", draft["id"].as_str().unwrap()),
        &t.key,
        json!({"category_id": null}),
    )
    .await
    .expect(200, "");
    app.patch(
        &format!("/v1/categories/{cat_id}"),
        &t.key,
        json!({"name": "News"}),
    )
    .await
    .expect(200, "");
    app.delete(&format!("/v1/tags/{tag_id}"), &t.key)
        .await
        .expect(204, "");
    let after = app
        .get(
            &format!("/v1/blogs/{}", post["id"].as_str().unwrap()),
            &t.key,
        )
        .await;
    assert_eq!(
        after.body["tag_ids"],
        json!([]),
        "a deleted tag leaves its blogs"
    );
    app.delete(&format!("/v1/categories/{cat_id}"), &t.key)
        .await
        .expect(204, "");
    let after = app
        .get(
            &format!("/v1/blogs/{}", post["id"].as_str().unwrap()),
            &t.key,
        )
        .await;
    assert_eq!(after.body["category_id"], json!(null));
    app.delete(
        &format!("/v1/blogs/{}", post["id"].as_str().unwrap()),
        &t.key,
    )
    .await
    .expect(204, "");
    app.get(
        &format!("/v1/blogs/{}", post["id"].as_str().unwrap()),
        &t.key,
    )
    .await
    .expect(404, "not_found");
    let audit = app.get("/v1/audit-events?limit=100", &t.key).await;
    let actions: Vec<&str> = audit.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "website.created",
        "blog.created",
        "blog.updated",
        "blog.deleted",
        "category.created",
        "tag.deleted",
    ] {
        assert!(actions.contains(&a), "{a} missing");
    }
}

#[tokio::test]
async fn drafts_need_content_write() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let (_, _, reader) = app.agent(&t.org, "Reader", &["content:read"], None).await;
    let site = website(&app, &t.key, "Site", "site.test", None).await;
    let draft = blog(
        &app,
        &t.key,
        json!({"website_id": site, "title": "Draft", "body": "wip"}),
    )
    .await;
    let r = app.get("/v1/blogs?status=draft", &reader).await;
    r.expect(403, "insufficient_capability");
    assert!(r
        .header("www-authenticate")
        .contains("scope=\"content:write\""));
    app.get("/v1/blogs?status=any", &reader)
        .await
        .expect(403, "insufficient_capability");
    app.get(
        &format!("/v1/blogs/{}", draft["id"].as_str().unwrap()),
        &reader,
    )
    .await
    .expect(404, "not_found");
    app.get(
        &format!("/v1/blogs/{}", draft["id"].as_str().unwrap()),
        &t.key,
    )
    .await
    .expect(200, "");
    app.post(
        "/v1/blogs",
        &reader,
        json!({"website_id": site, "title": "x", "body": "y"}),
    )
    .await
    .expect(403, "insufficient_capability");
    app.post(
        "/v1/websites",
        &reader,
        json!({"name": "x", "domain": "x.test"}),
    )
    .await
    .expect(403, "insufficient_capability");
    let (_, _, nothing) = app.agent(&t.org, "Nothing", &["keys:read"], None).await;
    app.get("/v1/blogs", &nothing)
        .await
        .expect(403, "insufficient_capability");
}

#[tokio::test]
async fn pagination_edges() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let empty = app.get("/v1/websites", &t.key).await;
    assert_eq!(
        empty.body,
        json!({"data": [], "pagination": {"limit": 20, "has_more": false, "next_cursor": null}})
    );
    for i in 0..3 {
        app.clock.advance(2);
        website(
            &app,
            &t.key,
            &format!("Site {i}"),
            &format!("s{i}.test"),
            None,
        )
        .await;
    }
    let exact = app.get("/v1/websites?limit=3", &t.key).await;
    assert_eq!(exact.body["data"].as_array().unwrap().len(), 3);
    assert_eq!(exact.body["pagination"]["has_more"], false);
    assert_eq!(exact.body["pagination"]["next_cursor"], json!(null));
    assert_eq!(exact.body["data"][0]["name"], "Site 2", "newest first");
    let first = app.get("/v1/websites?limit=2", &t.key).await;
    assert_eq!(first.body["pagination"]["has_more"], true);
    let cursor = first.body["pagination"]["next_cursor"].as_str().unwrap();
    let last = app
        .get(&format!("/v1/websites?limit=2&cursor={cursor}"), &t.key)
        .await;
    assert_eq!(last.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(last.body["data"][0]["name"], "Site 0");
    assert_eq!(last.body["pagination"]["next_cursor"], json!(null));
    app.get("/v1/websites?cursor=%%%", &t.key)
        .await
        .expect(400, "invalid_request");
    app.get("/v1/blogs?cursor=nope", &t.key)
        .await
        .expect(400, "invalid_request");
}

#[tokio::test]
async fn reads_carry_an_etag_and_honour_if_none_match() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let site = website(&app, &t.key, "Site", "site.test", None).await;
    let r = app.get(&format!("/v1/websites/{site}"), &t.key).await;
    let etag = r.header("etag").to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10,
        "{etag}"
    );
    let again = app
        .req(
            reqwest::Method::GET,
            &format!("/v1/websites/{site}"),
            &t.key,
        )
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.text().await.unwrap().is_empty());
    app.patch(
        &format!("/v1/websites/{site}"),
        &t.key,
        json!({"name": "Renamed"}),
    )
    .await
    .expect(200, "");
    let changed = app
        .req(
            reqwest::Method::GET,
            &format!("/v1/websites/{site}"),
            &t.key,
        )
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let list = app.get("/v1/websites", &t.key).await;
    assert!(!list.header("etag").is_empty());
}

#[tokio::test]
async fn bad_content_input_names_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    let t = app.tenant("Acme", "pro", ALL).await;
    let site = website(&app, &t.key, "Site", "site.test", None).await;
    let other = website(&app, &t.key, "Other", "other.test", None).await;
    let other_cat = app
        .post(
            "/v1/categories",
            &t.key,
            json!({"website_id": other, "name": "Elsewhere"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cases = [
        (
            "/v1/websites",
            json!({"name": "x", "domain": "https://x.test/"}),
            "domain",
        ),
        ("/v1/websites", json!({"domain": "x.test"}), "name"),
        (
            "/v1/websites",
            json!({"name": "x", "domain": "x.test", "team_id": "team_nope"}),
            "team_id",
        ),
        (
            "/v1/blogs",
            json!({"title": "x", "body": "y"}),
            "website_id",
        ),
        (
            "/v1/blogs",
            json!({"website_id": "web_nope", "title": "x", "body": "y"}),
            "website_id",
        ),
        (
            "/v1/blogs",
            json!({"website_id": site, "title": "", "body": "y"}),
            "title",
        ),
        (
            "/v1/blogs",
            json!({"website_id": site, "title": "x", "body": " "}),
            "body",
        ),
        (
            "/v1/blogs",
            json!({"website_id": site, "title": "x", "body": "y", "status": "live"}),
            "status",
        ),
        (
            "/v1/blogs",
            json!({"website_id": site, "title": "x", "body": "y", "slug": "Not A Slug"}),
            "slug",
        ),
        (
            "/v1/blogs",
            json!({"website_id": site, "title": "x", "body": "y", "category_id": other_cat}),
            "category_id",
        ),
        (
            "/v1/blogs",
            json!({"website_id": site, "title": "x", "body": "y", "tag_ids": ["tag_nope"]}),
            "tag_ids",
        ),
        (
            "/v1/blogs",
            json!({"website_id": site, "title": "x", "body": "y", "tags": []}),
            "body",
        ),
        ("/v1/categories", json!({"website_id": site}), "name"),
        ("/v1/tags", json!({"name": "x"}), "website_id"),
    ];
    for (path, body, field) in cases {
        let r = app.post(path, &t.key, body.clone()).await;
        r.expect(400, "invalid_request");
        if field != "body" {
            assert_eq!(r.body["error"]["field"], field, "{path} {body}");
        }
    }
    let blogs = app.get("/v1/blogs?status=any", &t.key).await;
    assert_eq!(blogs.body["data"].as_array().unwrap().len(), 0);
    let sites = app.get("/v1/websites", &t.key).await;
    assert_eq!(sites.body["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn content_never_crosses_organizations_or_teams() {
    let app = spawn_app().await;
    let a = app.tenant("Alpha", "pro", ALL).await;
    let b = app.tenant("Beta", "pro", ALL).await;
    let b_site = website(&app, &b.key, "Beta site", "beta.test", None).await;
    let b_cat = app
        .post(
            "/v1/categories",
            &b.key,
            json!({"website_id": b_site, "name": "B"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b_tag = app
        .post(
            "/v1/tags",
            &b.key,
            json!({"website_id": b_site, "name": "B"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b_blog = blog(
        &app,
        &b.key,
        json!({"website_id": b_site, "title": "B post", "body": "b", "status": "published"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        format!("/v1/websites/{b_site}"),
        format!("/v1/blogs/{b_blog}"),
        format!("/v1/categories/{b_cat}"),
        format!("/v1/tags/{b_tag}"),
    ] {
        app.get(&path, &a.key).await.expect(404, "not_found");
        app.patch(&path, &a.key, json!({"name": "x"})).await.expect(
            if path.contains("/blogs/") { 400 } else { 404 },
            if path.contains("/blogs/") {
                "invalid_request"
            } else {
                "not_found"
            },
        );
    }
    app.patch(
        &format!("/v1/blogs/{b_blog}"),
        &a.key,
        json!({"title": "x"}),
    )
    .await
    .expect(404, "not_found");
    app.delete(&format!("/v1/blogs/{b_blog}"), &a.key)
        .await
        .expect(404, "not_found");
    app.delete(&format!("/v1/categories/{b_cat}"), &a.key)
        .await
        .expect(404, "not_found");
    app.delete(&format!("/v1/tags/{b_tag}"), &a.key)
        .await
        .expect(404, "not_found");
    app.post(
        "/v1/blogs",
        &a.key,
        json!({"website_id": b_site, "title": "x", "body": "y"}),
    )
    .await
    .expect(400, "invalid_request");
    app.post(
        "/v1/categories",
        &a.key,
        json!({"website_id": b_site, "name": "x"}),
    )
    .await
    .expect(400, "invalid_request");
    for list in [
        "/v1/websites",
        "/v1/blogs?status=any",
        "/v1/categories",
        "/v1/tags",
        &format!("/v1/blogs?website_id={b_site}"),
    ] {
        let r = app.get(list, &a.key).await;
        assert_eq!(r.body["data"].as_array().unwrap().len(), 0, "{list}");
    }

    // Inside one organization, a team-scoped key sees only its team's websites and content.
    let red = app.team(&a.org, "Red").await;
    let (_, _, red_key) = app
        .agent(&a.org, "Red writer", &["content:write"], Some(&red))
        .await;
    let org_site = website(&app, &a.key, "Org site", "org.test", None).await;
    let red_site = website(&app, &red_key, "Red site", "red.test", None).await;
    let red_view = app.get(&format!("/v1/websites/{red_site}"), &a.key).await;
    assert_eq!(
        red_view.body["team_id"],
        red.as_str(),
        "a team key's website belongs to its team"
    );
    let org_post = blog(
        &app,
        &a.key,
        json!({"website_id": org_site, "title": "Org post", "body": "o", "status": "published"}),
    )
    .await;
    blog(
        &app,
        &red_key,
        json!({"website_id": red_site, "title": "Red post", "body": "r", "status": "published"}),
    )
    .await;
    app.get(&format!("/v1/websites/{org_site}"), &red_key)
        .await
        .expect(404, "not_found");
    app.get(
        &format!("/v1/blogs/{}", org_post["id"].as_str().unwrap()),
        &red_key,
    )
    .await
    .expect(404, "not_found");
    let listed = app.get("/v1/blogs", &red_key).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["data"][0]["title"], "Red post");
    let sites = app.get("/v1/websites", &red_key).await;
    assert_eq!(sites.body["data"].as_array().unwrap().len(), 1);
    app.post(
        "/v1/blogs",
        &red_key,
        json!({"website_id": org_site, "title": "x", "body": "y"}),
    )
    .await
    .expect(400, "invalid_request");
    app.patch(
        &format!("/v1/websites/{red_site}"),
        &red_key,
        json!({"team_id": null}),
    )
    .await
    .expect(400, "invalid_request");
    // The organization-wide key sees everything of its organization.
    let all = app.get("/v1/blogs", &a.key).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 2);
}
