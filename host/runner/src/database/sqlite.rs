//! SQLite: its one connection, and values bound by their variant and read
//! by each cell's storage class.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use orbital_plugin_host::types::{DbError, RowSet, Value};
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Arguments, Connection, Row};
use tokio::sync::{Mutex, MutexGuard};

pub(super) fn bind(params: &[Value]) -> Result<SqliteArguments, DbError> {
    let mut arguments = SqliteArguments::default();
    for param in params {
        let added = match param {
            Value::Null => arguments.add(None::<i64>),
            Value::Boolean(b) => arguments.add(*b),
            Value::Integer(i) => arguments.add(*i),
            Value::Real(r) => arguments.add(*r),
            Value::Bytes(b) => arguments.add(b.as_slice()),
            Value::Numeric(s)
            | Value::Text(s)
            | Value::Date(s)
            | Value::Timestamp(s)
            | Value::Timestamptz(s)
            | Value::Json(s)
            | Value::Uuid(s) => arguments.add(s.as_str()),
        };
        added.map_err(super::bind_error)?;
    }
    Ok(arguments)
}

/// Rows by each cell's storage class: SQLite types values, not columns.
pub(super) fn row_set(rows: &[SqliteRow]) -> RowSet {
    super::row_set(rows, str::to_string, cell)
}

fn cell(row: &SqliteRow, index: usize, storage: &str) -> Value {
    match storage {
        "INTEGER" => row
            .try_get::<i64, _>(index)
            .map_or(Value::Null, Value::Integer),
        "REAL" => row
            .try_get::<f64, _>(index)
            .map_or(Value::Null, Value::Real),
        "BLOB" => row
            .try_get::<Vec<u8>, _>(index)
            .map_or(Value::Null, Value::Bytes),
        _ => row
            .try_get::<String, _>(index)
            .map_or(Value::Null, Value::Text),
    }
}

/// SQLite's one connection, opened on first use and kept behind a mutex.
///
/// Not a sqlx pool: a pool pings the connection's worker thread before
/// lending it and again, from a spawned task, when it comes back, and
/// each ping is two thread hand-offs. On a first build those hand-offs cost
/// more than the models' SQL.
#[derive(Clone)]
pub(super) struct Link {
    options: Arc<SqliteConnectOptions>,
    interrupts: Arc<super::Interrupts>,
    connection: Arc<Mutex<Option<SqliteConnection>>>,
}

impl Link {
    /// Opens nothing yet: a command that needs nothing of the file never
    /// opens it.
    pub(super) fn lazy(options: SqliteConnectOptions, interrupts: Arc<super::Interrupts>) -> Self {
        Self {
            options: Arc::new(options),
            interrupts,
            connection: Arc::new(Mutex::new(None)),
        }
    }

    /// The connection, opened (with the progress handler that interrupts
    /// it) if this is its first use or the last one broke it.
    pub(super) async fn acquire(&self) -> Result<Lent<'_>, sqlx::Error> {
        let mut guard = self.connection.lock().await;
        if guard.is_none() {
            let mut connection = SqliteConnection::connect_with(&self.options).await?;
            super::install_progress_handler(&mut connection, &self.interrupts).await?;
            *guard = Some(connection);
        }
        Ok(Lent { guard })
    }

    pub(super) async fn close(&self) {
        if let Some(connection) = self.connection.lock().await.take() {
            let _ = connection.close().await;
        }
    }
}

/// The connection, lent for one call.
pub(super) struct Lent<'a> {
    guard: MutexGuard<'a, Option<SqliteConnection>>,
}

impl Lent<'_> {
    /// Forgets a connection the call found broken: the next call opens
    /// another.
    pub(super) fn discard(mut self) {
        self.guard.take();
    }
}

impl Deref for Lent<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.guard.as_ref().expect("a lent connection is open")
    }
}

impl DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.guard.as_mut().expect("a lent connection is open")
    }
}
