-- Per-minute rows keyed by (bucket, key_id) instead of (key_id, bucket): every second's flush
-- looks up the row of each key in use in the current minute, and with the minute first those
-- rows sit together at the end of the key, in pages that stay cached, instead of one in
-- every page of a key spread over the whole history (docs/BENCHMARKS.md). A key's own series
-- is read through usage_minute_key. The old bucket index is the new key's prefix.
ALTER TABLE usage_minute DROP CONSTRAINT usage_minute_pkey, ADD PRIMARY KEY (bucket, key_id);
CREATE INDEX usage_minute_key ON usage_minute (key_id, bucket);
DROP INDEX usage_minute_bucket;
