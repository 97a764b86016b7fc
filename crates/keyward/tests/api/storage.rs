//! The storage conformance suite: the same stories on SQLite and, when configured, PostgreSQL.

use std::future::Future;
use std::sync::Arc;

use keyward_core::{KeyHash, KeyStatus, RateLimit};
use keyward_server::service::{AgentChanges, AuditQuery, KeyChanges, NewAgent, NewKey, NewOrg};
use keyward_server::{Caller, Clock, Config, Service, ServiceError};
use keyward_store::{keys, PageRequest, Scope, Store};

use crate::helpers::{postgres_store, sqlite_store, tenant, ALL};

/// Runs `story` on a fresh SQLite store and, when configured, a fresh PostgreSQL database.
pub async fn on_every_backend<F, Fut>(name: &str, story: F)
where
    F: Fn(Service, Clock) -> Fut,
    Fut: Future<Output = ()>,
{
    let (sqlite, _dir) = sqlite_store().await;
    run(sqlite, &story).await;
    if let Some(pg) = postgres_store(name).await {
        run(pg, &story).await;
    }
}

async fn run<F, Fut>(store: Store, story: &F)
where
    F: Fn(Service, Clock) -> Fut,
    Fut: Future<Output = ()>,
{
    let clock = Clock::adjustable();
    let service = Service::new(
        store.clone(),
        Arc::new(Config {
            clock: clock.clone(),
            ..Config::default()
        }),
    );
    story(service, clock).await;
    store.close().await;
}

#[tokio::test]
async fn migrations_are_idempotent() {
    on_every_backend("migrations_are_idempotent", |service, _| async move {
        service.store().migrate().await.unwrap();
        service.store().migrate().await.unwrap();
        assert!(service.store().ping().await);
    })
    .await;
}

#[tokio::test]
async fn keys_are_stored_as_hashes_and_found_by_hash() {
    on_every_backend(
        "keys_are_stored_as_hashes_and_found_by_hash",
        |service, _| async move {
            let t = tenant(&service, "Acme", "pro", &["keys:read"]).await;
            let mut conn = service.store().read().await.unwrap();
            let found = keys::find_for_auth(&mut conn, &KeyHash::of(&t.key))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(found.key.id, t.key_id);
            assert_eq!(found.key.hash.as_str(), KeyHash::of(&t.key).as_str());
            assert_eq!(found.agent_capabilities.names(), vec!["keys:read"]);
            assert_eq!(found.plan, "pro");
            assert!(!found.agent_deleted);
            assert!(keys::find_for_auth(&mut conn, &KeyHash::of("kw_unknown"))
                .await
                .unwrap()
                .is_none());
        },
    )
    .await;
}

#[tokio::test]
async fn every_query_is_scoped_by_organization_and_team() {
    on_every_backend(
        "every_query_is_scoped_by_organization_and_team",
        |service, _| async move {
            let a = tenant(&service, "Alpha", "pro", ALL).await;
            let b = tenant(&service, "Beta", "pro", ALL).await;
            let alpha = Caller::cli(a.org.clone());
            // Another organization's key and agent are invisible.
            assert!(matches!(
                service.get_key(&alpha, &b.key_id).await,
                Err(ServiceError::NotFound(_))
            ));
            assert!(matches!(
                service.get_agent(&alpha, &b.agent).await,
                Err(ServiceError::NotFound(_))
            ));
            assert!(matches!(
                service.revoke_key(&alpha, &b.key_id, None).await,
                Err(ServiceError::NotFound(_))
            ));
            let page = service
                .list_keys(&alpha, None, &PageRequest::first(100))
                .await
                .unwrap();
            assert!(page.items.iter().all(|k| k.org == a.org));

            // A team scope narrows further, in SQL.
            let team = service.create_team(&alpha, "Red").await.unwrap();
            let scoped = service
                .create_key(
                    &alpha,
                    &a.agent,
                    NewKey {
                        name: "red".into(),
                        team: Some(team.id.clone()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let mut conn = service.store().read().await.unwrap();
            let red = Scope::team(a.org.clone(), team.id.clone());
            let visible = keys::list(&mut conn, &red, None, &PageRequest::first(100))
                .await
                .unwrap();
            assert_eq!(
                visible
                    .items
                    .iter()
                    .map(|k| k.id.clone())
                    .collect::<Vec<_>>(),
                vec![scoped.record.id.clone()]
            );
            assert!(keys::get(&mut conn, &red, &a.key_id)
                .await
                .unwrap()
                .is_none());
            assert!(
                keys::get(&mut conn, &Scope::org(b.org.clone()), &scoped.record.id)
                    .await
                    .unwrap()
                    .is_none()
            );
        },
    )
    .await;
}

#[tokio::test]
async fn lists_paginate_newest_first() {
    on_every_backend("lists_paginate_newest_first", |service, clock| async move {
        let t = tenant(&service, "Pager", "enterprise", ALL).await;
        let caller = Caller::cli(t.org.clone());
        for i in 0..4 {
            clock.advance(5);
            service
                .create_key(
                    &caller,
                    &t.agent,
                    NewKey {
                        name: format!("k{i}"),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
        let first = service
            .list_keys(&caller, Some(&t.agent), &PageRequest::first(2))
            .await
            .unwrap();
        assert_eq!(
            first
                .items
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>(),
            vec!["k3", "k2"]
        );
        let next = first.next.clone().unwrap();
        let second = service
            .list_keys(
                &caller,
                Some(&t.agent),
                &PageRequest {
                    limit: 2,
                    cursor: Some(next),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            second
                .items
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>(),
            vec!["k1", "k0"]
        );
        let third = service
            .list_keys(
                &caller,
                Some(&t.agent),
                &PageRequest {
                    limit: 2,
                    cursor: second.next.clone(),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            third
                .items
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>(),
            vec!["Production"]
        );
        assert!(third.next.is_none());
    })
    .await;
}

#[tokio::test]
async fn lifecycle_with_audit_in_the_same_transaction() {
    on_every_backend(
        "lifecycle_with_audit_in_the_same_transaction",
        |service, clock| async move {
            let t = tenant(&service, "Life", "pro", ALL).await;
            let caller = Caller::cli(t.org.clone());
            let key = service
                .create_key(
                    &caller,
                    &t.agent,
                    NewKey {
                        name: "ci".into(),
                        rate_limit: Some(RateLimit::new(5, 1).unwrap()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let updated = service
                .update_key(
                    &caller,
                    &key.record.id,
                    KeyChanges {
                        name: Some("ci-2".into()),
                        rate_limit: Some(None),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(updated.name, "ci-2");
            assert_eq!(updated.rate_limit, None);

            let rolled = service
                .roll_key(&caller, &key.record.id, Some(60))
                .await
                .unwrap();
            assert_eq!(
                rolled.old_key.rolled_to.as_ref(),
                Some(&rolled.new_key.record.id)
            );
            assert_eq!(
                rolled.new_key.record.rolled_from.as_ref(),
                Some(&key.record.id)
            );
            let grace_end = rolled.old_key.expires_at.unwrap() - service.now();
            assert!((59_000..=60_000).contains(&grace_end), "{grace_end}");
            assert!(matches!(
                service.roll_key(&caller, &key.record.id, None).await,
                Err(ServiceError::Conflict(_))
            ));

            let revoked = service
                .revoke_key(&caller, &rolled.new_key.record.id, Some("leaked"))
                .await
                .unwrap();
            assert!(revoked.revoked_at.is_some());
            let again = service
                .revoke_key(&caller, &rolled.new_key.record.id, Some("again"))
                .await
                .unwrap();
            assert_eq!(
                again.revoked_at, revoked.revoked_at,
                "revoking twice changes nothing"
            );

            clock.advance(61_000);
            let old = service.get_key(&caller, &key.record.id).await.unwrap();
            assert_eq!(
                KeyStatus::of(old.revoked_at, old.expires_at, true, service.now()),
                KeyStatus::Expired
            );

            let events = service
                .list_audit_events(&caller, AuditQuery::default(), &PageRequest::first(100))
                .await
                .unwrap();
            let actions: Vec<&str> = events.items.iter().map(|e| e.action.as_str()).collect();
            for expected in [
                "org.created",
                "member.added",
                "agent.created",
                "key.created",
                "key.updated",
                "key.rolled",
                "key.revoked",
            ] {
                assert!(
                    actions.contains(&expected),
                    "{expected} missing from {actions:?}"
                );
            }
            assert_eq!(actions.iter().filter(|a| **a == "key.revoked").count(), 1);
            let only_revoked = service
                .list_audit_events(
                    &caller,
                    AuditQuery {
                        action: Some("key.revoked".into()),
                        ..Default::default()
                    },
                    &PageRequest::first(10),
                )
                .await
                .unwrap();
            assert_eq!(only_revoked.items.len(), 1);
            assert_eq!(only_revoked.items[0].details["reason"], "leaked");
        },
    )
    .await;
}

#[tokio::test]
async fn constraint_violations_become_precise_conflicts() {
    on_every_backend(
        "constraint_violations_become_precise_conflicts",
        |service, _| async move {
            let t = tenant(&service, "Unique", "pro", ALL).await;
            let caller = Caller::cli(t.org.clone());
            let err = service
                .create_agent(
                    &caller,
                    NewAgent {
                        name: "Main".into(),
                        description: None,
                        capabilities: vec![],
                    },
                )
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ServiceError::Conflict(m) if m.contains("Main")),
                "{err:?}"
            );
            let err = service
                .create_org(NewOrg {
                    name: "Unique".into(),
                    slug: None,
                    plan: "pro".into(),
                })
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ServiceError::Conflict(m) if m.contains("unique")),
                "{err:?}"
            );
            service.create_team(&caller, "Ops").await.unwrap();
            assert!(matches!(
                service.create_team(&caller, "Ops").await,
                Err(ServiceError::Conflict(_))
            ));
            // A failed change leaves nothing behind: no half-made agent, no audit event.
            let events = service
                .list_audit_events(&caller, AuditQuery::default(), &PageRequest::first(100))
                .await
                .unwrap();
            assert_eq!(
                events
                    .items
                    .iter()
                    .filter(|e| e.action == "agent.created")
                    .count(),
                1
            );
        },
    )
    .await;
}

#[tokio::test]
async fn deleting_an_agent_revokes_its_keys_and_keeps_the_records() {
    on_every_backend(
        "deleting_an_agent_revokes_its_keys_and_keeps_the_records",
        |service, _| async move {
            let t = tenant(&service, "Gone", "pro", ALL).await;
            let caller = Caller::cli(t.org.clone());
            service.delete_agent(&caller, &t.agent).await.unwrap();
            let key = service.get_key(&caller, &t.key_id).await.unwrap();
            assert!(key.revoked_at.is_some());
            assert!(matches!(
                service.get_agent(&caller, &t.agent).await,
                Err(ServiceError::NotFound(_))
            ));
            // The name is free again.
            service
                .update_agent(&caller, &t.agent, AgentChanges::default())
                .await
                .expect_err("a deleted agent cannot be changed");
            service
                .create_agent(
                    &caller,
                    NewAgent {
                        name: "Main".into(),
                        description: None,
                        capabilities: vec![],
                    },
                )
                .await
                .unwrap();
        },
    )
    .await;
}

#[tokio::test]
async fn plan_key_limit_is_enforced() {
    on_every_backend("plan_key_limit_is_enforced", |service, _| async move {
        let t = tenant(&service, "Small", "free", &[]).await; // free allows 10 keys
        let caller = Caller::cli(t.org.clone());
        for i in 0..9 {
            service
                .create_key(
                    &caller,
                    &t.agent,
                    NewKey {
                        name: format!("k{i}"),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
        let err = service
            .create_key(
                &caller,
                &t.agent,
                NewKey {
                    name: "one too many".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ServiceError::KeyLimitReached(_)), "{err:?}");
        // Revoking one makes room; rolling never changes the count.
        service.revoke_key(&caller, &t.key_id, None).await.unwrap();
        let k = service
            .create_key(
                &caller,
                &t.agent,
                NewKey {
                    name: "room".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        service
            .roll_key(&caller, &k.record.id, Some(0))
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn last_used_only_moves_forward() {
    on_every_backend("last_used_only_moves_forward", |service, _| async move {
        let t = tenant(&service, "Used", "pro", ALL).await;
        let mut tx = service.store().begin().await.unwrap();
        keys::touch_last_used(&mut tx, &[(t.org.clone(), t.key_id.clone(), 2_000)])
            .await
            .unwrap();
        keys::touch_last_used(&mut tx, &[(t.org.clone(), t.key_id.clone(), 1_000)])
            .await
            .unwrap();
        keyward_store::commit(tx).await.unwrap();
        let key = service
            .get_key(&Caller::cli(t.org.clone()), &t.key_id)
            .await
            .unwrap();
        assert_eq!(key.last_used_at, Some(2_000));
    })
    .await;
}

#[tokio::test]
async fn usage_rolls_up_into_hours_and_days_exactly_once() {
    use keyward_store::usage::{self, Counts, Granularity, Increment, Subject};
    on_every_backend(
        "usage_rolls_up_into_hours_and_days_exactly_once",
        |service, _| async move {
            let t = tenant(&service, "Rolled", "pro", ALL).await;
            let (hour, day) = (Granularity::Hour.millis(), Granularity::Day.millis());
            // The mark starts at 0 on a fresh store; use times well after it.
            let base = 20 * day;
            let inc = |minute: i64, requests: i64| Increment {
                org: t.org.clone(),
                agent: t.agent.clone(),
                key: t.key_id.clone(),
                minute,
                counts: Counts {
                    requests,
                    success: requests,
                    ..Counts::default()
                },
            };
            let write = |batch: Vec<Increment>| {
                let store = service.store().clone();
                async move {
                    let mut tx = store.begin().await.unwrap();
                    usage::add(&mut tx, &batch).await.unwrap();
                    keyward_store::commit(tx).await.unwrap();
                }
            };
            let roll = |until: i64| {
                let store = service.store().clone();
                async move {
                    let mut tx = store.begin().await.unwrap();
                    usage::roll_up(&mut tx, until).await.unwrap();
                    keyward_store::commit(tx).await.unwrap();
                }
            };
            let totals = |g: Granularity| {
                let store = service.store().clone();
                let (org, key) = (t.org.clone(), t.key_id.clone());
                async move {
                    let mut conn = store.read().await.unwrap();
                    let keys = [key];
                    usage::series(&mut conn, &org, Subject::Keys(&keys), g, 0, 40 * day)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|(_, bucket, c)| (bucket, c.requests))
                        .collect::<Vec<_>>()
                }
            };
            let org_total = || {
                let store = service.store().clone();
                let org = t.org.clone();
                async move {
                    let mut conn = store.read().await.unwrap();
                    usage::org_requests_since(&mut conn, &org, 0).await.unwrap()
                }
            };

            // Three minutes in one hour, one in the next; nothing rolled up yet.
            write(vec![inc(base, 1), inc(base + 60_000, 2)]).await;
            write(vec![inc(base + 120_000, 4), inc(base + hour, 8)]).await;
            let hours = vec![(base, 7), (base + hour, 8)];
            assert_eq!(totals(Granularity::Hour).await, hours);
            assert_eq!(totals(Granularity::Day).await, vec![(base, 15)]);
            assert_eq!(org_total().await, 15);

            // Rolling up the first hour (and again, as a second node would) changes no answer.
            roll(base + hour).await;
            roll(base + hour).await;
            let mut conn = service.store().read().await.unwrap();
            assert_eq!(usage::rolled_until(&mut conn).await.unwrap(), base + hour);
            drop(conn);
            assert_eq!(totals(Granularity::Hour).await, hours);
            assert_eq!(totals(Granularity::Day).await, vec![(base, 15)]);
            assert_eq!(org_total().await, 15);

            // Counts for an already rolled-up minute (held back by an outage) count once.
            write(vec![inc(base, 16)]).await;
            assert_eq!(
                totals(Granularity::Hour).await,
                vec![(base, 23), (base + hour, 8)]
            );
            assert_eq!(totals(Granularity::Day).await, vec![(base, 31)]);
            roll(base + 2 * hour).await;
            assert_eq!(
                totals(Granularity::Hour).await,
                vec![(base, 23), (base + hour, 8)]
            );
            assert_eq!(totals(Granularity::Day).await, vec![(base, 31)]);
            assert_eq!(org_total().await, 31);
            let minutes: i64 = totals(Granularity::Minute).await.iter().map(|m| m.1).sum();
            assert_eq!(minutes, 31);

            // Two late minutes of one hour in one batch: one hourly and one daily row get both.
            write(vec![inc(base + 60_000, 1), inc(base + 120_000, 2)]).await;
            assert_eq!(
                totals(Granularity::Hour).await,
                vec![(base, 26), (base + hour, 8)]
            );
            assert_eq!(totals(Granularity::Day).await, vec![(base, 34)]);

            // Pruning never takes a minute that is not rolled up yet.
            write(vec![inc(base + 3 * hour, 32)]).await;
            let mut tx = service.store().begin().await.unwrap();
            usage::prune(&mut tx, 40 * day, 0).await.unwrap();
            keyward_store::commit(tx).await.unwrap();
            assert_eq!(
                totals(Granularity::Minute).await,
                vec![(base + 3 * hour, 32)]
            );
            assert_eq!(
                totals(Granularity::Day).await,
                vec![(base, 66)],
                "pruned minutes stay counted in the days"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn appended_usage_is_folded_once_summed_per_key_and_minute() {
    use keyward_store::usage::{self, Counts, Granularity, Increment, Subject};
    on_every_backend(
        "appended_usage_is_folded_once_summed_per_key_and_minute",
        |service, _| async move {
            let t = tenant(&service, "Folded", "pro", ALL).await;
            let other = keyward_core::KeyId::generate();
            let day = Granularity::Day.millis();
            let base = 20 * day;
            let inc = |key: &keyward_core::KeyId, minute: i64, requests: i64| Increment {
                org: t.org.clone(),
                agent: t.agent.clone(),
                key: key.clone(),
                minute,
                counts: Counts {
                    requests,
                    success: requests - 1,
                    client_errors: 1,
                    ..Counts::default()
                },
            };
            let store = service.store().clone();
            let pending = || {
                let store = store.clone();
                async move {
                    let mut conn = store.read().await.unwrap();
                    usage::has_pending(&mut conn).await.unwrap()
                }
            };
            let minutes = || {
                let store = store.clone();
                let keys = [t.key_id.clone(), other.clone()];
                let org = t.org.clone();
                async move {
                    let mut conn = store.read().await.unwrap();
                    usage::series(
                        &mut conn,
                        &org,
                        Subject::Keys(&keys),
                        Granularity::Minute,
                        0,
                        40 * day,
                    )
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(key, bucket, c)| (key, bucket, c.requests, c.success, c.client_errors))
                    .collect::<Vec<_>>()
                }
            };

            // Two flushes' batches: one key in the same minute twice, another key once.
            assert!(!pending().await);
            for batch in [
                vec![inc(&t.key_id, base, 3), inc(&other, base, 5)],
                vec![inc(&t.key_id, base, 4), inc(&t.key_id, base + 60_000, 1)],
            ] {
                let mut tx = store.begin().await.unwrap();
                usage::append(&mut tx, &usage::PendingBatch::of(&batch))
                    .await
                    .unwrap();
                keyward_store::commit(tx).await.unwrap();
            }
            assert!(pending().await);
            assert!(
                minutes().await.is_empty(),
                "nothing is in the usage tables before a fold"
            );

            // Two folds at once (two nodes): the batches are counted once between them.
            let fold = || {
                let store = store.clone();
                async move {
                    let mut tx = store.begin().await.unwrap();
                    let n = usage::fold(&mut tx).await.unwrap();
                    keyward_store::commit(tx).await.unwrap();
                    n
                }
            };
            let (a, b) = tokio::join!(fold(), fold());
            assert_eq!(
                a + b,
                3,
                "three rows: a key and minute twice counted as one row"
            );
            assert!(!pending().await);
            let mut expected = vec![
                (t.key_id.clone(), base, 7, 5, 2),
                (t.key_id.clone(), base + 60_000, 1, 0, 1),
                (other.clone(), base, 5, 4, 1),
            ];
            expected.sort();
            let mut found = minutes().await;
            found.sort();
            assert_eq!(found, expected);
            assert_eq!(fold().await, 0, "a fold with nothing pending adds nothing");
            let mut found = minutes().await;
            found.sort();
            assert_eq!(found, expected);

            // A batch in a format this version does not write (a newer node's, in a rolling
            // upgrade) is neither taken nor counted as pending: it stays for a node that can
            // read it.
            let mut tx = store.begin().await.unwrap();
            sqlx::query("INSERT INTO usage_pending (format, body) VALUES (99, $1)")
                .bind(&b"\x63 anything"[..])
                .execute(&mut *tx)
                .await
                .unwrap();
            keyward_store::commit(tx).await.unwrap();
            assert!(!pending().await);
            assert_eq!(fold().await, 0);
            let mut conn = store.read().await.unwrap();
            let kept: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM usage_pending WHERE format = 99")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
            assert_eq!(kept, 1);
            drop(conn);

            // A batch of a minute already rolled up (held back by an outage) is folded into
            // the hourly row too, once.
            let hour = Granularity::Hour.millis();
            let mut tx = store.begin().await.unwrap();
            usage::roll_up(&mut tx, base + hour).await.unwrap();
            usage::append(
                &mut tx,
                &usage::PendingBatch::of(&[inc(&t.key_id, base, 10)]),
            )
            .await
            .unwrap();
            keyward_store::commit(tx).await.unwrap();
            assert_eq!(fold().await, 1);
            let mut conn = store.read().await.unwrap();
            let keys = [t.key_id.clone()];
            let hours = usage::series(
                &mut conn,
                &t.org,
                Subject::Keys(&keys),
                Granularity::Hour,
                0,
                40 * day,
            )
            .await
            .unwrap()
            .into_iter()
            .map(|(_, bucket, c)| (bucket, c.requests))
            .collect::<Vec<_>>();
            assert_eq!(hours, vec![(base, 7 + 1 + 10)]);
        },
    )
    .await;
}
