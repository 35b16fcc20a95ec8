//! # orbital-sdk
//!
//! The crate plugin authors depend on. A plugin is a WebAssembly component
//! that implements one world of the `orbital:plugin@0.1.0` WIT package:
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
//! use orbital_sdk::{Materialization, ModelTask, Outcome, PluginInfo, dialect, database};
//!
//! struct Truncate;
//!
//! impl Materialization for Truncate {
//!     fn info() -> PluginInfo {
//!         orbital_sdk::plugin_info!("truncate-insert", "Empties the table, then inserts the model's rows")
//!     }
//!     fn strategy() -> String {
//!         "truncate_insert".into()
//!     }
//!     fn materialize(task: ModelTask) -> Result<Outcome, String> {
//!         let target = dialect::render_relation(&task.relation);
//!         let mut statements = vec![orbital_sdk::sql(format!("DELETE FROM {target}"))];
//!         statements.extend(dialect::insert_select(&task.relation, &[], &task.sql));
//!         let affected = database::run_in_transaction(&statements)?;
//!         Ok(Outcome { rows_affected: Some(affected), message: "truncated and inserted".into() })
//!     }
//! }
//!
//! orbital_sdk::export_materialization!(Truncate);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! file is the component.
#![deny(missing_docs)]

mod adapter;
mod macros;
mod materialization;

pub use adapter::{Adapter, AdapterExport, AdapterInfo, Swap, default_column_type};
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
