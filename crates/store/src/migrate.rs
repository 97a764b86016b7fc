//! A small migration runner: numbered SQL files per engine, applied in order, each in its
//! own transaction, recorded in `keyward_migrations`.

use sqlx::Executor;

use crate::{Backend, Store, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        sqlite: include_str!("../migrations/sqlite/0001_core.sql"),
        postgres: include_str!("../migrations/postgres/0001_core.sql"),
    },
    Migration {
        version: 2,
        name: "content",
        sqlite: include_str!("../migrations/sqlite/0002_content.sql"),
        postgres: include_str!("../migrations/postgres/0002_content.sql"),
    },
    Migration {
        version: 3,
        name: "usage",
        sqlite: include_str!("../migrations/sqlite/0003_usage.sql"),
        postgres: include_str!("../migrations/postgres/0003_usage.sql"),
    },
    Migration {
        version: 4,
        name: "generation",
        sqlite: include_str!("../migrations/sqlite/0004_generation.sql"),
        postgres: include_str!("../migrations/postgres/0004_generation.sql"),
    },
    Migration {
        version: 5,
        name: "dashboard",
        sqlite: include_str!("../migrations/sqlite/0005_dashboard.sql"),
        postgres: include_str!("../migrations/postgres/0005_dashboard.sql"),
    },
    Migration {
        version: 6,
        name: "usage_rollup",
        sqlite: include_str!("../migrations/sqlite/0006_usage_rollup.sql"),
        postgres: include_str!("../migrations/postgres/0006_usage_rollup.sql"),
    },
    Migration {
        version: 7,
        name: "usage_minute_by_bucket",
        sqlite: include_str!("../migrations/sqlite/0007_usage_minute_by_bucket.sql"),
        postgres: include_str!("../migrations/postgres/0007_usage_minute_by_bucket.sql"),
    },
    Migration {
        version: 8,
        name: "usage_pending",
        sqlite: include_str!("../migrations/sqlite/0008_usage_pending.sql"),
        postgres: include_str!("../migrations/postgres/0008_usage_pending.sql"),
    },
];

/// Arbitrary constant naming keyward's advisory lock on PostgreSQL.
const PG_MIGRATION_LOCK: i64 = 0x006b_6579_7761_7264;

pub(crate) async fn run(store: &Store) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    if store.backend() == Backend::Postgres {
        // Several nodes may start together; the lock is released when the transaction ends.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
    }
    tx.execute(
        "CREATE TABLE IF NOT EXISTS keyward_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM keyward_migrations")
        .fetch_all(&mut *tx)
        .await?;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let sql = match store.backend() {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        let fail = |source| StoreError::Migration {
            version: m.version,
            name: m.name,
            source,
        };
        // Said before it starts: on a large store a migration that copies a table (the
        // usage rows' on SQLite) takes a while, and a start-up that says nothing looks hung.
        tracing::info!(version = m.version, name = m.name, "applying migration");
        tx.execute(sqlx::raw_sql(sql)).await.map_err(fail)?;
        sqlx::query(
            "INSERT INTO keyward_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    tx.commit().await?;
    Ok(())
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
