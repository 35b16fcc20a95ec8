//! # orbital-core: the SQL parser and query sequencer boxes
//!
//! Owns everything between a project folder and a plan: loading
//! `orbital.toml`, model files and seeds ([`project`]), parsing model SQL and
//! resolving every table reference to a model, seed or declared source
//! ([`compile`]), the dependency graph ([`dag`]) and selectors ([`selector`]).
//!
//! Synchronous and free of I/O beyond reading the project. It may depend on
//! sqlparser, serde and csv; never on wasmtime, a database or an async runtime.

pub mod compile;
pub mod config;
pub mod dag;
mod error;
pub mod project;
pub mod seed;
pub mod selector;
pub mod synthetic;

pub use compile::{CompiledModel, CompiledProject, compile};
pub use config::{ProjectConfig, Target};
pub use dag::{Dag, Node, NodeId, NodeKind};
pub use error::{Error, Location, Result};
pub use project::{Model, ModelConfig, Project, Seed};
pub use selector::Selection;
