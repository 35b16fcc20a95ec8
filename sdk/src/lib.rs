//! # orbital-sdk
//!
//! The crate plugin authors depend on. A plugin is a WebAssembly component
//! that implements one world of the `orbital:plugin` WIT package
//! (materializations: version 0.2.0; adapters and macros: 0.1.0, which
//! 0.2.0 keeps as it was):
//!
//! - an [`Adapter`] generates dialect SQL for one kind of database;
//! - a [`Materialization`] builds one model, reaching the database only
//!   through [`database`] and asking the adapter ([`dialect`]) for SQL;
//! - a [`Macros`] plugin expands macro calls written in model SQL.
//!
//! Implement the trait on a unit struct and call the matching export macro
//! once. The generated bindings stay hidden.
//!
//! ```no_run
//! use orbital_sdk::{Materialization, ModelTask, Outcome, PluginInfo, build, config_columns};
//!
//! /// A table with an index on the columns its `index` config lists:
//! /// `-- config: materialized = 'indexed_table', index = ['customer_id']`.
//! struct IndexedTable;
//!
//! impl Materialization for IndexedTable {
//!     fn info() -> PluginInfo {
//!         orbital_sdk::plugin_info!("indexed-table", "A table indexed on the columns `index` lists")
//!     }
//!     fn strategy() -> String {
//!         "indexed_table".into()
//!     }
//!     fn materialize(task: ModelTask) -> Result<Outcome, String> {
//!         // `task.relation` is this build's own table, named by the model's
//!         // fingerprint: new for each new version of the model. Orbital
//!         // points the environment's view at it once every model built.
//!         let columns = config_columns(&task, "index")?;
//!         let rows = build::replace_table(&task.relation, &task.sql)?;
//!         build::index_key(&task.relation, &columns)?;
//!         Ok(Outcome {
//!             rows_affected: Some(rows),
//!             message: format!("table of {rows} rows, indexed on {}", columns.join(", ")),
//!         })
//!     }
//! }
//!
//! orbital_sdk::export_materialization!(IndexedTable);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! file is the component.
#![deny(missing_docs)]

mod adapter;
#[cfg(feature = "api-0-2")]
mod connection;
#[cfg(feature = "api-0-2")]
pub mod http;
mod macros;
mod materialization;

pub use adapter::{Adapter, AdapterExport, AdapterInfo, Swap, default_column_type};
#[cfg(feature = "api-0-2")]
pub use connection::{Connection, ConnectionExport, DbError, SessionOf, percent_decode};
pub use macros::{Argument, Call, MacroExport, Macros, Position, Signature, catalog};
pub use materialization::{
    Materialization, MaterializationExport, ModelTask, Outcome, build, config_columns, config_str,
    config_value, database, dialect,
};

/// The hidden wit-bindgen output. Not part of the API.
#[doc(hidden)]
pub mod __wit {
    /// The `adapter` world; also the one place the shared `types` interface is generated.
    pub mod adapter {
        wit_bindgen::generate!({
            world: "adapter",
            path: "../wit/orbital-plugin@0.1.0",
            pub_export_macro: true,
            export_macro_name: "__export_adapter_world",
            default_bindings_module: "orbital_sdk::__wit::adapter",
        });
    }
    /// The `materialization` world.
    pub mod materialization {
        wit_bindgen::generate!({
            world: "materialization",
            path: "../wit/orbital-plugin@0.1.0",
            pub_export_macro: true,
            export_macro_name: "__export_materialization_world",
            default_bindings_module: "orbital_sdk::__wit::materialization",
            with: { "orbital:plugin/types@0.1.0": crate::__wit::adapter::orbital::plugin::types },
        });
    }
    /// The `materialization` world of 0.2.0, its 0.1.0 interfaces shared
    /// with the modules above.
    #[cfg(feature = "api-0-2")]
    pub mod materialization_v0_2 {
        // A world of its own name: the export macro's helper is named after
        // the world, and 0.1.0's `materialization` is generated above.
        wit_bindgen::generate!({
            inline: "package orbital:sdk; world materialization-v0-2 { include orbital:plugin/materialization@0.2.0; }",
            world: "orbital:sdk/materialization-v0-2",
            path: ["../wit/orbital-plugin@0.1.0", "../wit/orbital-plugin@0.2.0"],
            pub_export_macro: true,
            export_macro_name: "__export_materialization_v0_2_world",
            default_bindings_module: "orbital_sdk::__wit::materialization_v0_2",
            with: {
                "orbital:plugin/types@0.1.0": crate::__wit::adapter::orbital::plugin::types,
                "orbital:plugin/database@0.1.0": crate::__wit::materialization::orbital::plugin::database,
                "orbital:plugin/dialect@0.1.0": crate::__wit::materialization::orbital::plugin::dialect,
            },
        });
    }
    /// A connection of an adapter's own (0.2.0). A connected adapter's
    /// component exports this world and [`adapter`]'s: together they are
    /// the `connected-adapter` world of `orbital:plugin@0.2.0`.
    #[cfg(feature = "api-0-2")]
    pub mod connection {
        wit_bindgen::generate!({
            inline: "package orbital:sdk; world connection-v0-2 { export orbital:plugin/connection@0.2.0; }",
            world: "orbital:sdk/connection-v0-2",
            path: ["../wit/orbital-plugin@0.1.0", "../wit/orbital-plugin@0.2.0"],
            pub_export_macro: true,
            export_macro_name: "__export_connection_world",
            default_bindings_module: "orbital_sdk::__wit::connection",
            with: {
                "orbital:plugin/types@0.1.0": crate::__wit::adapter::orbital::plugin::types,
                "orbital:plugin/database@0.1.0": crate::__wit::materialization::orbital::plugin::database,
            },
        });
    }
    /// The `macros` world.
    pub mod macros {
        wit_bindgen::generate!({
            world: "macros",
            path: "../wit/orbital-plugin@0.1.0",
            pub_export_macro: true,
            export_macro_name: "__export_macros_world",
            default_bindings_module: "orbital_sdk::__wit::macros",
            with: { "orbital:plugin/types@0.1.0": crate::__wit::adapter::orbital::plugin::types },
        });
    }
}

/// Values, relations and the other types every world shares.
pub use __wit::adapter::orbital::plugin::types::{
    Column, LogLevel, LogicalType, PluginInfo, Relation, RelationKind, RowSet, Statement, Value,
};

/// A statement without parameters.
pub fn sql(text: impl Into<String>) -> Statement {
    Statement {
        sql: text.into(),
        params: Vec::new(),
    }
}

/// A [`PluginInfo`] carrying this crate's package version.
///
/// `plugin_info!("name", "description")`.
#[macro_export]
macro_rules! plugin_info {
    ($name:expr, $description:expr) => {
        $crate::PluginInfo {
            name: ::std::string::String::from($name),
            version: ::std::string::String::from(env!("CARGO_PKG_VERSION")),
            description: ::std::string::String::from($description),
        }
    };
}
