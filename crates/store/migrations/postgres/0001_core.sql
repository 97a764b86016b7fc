-- Times are Unix milliseconds (UTC). IDs are prefixed random strings.
CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL,
    plan        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    CONSTRAINT organizations_slug_key UNIQUE (slug)
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL,
    name           TEXT NOT NULL DEFAULT '',
    password_hash  TEXT,
    created_at     BIGINT NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE memberships (
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    user_id          TEXT NOT NULL REFERENCES users (id),
    role             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE teams (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    name             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    CONSTRAINT teams_org_name_key UNIQUE (organization_id, name)
);

CREATE TABLE team_members (
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    team_id          TEXT NOT NULL REFERENCES teams (id),
    user_id          TEXT NOT NULL REFERENCES users (id),
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);

CREATE TABLE agents (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    name             TEXT NOT NULL,
    description      TEXT NOT NULL,
    capabilities     TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    deleted_at       BIGINT
);
CREATE UNIQUE INDEX agents_org_name_key ON agents (organization_id, name) WHERE deleted_at IS NULL;
CREATE INDEX agents_org_created ON agents (organization_id, created_at);

CREATE TABLE api_keys (
    id                 TEXT PRIMARY KEY,
    organization_id    TEXT NOT NULL REFERENCES organizations (id),
    agent_id           TEXT NOT NULL REFERENCES agents (id),
    name               TEXT NOT NULL,
    hint               TEXT NOT NULL,
    key_hash           TEXT NOT NULL,
    team_id            TEXT REFERENCES teams (id),
    owner_id           TEXT REFERENCES users (id),
    environment        TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    created_by_type    TEXT NOT NULL,
    created_by_id      TEXT NOT NULL,
    expires_at         BIGINT,
    revoked_at         BIGINT,
    revoked_by         TEXT,
    revoked_reason     TEXT,
    last_used_at       BIGINT,
    rate_limit         BIGINT,
    rate_window        BIGINT,
    rolled_from        TEXT,
    rolled_to          TEXT,
    CONSTRAINT api_keys_hash_key UNIQUE (key_hash)
);
CREATE INDEX api_keys_org_agent ON api_keys (organization_id, agent_id, created_at);
CREATE INDEX api_keys_org_created ON api_keys (organization_id, created_at);

CREATE TABLE audit_events (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    at               BIGINT NOT NULL,
    actor_type       TEXT NOT NULL,
    actor_id         TEXT NOT NULL,
    action           TEXT NOT NULL,
    target_type      TEXT NOT NULL,
    target_id        TEXT NOT NULL,
    ip               TEXT,
    user_agent       TEXT,
    details          TEXT NOT NULL
);
CREATE INDEX audit_events_org_seq ON audit_events (organization_id, seq);

-- One row per organization, bumped by every change that affects authentication, so other
-- processes sharing the database can notice changes cheaply.
CREATE TABLE auth_changes (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);
INSERT INTO auth_changes (id, version) VALUES (1, 0);
