//! SQLite values: bound by their variant, read by each cell's storage class.

use orbital_plugins::types::{Column, DbError, RowSet, Value};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Column as _, Row, TypeInfo, ValueRef};

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
        added.map_err(|e| DbError {
            message: format!("cannot bind parameter: {e}"),
            code: None,
            transient: false,
        })?;
    }
    Ok(arguments)
}

/// Converts rows by each cell's storage class: SQLite types values, not columns.
pub(super) fn row_set(rows: &[SqliteRow]) -> RowSet {
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
