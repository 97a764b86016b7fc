//! Concurrent changes of the same thing: the outcome is always one that some serial order of
//! the changes could have produced. Run on SQLite and, when configured, PostgreSQL (where
//! transactions really run side by side).

use std::sync::Arc;

use keyward_core::{Plan, RateLimit};
use keyward_server::service::{AgentChanges, KeyChanges, NewKey};
use keyward_server::{Caller, Config, Service, ServiceError};
use keyward_store::Store;

use crate::helpers::{postgres_store, sqlite_store, tenant};

fn config() -> Config {
    let mut config = Config::default();
    config.plans.insert(
        "small".into(),
        Plan {
            name: "small".into(),
            api_access: true,
            rate_limit: RateLimit {
                limit: 100,
                window_seconds: 60,
            },
            max_keys: Some(3),
        },
    );
    config
}

async fn backends(name: &str) -> Vec<(Service, Option<tempfile::TempDir>)> {
    let (sqlite, dir) = sqlite_store().await;
    let mut out = vec![(Service::new(sqlite, Arc::new(config())), Some(dir))];
    if let Some(pg) = postgres_store(name).await {
        out.push((Service::new(pg, Arc::new(config())), None));
    }
    out
}

async fn close(store: &Store) {
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_is_rolled_once_even_when_asked_twice_at_once() {
    for (svc, _dir) in backends("concurrent rolls").await {
        let t = tenant(&svc, "Race", "pro", &["keys:write"]).await;
        let caller = Caller::cli(t.org.clone());
        for _ in 0..10 {
            let k = svc
                .create_key(
                    &caller,
                    &t.agent,
                    NewKey {
                        name: "r".into(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let (a, b) = (svc.clone(), svc.clone());
            let (ca, cb) = (caller.clone(), caller.clone());
            let (ia, ib) = (k.record.id.clone(), k.record.id.clone());
            let ra = tokio::spawn(async move { a.roll_key(&ca, &ia, Some(0)).await });
            let rb = tokio::spawn(async move { b.roll_key(&cb, &ib, Some(0)).await });
            let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
            assert!(
                ra.is_ok() != rb.is_ok(),
                "exactly one roll succeeds: {:?} / {:?}",
                ra.as_ref().err(),
                rb.as_ref().err()
            );
            let failed = if ra.is_err() { ra.err() } else { rb.err() };
            assert!(matches!(failed, Some(ServiceError::Conflict(_))));
        }
        close(svc.store()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rename_never_undoes_a_roll() {
    for (svc, _dir) in backends("rename vs roll").await {
        let t = tenant(&svc, "Race", "pro", &["keys:write"]).await;
        let caller = Caller::cli(t.org.clone());
        for i in 0..10 {
            let k = svc
                .create_key(
                    &caller,
                    &t.agent,
                    NewKey {
                        name: "r".into(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let (a, b) = (svc.clone(), svc.clone());
            let (ca, cb) = (caller.clone(), caller.clone());
            let (ia, ib) = (k.record.id.clone(), k.record.id.clone());
            let rename = tokio::spawn(async move {
                a.update_key(
                    &ca,
                    &ia,
                    KeyChanges {
                        name: Some(format!("n{i}")),
                        ..Default::default()
                    },
                )
                .await
            });
            let roll = tokio::spawn(async move { b.roll_key(&cb, &ib, Some(0)).await });
            let (_, roll) = (rename.await.unwrap(), roll.await.unwrap());
            roll.unwrap();
            let old = svc.get_key(&caller, &k.record.id).await.unwrap();
            assert!(old.rolled_to.is_some());
            assert!(
                old.expires_at.is_some(),
                "a rolled key always has its grace expiry"
            );
        }
        close(svc.store()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rename_never_restores_a_removed_capability() {
    for (svc, _dir) in backends("rename vs capability removal").await {
        let t = tenant(&svc, "Race", "pro", &["keys:write", "content:read"]).await;
        let caller = Caller::cli(t.org.clone());
        for i in 0..10 {
            svc.update_agent(
                &caller,
                &t.agent,
                AgentChanges {
                    capabilities: Some(vec!["keys:write".into(), "content:read".into()]),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            let (a, b) = (svc.clone(), svc.clone());
            let (ca, cb) = (caller.clone(), caller.clone());
            let (ia, ib) = (t.agent.clone(), t.agent.clone());
            let narrow = tokio::spawn(async move {
                a.update_agent(
                    &ca,
                    &ia,
                    AgentChanges {
                        capabilities: Some(vec!["content:read".into()]),
                        ..Default::default()
                    },
                )
                .await
            });
            let rename = tokio::spawn(async move {
                b.update_agent(
                    &cb,
                    &ib,
                    AgentChanges {
                        name: Some(format!("Main {i}")),
                        ..Default::default()
                    },
                )
                .await
            });
            narrow.await.unwrap().unwrap();
            rename.await.unwrap().unwrap();
            let agent = svc.get_agent(&caller, &t.agent).await.unwrap();
            assert_eq!(
                agent.agent.capabilities.names(),
                vec!["content:read"],
                "the removal stands"
            );
        }
        close(svc.store()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_keys_holds_under_concurrent_creation() {
    for (svc, _dir) in backends("max_keys under concurrency").await {
        let t = tenant(&svc, "Small", "small", &["keys:write"]).await; // 1 key of 3
        let caller = Caller::cli(t.org.clone());
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (s, c, a) = (svc.clone(), caller.clone(), t.agent.clone());
            tasks.push(tokio::spawn(async move {
                s.create_key(
                    &c,
                    &a,
                    NewKey {
                        name: format!("k{i}"),
                        ..Default::default()
                    },
                )
                .await
            }));
        }
        let mut created = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => created += 1,
                Err(ServiceError::KeyLimitReached(_)) => {}
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }
        assert_eq!(created, 2, "the plan allows 3 keys and one existed");
        close(svc.store()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_and_updating_an_agent_at_once_never_fails_inside() {
    for (svc, _dir) in backends("delete vs update agent").await {
        let t = tenant(&svc, "Race", "pro", &["keys:write"]).await;
        let caller = Caller::cli(t.org.clone());
        for i in 0..10 {
            let (agent, _, _) = {
                let created = svc
                    .create_agent(
                        &caller,
                        keyward_server::service::NewAgent {
                            name: format!("A{i}"),
                            description: None,
                            capabilities: vec![],
                        },
                    )
                    .await
                    .unwrap();
                (created.agent.id, (), ())
            };
            let (a, b) = (svc.clone(), svc.clone());
            let (ca, cb) = (caller.clone(), caller.clone());
            let (ia, ib) = (agent.clone(), agent.clone());
            let delete = tokio::spawn(async move { a.delete_agent(&ca, &ia).await });
            let update = tokio::spawn(async move {
                b.update_agent(
                    &cb,
                    &ib,
                    AgentChanges {
                        name: Some(format!("B{i}")),
                        ..Default::default()
                    },
                )
                .await
            });
            let (d, u) = (delete.await.unwrap(), update.await.unwrap());
            assert!(d.is_ok(), "{d:?}");
            assert!(
                u.is_ok() || matches!(u, Err(ServiceError::NotFound(_))),
                "{u:?}"
            );
        }
        close(svc.store()).await;
    }
}
