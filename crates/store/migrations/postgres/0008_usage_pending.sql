-- Each flush's counts appended as one row, folded into the usage tables every few seconds
-- and before usage is read (crates/store/src/usage.rs, `append` and `fold`): a second's flush
-- then writes one row instead of updating a row of every key in use (docs/BENCHMARKS.md).
CREATE TABLE usage_pending (
    id    BIGSERIAL PRIMARY KEY,
    body  BYTEA NOT NULL
);
