//! MySQL and MariaDB (`mysql://`, `mariadb://`): connecting (a refused
//! connection retried with backoff, any other failure a clear error without
//! the password), the session every connection runs, and values.
//!
//! Every connection runs with `ANSI_QUOTES` (and sqlx's `PIPES_AS_CONCAT`)
//! in UTC: the SQL Orbital writes quotes names with double quotes, as the
//! models' parser dialect reads them (`orbital_core::dialect`).
//!
//! Values: MySQL has no UUID, time-zone-aware timestamp or JSON type of its
//! own that every server shares, so a UUID is bound as its text, a
//! timestamp with an offset as the same instant in UTC, and JSON as text.
//! Read back, `DATETIME` and `TIMESTAMP` are timestamps, `TINYINT(1)`
//! booleans, `DECIMAL` exact numerics with their scale.

use std::time::Duration;

use crate::error::DatabaseError;
use orbital_plugin_host::types::{DbError, RowSet, Value};
use sqlx::mysql::{
    MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions, MySqlRow,
};
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sqlx::types::{BigDecimal, JsonValue, Uuid};
use sqlx::{Arguments, Connection, Executor, Row};

use super::postgres::{parse_date, parse_timestamp, parse_timestamptz};

/// How long a task waits for a connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection runs first (sqlx has already appended
/// `PIPES_AS_CONCAT` to the server's `sql_mode` and set the time zone to
/// UTC).
const SESSION: &str = "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')";

async fn start_session(connection: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    connection.execute(SESSION).await.map(drop)
}

/// The connect options of a `mysql://` or `mariadb://` URL.
fn options(url: &str) -> Result<MySqlConnectOptions, DatabaseError> {
    let as_mysql = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_string(),
    };
    as_mysql.parse().map_err(|e| {
        DatabaseError::Url(format!(
            "`{}` is not a valid MySQL URL: {e}",
            super::redact(url)
        ))
    })
}

/// The first connection and a lazy pool of up to `threads` more (see
/// [`super::connections`]); a server that refuses the first connection is
/// retried with exponential backoff, a wrong password or an unknown
/// database is not.
pub(super) async fn connect(
    url: &str,
    threads: usize,
) -> Result<(MySqlPool, MySqlConnection), DatabaseError> {
    let options = options(url)?;
    let connected = || async {
        let mut connection = MySqlConnection::connect_with(&options).await?;
        start_session(&mut connection).await?;
        Ok(connection)
    };
    let connection = super::first_connection("MySQL", connected, retryable)
        .await
        .map_err(|error| DatabaseError::Server {
            message: describe(url, &error),
            source: Some(error),
        })?;
    let pool = MySqlPoolOptions::new()
        .max_connections(u32::try_from(threads).unwrap_or(u32::MAX))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(|connection, _| Box::pin(start_session(connection)))
        .connect_lazy_with(options.clone());
    Ok((pool, connection))
}

fn retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        // ER_CON_COUNT_ERROR (too many connections), and lost connections.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code == "08004" || super::is_transient(&code)),
        _ => false,
    }
}

fn describe(url: &str, error: &sqlx::Error) -> String {
    let server = super::redact(url);
    match error {
        sqlx::Error::Io(e) => format!("cannot reach the MySQL server at {server}: {e}"),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28000") => format!(
                "MySQL at {server} refused the credentials: {}",
                db.message()
            ),
            Some("42000") => format!("{} (at {server})", db.message()),
            _ => format!("MySQL at {server}: {}", db.message()),
        },
        other => format!("MySQL at {server}: {other}"),
    }
}

fn bad(what: &str, text: &str) -> DbError {
    DbError {
        message: format!("cannot bind {text:?} as {what}"),
        code: None,
        transient: false,
    }
}

pub(super) fn bind(params: &[Value]) -> Result<MySqlArguments, DbError> {
    let mut arguments = MySqlArguments::default();
    for param in params {
        let added = match param {
            Value::Null => arguments.add(None::<String>),
            Value::Boolean(b) => arguments.add(*b),
            Value::Integer(i) => arguments.add(*i),
            Value::Real(r) => arguments.add(*r),
            Value::Bytes(b) => arguments.add(b.as_slice()),
            Value::Text(s) => arguments.add(s.as_str()),
            Value::Numeric(s) => {
                arguments.add(s.parse::<BigDecimal>().map_err(|_| bad("numeric", s))?)
            }
            Value::Date(s) => arguments.add(parse_date(s).ok_or_else(|| bad("date", s))?),
            Value::Timestamp(s) => {
                arguments.add(parse_timestamp(s).ok_or_else(|| bad("timestamp", s))?)
            }
            Value::Timestamptz(s) => arguments.add(
                parse_timestamptz(s)
                    .ok_or_else(|| bad("timestamp with time zone", s))?
                    .naive_utc(),
            ),
            Value::Json(s) => {
                let json: JsonValue = serde_json::from_str(s).map_err(|_| bad("json", s))?;
                arguments.add(json.to_string())
            }
            Value::Uuid(s) => arguments.add(
                Uuid::parse_str(s)
                    .map_err(|_| bad("uuid", s))?
                    .hyphenated()
                    .to_string(),
            ),
        };
        added.map_err(super::bind_error)?;
    }
    Ok(arguments)
}

/// Rows by each column's type.
pub(super) fn row_set(rows: &[MySqlRow]) -> RowSet {
    super::row_set(rows, str::to_lowercase, cell)
}

fn cell(row: &MySqlRow, index: usize, kind: &str) -> Value {
    let read = |value: Result<Value, sqlx::Error>| {
        value.unwrap_or_else(|e| Value::Text(format!("<unreadable {kind}: {e}>")))
    };
    match kind {
        "BOOLEAN" => read(row.try_get::<bool, _>(index).map(Value::Boolean)),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
            read(row.try_get::<i64, _>(index).map(Value::Integer))
        }
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
        | "BIGINT UNSIGNED" => read(
            row.try_get::<u64, _>(index)
                .map(|v| match i64::try_from(v) {
                    Ok(v) => Value::Integer(v),
                    // Beyond i64: exact as a numeric.
                    Err(_) => Value::Numeric(v.to_string()),
                }),
        ),
        "FLOAT" => read(row.try_get::<f32, _>(index).map(|v| Value::Real(v.into()))),
        "DOUBLE" => read(row.try_get::<f64, _>(index).map(Value::Real)),
        // Sent as text in both protocols: kept exactly, scale and all.
        "DECIMAL" => match row
            .try_get_unchecked::<String, _>(index)
            .ok()
            .filter(|text| text.parse::<BigDecimal>().is_ok())
        {
            Some(text) => Value::Numeric(text),
            None => read(
                row.try_get::<BigDecimal, _>(index)
                    .map(|v| Value::Numeric(v.to_string())),
            ),
        },
        "DATE" => read(
            row.try_get::<NaiveDate, _>(index)
                .map(|v| Value::Date(v.format("%Y-%m-%d").to_string())),
        ),
        "DATETIME" => read(
            row.try_get::<NaiveDateTime, _>(index)
                .map(|v| Value::Timestamp(v.format("%Y-%m-%d %H:%M:%S%.f").to_string())),
        ),
        // Stored as UTC; the session's time zone is UTC.
        "TIMESTAMP" => {
            read(row.try_get::<DateTime<Utc>, _>(index).map(|v| {
                Value::Timestamp(v.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string())
            }))
        }
        "JSON" => read(row.try_get::<String, _>(index).map(Value::Json)),
        // MySQL flags text with a binary collation (`utf8mb4_bin`, MariaDB's
        // JSON) as binary too; sqlx reads it as text unless the column's
        // collation is `binary`, which real bytes have.
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            match row.try_get::<String, _>(index) {
                Ok(text) => Value::Text(text),
                Err(_) => read(row.try_get::<Vec<u8>, _>(index).map(Value::Bytes)),
            }
        }
        "BIT" | "GEOMETRY" => read(row.try_get::<Vec<u8>, _>(index).map(Value::Bytes)),
        _ => read(row.try_get::<String, _>(index).map(Value::Text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_urls_are_mysql_urls() {
        let parsed = options("mariadb://ana:secret@127.0.0.1:3307/w").unwrap();
        assert_eq!(parsed.get_port(), 3307);
        assert_eq!(parsed.get_database(), Some("w"));
        let Err(DatabaseError::Url(message)) = options("mysql://ana:secret@[/w") else {
            panic!("a bad URL is refused");
        };
        assert!(!message.contains("secret"), "{message}");
    }
}
