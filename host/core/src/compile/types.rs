//! What compiling produces and caches: parse results, compiled models and
//! tests, and the references between them. `dag` and `catalog` depend on
//! these, not on how they are made.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::render::marker;
use crate::dag::{NodeId, RelationName};
use crate::data_test::Severity;
use crate::hash::{Hash, Hasher};
use crate::project::ModelConfig;

/// What canonical SQL writes in place of a table reference, before the
/// reference's folded name.
pub(super) const MARKER: &str = "__orbital_ref__";

/// A model after compilation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledModel {
    /// Canonical SQL: formatted from the AST, references as markers.
    /// Shared with the parse result it came from.
    pub sql: Arc<str>,
    #[serde(with = "crate::project::stored_config")]
    pub config: ModelConfig,
    /// Declared sources this model reads, as `source.table`.
    pub sources: Vec<String>,
    /// What each marker in `sql` stands for.
    pub references: Vec<(String, Referent)>,
    /// The macro plugins that expanded calls in it.
    pub macros: Vec<Hash>,
    /// For a stateful model that calls `if_incremental()` or
    /// `is_incremental()`: the SQL of a build that continues its table
    /// (`sql` is then the full build's). See [`crate::incremental`].
    pub incremental_sql: Option<String>,
    /// Whether its table continues from build to build: its strategy keeps
    /// history (see [`crate::incremental::Strategies`]).
    pub stateful: bool,
}

/// A data test after compilation (see [`crate::data_test`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledTest {
    /// The query returning failing rows, compiled as a model's would be.
    pub query: CompiledModel,
    pub severity: Severity,
    /// The model a generic test checks: in `orbital build`, what is built
    /// from that model waits for the test, and is skipped if it fails.
    pub checks: Option<NodeId>,
    /// Keep its failing rows in a table (`store_failures = true`; every
    /// test's with `--store-failures`).
    pub store_failures: bool,
}

/// What a table reference resolved to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Referent {
    Node(NodeId),
    Source(RelationName),
    /// `this` in a stateful model: its own current table.
    This,
}

impl CompiledModel {
    /// The SQL with every reference replaced: nodes by `node(id)`, sources by
    /// their declared relation.
    pub fn render(&self, node: impl FnMut(NodeId) -> String) -> String {
        self.render_build(None, node)
    }

    /// The SQL of a full build (`this: None`) or of a build that continues
    /// the table `this` (quoted), with references replaced as in [`Self::render`].
    pub fn render_build(
        &self,
        this: Option<&str>,
        mut node: impl FnMut(NodeId) -> String,
    ) -> String {
        let mut sql = match (this, &self.incremental_sql) {
            (Some(_), Some(incremental)) => incremental.clone(),
            _ => self.sql.to_string(),
        };
        for (key, referent) in &self.references {
            let text = match referent {
                Referent::Node(id) => node(*id),
                Referent::Source(relation) => relation.quoted(),
                // Compilation lets `this` stand only where a build continues the table.
                Referent::This => this.map_or_else(|| marker(key), str::to_string),
            };
            sql = sql.replace(&marker(key), &text);
        }
        sql
    }
}

/// The project-independent result of parsing one model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedModel {
    /// Canonical SQL with markers, macros expanded.
    pub sql: Arc<str>,
    pub references: Vec<Reference>,
    /// The macro plugins that expanded something in it.
    pub macros: Vec<Hash>,
    /// The incremental build's SQL, when the model calls the incremental
    /// functions; `references` then covers both builds.
    pub incremental_sql: Option<String>,
    /// Where the first incremental function call stands, if any.
    pub incremental_call: Option<(u32, u32)>,
    /// Where `this` stands in the full build's SQL, if it does (an error
    /// for a stateful model: on a full build there is no table yet).
    pub this_on_full_build: Option<(u32, u32)>,
    /// The column lists macros were given, by relation: the result holds
    /// only while the catalog still says the same ([`crate::catalog`]).
    pub catalog: Vec<(String, Vec<String>)>,
}

/// A table reference as written, folded like identifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub parts: Vec<String>,
    pub written: String,
    pub line: u32,
    pub column: u32,
}

impl Reference {
    pub(crate) fn key(&self) -> String {
        self.parts.join(".")
    }
}

/// Earlier parse results, by [`parse_key`].
pub trait ParseCache: Sync {
    fn get(&self, key: &Hash) -> Option<ParsedModel>;
}

/// Parses everything.
pub struct NoCache;

impl ParseCache for NoCache {
    fn get(&self, _: &Hash) -> Option<ParsedModel> {
        None
    }
}

/// What a parse result depends on: this version of Orbital (the canonical
/// form may change between versions), the parser dialect and the SQL.
/// `macros` is the macro plugins' identity ([`SqlMacros::identity`]): an
/// expansion depends on them.
pub fn parse_key(dialect: &str, macros: &str, sql: &str) -> Hash {
    // v5: a result naming one column twice is refused.
    Hasher::new("orbital parse cache v5")
        .field(env!("CARGO_PKG_VERSION"))
        .field(dialect)
        .field(macros)
        .field(sql)
        .finish()
}
