//! Adapters that bring their own connection (plugin API 0.2.0), for
//! databases the host has no driver for.
//!
//! The host opens sessions of a [`Connection`] for a target whose URL
//! scheme the adapter serves, pools them, and routes every statement of a
//! run (materializations, seeds, tests, its own bookkeeping) to them. The
//! component reaches the network only through `wasi:http` ([`crate::http`])
//! or `wasi:sockets`, and only the host and port of the target's URL are
//! granted: anything else is refused, and the error says what was tried.
//!
//! ```no_run
//! use orbital_sdk::{Adapter, AdapterInfo, Connection, DbError, RowSet, Statement};
//!
//! struct Echo;
//! impl Adapter for Echo {
//!     fn info() -> AdapterInfo {
//!         AdapterInfo {
//!             plugin: orbital_sdk::plugin_info!("echo", "An example"),
//!             url_schemes: vec!["echo".into()],
//!             parser_dialect: "generic".into(),
//!             transactional_ddl: false,
//!         }
//!     }
//! }
//!
//! /// A session: here only the server's address.
//! struct EchoSession { url: String }
//!
//! impl Connection for EchoSession {
//!     fn open(url: &str, _settings: &[(String, String)]) -> Result<Self, DbError> {
//!         Ok(EchoSession { url: url.replacen("echo://", "http://", 1) })
//!     }
//!     fn execute(&self, statement: &Statement) -> Result<u64, DbError> {
//!         orbital_sdk::http::post(&self.url, &[], statement.sql.as_bytes())
//!             .map_err(|message| DbError { message, code: None, transient: false })?;
//!         Ok(0)
//!     }
//!     fn query(&self, statement: &Statement) -> Result<RowSet, DbError> {
//!         self.execute(statement)?;
//!         Ok(RowSet { columns: Vec::new(), rows: Vec::new() })
//!     }
//! }
//!
//! orbital_sdk::export_connected_adapter!(Echo, EchoSession);
//! ```

use std::marker::PhantomData;

use crate::__wit::connection::exports::orbital::plugin0_2_0::connection as wit;
use crate::{RowSet, Statement};

pub use crate::database::DbError;

/// One open session to the database. The host opens as many as it runs
/// statements at once, and drops them when it is done.
pub trait Connection: Sized + 'static {
    /// Opens a session to the target `url` (as `orbital.toml` gives it,
    /// credentials included); `settings` are the target's other keys
    /// (`schema`).
    fn open(url: &str, settings: &[(String, String)]) -> Result<Self, DbError>;
    /// Runs one statement; returns the rows it affected (0 where the
    /// database does not say).
    fn execute(&self, statement: &Statement) -> Result<u64, DbError>;
    /// Runs a query and returns its rows, with typed values.
    fn query(&self, statement: &Statement) -> Result<RowSet, DbError>;
    /// Runs the statements as one unit where the database can. The
    /// default runs them in order and stops at the first error: right for
    /// a database without transactions, which should say so in its docs.
    fn transaction(&self, statements: &[Statement]) -> Result<Vec<u64>, DbError> {
        statements.iter().map(|s| self.execute(s)).collect()
    }
    /// Takes the lock `name` in the target's database for this session,
    /// without waiting: `Some(true)` when this session holds it (asking
    /// again while holding it says so again), `Some(false)` when another
    /// session does. The database must let go of it when the session ends,
    /// also when the process dies (MySQL's `GET_LOCK`, PostgreSQL's
    /// advisory locks). The host keeps each environment's runs apart with
    /// it. The default, `None`, says the database has no such locks.
    fn try_lock(&self, name: &str) -> Result<Option<bool>, DbError> {
        let _ = name;
        Ok(None)
    }
    /// Lets go of the lock `name` this session took with
    /// [`try_lock`](Connection::try_lock). The default does nothing, as
    /// the default `try_lock` takes nothing.
    fn unlock(&self, name: &str) -> Result<(), DbError> {
        let _ = name;
        Ok(())
    }
}

/// A part of a target URL (user, password, database, a query value) with
/// its `%XX` escapes decoded. The error names no part of the URL: the
/// part may be a password.
pub fn percent_decode(part: &str) -> Result<String, String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let byte = part
                .get(at + 1..at + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("a `%` in the URL is not followed by two hex digits")?;
            out.push(byte);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a %-escaped part of the URL is not UTF-8".into())
}

/// Connects a [`Connection`] to the generated bindings; used by
/// [`export_connected_adapter!`](crate::export_connected_adapter).
#[doc(hidden)]
pub struct ConnectionExport<C>(PhantomData<C>);

/// A [`Connection`] as the bindings' session resource.
#[doc(hidden)]
pub struct SessionOf<C>(C);

impl<C: Connection> wit::Guest for ConnectionExport<C> {
    type Session = SessionOf<C>;
}

impl<C: Connection> wit::GuestSession for SessionOf<C> {
    fn open(url: String, settings: Vec<(String, String)>) -> Result<wit::Session, DbError> {
        C::open(&url, &settings).map(|c| wit::Session::new(SessionOf(c)))
    }
    fn execute(&self, statement: Statement) -> Result<u64, DbError> {
        self.0.execute(&statement)
    }
    fn query(&self, statement: Statement) -> Result<RowSet, DbError> {
        self.0.query(&statement)
    }
    fn transaction(&self, statements: Vec<Statement>) -> Result<Vec<u64>, DbError> {
        self.0.transaction(&statements)
    }
    fn try_lock(&self, name: String) -> Result<Option<bool>, DbError> {
        self.0.try_lock(&name)
    }
    fn unlock(&self, name: String) -> Result<(), DbError> {
        self.0.unlock(&name)
    }
}

/// Exports an [`Adapter`](crate::Adapter) with its own [`Connection`] as
/// this component's `connected-adapter` world (plugin API 0.2.0).
#[macro_export]
macro_rules! export_connected_adapter {
    ($adapter:ty, $connection:ty) => {
        $crate::export_adapter!($adapter);
        type __OrbitalConnectionExport = $crate::ConnectionExport<$connection>;
        $crate::__wit::connection::__export_connection_world!(
            __OrbitalConnectionExport with_types_in $crate::__wit::connection
        );
    };
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn url_parts_are_percent_decoded_without_echoing_them() {
        assert_eq!(percent_decode("p%40ss%2Fw").unwrap(), "p@ss/w");
        assert_eq!(percent_decode("plain").unwrap(), "plain");
        for bad in ["secret%4", "secret%zz", "secret%ff"] {
            let error = percent_decode(bad).unwrap_err();
            assert!(!error.contains("secret"), "{error}");
        }
    }
}
