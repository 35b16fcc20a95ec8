//! What the store records. Encoded with postcard: compact and fast, not
//! self-describing, so any change here bumps [`crate::FORMAT`] and adds a
//! step to [`crate::migrate`].

use orbital_core::Hash;
use orbital_core::dag::RelationName;
use serde::{Deserialize, Serialize};

/// A physical relation that exists in a warehouse, built with a fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub node: String,
    pub fingerprint: Hash,
    pub relation: RelationName,
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
    pub relation: RelationName,
}

/// How new an environment's pointers are. The version is bumped in the
/// warehouse, under the environment's lock, each time a run or a promote
/// changes them; `peer` says which daemon (or `cli`) made that change. Of
/// two records, the higher version wins, then the higher peer, so peers
/// that exchange records converge on the same pointers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVersion {
    pub version: u64,
    pub peer: String,
}

impl EnvVersion {
    pub fn newer_than(&self, other: &EnvVersion) -> bool {
        (self.version, &self.peer) > (other.version, &other.peer)
    }
}

/// One environment of one warehouse, as peers exchange it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvRecord {
    pub warehouse: String,
    pub env: String,
    pub version: EnvVersion,
    /// model -> where the environment points it. The builds they point at
    /// are asked for as any other (and checked against the warehouse).
    pub entries: Vec<(String, EnvEntry)>,
}

/// How one node of a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    Success,
    Reused,
    Error,
    Skipped,
    Pass,
    Fail,
    Warn,
    Cancelled,
    /// Pointed at another environment's build by `promote`.
    Promoted,
}

impl NodeStatus {
    /// Whether the node failed (an error, or a data test of severity error).
    pub fn failed(self) -> bool {
        matches!(self, NodeStatus::Error | NodeStatus::Fail)
    }
}

/// One node's result in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRun {
    pub name: String,
    pub status: NodeStatus,
    pub duration_ms: u64,
    pub fingerprint: Option<Hash>,
    pub error: Option<String>,
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Submitted, waiting for another run on its environment.
    Queued,
    Running,
    Succeeded,
    /// A node failed, or the run stopped on an error.
    Failed,
    Cancelled,
    /// Its process died while it was queued or running.
    Interrupted,
}

impl RunStatus {
    /// Whether the run has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

/// The process that holds a run while it is queued or running: what tells
/// a run whose process died from one still going.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// When the process started, in the OS's own units (Linux: clock ticks
    /// after boot), so a reused pid is not taken for the holder; 0: unknown.
    pub started: u64,
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
    pub status: RunStatus,
    /// Why the run failed when no node says (publishing, recording, a lost
    /// connection), or what interrupted it.
    pub error: Option<String>,
    pub holder: Option<Holder>,
    pub nodes: Vec<NodeRun>,
}
