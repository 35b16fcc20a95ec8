//! # orbital-plugin-host: the plugin host box (the wasmtime side; the plugins
//! themselves live in `plugins/`)
//!
//! Owns the single place wasmtime bindings are generated ([`bindings`]),
//! compiling and validating components, and calling them under limits: a
//! deadline on the time a plugin spends in its own code (epoch interruption;
//! time the host spends on the plugin's database calls does not count), a
//! memory limit, and WASI with no files, environment, network or clock.
//!
//! A materialization reaches the database only through the [`Database`] the
//! caller hands in, and its dialect SQL through the adapter instance this
//! crate links in for it. A macro plugin gets no database: one instance
//! ([`MacroSession`]) expands every call of a compile.
//!
//! Plugin API 0.1.0 and 0.2.0 components load side by side. An adapter of
//! 0.2.0 may bring its own connection ([`PluginConnection`]): the only
//! instances granted a network, and only what the target's [`Grants`]
//! allow (`wasi:sockets` and `wasi:http`).
//!
//! May depend on wasmtime, wasmtime-wasi(-http) and tokio; never on a
//! database driver or the core.

pub mod bindings;
mod compiled;
mod connection;
mod engine;
mod error;
mod network;
mod state;

pub use connection::PluginConnection;
pub use engine::{
    Adapter, AdapterSession, Bytes, Limits, MacroPlugin, MacroSession, Materialization, Plugin,
    PluginHost,
};
pub use error::PluginError;
pub use network::Grants;
pub use state::{BoxFuture, Database, Interrupt};

/// Values, relations, statements and the other WIT types, as Rust types.
pub mod types {
    pub use crate::bindings::adapter::exports::orbital::plugin::dialect::{AdapterInfo, Swap};
    pub use crate::bindings::adapter::orbital::plugin::types::*;
    pub use crate::bindings::macros::exports::orbital::plugin::expander::{
        Argument, Call, Position, Signature,
    };
    pub use crate::bindings::materialization::exports::orbital::plugin::strategy::{
        ModelTask, Outcome,
    };
    pub use crate::bindings::materialization::orbital::plugin::database::DbError;
}
