-- The content API: websites (optionally owned by a team), their categories, tags and blogs.
CREATE TABLE websites (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    team_id          TEXT REFERENCES teams (id),
    name             TEXT NOT NULL,
    domain           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    CONSTRAINT websites_org_domain_key UNIQUE (organization_id, domain)
);
CREATE INDEX websites_org_created ON websites (organization_id, created_at);

CREATE TABLE categories (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    website_id       TEXT NOT NULL REFERENCES websites (id),
    name             TEXT NOT NULL,
    slug             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    CONSTRAINT categories_website_slug_key UNIQUE (website_id, slug)
);
CREATE INDEX categories_org_created ON categories (organization_id, created_at);

CREATE TABLE tags (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    website_id       TEXT NOT NULL REFERENCES websites (id),
    name             TEXT NOT NULL,
    slug             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    CONSTRAINT tags_website_slug_key UNIQUE (website_id, slug)
);
CREATE INDEX tags_org_created ON tags (organization_id, created_at);

CREATE TABLE blogs (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    website_id       TEXT NOT NULL REFERENCES websites (id),
    title            TEXT NOT NULL,
    slug             TEXT NOT NULL,
    excerpt          TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL,
    category_id      TEXT REFERENCES categories (id),
    author_type      TEXT NOT NULL,
    author_id        TEXT NOT NULL,
    published_at     BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    CONSTRAINT blogs_website_slug_key UNIQUE (website_id, slug)
);
CREATE INDEX blogs_org_created ON blogs (organization_id, created_at);
CREATE INDEX blogs_website_created ON blogs (website_id, created_at);

CREATE TABLE blog_tags (
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    blog_id          TEXT NOT NULL REFERENCES blogs (id),
    tag_id           TEXT NOT NULL REFERENCES tags (id),
    PRIMARY KEY (blog_id, tag_id)
);
CREATE INDEX blog_tags_tag ON blog_tags (tag_id);
