-- Per-minute rows keyed by (bucket, key_id) instead of (key_id, bucket): every second's flush
-- looks up the row of each key in use in the current minute, and with the minute first those
-- rows sit together at the end of the key, in pages that stay cached, instead of one in
-- every page of a key spread over the whole history (docs/BENCHMARKS.md). A key's own series
-- is read through usage_minute_key. The old bucket index is the new key's prefix.
CREATE TABLE usage_minute_by_bucket (
    organization_id  TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    key_id           TEXT NOT NULL,
    bucket           INTEGER NOT NULL,
    requests         INTEGER NOT NULL,
    success          INTEGER NOT NULL,
    client_errors    INTEGER NOT NULL,
    rate_limited     INTEGER NOT NULL,
    server_errors    INTEGER NOT NULL,
    PRIMARY KEY (bucket, key_id)
);
INSERT INTO usage_minute_by_bucket
SELECT organization_id, agent_id, key_id, bucket, requests, success, client_errors,
       rate_limited, server_errors
FROM usage_minute;
DROP TABLE usage_minute;
ALTER TABLE usage_minute_by_bucket RENAME TO usage_minute;
CREATE INDEX usage_minute_org_agent ON usage_minute (organization_id, agent_id, bucket);
CREATE INDEX usage_minute_key ON usage_minute (key_id, bucket);
