-- Each flush's counts appended as one row, folded into the usage tables every few seconds
-- and before usage is read (crates/store/src/usage.rs, `append` and `fold`): a second's flush
-- then writes one row instead of updating a row of every key in use (docs/BENCHMARKS.md).
-- `format` names the encoding of `body`: a fold takes only the batches its own version can read,
-- so a node of an older version never drops a newer one's counts during a rolling upgrade.
CREATE TABLE usage_pending (
    id       BIGSERIAL PRIMARY KEY,
    format   INTEGER NOT NULL,
    body     BYTEA NOT NULL
);
