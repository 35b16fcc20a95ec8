//! SQLite values: bound by their variant, read by each cell's storage class.

use orbital_plugin_host::types::{DbError, RowSet, Value};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Row};

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
