//! The ClickHouse adapter (`clickhouse://user:password@host:port/database`),
//! written only with the SDK: its dialect SQL, and a connection of its own
//! to ClickHouse's HTTP interface (plugin API 0.2.0), which the host has no
//! driver for. The component reaches the network through `wasi:http`, and
//! the host grants it only the target URL's host and port.
//!
//! Written for ClickHouse 18.16 (Debian 12's) and later. See README.md for
//! what a ClickHouse target does differently, and which conformance cases
//! it leaves out.

mod connection;
mod dialect;
mod values;

orbital_sdk::export_connected_adapter!(dialect::ClickHouse, connection::Session);
