use sqlx::error::ErrorKind;

/// What storage can tell its callers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the text says which, in words for a person.
    #[error("{0}")]
    Conflict(String),
    #[error("the database could not be reached or answered with an error")]
    Database(#[source] sqlx::Error),
    #[error("migration {version} ({name}) failed")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}

impl StoreError {
    /// Turns a unique violation into [`StoreError::Conflict`] with `message`; any other error
    /// passes through. Each insert that can collide calls this with its own sentence, so the
    /// answer names exactly what collided.
    pub(crate) fn on_unique(e: sqlx::Error, message: impl FnOnce() -> String) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation => {
                StoreError::Conflict(message())
            }
            _ => StoreError::Database(e),
        }
    }
}
