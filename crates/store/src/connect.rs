use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::{migrate, StoreError};

/// Which engine a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle to the database: cheap to clone.
///
/// SQLite allows one writer at a time, so it gets a single-connection pool for writes (every
/// write transaction starts with `BEGIN IMMEDIATE` and waits its turn instead of failing with
/// "database is locked") beside a pool of readers. PostgreSQL uses one pool for both.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    read: AnyPool,
    write: AnyPool,
    /// One connection of its own for the change watcher, so that a busy read pool can never
    /// delay the noticing of a revocation. Opened when first used.
    watch: AnyPool,
}

/// A write transaction. Commit it, or dropping it rolls back.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`), creating a SQLite file if it is
    /// missing. Does not migrate; call [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            Self::connect_sqlite(url).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = AnyConnectOptions::from_str(url)?;
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options.clone())
                .await?;
            let watch = AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(1))
                .connect_lazy_with(options);
            Ok(Self {
                backend: Backend::Postgres,
                read: pool.clone(),
                write: pool,
                watch,
            })
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }

    async fn connect_sqlite(url: &str) -> Result<Self, StoreError> {
        let url = if url.contains("mode=") {
            url.to_string()
        } else if url.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        let options = AnyConnectOptions::from_str(&url)?;
        // Per-connection settings; journal_mode=WAL is stored in the file itself.
        let pool_options = || {
            AnyPoolOptions::new().after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL;",
                    )
                    .await?;
                    // The connection's thread exists now.
                    crate::priority::lower_sqlite_threads();
                    Ok(())
                })
            })
        };
        let write = pool_options()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&write)
            .await?;
        let read = pool_options()
            .max_connections(8)
            .connect_with(options.clone())
            .await?;
        let watch = pool_options()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy_with(options);
        Ok(Self {
            backend: Backend::Sqlite,
            read,
            write,
            watch,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Brings the schema up to date. Safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate::run(self).await
    }

    /// A pooled connection for reads.
    pub async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, StoreError> {
        Ok(self.read.acquire().await?)
    }

    /// The change watcher's own connection.
    pub async fn watch_conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, StoreError> {
        Ok(self.watch.acquire().await?)
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        })
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.read).await.is_ok()
    }

    /// Runs one statement outside any transaction (e.g. `CREATE DATABASE` in test set-up).
    pub async fn execute_admin(&self, sql: &str) -> Result<(), StoreError> {
        sqlx::raw_sql(sql).execute(&self.write).await?;
        Ok(())
    }

    /// Closes every connection. On SQLite, first folds the write-ahead log into the database
    /// file and empties it (a `TRUNCATE` checkpoint), so the next process to open the file
    /// need not read the log back: closing alone leaves that to the last connection's
    /// close, which may not have run when the process exits.
    pub async fn close(&self) {
        if self.backend == Backend::Sqlite {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.write)
                .await
            {
                tracing::debug!(error = %e, "the write-ahead log was not folded back at close");
            }
        }
        self.watch.close().await;
        self.write.close().await;
        self.read.close().await;
    }
}

/// A database URL safe to print: any password (in the user part or a `password=` query
/// parameter) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let url = redact_query_password(url);
    let url = url.as_str();
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Commits a write transaction.
pub async fn commit(tx: Tx) -> Result<(), StoreError> {
    Ok(tx.commit().await?)
}

fn redact_query_password(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            super::redact_url("sqlite://keyward.db"),
            "sqlite://keyward.db"
        );
    }
}
