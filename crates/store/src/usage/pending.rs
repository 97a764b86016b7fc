//! The form of one flush's counts in `usage_pending`, compact because a second of a busy
//! server's flushes is thousands of rows: a version byte, then per row
//!
//! - its key's organization and agent: the index of the pair among those seen so far in the
//!   batch, and for a new pair (index = pairs seen) the two ids after it;
//! - the key's id;
//! - the minute, as the difference from the row before (the first row's from 0; 0 for
//!   every other row of the same minute);
//! - the five counts.
//!
//! Numbers are LEB128 varints (the difference zigzag-encoded), ids a varint length and their
//! UTF-8 bytes. Only this code writes and reads it.

use super::{Counts, UsageRow};

/// The format [`encode`] writes, stored beside each batch (`usage_pending.format`).
pub(super) const VERSION: u8 = 1;

/// About what a row takes with ids of today's length and small counts (36 bytes), rounded up:
/// room to reserve for a batch of known rows.
pub(super) const ROW_BYTES: usize = 40;

/// Writes a batch row by row. A row's organization and agent are known to the caller by an
/// `owner` of its choosing (the text of the ids, or something cheaper that stands for them),
/// so that a flush of thousands of keys of a few agents reads each pair's text once.
pub(super) struct Encoder<P> {
    out: Vec<u8>,
    pairs: std::collections::HashMap<P, u64, foldhash::fast::RandomState>,
    minute: i64,
    rows: usize,
}

impl<P: std::hash::Hash + Eq> Encoder<P> {
    /// An empty batch written into `out` (emptied first; its room is kept).
    pub(super) fn new(mut out: Vec<u8>) -> Self {
        out.clear();
        out.push(VERSION);
        Self {
            out,
            pairs: Default::default(),
            minute: 0,
            rows: 0,
        }
    }

    /// Adds a row. `ids` gives the organization's and agent's ids, asked for on `owner`'s
    /// first row only: rows with equal owners must have equal ids.
    pub(super) fn push<'s>(
        &mut self,
        owner: P,
        ids: impl FnOnce() -> (&'s str, &'s str),
        key: &str,
        minute: i64,
        c: &Counts,
    ) {
        let seen = self.pairs.len() as u64;
        let index = *self.pairs.entry(owner).or_insert(seen);
        put(&mut self.out, index);
        if index == seen {
            let (org, agent) = ids();
            put_text(&mut self.out, org);
            put_text(&mut self.out, agent);
        }
        put_text(&mut self.out, key);
        let step = minute.wrapping_sub(self.minute);
        put(&mut self.out, ((step << 1) ^ (step >> 63)) as u64);
        self.minute = minute;
        for n in [
            c.requests,
            c.success,
            c.client_errors,
            c.rate_limited,
            c.server_errors,
        ] {
            put(&mut self.out, n as u64);
        }
        self.rows += 1;
    }

    /// The stored form and its number of rows.
    pub(super) fn finish(self) -> (Vec<u8>, usize) {
        (self.out, self.rows)
    }
}

/// `batch` in the stored form.
pub(super) fn encode<R: UsageRow>(batch: &[R]) -> (Vec<u8>, usize) {
    let mut encoder = Encoder::new(Vec::with_capacity(1 + batch.len() * ROW_BYTES));
    for row in batch {
        let pair = (row.org().as_str(), row.agent().as_str());
        encoder.push(
            pair,
            || pair,
            row.key().as_str(),
            row.minute(),
            row.counts(),
        );
    }
    encoder.finish()
}

/// A row of a stored batch, its ids borrowed from the batch: a fold reads ten seconds of
/// flushes, and owned ids would be three allocations a row for rows merged away at once.
#[derive(Debug)]
pub(super) struct Row<'a> {
    pub org: &'a str,
    pub agent: &'a str,
    pub key: &'a str,
    pub minute: i64,
    pub counts: Counts,
}

/// The rows of a stored batch; `None` if it is not one this version wrote.
pub(super) fn decode(body: &[u8]) -> Option<Vec<Row<'_>>> {
    let (&version, mut rest) = body.split_first()?;
    if version != VERSION {
        return None;
    }
    let mut rows = Vec::new();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let mut minute = 0i64;
    while !rest.is_empty() {
        let index = usize::try_from(get(&mut rest)?).ok()?;
        let (org, agent) = match pairs.get(index) {
            Some(&pair) => pair,
            None if index == pairs.len() => {
                let pair = (text(&mut rest)?, text(&mut rest)?);
                pairs.push(pair);
                pair
            }
            None => return None,
        };
        let key = text(&mut rest)?;
        let zigzag = get(&mut rest)?;
        let step = (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
        minute = minute.wrapping_add(step);
        let mut n = [0i64; 5];
        for slot in &mut n {
            *slot = get(&mut rest)? as i64;
        }
        let [requests, success, client_errors, rate_limited, server_errors] = n;
        rows.push(Row {
            org,
            agent,
            key,
            minute,
            counts: Counts {
                requests,
                success,
                client_errors,
                rate_limited,
                server_errors,
            },
        });
    }
    Some(rows)
}

fn put(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get(rest: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest.split_first()?;
        *rest = tail;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn text<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
    let len = usize::try_from(get(rest)?).ok()?;
    if rest.len() < len {
        return None;
    }
    let (bytes, tail) = rest.split_at(len);
    *rest = tail;
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Increment;
    use keyward_core::{AgentId, KeyId, OrgId};

    fn increment(minute: i64, requests: i64) -> Increment {
        Increment {
            org: OrgId::generate(),
            agent: AgentId::generate(),
            key: KeyId::generate(),
            minute,
            counts: Counts {
                requests,
                success: requests - 1,
                client_errors: 1,
                rate_limited: 0,
                server_errors: 0,
            },
        }
    }

    fn same(a: &Increment, b: &Row) -> bool {
        (
            a.org.as_str(),
            a.agent.as_str(),
            a.key.as_str(),
            a.minute,
            a.counts,
        ) == (b.org, b.agent, b.key, b.minute, b.counts)
    }

    #[test]
    fn a_batch_reads_back_as_it_was_written() {
        let mut batch = vec![increment(120_000, 12), increment(60_000, i64::MAX)];
        // A second key of the first one's agent, whose pair is written once.
        let mut same_agent = increment(60_000, 0);
        same_agent.org = batch[0].org.clone();
        same_agent.agent = batch[0].agent.clone();
        batch.push(same_agent);
        let (body, rows) = encode(&batch);
        let back = decode(&body).expect("decodes");
        assert_eq!((back.len(), rows), (3, 3));
        assert!(batch.iter().zip(&back).all(|(a, b)| same(a, b)));
        assert_eq!(
            decode(&encode::<Increment>(&[]).0).map(|rows| rows.len()),
            Some(0)
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let (body, _) = encode(&[increment(60_000, 3)]);
        assert!(decode(&[]).is_none());
        assert!(decode(&[VERSION + 1]).is_none());
        // Cut anywhere inside its row.
        for end in 2..body.len() {
            assert!(decode(&body[..end]).is_none(), "cut at {end}");
        }
        // An id that is not text.
        let mut wrong = body.clone();
        wrong[3] = 0xff;
        assert!(decode(&wrong).is_none());
    }

    #[test]
    fn an_owners_ids_are_asked_for_and_written_once() {
        let a = increment(60_000, 5);
        let b = increment(60_000, 7);
        let mut asked = Vec::new();
        let mut encoder = Encoder::new(vec![1, 2, 3]);
        // Owner 1 stands for `a`'s ids, owner 2 for `b`'s; a's second key follows.
        for (owner, row, key) in [
            (1, &a, a.key.as_str()),
            (2, &b, b.key.as_str()),
            (1, &a, "key_other"),
        ] {
            encoder.push(
                owner,
                || {
                    asked.push(owner);
                    (row.org.as_str(), row.agent.as_str())
                },
                key,
                row.minute,
                &row.counts,
            );
        }
        assert_eq!(asked, [1, 2]);
        let (body, rows) = encoder.finish();
        let back = decode(&body).expect("decodes");
        assert_eq!(rows, 3);
        assert!(same(&a, &back[0]) && same(&b, &back[1]));
        assert_eq!(
            (back[2].org, back[2].agent, back[2].key),
            (a.org.as_str(), a.agent.as_str(), "key_other")
        );
    }
}
