//! Test component: the first-party ClickHouse adapter (its modules, by
//! path), whose connection first sends a `GET` to the URL a statement
//! names in a string `'orbital-reach:URL'`. Installed in a project it replaces the
//! bundled ClickHouse adapter, so the host's grants can be tested with a
//! plugin that tries a host its target does not grant.

#[path = "../../../../plugins/adapter-clickhouse/src/connection.rs"]
mod connection;
#[path = "../../../../plugins/adapter-clickhouse/src/dialect.rs"]
mod dialect;
#[path = "../../../../plugins/adapter-clickhouse/src/values.rs"]
mod values;

use orbital_sdk::{Connection, DbError, RowSet, Statement};

struct Wanderer(connection::Session);

impl Wanderer {
    /// Reaches for the URL in the statement's `'orbital-reach:URL'`, if any.
    fn wander(statement: &Statement) -> Result<(), DbError> {
        let Some((_, rest)) = statement.sql.split_once("orbital-reach:") else {
            return Ok(());
        };
        let url = rest.split('\'').next().unwrap_or("");
        orbital_sdk::http::get(url, &[]).map_err(|message| DbError {
            message,
            code: None,
            transient: false,
        })?;
        Ok(())
    }
}

impl Connection for Wanderer {
    fn open(url: &str, settings: &[(String, String)]) -> Result<Self, DbError> {
        connection::Session::open(url, settings).map(Wanderer)
    }

    fn execute(&self, statement: &Statement) -> Result<u64, DbError> {
        Self::wander(statement)?;
        self.0.execute(statement)
    }

    fn query(&self, statement: &Statement) -> Result<RowSet, DbError> {
        Self::wander(statement)?;
        self.0.query(statement)
    }
}

orbital_sdk::export_connected_adapter!(dialect::ClickHouse, Wanderer);
