-- Usage per key, counted in memory and flushed in batches into three granularities at once.
-- Per-minute rows are pruned after usage_retention_days; hourly and daily rows stay longer.
CREATE TABLE usage_minute (
    organization_id  TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    key_id           TEXT NOT NULL,
    bucket           INTEGER NOT NULL,
    requests         INTEGER NOT NULL,
    success          INTEGER NOT NULL,
    client_errors    INTEGER NOT NULL,
    rate_limited     INTEGER NOT NULL,
    server_errors    INTEGER NOT NULL,
    PRIMARY KEY (key_id, bucket)
);
CREATE INDEX usage_minute_org_agent ON usage_minute (organization_id, agent_id, bucket);
CREATE INDEX usage_minute_bucket ON usage_minute (bucket);

CREATE TABLE usage_hour (
    organization_id  TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    key_id           TEXT NOT NULL,
    bucket           INTEGER NOT NULL,
    requests         INTEGER NOT NULL,
    success          INTEGER NOT NULL,
    client_errors    INTEGER NOT NULL,
    rate_limited     INTEGER NOT NULL,
    server_errors    INTEGER NOT NULL,
    PRIMARY KEY (key_id, bucket)
);
CREATE INDEX usage_hour_org_agent ON usage_hour (organization_id, agent_id, bucket);

CREATE TABLE usage_day (
    organization_id  TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    key_id           TEXT NOT NULL,
    bucket           INTEGER NOT NULL,
    requests         INTEGER NOT NULL,
    success          INTEGER NOT NULL,
    client_errors    INTEGER NOT NULL,
    rate_limited     INTEGER NOT NULL,
    server_errors    INTEGER NOT NULL,
    PRIMARY KEY (key_id, bucket)
);
CREATE INDEX usage_day_org_agent ON usage_day (organization_id, agent_id, bucket);
CREATE INDEX usage_day_org_bucket ON usage_day (organization_id, bucket);
