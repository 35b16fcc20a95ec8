//! # orbital-runner: the job runner box
//!
//! Executes a selection of the DAG on a target database: one tokio task per
//! node, at most `threads` at once, each in dependency order. A model task
//! instantiates its materialization plugin (linked to a fresh adapter
//! instance) and hands it the [`database`] the runner owns; a seed task loads
//! its CSV through the adapter's dialect SQL in one transaction; a data test
//! task counts the rows its query returns. A failed node skips its
//! descendants and nothing else; a failed test of a model also skips what
//! is built from that model.
//!
//! May depend on the core, the plugin host, sqlx and tokio. Knows nothing of
//! the CLI or how results are shown.

mod catalog;
pub mod database;
mod error;
mod execute;
mod plugins;
mod publish;
mod seed;

pub use catalog::Catalog;
pub use database::remote::Link;
pub use database::{CANCELLED, Claim, Claimed, Lent, RunLock, Warehouse, random_u64};
pub use error::{DatabaseError, RunnerError};
pub use execute::{
    Assignments, Delegate, Delegation, Event, FAILING_ROWS_SHOWN, NodeResult, Rows, RunOptions,
    Status, Work, build_task, execute,
};
pub use plugins::{Component, LoadedPlugins, plugin_set_key};
pub use publish::{Publish, drop_physical, ensure_schemas, publish};
pub use tokio_util::sync::CancellationToken;
