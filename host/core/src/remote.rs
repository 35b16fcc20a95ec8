//! Remote tasks: a model's build handed by the daemon that runs a run (the
//! coordinator) to a peer that reaches the same warehouse, which builds it
//! with its own connection and credentials. Only stateless builds (views
//! and tables) travel: a build writes its fingerprint-named relation
//! through a staging name, so running one again (after a peer was lost) is
//! harmless, and only the coordinator records it.

use serde::{Deserialize, Serialize};

use crate::Hash;
use crate::dag::RelationName;

/// Materializations whose builds may run on a peer.
pub const STATELESS: [&str; 2] = ["view", "table"];

/// One model's build, as its peer runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildTask {
    pub model: String,
    pub materialized: String,
    /// The physical relation to build (named by its fingerprint).
    pub relation: RelationName,
    /// The model's SQL, reading the relations the run assigned.
    pub sql: String,
    /// The model's config, as JSON (what materializations receive).
    pub config: String,
    pub full_refresh: bool,
    pub run_started_at: String,
    /// The components the coordinator builds with: the peer must load the
    /// same ones (the fingerprint covers them) or refuse the task.
    pub adapter: Hash,
    pub strategy: Hash,
    /// The coordinator's target: the peer builds on its own target of that
    /// name, which must be the same warehouse (this id, which Orbital keeps
    /// in the warehouse itself).
    pub target: String,
    pub warehouse: String,
    /// Which run and which try this is: an answer is taken only for the
    /// try the coordinator still waits on.
    pub fence: Fence,
}

/// A run's token and one try of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    pub run: u64,
    /// Random per run: run ids of two coordinators can be equal.
    pub token: u64,
    pub attempt: u32,
}

/// What became of a task handed to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskOutcome {
    /// Built there: the materialization's message and rows.
    Built {
        peer: String,
        message: String,
        rows: Option<u64>,
    },
    /// The build ran there and failed (it would fail here too).
    Failed { peer: String, error: String },
    /// No peer took it, or the one that did was lost: build it here.
    NotTaken { why: String },
}
