//! The store's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CasError {
    #[error("cannot use {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{} is not an Orbital state store ({detail}); move it away or delete it to start from empty state", path.display())]
    NotAStore { path: PathBuf, detail: String },

    #[error("{} was written by a newer Orbital (store format {found}; this one reads up to {supported}); upgrade orbital", path.display())]
    Newer {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("{} was written by store format {from} and cannot be upgraded ({detail}); move it away to start from empty state", path.display())]
    Migration {
        path: PathBuf,
        from: u32,
        detail: String,
    },

    #[error("state store: {0}")]
    Storage(#[source] Box<redb::Error>),

    #[error("state store: a record cannot be decoded ({0})")]
    Encoding(String),
}

macro_rules! storage_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for CasError {
            fn from(e: $error) -> Self {
                CasError::Storage(Box::new(e.into()))
            }
        }
    )*};
}

impl CasError {
    /// A stable machine-readable code (see docs/errors.md).
    pub fn code(&self) -> &'static str {
        match self {
            CasError::Io { .. } => "store.io",
            CasError::NotAStore { .. } => "store.not_a_store",
            CasError::Newer { .. } => "store.newer",
            CasError::Migration { .. } => "store.migration",
            CasError::Storage(_) => "store.storage",
            CasError::Encoding(_) => "store.encoding",
        }
    }
}

storage_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
