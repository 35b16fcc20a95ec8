//! # orbital-core: the SQL parser and query sequencer boxes
//!
//! Owns everything between a project folder and a plan: loading
//! `orbital.toml`, model files and seeds ([`project`]), parsing model SQL
//! ([`tokens`], [`dialect`]) and resolving every table reference to a
//! model, seed or declared source ([`compile`](mod@compile)), expanding macro calls on the AST ([`macros`], through a
//! trait the caller implements over plugins), data tests ([`data_test`]),
//! the dependency graph ([`dag`]), selectors ([`selector`]), fingerprints
//! ([`fingerprint`]), the syntax stateful models continue their table
//! with ([`incremental`]), snapshots of a compiled project ([`snapshot`]) and
//! the plan against recorded state ([`plan`]).
//!
//! Synchronous and free of I/O beyond reading the project. It may depend on
//! sqlparser, serde, csv, blake3 and rayon; never on wasmtime, a database or an async runtime.

pub mod catalog;
pub mod compile;
pub mod config;
pub mod dag;
pub mod data_test;
pub mod dbt;
pub mod dialect;
mod error;
pub mod fingerprint;
pub mod hash;
pub mod incremental;
pub mod lineage;
pub mod macros;
pub mod plan;
pub mod project;
mod read_only;
pub mod remote;
pub mod seed;
pub mod selector;
pub mod snapshot;
pub mod synthetic;
mod threads;
pub use compile::tokens;

pub use compile::{
    CompileOptions, CompiledModel, CompiledProject, NoCache, ParseCache, ParsedModel, Previous,
    Referent, compile,
};
pub use config::{ComponentRef, ProjectConfig, Target};
pub use dag::{Dag, Node, NodeId, NodeKind};
pub use error::{Error, Location, Result, did_you_mean};
pub use fingerprint::{Fingerprints, PluginHashes};
pub use hash::Hash;
pub use project::{Model, ModelConfig, Project, Seed};
pub use selector::{Selection, StateDiff};
pub use snapshot::{Snapshot, SnapshotOf};
