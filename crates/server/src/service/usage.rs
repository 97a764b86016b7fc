//! Usage figures: time series per key or agent, and the account summary.

use keyward_core::{AgentId, KeyId, UnixMillis};
use keyward_store::orgs::Org;
use keyward_store::usage::{self, Counts, Granularity, Subject};
use keyward_store::{agents, keys, orgs, PageRequest};

use super::{Caller, Service, ServiceError};

/// Most buckets one series may have.
pub const MAX_BUCKETS: i64 = 1500;

#[derive(Clone, Debug)]
pub struct UsageQuery {
    pub key: Option<KeyId>,
    pub agent: Option<AgentId>,
    pub from: Option<UnixMillis>,
    pub to: Option<UnixMillis>,
    pub granularity: Granularity,
    /// Also return one series per key (for an agent).
    pub per_key: bool,
}

/// One value per bucket, bucket start first.
pub type Series = Vec<(UnixMillis, Counts)>;

/// A zero-filled series: one entry per bucket in `[from, to)`.
#[derive(Clone, Debug)]
pub struct UsageSeries {
    pub granularity: Granularity,
    pub from: UnixMillis,
    pub to: UnixMillis,
    pub total: Series,
    pub keys: Option<Vec<(KeyId, Series)>>,
}

/// The organization, its plan, and this month's figures.
#[derive(Clone, Debug)]
pub struct Account {
    pub org: Org,
    pub plan: keyward_core::Plan,
    pub requests_this_month: i64,
    pub month_start: UnixMillis,
    pub counted_keys: i64,
}

fn default_span(g: Granularity) -> i64 {
    match g {
        Granularity::Minute => 3_600_000,
        Granularity::Hour => 86_400_000,
        Granularity::Day => 30 * 86_400_000,
    }
}

fn zero_filled(
    from: UnixMillis,
    to: UnixMillis,
    g: Granularity,
    rows: impl Iterator<Item = (UnixMillis, Counts)>,
) -> Vec<(UnixMillis, Counts)> {
    let step = g.millis();
    let n = ((to - from) / step).max(0) as usize;
    let mut out: Vec<(UnixMillis, Counts)> = (0..n)
        .map(|i| (from + i as i64 * step, Counts::default()))
        .collect();
    for (bucket, counts) in rows {
        let i = (bucket - from) / step;
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            slot.1.add(&counts);
        }
    }
    out
}

/// The first millisecond of the UTC month holding `now`.
pub fn month_start(now: UnixMillis) -> UnixMillis {
    let days = now.div_euclid(86_400_000);
    // Civil-from-days (Howard Hinnant's algorithm), enough to find the month's first day.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day_of_month = doy - (153 * mp + 2) / 5; // 0-based
    (days - day_of_month) * 86_400_000
}

impl Service {
    /// A usage series for a key, or an agent (optionally per key). Team-scoped keys see only
    /// their own usage.
    pub async fn usage(&self, caller: &Caller, q: UsageQuery) -> Result<UsageSeries, ServiceError> {
        caller.require("account:read")?;
        let g = q.granularity;
        let now = self.now();
        // By default the series ends with the bucket holding now.
        let to_raw = q.to.unwrap_or(g.floor(now) + g.millis());
        let from_raw = q.from.unwrap_or(to_raw - default_span(g));
        if from_raw >= to_raw {
            return Err(ServiceError::invalid("from", "from must be before to"));
        }
        let from = g.floor(from_raw);
        let to = g.floor(to_raw - 1) + g.millis();
        if (to - from) / g.millis() > MAX_BUCKETS {
            return Err(ServiceError::invalid(
                "granularity",
                format!("at most {MAX_BUCKETS} buckets per series; choose a coarser granularity or a shorter range"),
            ));
        }
        let own_key = match &caller.actor {
            super::Actor::Key { id, .. } if caller.team.is_some() => Some(id.clone()),
            _ => None,
        };
        // Before the read connection is taken: a fold takes connections of its own, and
        // reads that each held one while waiting for another could use up the pool.
        fold_before_reading(self.store()).await;
        let mut conn = self.store().read().await?;
        // Which keys the series covers, each checked to be visible to the caller.
        let key_ids: Vec<KeyId> = match (&q.key, &q.agent) {
            (Some(_), Some(_)) => {
                return Err(ServiceError::invalid(
                    "key_id",
                    "give key_id or agent_id, not both",
                ))
            }
            (None, None) => return Err(ServiceError::invalid("key_id", "give key_id or agent_id")),
            (Some(key), None) => {
                if own_key.as_ref().is_some_and(|own| own != key) {
                    return Err(ServiceError::NotFound("key"));
                }
                keys::get(&mut conn, &caller.scope(), key)
                    .await?
                    .ok_or(ServiceError::NotFound("key"))?;
                vec![key.clone()]
            }
            (None, Some(agent)) => {
                agents::get_including_deleted(&mut conn, &caller.org, agent)
                    .await?
                    .ok_or(ServiceError::NotFound("agent"))?;
                let listed =
                    keys::list(&mut conn, &caller.scope(), Some(agent), &PageRequest::all())
                        .await?;
                listed
                    .items
                    .into_iter()
                    .map(|k| k.id)
                    .filter(|k| own_key.as_ref().is_none_or(|own| own == k))
                    .collect()
            }
        };
        let rows = if q.agent.is_some() && own_key.is_none() && caller.team.is_none() {
            usage::series(
                &mut conn,
                &caller.org,
                Subject::Agent(q.agent.as_ref().ok_or(ServiceError::NotFound("agent"))?),
                g,
                from,
                to,
            )
            .await?
        } else {
            usage::series(&mut conn, &caller.org, Subject::Keys(&key_ids), g, from, to).await?
        };
        let total = zero_filled(from, to, g, rows.iter().map(|(_, b, c)| (*b, *c)));
        let keys = q.per_key.then(|| {
            key_ids
                .iter()
                .map(|k| {
                    (
                        k.clone(),
                        zero_filled(
                            from,
                            to,
                            g,
                            rows.iter()
                                .filter(|(id, _, _)| id == k)
                                .map(|(_, b, c)| (*b, *c)),
                        ),
                    )
                })
                .collect()
        });
        Ok(UsageSeries {
            granularity: g,
            from,
            to,
            total,
            keys,
        })
    }

    pub async fn account(&self, caller: &Caller) -> Result<Account, ServiceError> {
        caller.require("account:read")?;
        let now = self.now();
        // Before the read connection is taken, as in `usage`.
        fold_before_reading(self.store()).await;
        let mut conn = self.store().read().await?;
        let org = orgs::get(&mut conn, &caller.org)
            .await?
            .ok_or(ServiceError::NotFound("organization"))?;
        let plan = self.config().plan(&org.plan).cloned().ok_or_else(|| {
            ServiceError::Internal(anyhow::anyhow!("plan {:?} is not configured", org.plan))
        })?;
        let start = month_start(now);
        // A team-scoped key sees its team's figures only, never the organization's.
        let (requests_this_month, counted_keys) = match &caller.team {
            None => (
                usage::org_requests_since(&mut conn, &caller.org, start).await?,
                keys::count_counted(&mut conn, &caller.org, now).await?,
            ),
            Some(team) => (
                usage::team_requests_since(&mut conn, &caller.org, team, start).await?,
                keys::count_active(&mut conn, &caller.scope(), None, now).await?,
            ),
        };
        Ok(Account {
            org,
            plan,
            requests_this_month,
            month_start: start,
            counted_keys,
        })
    }
}

/// Folds the counts flushed but not yet in the usage tables, so that a read sees them all.
/// A fold that fails (the database busy with another writer for too long) does not fail
/// the read: it answers from the tables, at most [`crate::recorder::FOLD_EVERY`] seconds
/// behind, and the next fold catches up.
async fn fold_before_reading(store: &keyward_store::Store) {
    if let Err(e) = crate::recorder::fold(store).await {
        tracing::warn!(error = %e, "could not fold usage counts before a read; answering from the tables");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_start_is_the_first_of_the_utc_month() {
        // 2026-11-22T02:40:00Z → 2026-11-01T00:00:00Z
        assert_eq!(month_start(1_795_315_200_000), 1_793_491_200_000);
        // 2024-02-29T23:59:59Z → 2024-02-01
        assert_eq!(month_start(1_709_251_199_000), 1_706_745_600_000);
        assert_eq!(month_start(0), 0);
    }

    #[test]
    fn series_are_zero_filled() {
        let c = Counts {
            requests: 2,
            success: 2,
            ..Counts::default()
        };
        let s = zero_filled(0, 180_000, Granularity::Minute, [(60_000, c)].into_iter());
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].1, Counts::default());
        assert_eq!(s[1].1.requests, 2);
    }
}
