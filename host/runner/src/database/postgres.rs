//! PostgreSQL: connecting (a refused connection retried with backoff, any
//! other failure a clear error without the password), and values, bound with
//! the type their variant names and read by each column's type, so nothing
//! is lost either way (numeric stays exact with its scale, timestamps keep
//! their offset, json stays text).

use crate::error::DatabaseError;
use std::time::Duration;

use super::redact;

use orbital_plugin_host::types::{DbError, RowSet, Value};
use sqlx::Connection;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow,
    PgTypeInfo, Postgres,
};
use sqlx::types::chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use sqlx::types::{BigDecimal, JsonValue, Uuid};
use sqlx::{Arguments, Row};

/// How long a task waits for a connection (the pool keeps trying to open
/// one meanwhile, so a server restarted within it is waited for).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Has the server check every second, while a statement runs, that this
/// client is still there, and cancel the statement if not (PostgreSQL 14
/// and later; older servers refuse the setting, which is then left alone).
/// A killed `orbital` (or a peer lost mid-task) then leaves no statement
/// running that could commit a relation after its build was given to
/// another.
async fn notice_lost_clients(connection: &mut PgConnection) {
    use sqlx::Executor as _;
    let _ = connection
        .execute("SET client_connection_check_interval = 1000")
        .await;
}

/// The first connection and a lazy pool of up to `threads` more (see
/// [`super::connections`]). A server that refuses or drops the first
/// connection (starting up, too many clients) is retried with exponential
/// backoff; a wrong password or an unknown database is not.
pub(super) async fn connect(
    url: &str,
    threads: usize,
) -> Result<(PgPool, PgConnection), DatabaseError> {
    let options: PgConnectOptions = url.parse().map_err(|e| {
        DatabaseError::Url(format!(
            "`{}` is not a valid PostgreSQL URL: {e}",
            redact(url)
        ))
    })?;
    let mut connection = super::first_connection(
        "PostgreSQL",
        || PgConnection::connect_with(&options),
        retryable,
    )
    .await
    .map_err(|error| DatabaseError::Server {
        message: describe(url, &error),
        source: Some(error),
    })?;
    notice_lost_clients(&mut connection).await;
    // Every task holds at most one connection, so waiting for one means
    // the server is unreachable: give up soon.
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(threads).unwrap_or(u32::MAX))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(|connection, _| {
            Box::pin(async move {
                notice_lost_clients(connection).await;
                Ok(())
            })
        })
        .connect_lazy_with(options);
    Ok((pool, connection))
}

fn retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| super::is_transient(&code)),
        _ => false,
    }
}

fn describe(url: &str, error: &sqlx::Error) -> String {
    let server = redact(url);
    match error {
        sqlx::Error::Io(e) => format!("cannot reach the PostgreSQL server at {server}: {e}"),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") | Some("28000") => {
                format!(
                    "PostgreSQL at {server} refused the credentials: {}",
                    db.message()
                )
            }
            Some("3D000") => format!("{} (at {server})", db.message()),
            _ => format!("PostgreSQL at {server}: {}", db.message()),
        },
        other => format!("PostgreSQL at {server}: {other}"),
    }
}

fn bad(what: &str, text: &str) -> DbError {
    DbError {
        message: format!("cannot bind {text:?} as {what}"),
        code: None,
        transient: false,
    }
}

pub(super) fn bind(params: &[Value]) -> Result<PgArguments, DbError> {
    let mut arguments = PgArguments::default();
    for param in params {
        let added = match param {
            Value::Null => arguments.add(UntypedNull),
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
            Value::Timestamptz(s) => arguments
                .add(parse_timestamptz(s).ok_or_else(|| bad("timestamp with time zone", s))?),
            Value::Json(s) => {
                arguments.add(serde_json::from_str::<JsonValue>(s).map_err(|_| bad("json", s))?)
            }
            Value::Uuid(s) => arguments.add(Uuid::parse_str(s).map_err(|_| bad("uuid", s))?),
        };
        added.map_err(super::bind_error)?;
    }
    Ok(arguments)
}

/// A NULL parameter of no stated type, which the server types from where it
/// stands (as it does a literal NULL): a typed NULL would have to be cast to
/// the column's type, and text, say, does not cast to a date implicitly.
struct UntypedNull;

impl sqlx::Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        // OID 0: "unspecified" in the protocol's Parse message.
        PgTypeInfo::with_oid(Oid(0))
    }
}

impl sqlx::Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(&self, _: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
    }
}

pub(super) fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

pub(super) fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .or_else(|| parse_date(text).map(|d| d.and_time(NaiveTime::MIN)))
}

pub(super) fn parse_timestamptz(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim().replace('T', " ");
    let text = match text.strip_suffix('Z') {
        Some(utc) => format!("{utc}+00:00"),
        None => text,
    };
    ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"]
        .iter()
        .find_map(|format| DateTime::parse_from_str(&text, format).ok())
}

/// Rows by each column's declared type.
pub(super) fn row_set(rows: &[PgRow]) -> RowSet {
    super::row_set(rows, str::to_lowercase, cell)
}

fn cell(row: &PgRow, index: usize, kind: &str) -> Value {
    let read = |value: Result<Value, sqlx::Error>| {
        value.unwrap_or_else(|e| Value::Text(format!("<unreadable {kind}: {e}>")))
    };
    match kind {
        "INT2" => read(
            row.try_get::<i16, _>(index)
                .map(|v| Value::Integer(v.into())),
        ),
        "INT4" => read(
            row.try_get::<i32, _>(index)
                .map(|v| Value::Integer(v.into())),
        ),
        "INT8" => read(row.try_get::<i64, _>(index).map(Value::Integer)),
        "OID" => read(
            row.try_get::<sqlx::postgres::types::Oid, _>(index)
                .map(|v| Value::Integer(v.0.into())),
        ),
        "FLOAT4" => read(row.try_get::<f32, _>(index).map(|v| Value::Real(v.into()))),
        "FLOAT8" => read(row.try_get::<f64, _>(index).map(Value::Real)),
        "NUMERIC" => match row
            .try_get_raw(index)
            .ok()
            .and_then(|raw| raw.as_bytes().ok())
            .and_then(numeric_text)
        {
            Some(text) => Value::Numeric(text),
            None => read(
                row.try_get::<BigDecimal, _>(index)
                    .map(|v| Value::Numeric(v.to_string())),
            ),
        },
        "BOOL" => read(row.try_get::<bool, _>(index).map(Value::Boolean)),
        "BYTEA" => read(row.try_get::<Vec<u8>, _>(index).map(Value::Bytes)),
        "DATE" => read(
            row.try_get::<NaiveDate, _>(index)
                .map(|v| Value::Date(v.format("%Y-%m-%d").to_string())),
        ),
        "TIMESTAMP" => read(
            row.try_get::<NaiveDateTime, _>(index)
                .map(|v| Value::Timestamp(v.format("%Y-%m-%d %H:%M:%S%.f").to_string())),
        ),
        "TIMESTAMPTZ" => read(
            row.try_get::<DateTime<sqlx::types::chrono::Utc>, _>(index)
                .map(|v| Value::Timestamptz(v.format("%Y-%m-%d %H:%M:%S%.f%:z").to_string())),
        ),
        "JSON" | "JSONB" => read(
            row.try_get::<JsonValue, _>(index)
                .map(|v| Value::Json(v.to_string())),
        ),
        "UUID" => read(
            row.try_get::<Uuid, _>(index)
                .map(|v| Value::Uuid(v.hyphenated().to_string())),
        ),
        _ => read(row.try_get::<String, _>(index).map(Value::Text)),
    }
}

/// PostgreSQL's binary NUMERIC as exact text with its own scale (`10.00`
/// stays `10.00`; a decimal library would print its base-10000 digits).
fn numeric_text(bytes: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<i16> {
        Some(i16::from_be_bytes([
            *bytes.get(2 * i)?,
            *bytes.get(2 * i + 1)?,
        ]))
    };
    let (count, weight, sign, scale) = (word(0)?, word(1)?, word(2)? as u16, word(3)?);
    let digits: Vec<i16> = (0..usize::try_from(count).ok()?)
        .map(|i| word(4 + i))
        .collect::<Option<_>>()?;
    let digit = |i: i32| -> i16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => return None,
    }
    let weight = i32::from(weight);
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        text.push_str(&digit(0).to_string());
        for i in 1..=weight {
            text.push_str(&format!("{:04}", digit(i)));
        }
    }
    let scale = usize::try_from(scale).ok()?;
    if scale > 0 {
        let mut fraction = String::new();
        let mut i = weight + 1;
        while fraction.len() < scale {
            fraction.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        fraction.truncate(scale);
        text.push('.');
        text.push_str(&fraction);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://ana:secret@127.0.0.1:5432/w"),
            "postgres://ana:***@127.0.0.1:5432/w"
        );
        assert_eq!(redact("postgres://127.0.0.1/w"), "postgres://127.0.0.1/w");
    }

    #[test]
    fn timestamps_parse_in_the_forms_plugins_send() {
        assert!(parse_timestamp("2024-01-02 03:04:05").is_some());
        assert!(parse_timestamp("2024-01-02T03:04:05.25").is_some());
        assert!(parse_timestamptz("2024-01-02 03:04:05+02:00").is_some());
        assert!(parse_timestamptz("2024-01-02T03:04:05Z").is_some());
        assert!(parse_date("2024-02-30").is_none());
    }
}
