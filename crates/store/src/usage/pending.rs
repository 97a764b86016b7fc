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

/// `batch` in the stored form.
pub(super) fn encode<R: UsageRow>(batch: &[R]) -> Vec<u8> {
    // A row of ids of today's length and small counts takes about 36 bytes.
    let mut out = Vec::with_capacity(1 + batch.len() * 40);
    out.push(VERSION);
    let mut pairs: std::collections::HashMap<(&str, &str), u64, foldhash::fast::RandomState> =
        Default::default();
    let mut minute = 0i64;
    for row in batch {
        let pair = (row.org().as_str(), row.agent().as_str());
        let seen = pairs.len() as u64;
        let index = *pairs.entry(pair).or_insert(seen);
        put(&mut out, index);
        if index == seen {
            put_text(&mut out, pair.0);
            put_text(&mut out, pair.1);
        }
        put_text(&mut out, row.key().as_str());
        let step = row.minute().wrapping_sub(minute);
        put(&mut out, ((step << 1) ^ (step >> 63)) as u64);
        minute = row.minute();
        let c = row.counts();
        for n in [
            c.requests,
            c.success,
            c.client_errors,
            c.rate_limited,
            c.server_errors,
        ] {
            put(&mut out, n as u64);
        }
    }
    out
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

/// Whether an encoded batch holds no row.
pub(super) fn is_empty(body: &[u8]) -> bool {
    body.len() <= 1
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
        let body = encode(&batch);
        let back = decode(&body).expect("decodes");
        assert_eq!(back.len(), 3);
        assert!(batch.iter().zip(&back).all(|(a, b)| same(a, b)));
        assert_eq!(
            decode(&encode::<Increment>(&[])).map(|rows| rows.len()),
            Some(0)
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let body = encode(&[increment(60_000, 3)]);
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
}
