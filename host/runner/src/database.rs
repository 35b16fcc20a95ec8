//! The host's side of the `database` import, backed by sqlx's SQLite driver.
//!
//! The runner owns the pool; each task gets a [`TaskDatabase`] that tags its
//! log lines with the model. Write transactions start with `BEGIN IMMEDIATE`
//! so concurrent writers wait on SQLite's busy timeout instead of failing
//! with a deadlock when a read lock cannot be upgraded.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use orbital_plugins::types::{Column, DbError, LogLevel, RowSet, Statement, Value};
use orbital_plugins::{BoxFuture, Database};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow,
};
use sqlx::{Arguments, AssertSqlSafe, Column as _, Row, TypeInfo, ValueRef};

pub(crate) fn plain(sql: &str) -> Statement {
    Statement {
        sql: sql.to_string(),
        params: Vec::new(),
    }
}

/// A fresh random id: 128 bits from the clock, the process and the OS's
/// hash seed, which is enough to tell warehouses apart.
fn new_warehouse_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    let high = hasher.finish();
    hasher.write_u64(high);
    format!("{high:016x}{:016x}", hasher.finish())
}

/// How long a statement waits for SQLite's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// One connection to one SQLite file, shared by every task.
///
/// One, because SQLite runs one writer at a time anyway, and because each DDL
/// statement makes every other connection reparse the whole schema before its
/// next statement: with a pool, building n models costs O(n²) schema parsing
/// (10k tables took minutes, nearly all in SQLite's parser).
#[derive(Clone)]
pub struct Sqlite {
    pool: SqlitePool,
}

impl Sqlite {
    /// The file a `sqlite://` URL names, when it exists (not `:memory:`).
    pub fn existing_file(url: &str, base: &Path) -> Option<std::path::PathBuf> {
        let path = url.strip_prefix("sqlite://")?;
        if path.is_empty() || path == ":memory:" {
            return None;
        }
        let file = base.join(path);
        file.is_file().then_some(file)
    }

    /// Opens (creating if needed) the file a `sqlite://` URL names; a relative
    /// path is relative to `base`.
    pub async fn open(url: &str, base: &Path) -> Result<Self, String> {
        let path = url
            .strip_prefix("sqlite://")
            .ok_or_else(|| format!("`{url}` is not a sqlite:// URL"))?;
        if path.is_empty() {
            return Err("the sqlite:// URL names no file".into());
        }
        let in_memory = path == ":memory:";
        let options = if in_memory {
            SqliteConnectOptions::from_str("sqlite::memory:").map_err(|e| e.to_string())?
        } else {
            let file = base.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            SqliteConnectOptions::new()
                .filename(file)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.busy_timeout(BUSY_TIMEOUT))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { pool })
    }

    /// The warehouse's identity: a random id Orbital keeps in the table
    /// `_orbital_warehouse`, so state recorded for one database is never
    /// taken for another's (a deleted and recreated file is a new
    /// warehouse). `create` writes one if there is none.
    pub async fn warehouse_id(&self, create: bool) -> Result<Option<String>, DbError> {
        let exists = self
            .query(plain(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_orbital_warehouse'",
            ))
            .await?;
        if !exists.rows.is_empty() {
            let rows = self
                .query(plain("SELECT id FROM _orbital_warehouse LIMIT 1"))
                .await?;
            if let Some(Value::Text(id)) = rows.rows.first().and_then(|r| r.first()) {
                return Ok(Some(id.clone()));
            }
        }
        if !create {
            return Ok(None);
        }
        let id = new_warehouse_id();
        let mut insert = plain("INSERT INTO _orbital_warehouse (id) VALUES (?)");
        insert.params = vec![Value::Text(id.clone())];
        self.transaction(vec![
            plain("CREATE TABLE IF NOT EXISTS _orbital_warehouse (id TEXT NOT NULL)"),
            plain("DELETE FROM _orbital_warehouse"),
            insert,
        ])
        .await?;
        Ok(Some(id))
    }

    /// A handle for one task.
    pub fn for_task(&self, model: &str) -> Arc<TaskDatabase> {
        Arc::new(TaskDatabase {
            sqlite: self.clone(),
            model: model.to_string(),
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn execute(&self, statement: Statement) -> Result<u64, DbError> {
        let result = if statement.params.is_empty() {
            // Unparameterised text may hold several statements.
            sqlx::raw_sql(AssertSqlSafe(statement.sql))
                .execute(&self.pool)
                .await
        } else {
            sqlx::query_with(AssertSqlSafe(statement.sql), bind(statement.params)?)
                .execute(&self.pool)
                .await
        };
        result.map(|done| done.rows_affected()).map_err(db_error)
    }

    pub async fn query(&self, statement: Statement) -> Result<RowSet, DbError> {
        let rows = sqlx::query_with(AssertSqlSafe(statement.sql), bind(statement.params)?)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(row_set(&rows))
    }

    /// Runs the statements in one `BEGIN IMMEDIATE` transaction.
    pub async fn transaction(&self, statements: Vec<Statement>) -> Result<Vec<u64>, DbError> {
        let mut transaction = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let mut affected = Vec::with_capacity(statements.len());
        for statement in statements {
            let result = if statement.params.is_empty() {
                sqlx::raw_sql(AssertSqlSafe(statement.sql))
                    .execute(&mut *transaction)
                    .await
            } else {
                sqlx::query_with(AssertSqlSafe(statement.sql), bind(statement.params)?)
                    .execute(&mut *transaction)
                    .await
            };
            // On error the transaction rolls back when dropped.
            affected.push(result.map_err(db_error)?.rows_affected());
        }
        transaction.commit().await.map_err(db_error)?;
        Ok(affected)
    }
}

fn bind(params: Vec<Value>) -> Result<SqliteArguments, DbError> {
    let mut arguments = SqliteArguments::default();
    for param in params {
        let added = match param {
            Value::Null => arguments.add(None::<i64>),
            Value::Boolean(b) => arguments.add(b),
            Value::Integer(i) => arguments.add(i),
            Value::Real(r) => arguments.add(r),
            Value::Bytes(b) => arguments.add(b),
            Value::Numeric(s)
            | Value::Text(s)
            | Value::Date(s)
            | Value::Timestamp(s)
            | Value::Timestamptz(s)
            | Value::Json(s)
            | Value::Uuid(s) => arguments.add(s),
        };
        added.map_err(|e| DbError {
            message: format!("cannot bind parameter: {e}"),
            code: None,
            transient: false,
        })?;
    }
    Ok(arguments)
}

/// Converts rows by each cell's storage class: SQLite types values, not columns.
fn row_set(rows: &[SqliteRow]) -> RowSet {
    let columns = rows.first().map_or_else(Vec::new, |row| {
        row.columns()
            .iter()
            .map(|c| Column {
                name: c.name().to_string(),
                data_type: c.type_info().name().to_string(),
            })
            .collect()
    });
    let rows = rows
        .iter()
        .map(|row| (0..row.columns().len()).map(|i| cell(row, i)).collect())
        .collect();
    RowSet { columns, rows }
}

fn cell(row: &SqliteRow, index: usize) -> Value {
    let Ok(raw) = row.try_get_raw(index) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let storage = raw.type_info().name().to_string();
    match storage.as_str() {
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

fn db_error(error: sqlx::Error) -> DbError {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string());
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
            let transient = code
                .as_deref()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| matches!(c & 0xff, 5 | 6));
            DbError {
                message: db.message().to_string(),
                code,
                transient,
            }
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => DbError {
            message: error.to_string(),
            code: None,
            transient: true,
        },
        other => DbError {
            message: other.to_string(),
            code: None,
            transient: false,
        },
    }
}

/// The database as one task sees it.
pub struct TaskDatabase {
    sqlite: Sqlite,
    model: String,
}

impl Database for TaskDatabase {
    fn execute(&self, statement: Statement) -> BoxFuture<'_, Result<u64, DbError>> {
        Box::pin(self.sqlite.execute(statement))
    }

    fn query(&self, statement: Statement) -> BoxFuture<'_, Result<RowSet, DbError>> {
        Box::pin(self.sqlite.query(statement))
    }

    fn transaction(&self, statements: Vec<Statement>) -> BoxFuture<'_, Result<Vec<u64>, DbError>> {
        Box::pin(self.sqlite.transaction(statements))
    }

    fn log(&self, level: LogLevel, message: &str) {
        let model = self.model.as_str();
        match level {
            LogLevel::Debug => tracing::debug!(model, "{message}"),
            LogLevel::Info => tracing::info!(model, "{message}"),
            LogLevel::Warn => tracing::warn!(model, "{message}"),
            LogLevel::Error => tracing::error!(model, "{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(text: &str, params: Vec<Value>) -> Statement {
        Statement {
            sql: text.into(),
            params,
        }
    }

    #[tokio::test]
    async fn round_trips_typed_values_and_rolls_back_failed_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open("sqlite://t.db", dir.path()).await.unwrap();
        db.execute(sql(
            "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB)",
            vec![],
        ))
        .await
        .unwrap();
        let row = vec![
            Value::Integer(7),
            Value::Real(1.5),
            Value::Text("x".into()),
            Value::Bytes(vec![1, 2]),
        ];
        db.execute(sql("INSERT INTO t VALUES (?, ?, ?, ?)", row.clone()))
            .await
            .unwrap();
        db.execute(sql(
            "INSERT INTO t VALUES (?, ?, ?, ?)",
            vec![Value::Null; 4],
        ))
        .await
        .unwrap();
        let rows = db
            .query(sql("SELECT * FROM t ORDER BY i NULLS LAST", vec![]))
            .await
            .unwrap();
        assert_eq!(rows.rows, vec![row, vec![Value::Null; 4]]);
        assert_eq!(rows.columns[0].name, "i");

        let failed = db
            .transaction(vec![
                sql("DELETE FROM t", vec![]),
                sql("INSERT INTO nope VALUES (1)", vec![]),
            ])
            .await
            .unwrap_err();
        assert!(
            failed.message.contains("no such table: nope"),
            "{}",
            failed.message
        );
        let count = db
            .query(sql("SELECT COUNT(*) FROM t", vec![]))
            .await
            .unwrap();
        assert_eq!(count.rows[0][0], Value::Integer(2));
    }
}
