//! The connection: each statement is one `POST` to ClickHouse's HTTP
//! interface, with its parameters written into the SQL (ClickHouse 18 has
//! no server-side parameters) and a query's rows read back as
//! `TabSeparatedWithNamesAndTypes`.

use orbital_sdk::{Connection, DbError, RowSet, Statement, percent_decode};

use crate::values::{inline_params, parse_tab_separated};

/// A session: where to send statements. HTTP keeps no state between
/// them, so opening checks that the server answers and the credentials
/// and database are right.
pub struct Session {
    /// `http://host:port/?database=..&<settings>`: no credentials, so no
    /// error message can show them.
    endpoint: String,
    /// `Basic ...`, from the URL's user and password.
    authorization: Option<String>,
}

impl Connection for Session {
    fn open(url: &str, settings: &[(String, String)]) -> Result<Self, DbError> {
        let (endpoint, authorization) = endpoint(url, settings).map_err(refused)?;
        let session = Session {
            endpoint,
            authorization,
        };
        // No answer at all (a server starting up) may come later: the host
        // tries again. ClickHouse's own errors (credentials, an unknown
        // database) carry its code.
        session
            .query(&orbital_sdk::sql("SELECT 1"))
            .map_err(|error| DbError {
                transient: error.code.is_none(),
                ..error
            })?;
        Ok(session)
    }

    fn execute(&self, statement: &Statement) -> Result<u64, DbError> {
        self.send(&inline_params(statement).map_err(refused)?)?;
        // ClickHouse 18 reports no row count for a write.
        Ok(0)
    }

    /// In order, stopping at the first error (ClickHouse 18 has no
    /// transactions). Consecutive `INSERT .. VALUES` into the same columns
    /// (a seed's batches) go as one request: each insert makes a data part
    /// on disk, and MergeTree slows inserts down once a table has a few
    /// hundred parts.
    fn transaction(&self, statements: &[Statement]) -> Result<Vec<u64>, DbError> {
        let mut pending: Option<(String, String)> = None;
        for statement in statements {
            let sql = inline_params(statement).map_err(refused)?;
            match (insert_parts(&sql), &mut pending) {
                (Some((prefix, rows)), Some((open, body)))
                    if prefix == open && body.len() + rows.len() < MAX_INSERT_BYTES =>
                {
                    body.push_str(", ");
                    body.push_str(rows);
                }
                (Some((prefix, rows)), _) => {
                    if let Some((open, body)) = pending.take() {
                        self.send(&format!("{open}{body}"))?;
                    }
                    pending = Some((prefix.to_string(), rows.to_string()));
                }
                (None, _) => {
                    if let Some((open, body)) = pending.take() {
                        self.send(&format!("{open}{body}"))?;
                    }
                    self.send(&sql)?;
                }
            }
        }
        if let Some((open, body)) = pending {
            self.send(&format!("{open}{body}"))?;
        }
        Ok(vec![0; statements.len()])
    }

    fn query(&self, statement: &Statement) -> Result<RowSet, DbError> {
        let sql = inline_params(statement).map_err(refused)?;
        let text = self.send(&format!(
            "{}\nFORMAT TabSeparatedWithNamesAndTypes",
            sql.trim_end().trim_end_matches(';')
        ))?;
        parse_tab_separated(&text).map_err(refused)
    }
}

impl Session {
    /// Sends one statement; its answer's body, or ClickHouse's error.
    fn send(&self, sql: &str) -> Result<Vec<u8>, DbError> {
        let headers: Vec<(&str, &str)> = self
            .authorization
            .iter()
            .map(|value| ("authorization", value.as_str()))
            .collect();
        let response = orbital_sdk::http::post(&self.endpoint, &headers, sql.as_bytes()).map_err(
            |message| DbError {
                message: format!("ClickHouse's HTTP interface did not answer: {message}"),
                code: None,
                transient: false,
            },
        )?;
        match response.status {
            200 => Ok(response.body),
            status => Err(server_error(status, &response.text())),
        }
    }
}

/// The most one merged insert sends at once.
const MAX_INSERT_BYTES: usize = 32 << 20;

/// `INSERT INTO t (a, b) VALUES (..), (..)` as its head up to and with
/// `VALUES ` and its rows; `None` for any other statement.
fn insert_parts(sql: &str) -> Option<(&str, &str)> {
    if !sql.starts_with("INSERT INTO ") {
        return None;
    }
    let at = sql.find(") VALUES (")? + ") VALUES ".len();
    Some(sql.split_at(at))
}

/// `clickhouse://[user[:password]@]host[:port][/database][?setting=value&..]`
/// as the HTTP endpoint with the database and settings as parameters, and
/// the credentials as a basic `authorization` header. Joins default to
/// `ALL` (standard SQL's meaning), which ClickHouse 18 otherwise asks to
/// be written out.
fn endpoint(url: &str, settings: &[(String, String)]) -> Result<(String, Option<String>), String> {
    let rest = url
        .strip_prefix("clickhouse://")
        .ok_or_else(|| "not a clickhouse:// URL".to_string())?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (credentials, host) = match authority.rsplit_once('@') {
        Some((credentials, host)) => (Some(credentials), host),
        None => (None, authority),
    };
    if host.is_empty() {
        return Err("the clickhouse:// URL names no host".into());
    }
    let host = if host.contains(':') || host.starts_with('[') {
        host.to_string()
    } else {
        format!("{host}:8123")
    };
    let schema = settings
        .iter()
        .find(|(key, _)| key == "schema")
        .map(|(_, value)| value.as_str());
    let database = match (percent_decode(database)?, schema) {
        (database, _) if !database.is_empty() => database,
        (_, Some(schema)) => schema.to_string(),
        _ => "default".to_string(),
    };
    let mut params = vec![
        ("database".to_string(), database),
        ("join_default_strictness".to_string(), "ALL".to_string()),
    ];
    let authorization = match credentials {
        Some(credentials) => {
            let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
            let pair = format!("{}:{}", percent_decode(user)?, percent_decode(password)?);
            Some(format!("Basic {}", base64(pair.as_bytes())))
        }
        None => None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        params.push((percent_decode(key)?, percent_decode(value)?));
    }
    let query = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    Ok((format!("http://{host}/?{query}"), authorization))
}

/// Standard base64 with padding, for the `authorization` header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            match i <= chunk.len() {
                true => out.push(ALPHABET[((n >> shift) & 63) as usize] as char),
                false => out.push('='),
            }
        }
    }
    out
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// ClickHouse's `Code: 60, e.displayText() = DB::Exception: Table x
/// doesn't exist., e.what() = DB::Exception` as its message and code.
fn server_error(status: u16, body: &str) -> DbError {
    let body = body.trim();
    let code = body
        .strip_prefix("Code: ")
        .and_then(|rest| rest.split(',').next())
        .map(str::to_string);
    let message = body
        .split_once("e.displayText() = ")
        .map(|(_, rest)| rest.rsplit_once(", e.what()").map_or(rest, |(m, _)| m))
        .unwrap_or(body)
        .trim_start_matches("DB::Exception: ")
        .to_string();
    DbError {
        message: match message.is_empty() {
            true => format!("ClickHouse answered HTTP {status}"),
            false => message,
        },
        code,
        // 241: memory limit; 159: timeout; 202: too many simultaneous queries.
        transient: false,
    }
}

fn refused(message: String) -> DbError {
    DbError {
        message,
        code: None,
        transient: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_becomes_the_endpoint_with_its_credentials_and_database() {
        assert_eq!(
            endpoint("clickhouse://u:p%40ss@127.0.0.1:18123/db", &[]).unwrap(),
            (
                "http://127.0.0.1:18123/?database=db&join_default_strictness=ALL".to_string(),
                Some(format!("Basic {}", base64(b"u:p@ss")))
            )
        );
        assert_eq!(
            endpoint(
                "clickhouse://h?max_threads=2",
                &[("schema".into(), "analytics".into())]
            )
            .unwrap(),
            (
                "http://h:8123/?database=analytics&join_default_strictness=ALL&max_threads=2"
                    .to_string(),
                None
            )
        );
        assert_eq!(base64(b"orbital:orbital"), "b3JiaXRhbDpvcmJpdGFs");
        assert_eq!(base64(b"ab"), "YWI=");
        assert!(endpoint("clickhouse:///db", &[]).is_err());
        assert!(endpoint("clickhouse://h/%zz", &[]).is_err());
    }

    #[test]
    fn an_insert_splits_into_its_head_and_rows() {
        assert_eq!(
            insert_parts("INSERT INTO \"t\" (\"a\", \"b\") VALUES (1, 'x'), (2, ') VALUES (')"),
            Some((
                "INSERT INTO \"t\" (\"a\", \"b\") VALUES ",
                "(1, 'x'), (2, ') VALUES (')"
            ))
        );
        assert_eq!(insert_parts("INSERT INTO t SELECT 1"), None);
        assert_eq!(insert_parts("CREATE TABLE t (a Int8) ENGINE = Log"), None);
    }

    #[test]
    fn a_server_error_keeps_its_message_and_code() {
        let error = server_error(
            404,
            "Code: 60, e.displayText() = DB::Exception: Table default.x doesn't exist., e.what() = DB::Exception\n",
        );
        assert_eq!(error.message, "Table default.x doesn't exist.");
        assert_eq!(error.code.as_deref(), Some("60"));
        assert_eq!(
            server_error(500, "").message,
            "ClickHouse answered HTTP 500"
        );
    }
}
