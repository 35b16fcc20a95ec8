//! What the store records. Encoded with postcard: compact and fast, not
//! self-describing, so any change here bumps [`crate::FORMAT`].

use orbital_core::Hash;
use serde::{Deserialize, Serialize};

/// A relation's name in the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationRecord {
    pub schema: Option<String>,
    pub identifier: String,
}

impl RelationRecord {
    /// The relation as the core names it.
    pub fn name(&self) -> orbital_core::dag::RelationName {
        orbital_core::dag::RelationName {
            schema: self.schema.clone(),
            identifier: self.identifier.clone(),
        }
    }
}

impl std::fmt::Display for RelationRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.identifier),
            None => f.write_str(&self.identifier),
        }
    }
}

/// A physical relation that exists in a warehouse, built with a fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub node: String,
    pub fingerprint: Hash,
    pub relation: RelationRecord,
    /// `view` or `table`, as the adapter drops it.
    pub kind: String,
    /// The materialization (or `seed`).
    pub materialized: String,
    /// The canonical SQL object, for models.
    pub sql: Option<Hash>,
    /// Upstream fingerprints it was built from: a view reads them at query
    /// time, so they stay alive while it does.
    pub upstream: Vec<Hash>,
    pub run: u64,
    pub built_at: String,
}

/// Where an environment points one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvEntry {
    pub fingerprint: Hash,
    pub local: Hash,
    pub sql: Option<Hash>,
    /// The relation users query in this environment.
    pub relation: RelationRecord,
}

/// One node's result in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRun {
    pub name: String,
    pub status: String,
    pub duration_ms: u64,
    pub fingerprint: Option<Hash>,
    pub error: Option<String>,
}

/// One `orbital` run that touched the warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: u64,
    pub command: String,
    pub target: String,
    pub environment: String,
    pub started_at: String,
    pub elapsed_ms: u64,
    pub nodes: Vec<NodeRun>,
}
