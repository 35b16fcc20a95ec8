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

/// Remote warehouse sessions: a daemon whose target only a peer reaches
/// runs its statements, locks and claims on that peer's connection. The
/// peer holds them for the QUIC connection they came on; a connection that
/// ends releases them, as a database session that ends does.
pub mod session {
    use serde::{Deserialize, Serialize};

    use crate::dag::RelationName;

    /// One value of a statement's parameters or of a row.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum SqlValue {
        Null,
        Boolean(bool),
        Integer(i64),
        Real(f64),
        Numeric(String),
        Text(String),
        Bytes(Vec<u8>),
        Date(String),
        Timestamp(String),
        Timestamptz(String),
        Json(String),
        Uuid(String),
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct SqlStatement {
        pub sql: String,
        pub params: Vec<SqlValue>,
    }

    /// Rows as a query returned them: each column's name and type name.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct SqlRows {
        pub columns: Vec<(String, String)>,
        pub rows: Vec<Vec<SqlValue>>,
    }

    /// A statement's failure, as the database reported it.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct SqlError {
        pub message: String,
        pub code: Option<String>,
        pub transient: bool,
    }

    /// One call on the answerer's connection to its target `target`, for
    /// run `run` of the asker (0: no run). Statements of one run are tagged
    /// and cancelled together there.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct WarehouseCall {
        pub target: String,
        pub run: u64,
        pub op: WarehouseOp,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum WarehouseOp {
        /// Which database it is (its URL scheme), opening it if needed.
        Open,
        Execute(SqlStatement),
        Query(SqlStatement),
        Transaction(Vec<SqlStatement>),
        /// Take environment `scope`'s run lock, waiting up to this long.
        LockEnvironment {
            scope: String,
            wait_ms: u64,
        },
        /// Whether a lock taken on this connection is still held.
        CheckLock(u64),
        Unlock(u64),
        /// Claim the build of `relation` (see the runner's claims).
        Claim {
            relation: RelationName,
            reuse: bool,
        },
        /// The claimed build succeeded: note it and let go.
        ClaimBuilt(u64),
        /// Let go of a claim without noting a build.
        ReleaseClaim(u64),
        /// Cancel the run's statements there.
        Interrupt,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum WarehouseAnswer {
        Opened {
            scheme: String,
        },
        Affected(u64),
        Rows(SqlRows),
        AffectedEach(Vec<u64>),
        /// A lock's id on this connection, or `None`: the wait ran out.
        Locked(Option<u64>),
        /// Build it, and say so with this claim id.
        ClaimBuild(u64),
        /// Another run built it meanwhile.
        ClaimBuilt,
        Done,
        Failed(SqlError),
    }
}
