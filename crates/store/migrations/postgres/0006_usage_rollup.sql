-- Usage is flushed into per-minute rows only; hourly and daily rows are rolled up from them
-- once a minute. Minutes before rolled_until are counted in the hourly and daily rows, later
-- ones only in usage_minute, and reads add the two. Every minute row written before this
-- migration was also written to the hourly and daily rows, so they all count as rolled up.
CREATE TABLE usage_rollup (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    rolled_until  BIGINT NOT NULL
);
INSERT INTO usage_rollup (id, rolled_until)
SELECT 1, COALESCE(MAX(bucket) + 60000, 0) FROM usage_minute;
