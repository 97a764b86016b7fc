//! Usage counters per key, at minute, hour and day granularity.
//!
//! Counts go to the per-minute rows only; [`roll_up`] adds closed minutes into the hourly and
//! daily rows once a minute and moves the `rolled_until` mark past them, in one transaction.
//! A minute before the mark is counted in all three tables, a later one only in
//! `usage_minute`, so reads of hours and days add the minutes from the mark on. Writing one
//! table instead of three as counts come in is most of what that costs the database.
//!
//! A flush does not write those rows itself: it [`append`]s its counts to `usage_pending` as
//! one row, and [`fold`] adds what is pending into the per-minute rows every few seconds and
//! before usage is read. A second's flush is then one insert, whatever the keys in use; the
//! rows of each key and minute are written once per fold instead of once per second.

use keyward_core::{AgentId, CompactKeyId, KeyId, OrgId, UnixMillis};
use sqlx::Row;

use crate::{Conn, StoreError};

mod pending;

/// Bucket sizes, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub fn millis(self) -> i64 {
        match self {
            Granularity::Minute => 60_000,
            Granularity::Hour => 3_600_000,
            Granularity::Day => 86_400_000,
        }
    }

    fn table(self) -> &'static str {
        match self {
            Granularity::Minute => "usage_minute",
            Granularity::Hour => "usage_hour",
            Granularity::Day => "usage_day",
        }
    }

    /// The start of the bucket holding `at`.
    pub fn floor(self, at: UnixMillis) -> UnixMillis {
        at.div_euclid(self.millis()) * self.millis()
    }

    pub const ALL: [Granularity; 3] = [Granularity::Minute, Granularity::Hour, Granularity::Day];
}

/// Counts of one key in one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: i64,
    pub success: i64,
    pub client_errors: i64,
    pub rate_limited: i64,
    pub server_errors: i64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.success += other.success;
        self.client_errors += other.client_errors;
        self.rate_limited += other.rate_limited;
        self.server_errors += other.server_errors;
    }
}

/// One pending increment: a key's counts in the minute starting at `minute`.
#[derive(Clone, Debug)]
pub struct Increment {
    pub org: OrgId,
    pub agent: AgentId,
    pub key: KeyId,
    pub minute: UnixMillis,
    pub counts: Counts,
}

/// What [`add`] writes of one increment. The recorder's rows implement it by pointing at ids
/// it holds already, so that a flush of thousands of keys does not copy three ids per key
/// into an [`Increment`] only to free them again a moment later.
pub trait UsageRow {
    fn org(&self) -> &OrgId;
    fn agent(&self) -> &AgentId;
    fn key(&self) -> &KeyId;
    /// The start of the minute counted.
    fn minute(&self) -> UnixMillis;
    fn counts(&self) -> &Counts;
}

impl UsageRow for Increment {
    fn org(&self) -> &OrgId {
        &self.org
    }
    fn agent(&self) -> &AgentId {
        &self.agent
    }
    fn key(&self) -> &KeyId {
        &self.key
    }
    fn minute(&self) -> UnixMillis {
        self.minute
    }
    fn counts(&self) -> &Counts {
        &self.counts
    }
}

impl<R: UsageRow> UsageRow for &R {
    fn org(&self) -> &OrgId {
        (**self).org()
    }
    fn agent(&self) -> &AgentId {
        (**self).agent()
    }
    fn key(&self) -> &KeyId {
        (**self).key()
    }
    fn minute(&self) -> UnixMillis {
        (**self).minute()
    }
    fn counts(&self) -> &Counts {
        (**self).counts()
    }
}

/// A flush's counts in the form [`append`] stores, made before the transaction that stores
/// them (on SQLite the write lock is held from its first write to its commit).
pub struct PendingBatch {
    body: Vec<u8>,
    rows: usize,
}

impl PendingBatch {
    pub fn of<R: UsageRow>(batch: &[R]) -> Self {
        let (body, rows) = pending::encode(batch);
        Self { body, rows }
    }

    /// How many rows (key and minute) it holds.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Its buffer, emptied, for the next [`BatchWriter`].
    pub fn into_buffer(mut self) -> Vec<u8> {
        self.body.clear();
        self.body
    }

    /// `batches` in one, summed per key and minute: what a flush keeps when it could not
    /// write. At most `max_rows` rows are kept; the second number is how many were dropped.
    pub async fn merge(batches: &[PendingBatch], max_rows: usize) -> (PendingBatch, usize) {
        let mut merged: Merging<'_> = Merging::default();
        let mut dropped = 0;
        for batch in batches {
            dropped += sum_into(&mut merged, &batch.body, max_rows).await;
        }
        let mut writer =
            BatchWriter::new(Vec::with_capacity(1 + merged.len() * pending::ROW_BYTES));
        for ((key, minute), (org, agent, counts)) in merged {
            writer
                .0
                .push((org, agent), || (org, agent), key, minute, &counts);
        }
        (writer.finish(), dropped)
    }
}

/// Writes a [`PendingBatch`] row by row, for a caller that holds its rows in its own form.
/// Each row names its key's organization and agent by an `owner` of the caller's choosing
/// (e.g. the address of where it holds the two ids): the ids' text is read on an owner's
/// first row only.
pub struct BatchWriter<P>(pending::Encoder<P>);

impl<P: std::hash::Hash + Eq> BatchWriter<P> {
    /// An empty batch, written into `buffer` (emptied first, its room kept).
    pub fn new(buffer: Vec<u8>) -> Self {
        Self(pending::Encoder::new(buffer))
    }

    /// Adds the counts of `key` in the minute starting at `minute`. Rows with equal owners
    /// must have equal ids; `ids` gives them.
    pub fn push<'s>(
        &mut self,
        owner: P,
        ids: impl FnOnce() -> (&'s OrgId, &'s AgentId),
        key: &str,
        minute: UnixMillis,
        counts: &Counts,
    ) {
        self.0.push(
            owner,
            || {
                let (org, agent) = ids();
                (org.as_str(), agent.as_str())
            },
            key,
            minute,
            counts,
        );
    }

    pub fn finish(self) -> PendingBatch {
        let (body, rows) = self.0.finish();
        PendingBatch { body, rows }
    }
}

/// Appends `batch` to the counts waiting for [`fold`], as one row. Committed with the
/// caller's transaction, it is as durable as a write of the rows themselves.
pub async fn append(conn: &mut Conn, batch: &PendingBatch) -> Result<(), StoreError> {
    if batch.rows == 0 {
        return Ok(());
    }
    sqlx::query("INSERT INTO usage_pending (format, body) VALUES ($1, $2)")
        .bind(i64::from(pending::VERSION))
        .bind(&batch.body[..])
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether counts this version can fold wait for [`fold`].
pub async fn has_pending(conn: &mut Conn) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT 1 FROM usage_pending WHERE format = $1 LIMIT 1) AS pending",
    )
    .bind(i64::from(pending::VERSION))
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// Takes the pending batches out of `usage_pending` and [`add`]s their counts, summed per
/// key and minute, in the caller's transaction; returns how many rows it added. Taking them
/// is a `DELETE … RETURNING`: on PostgreSQL a fold on another node waits for this one's rows
/// and then no longer finds them, so no batch is counted twice. Only batches in this
/// version's format are taken; a newer version's stay for a node that can read them. One of
/// this format that does not read back (a damaged row) is logged and dropped, not kept to
/// fail every fold after it.
pub async fn fold(conn: &mut Conn) -> Result<usize, StoreError> {
    let bodies: Vec<Vec<u8>> =
        sqlx::query_scalar("DELETE FROM usage_pending WHERE format = $1 RETURNING body")
            .bind(i64::from(pending::VERSION))
            .fetch_all(&mut *conn)
            .await?;
    if bodies.is_empty() {
        return Ok(0);
    }
    // Summed per key and minute before anything is written: ten flushes of the same keys
    // become one row each. Keyed by the borrowed id, the owned ones made for the sums alone.
    let mut merged: Merging<'_> = Merging::default();
    for body in &bodies {
        sum_into(&mut merged, body, usize::MAX).await;
    }
    let mut rows: Vec<Increment> = Vec::with_capacity(merged.len());
    for (i, ((key, minute), (org, agent, counts))) in merged.into_iter().enumerate() {
        rows.push(Increment {
            org: OrgId::from_stored(org.to_owned()),
            agent: AgentId::from_stored(agent.to_owned()),
            key: KeyId::from_stored(key.to_owned()),
            minute,
            counts,
        });
        if i % FOLD_YIELD_EVERY == FOLD_YIELD_EVERY - 1 {
            tokio::task::yield_now().await;
        }
    }
    add(conn, &rows).await?;
    Ok(rows.len())
}

/// Adds the rows of the stored batch `body` to `merged`, which grows to at most `max_rows`
/// entries; returns how many rows found no room. A body that does not read back (a damaged
/// row) is logged and its counts dropped, not kept to fail every fold after it.
async fn sum_into<'a>(merged: &mut Merging<'a>, body: &'a [u8], max_rows: usize) -> usize {
    let Some(rows) = pending::decode(body) else {
        tracing::error!(
            bytes = body.len(),
            "a pending usage batch could not be read; its counts are dropped"
        );
        return 0;
    };
    let mut dropped = 0;
    for (i, row) in rows.into_iter().enumerate() {
        let room = merged.len() < max_rows;
        match merged.entry((row.key, row.minute)) {
            std::collections::hash_map::Entry::Occupied(mut sum) => {
                sum.get_mut().2.add(&row.counts)
            }
            std::collections::hash_map::Entry::Vacant(slot) if room => {
                slot.insert((row.org, row.agent, row.counts));
            }
            std::collections::hash_map::Entry::Vacant(_) => dropped += 1,
        }
        // Ten seconds of a busy server's flushes are some hundred thousand rows, summed
        // on the thread that also answers requests: it gives way now and then.
        if i % FOLD_YIELD_EVERY == FOLD_YIELD_EVERY - 1 {
            tokio::task::yield_now().await;
        }
    }
    dropped
}

/// Rows a fold sums between two yields to the runtime (a few tenths of a millisecond).
const FOLD_YIELD_EVERY: usize = 2_048;

/// A fold's sums: key and minute to the key's organization and agent and the counts.
type Merging<'a> = std::collections::HashMap<
    (&'a str, UnixMillis),
    (&'a str, &'a str, Counts),
    foldhash::fast::RandomState,
>;

/// Where the hourly and daily rows end: minutes before this are counted in them.
pub async fn rolled_until(conn: &mut Conn) -> Result<UnixMillis, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT rolled_until FROM usage_rollup WHERE id = 1")
            .fetch_one(conn)
            .await?,
    )
}

/// Adds a batch of increments. Adding (not overwriting) keeps counts from several nodes
/// correct. Minutes not rolled up yet go to `usage_minute` alone; a minute already rolled up
/// (counts held back by a database outage) goes to the hourly and daily rows too. Rows are
/// sent in a few statements: on PostgreSQL as JSON arrays, summed per bucket and sorted first
/// (so concurrent folds on several nodes take row locks in one order and cannot
/// deadlock); on SQLite as multi-row `VALUES`, as they come (SQLite has one writer at a time).
pub async fn add<R: UsageRow + Sync>(conn: &mut Conn, batch: &[R]) -> Result<(), StoreError> {
    let postgres = conn.backend_name() == "PostgreSQL";
    // On PostgreSQL a shared lock on the mark: a roll-up (which takes it exclusively) waits
    // for this flush to commit, so it never misses minutes written under an older mark.
    let mark_sql = if postgres {
        "SELECT rolled_until FROM usage_rollup WHERE id = 1 FOR SHARE"
    } else {
        "SELECT rolled_until FROM usage_rollup WHERE id = 1"
    };
    let mark: UnixMillis = sqlx::query_scalar(mark_sql).fetch_one(&mut *conn).await?;
    let late: Vec<&R> = batch.iter().filter(|inc| inc.minute() < mark).collect();
    upsert(conn, Granularity::Minute, batch, postgres).await?;
    if !late.is_empty() {
        upsert(conn, Granularity::Hour, &late, postgres).await?;
        upsert(conn, Granularity::Day, &late, postgres).await?;
    }
    Ok(())
}

/// A batch for PostgreSQL, merged per key and bucket, in the order rows are written: the same
/// on every node, so that two nodes folding the same keys lock their rows in the same order.
/// Keyed by the compact id, compared where it sits in the map's nodes: an id's text is
/// elsewhere on the heap, a pointer to follow at each of a row's dozen comparisons.
type Merged<'a> = std::collections::BTreeMap<(CompactKeyId, UnixMillis), MergedRow<'a>>;
type MergedRow<'a> = (&'a KeyId, &'a OrgId, &'a AgentId, Counts);

async fn upsert<R: UsageRow + Sync>(
    conn: &mut Conn,
    g: Granularity,
    batch: &[R],
    postgres: bool,
) -> Result<(), StoreError> {
    if !postgres {
        return upsert_sqlite(conn, g, batch).await;
    }
    let mut rows = Merged::new();
    for (i, inc) in batch.iter().enumerate() {
        let entry = rows
            .entry((CompactKeyId::from(inc.key()), g.floor(inc.minute())))
            .or_insert((inc.key(), inc.org(), inc.agent(), Counts::default()));
        entry.3.add(inc.counts());
        // Sorting a batch of thousands of keys is milliseconds of work on the thread that
        // also answers requests: it gives way now and then.
        if i % 512 == 511 {
            tokio::task::yield_now().await;
        }
    }
    // Read from the map in pieces as they are sent, not copied into a list first.
    let mut entries = rows.iter();
    let sql = format!(
        "INSERT INTO {table} ({COLUMNS})
         SELECT r->>0, r->>1, r->>2, (r->>3)::BIGINT, (r->>4)::BIGINT, (r->>5)::BIGINT,
                (r->>6)::BIGINT, (r->>7)::BIGINT, (r->>8)::BIGINT
         FROM jsonb_array_elements($1::jsonb) AS r
         {on_conflict}",
        table = g.table(),
        on_conflict = add_on_conflict(g.table()),
    );
    loop {
        let json: Vec<_> = entries
            .by_ref()
            .take(crate::batch::JSON_ROWS)
            .map(|((_, bucket), (key, org, agent, c))| {
                (
                    org.as_str(),
                    agent.as_str(),
                    key.as_str(),
                    *bucket,
                    c.requests,
                    c.success,
                    c.client_errors,
                    c.rate_limited,
                    c.server_errors,
                )
            })
            .collect();
        if json.is_empty() {
            break;
        }
        let json = crate::batch::json(&json)?;
        sqlx::query(&sql).bind(json).execute(&mut *conn).await?;
    }
    Ok(())
}

/// [`upsert`] on SQLite: the rows as they come, in multi-row statements. Neither merged nor
/// sorted first: SQLite has one writer at a time, so no order of rows can deadlock, and a
/// statement that carries one key and bucket twice adds both (the second row's conflict is
/// with the first). A sorting map of the whole batch was its largest allocation, megabytes
/// allocated and freed every second (the allocator gave its pages back between two flushes,
/// and the next flush faulted them in again: three quarters of the server's page faults).
async fn upsert_sqlite<R: UsageRow + Sync>(
    conn: &mut Conn,
    g: Granularity,
    batch: &[R],
) -> Result<(), StoreError> {
    for piece in crate::batch::pieces(batch) {
        let sql = format!(
            "INSERT INTO {table} ({COLUMNS}) VALUES {values} {on_conflict}",
            table = g.table(),
            values = crate::batch::values(piece.len(), 9),
            on_conflict = add_on_conflict(g.table()),
        );
        let mut q = sqlx::query(&sql);
        for row in piece {
            let c = row.counts();
            q = q
                .bind(row.org().as_str())
                .bind(row.agent().as_str())
                .bind(row.key().as_str())
                .bind(g.floor(row.minute()))
                .bind(c.requests)
                .bind(c.success)
                .bind(c.client_errors)
                .bind(c.rate_limited)
                .bind(c.server_errors);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The columns of the usage tables, in the order rows are sent.
const COLUMNS: &str = "organization_id, agent_id, key_id, bucket, requests, success, \
                       client_errors, rate_limited, server_errors";

/// Adds the inserted counts to a row that exists.
fn add_on_conflict(table: &str) -> String {
    format!(
        "ON CONFLICT (key_id, bucket) DO UPDATE SET
            requests = {table}.requests + excluded.requests,
            success = {table}.success + excluded.success,
            client_errors = {table}.client_errors + excluded.client_errors,
            rate_limited = {table}.rate_limited + excluded.rate_limited,
            server_errors = {table}.server_errors + excluded.server_errors"
    )
}

/// Adds the minutes from the mark up to `until` (exclusive, a minute boundary) into the
/// hourly and daily rows and moves the mark to `until`; nothing when the mark is already
/// there. Idempotent, and safe with several nodes: the mark is locked for the transaction,
/// so one node rolls each minute up exactly once. Returns how many hourly rows it wrote.
pub async fn roll_up(conn: &mut Conn, until: UnixMillis) -> Result<u64, StoreError> {
    let lock = crate::keys::lock_clause(conn);
    let mark: UnixMillis = sqlx::query_scalar(&format!(
        "SELECT rolled_until FROM usage_rollup WHERE id = 1{lock}"
    ))
    .fetch_one(&mut *conn)
    .await?;
    let until = Granularity::Minute.floor(until);
    if until <= mark {
        return Ok(0);
    }
    let mut rolled = 0;
    for g in [Granularity::Hour, Granularity::Day] {
        let (t, size) = (g.table(), g.millis());
        let done = sqlx::query(&format!(
            "INSERT INTO {t} (organization_id, agent_id, key_id, bucket, requests, success, client_errors, rate_limited, server_errors)
             SELECT organization_id, agent_id, key_id, (bucket / {size}) * {size},
                    CAST(SUM(requests) AS BIGINT), CAST(SUM(success) AS BIGINT),
                    CAST(SUM(client_errors) AS BIGINT), CAST(SUM(rate_limited) AS BIGINT),
                    CAST(SUM(server_errors) AS BIGINT)
             FROM usage_minute WHERE bucket >= $1 AND bucket < $2
             GROUP BY organization_id, agent_id, key_id, (bucket / {size}) * {size}
             {}",
            add_on_conflict(t)
        ))
        .bind(mark)
        .bind(until)
        .execute(&mut *conn)
        .await?;
        if g == Granularity::Hour {
            rolled = done.rows_affected();
        }
    }
    sqlx::query("UPDATE usage_rollup SET rolled_until = $1 WHERE id = 1")
        .bind(until)
        .execute(&mut *conn)
        .await?;
    Ok(rolled)
}

/// What a series covers: all keys of an agent, or some keys.
#[derive(Clone, Debug)]
pub enum Subject<'a> {
    Agent(&'a AgentId),
    Keys(&'a [KeyId]),
}

/// Per-bucket, per-key rows of `org` in `[from, to)`, ordered by bucket.
pub async fn series(
    conn: &mut Conn,
    org: &OrgId,
    subject: Subject<'_>,
    g: Granularity,
    from: UnixMillis,
    to: UnixMillis,
) -> Result<Vec<(KeyId, UnixMillis, Counts)>, StoreError> {
    let (filter, ids): (String, Vec<&str>) = match subject {
        Subject::Agent(a) => ("agent_id = $4".to_string(), vec![a.as_str()]),
        Subject::Keys([]) => return Ok(Vec::new()),
        Subject::Keys(keys) => {
            let list: Vec<String> = (0..keys.len()).map(|i| format!("${}", i + 4)).collect();
            (
                format!("key_id IN ({})", list.join(", ")),
                keys.iter().map(|k| k.as_str()).collect(),
            )
        }
    };
    let sql = if g == Granularity::Minute {
        format!(
            "SELECT key_id, bucket, requests, success, client_errors, rate_limited, server_errors
             FROM usage_minute
             WHERE organization_id = $1 AND bucket >= $2 AND bucket < $3 AND {filter}
             ORDER BY bucket, key_id"
        )
    } else {
        // The rolled-up rows, plus the minutes from the mark on, summed per bucket. One
        // statement, so both parts and the mark come from one snapshot.
        let (t, size) = (g.table(), g.millis());
        format!(
            "SELECT key_id, bucket, CAST(SUM(requests) AS BIGINT) AS requests,
                    CAST(SUM(success) AS BIGINT) AS success,
                    CAST(SUM(client_errors) AS BIGINT) AS client_errors,
                    CAST(SUM(rate_limited) AS BIGINT) AS rate_limited,
                    CAST(SUM(server_errors) AS BIGINT) AS server_errors
             FROM (
                SELECT key_id, bucket, requests, success, client_errors, rate_limited, server_errors
                FROM {t}
                WHERE organization_id = $1 AND bucket >= $2 AND bucket < $3 AND {filter}
                UNION ALL
                SELECT key_id, (bucket / {size}) * {size}, requests, success, client_errors,
                       rate_limited, server_errors
                FROM usage_minute
                WHERE organization_id = $1 AND {filter}
                  AND bucket >= (SELECT rolled_until FROM usage_rollup WHERE id = 1)
                  AND (bucket / {size}) * {size} >= $2 AND (bucket / {size}) * {size} < $3
             ) AS rows
             GROUP BY key_id, bucket
             ORDER BY bucket, key_id"
        )
    };
    let mut q = sqlx::query(&sql).bind(org.as_str()).bind(from).bind(to);
    for id in ids {
        q = q.bind(id);
    }
    let rows = q.fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            Ok((
                KeyId::from_stored(r.try_get("key_id")?),
                r.try_get("bucket")?,
                Counts {
                    requests: r.try_get("requests")?,
                    success: r.try_get("success")?,
                    client_errors: r.try_get("client_errors")?,
                    rate_limited: r.try_get("rate_limited")?,
                    server_errors: r.try_get("server_errors")?,
                },
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// All requests of `org` since `from` (from the daily rows).
pub async fn org_requests_since(
    conn: &mut Conn,
    org: &OrgId,
    from: UnixMillis,
) -> Result<i64, StoreError> {
    let n: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(requests) AS BIGINT) FROM (
            SELECT requests FROM usage_day WHERE organization_id = $1 AND bucket >= $2
            UNION ALL
            SELECT requests FROM usage_minute WHERE organization_id = $1 AND bucket >= $2
              AND bucket >= (SELECT rolled_until FROM usage_rollup WHERE id = 1)
         ) AS rows",
    )
    .bind(org.as_str())
    .bind(Granularity::Day.floor(from))
    .fetch_one(conn)
    .await?;
    Ok(n.unwrap_or(0))
}

/// Requests since `from` by the keys of one team (from the daily rows).
pub async fn team_requests_since(
    conn: &mut Conn,
    org: &OrgId,
    team: &keyward_core::TeamId,
    from: UnixMillis,
) -> Result<i64, StoreError> {
    let n: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(u.requests) AS BIGINT) FROM (
            SELECT organization_id, key_id, requests FROM usage_day
            WHERE organization_id = $1 AND bucket >= $3
            UNION ALL
            SELECT organization_id, key_id, requests FROM usage_minute
            WHERE organization_id = $1 AND bucket >= $3
              AND bucket >= (SELECT rolled_until FROM usage_rollup WHERE id = 1)
         ) AS u
         JOIN api_keys k ON k.id = u.key_id AND k.organization_id = u.organization_id
         WHERE k.team_id = $2",
    )
    .bind(org.as_str())
    .bind(team.as_str())
    .bind(Granularity::Day.floor(from))
    .fetch_one(conn)
    .await?;
    Ok(n.unwrap_or(0))
}

/// Deletes per-minute rows older than `before` (their hours and days stay) and hourly rows
/// older than `hours_before`. Returns how many rows went.
pub async fn prune(
    conn: &mut Conn,
    before: UnixMillis,
    hours_before: UnixMillis,
) -> Result<u64, StoreError> {
    // Never a minute that is not rolled up yet: it is counted nowhere else.
    let minutes = sqlx::query(
        "DELETE FROM usage_minute
         WHERE bucket < $1 AND bucket < (SELECT rolled_until FROM usage_rollup WHERE id = 1)",
    )
    .bind(before)
    .execute(&mut *conn)
    .await?;
    let hours = sqlx::query("DELETE FROM usage_hour WHERE bucket < $1")
        .bind(hours_before)
        .execute(conn)
        .await?;
    Ok(minutes.rows_affected() + hours.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(org: &OrgId, key: &KeyId, minute: UnixMillis, requests: i64) -> Increment {
        Increment {
            org: org.clone(),
            agent: AgentId::from_stored("agt_test".to_string()),
            key: key.clone(),
            minute,
            counts: Counts {
                requests,
                success: requests,
                ..Counts::default()
            },
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn merged_batches_are_summed_per_key_and_minute_within_a_bound() {
        let org = OrgId::generate();
        let (a, b) = (KeyId::generate(), KeyId::generate());
        let first = PendingBatch::of(&[row(&org, &a, 60_000, 1), row(&org, &b, 60_000, 2)]);
        let second = PendingBatch::of(&[row(&org, &a, 60_000, 3), row(&org, &a, 120_000, 4)]);
        let (merged, dropped) = PendingBatch::merge(&[first, second], 10).await;
        assert_eq!((merged.rows(), dropped), (3, 0));
        let mut rows: Vec<(String, UnixMillis, i64)> = pending::decode(&merged.body)
            .expect("decodes")
            .iter()
            .map(|r| (r.key.to_string(), r.minute, r.counts.requests))
            .collect();
        rows.sort();
        let mut expected = vec![
            (a.to_string(), 60_000, 4),
            (a.to_string(), 120_000, 4),
            (b.to_string(), 60_000, 2),
        ];
        expected.sort();
        assert_eq!(rows, expected);
        // Beyond the bound, new rows are dropped and counted; existing ones still add up.
        let again = PendingBatch::of(&[row(&org, &a, 60_000, 1), row(&org, &b, 180_000, 1)]);
        let (bounded, dropped) = PendingBatch::merge(&[merged, again], 3).await;
        assert_eq!((bounded.rows(), dropped), (3, 1));
    }
}
