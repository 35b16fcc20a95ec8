//! An example adapter with its own connection over a TCP socket: MySQL and
//! MariaDB (`mysql-wire://user:password@host:port/database`) through
//! MySQL's client/server protocol, spoken by the component itself over
//! `wasi:sockets` (the host grants it only the URL's host and port).
//!
//! The dialect is the first-party `adapter-mysql`'s; only the connection
//! is the plugin's. The host has its own MySQL driver, so this adapter is
//! what measures a plugin connection's cost against a built-in driver on
//! the same server (docs/benchmarks.md), and shows how a socket-based
//! adapter is written with the SDK.
//!
//! Left out: TLS, authentication other than `mysql_native_password`
//! (MariaDB's default), and the binary protocol: parameters are written
//! into the SQL as typed literals.

mod protocol;
mod session;
mod values;

use orbital_adapter_mysql::MySql;
use orbital_sdk::{
    Adapter, AdapterInfo, Column, LogicalType, Relation, RelationKind, Statement, Swap,
};

/// The MySQL dialect under this plugin's name and URL scheme.
struct MySqlWire;

impl Adapter for MySqlWire {
    fn info() -> AdapterInfo {
        AdapterInfo {
            plugin: orbital_sdk::plugin_info!(
                "mysql-wire",
                "MySQL and MariaDB over a connection of its own (an example)"
            ),
            url_schemes: vec!["mysql-wire".into()],
            ..MySql::info()
        }
    }

    // Everything else is adapter-mysql's, call for call.
    fn quote_identifier(name: &str) -> String {
        MySql::quote_identifier(name)
    }
    fn render_relation(relation: &Relation) -> String {
        MySql::render_relation(relation)
    }
    fn relation_kind_query(relation: &Relation) -> Statement {
        MySql::relation_kind_query(relation)
    }
    fn columns_query(relation: &Relation) -> Statement {
        MySql::columns_query(relation)
    }
    fn create_schema(database: Option<&str>, schema: &str) -> Vec<Statement> {
        MySql::create_schema(database, schema)
    }
    fn create_view(relation: &Relation, query: &str) -> Vec<Statement> {
        MySql::create_view(relation, query)
    }
    fn create_table_as(relation: &Relation, query: &str) -> Vec<Statement> {
        MySql::create_table_as(relation, query)
    }
    fn create_table(relation: &Relation, columns: &[Column]) -> Vec<Statement> {
        MySql::create_table(relation, columns)
    }
    fn drop_relation(relation: &Relation, kind: RelationKind) -> Vec<Statement> {
        MySql::drop_relation(relation, kind)
    }
    fn swap_relation(swap: &Swap) -> Vec<Statement> {
        MySql::swap_relation(swap)
    }
    fn insert_select(relation: &Relation, columns: &[String], query: &str) -> Vec<Statement> {
        MySql::insert_select(relation, columns, query)
    }
    fn insert_values(relation: &Relation, columns: &[String], row_count: u32) -> String {
        MySql::insert_values(relation, columns, row_count)
    }
    fn merge(
        target: &Relation,
        source: &Relation,
        unique_key: &[String],
        columns: &[String],
    ) -> Vec<Statement> {
        MySql::merge(target, source, unique_key, columns)
    }
    fn delete_insert(
        target: &Relation,
        source: &Relation,
        unique_key: &[String],
        columns: &[String],
    ) -> Vec<Statement> {
        MySql::delete_insert(target, source, unique_key, columns)
    }
    fn add_column(relation: &Relation, column: &Column) -> Vec<Statement> {
        MySql::add_column(relation, column)
    }
    fn drop_column(relation: &Relation, name: &str) -> Vec<Statement> {
        MySql::drop_column(relation, name)
    }
    fn column_type(logical: LogicalType) -> String {
        MySql::column_type(logical)
    }
}

orbital_sdk::export_connected_adapter!(MySqlWire, session::Session);
