//! A session: one TCP connection to the server, opened with the URL's
//! credentials and set up as the host's own MySQL driver sets up its
//! connections (ANSI quotes, `||` as concatenation, UTC, utf8mb4).

use std::cell::RefCell;
use std::net::TcpStream;

use orbital_sdk::{Connection, DbError, RowSet, Statement, Value, percent_decode};

use crate::protocol::{Answer, Failure, Login, Wire};
use crate::values::{cell, column, inline_params};

/// What every session runs first.
const SETUP: &str = "SET SESSION \
     sql_mode = CONCAT(@@sql_mode, ',PIPES_AS_CONCAT,NO_ENGINE_SUBSTITUTION,ANSI_QUOTES'), \
     time_zone = '+00:00', NAMES utf8mb4 COLLATE utf8mb4_unicode_ci";

pub struct Session {
    /// The host calls one session from one task at a time; the cell is
    /// for the trait's `&self`.
    wire: RefCell<Wire>,
    /// Whether a backslash escapes in a string literal (`sql_mode` lacks
    /// `NO_BACKSLASH_ESCAPES`).
    backslash_escapes: bool,
}

impl Connection for Session {
    fn open(url: &str, _settings: &[(String, String)]) -> Result<Self, DbError> {
        let target = Target::parse(url).map_err(|message| DbError {
            message,
            code: None,
            transient: false,
        })?;
        let stream =
            TcpStream::connect((target.host.as_str(), target.port)).map_err(|e| DbError {
                message: format!(
                    "cannot reach the MySQL server at {}:{}: {e}",
                    target.host, target.port
                ),
                code: None,
                // Nothing was sent: a server starting up may answer later.
                transient: true,
            })?;
        // Small request, small answer: no waiting to fill a segment.
        stream.set_nodelay(true).ok();
        let login = Login {
            user: &target.user,
            password: &target.password,
            database: target.database.as_deref(),
        };
        let wire = Wire::handshake(stream, &login).map_err(|failure| {
            // Closed before the login completed: nothing ran, and a server
            // starting up (or out of connections) may take the next one.
            let closed = matches!(failure, Failure::Io(_));
            let mut error = db_error(failure);
            error.transient |= closed;
            error.message = format!(
                "MySQL at {}:{} refused the session: {}",
                target.host, target.port, error.message
            );
            error
        })?;
        let mut session = Session {
            wire: RefCell::new(wire),
            backslash_escapes: true,
        };
        session.run(SETUP)?;
        let mode = session.query(&orbital_sdk::sql("SELECT @@SESSION.sql_mode"))?;
        session.backslash_escapes = !mode.rows.iter().flatten().any(
            |value| matches!(value, Value::Text(mode) if mode.contains("NO_BACKSLASH_ESCAPES")),
        );
        Ok(session)
    }

    fn execute(&self, statement: &Statement) -> Result<u64, DbError> {
        let sql = self.sql(statement)?;
        Ok(match self.run(&sql)? {
            Answer::Done(affected) => affected,
            Answer::Rows(..) => 0,
        })
    }

    fn query(&self, statement: &Statement) -> Result<RowSet, DbError> {
        let sql = self.sql(statement)?;
        Ok(match self.run(&sql)? {
            Answer::Done(_) => RowSet {
                columns: Vec::new(),
                rows: Vec::new(),
            },
            Answer::Rows(columns, rows) => RowSet {
                rows: rows
                    .into_iter()
                    .map(|row| {
                        columns
                            .iter()
                            .zip(row)
                            .map(|(def, raw)| cell(def, raw))
                            .collect()
                    })
                    .collect(),
                columns: columns.iter().map(column).collect(),
            },
        })
    }

    /// DDL commits on its own in MySQL: the transaction holds the rows the
    /// statements change. On an error it is rolled back, so a deadlock
    /// (the server rolled it back already) left nothing behind.
    fn transaction(&self, statements: &[Statement]) -> Result<Vec<u64>, DbError> {
        self.run("START TRANSACTION")?;
        let mut affected = Vec::with_capacity(statements.len());
        for statement in statements {
            match self.execute(statement) {
                Ok(n) => affected.push(n),
                Err(error) => {
                    // A lost connection has rolled back already.
                    let _ = self.run("ROLLBACK");
                    return Err(error);
                }
            }
        }
        self.run("COMMIT")?;
        Ok(affected)
    }

    /// MySQL's named lock, which is server-wide: its name holds the
    /// database's, and is the one the host's own MySQL driver asks for.
    /// The server lets go of it when the connection ends.
    fn try_lock(&self, name: &str) -> Result<Option<bool>, DbError> {
        let statement = Statement {
            sql: format!("SELECT GET_LOCK({LOCK_NAME}, 0)"),
            params: vec![Value::Text(name.into())],
        };
        match self.query(&statement)?.rows.first().and_then(|r| r.first()) {
            Some(Value::Integer(1)) => Ok(Some(true)),
            Some(Value::Integer(0)) => Ok(Some(false)),
            other => Err(DbError {
                message: format!("GET_LOCK answered {other:?}"),
                code: None,
                transient: false,
            }),
        }
    }

    fn unlock(&self, name: &str) -> Result<(), DbError> {
        self.execute(&Statement {
            sql: format!("SELECT RELEASE_LOCK({LOCK_NAME})"),
            params: vec![Value::Text(name.into())],
        })
        .map(drop)
    }
}

/// The server-wide name of the lock the host calls `?`.
const LOCK_NAME: &str = "CONCAT('orbital ', SHA1(CONCAT(DATABASE(), CHAR(0), ?)))";

impl Session {
    fn sql(&self, statement: &Statement) -> Result<String, DbError> {
        inline_params(statement, self.backslash_escapes).map_err(|message| DbError {
            message,
            code: None,
            transient: false,
        })
    }

    fn run(&self, sql: &str) -> Result<Answer, DbError> {
        self.wire.borrow_mut().query(sql).map_err(db_error)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.wire.get_mut().quit();
    }
}

/// A failure as the host sees it. `transient` only where the server
/// certainly undid the statement (a deadlock rolls back the transaction,
/// a lock wait timeout the statement) or never started (too many
/// connections): the host then tries it again. A lost connection has no
/// code, and the host drops the session.
fn db_error(failure: Failure) -> DbError {
    match failure {
        Failure::Server {
            number,
            state,
            message,
        } => DbError {
            message,
            transient: matches!(number, 1213 | 1205 | 1040),
            code: Some(state),
        },
        Failure::Io(error) => DbError {
            message: format!("lost the connection to the MySQL server: {error}"),
            code: None,
            transient: false,
        },
        Failure::Protocol(message) => DbError {
            message: format!("the MySQL server's answer is not understood: {message}"),
            code: None,
            transient: false,
        },
    }
}

/// `mysql-wire://[user[:password]@]host[:port][/database]`, each part
/// percent-decoded.
struct Target {
    user: String,
    password: String,
    host: String,
    port: u16,
    database: Option<String>,
}

impl Target {
    fn parse(url: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("`{}` is not a mysql-wire:// URL: {why}", redact(url));
        let rest = url
            .split_once("://")
            .map(|(_, rest)| rest)
            .ok_or_else(|| invalid("no scheme"))?;
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, address) = match authority.rsplit_once('@') {
            Some((credentials, address)) => (Some(credentials), address),
            None => (None, authority),
        };
        let (user, password) = match credentials {
            Some(c) => match c.split_once(':') {
                Some((user, password)) => (percent_decode(user)?, percent_decode(password)?),
                None => (percent_decode(c)?, String::new()),
            },
            None => ("root".into(), String::new()),
        };
        let (host, port) = match address.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed
                    .split_once(']')
                    .ok_or_else(|| invalid("an unclosed `[`"))?;
                (host, after.strip_prefix(':'))
            }
            None => match address.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (address, None),
            },
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = match port {
            Some(port) => port
                .parse()
                .map_err(|_| invalid("the port is not a number"))?,
            None => 3306,
        };
        let database = (!path.is_empty())
            .then(|| percent_decode(path))
            .transpose()?;
        Ok(Self {
            user,
            password,
            host: host.to_string(),
            port,
            database,
        })
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => match url[start + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..start + 3], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_credentials_address_and_database() {
        let t = Target::parse("mysql-wire://ana:p%40ss@127.0.0.1:3307/w_1?x=y").unwrap();
        assert_eq!(
            (
                t.user.as_str(),
                t.password.as_str(),
                t.host.as_str(),
                t.port
            ),
            ("ana", "p@ss", "127.0.0.1", 3307)
        );
        assert_eq!(t.database.as_deref(), Some("w_1"));
        let bare = Target::parse("mysql-wire://[::1]").unwrap();
        assert_eq!(
            (bare.host.as_str(), bare.port, bare.database),
            ("::1", 3306, None)
        );
        let bad = Target::parse("mysql-wire://ana:secret@h:port/w")
            .err()
            .unwrap();
        assert!(bad.contains("port") && !bad.contains("secret"), "{bad}");
    }
}
