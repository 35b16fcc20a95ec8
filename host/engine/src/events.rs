//! What a run reports as it goes, and what it returns.

use orbital_cas::RunStatus;
use orbital_runner::NodeResult;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::request::RunCommand;

/// Where a run sends its events. A closed receiver is not an error: the
/// run goes on.
pub type Events = tokio::sync::mpsc::UnboundedSender<Event>;

/// One thing that happened in a run, in the order it happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run waits for another run on its environment in this process.
    RunQueued {
        run: u64,
        target: String,
        environment: String,
    },
    /// The run has its locks and its plan; nodes start next.
    RunStarted {
        run: u64,
        command: RunCommand,
        target: String,
        environment: String,
        threads: usize,
        seeds: usize,
        models: usize,
        tests: usize,
    },
    NodeStarted {
        run: u64,
        node: String,
        kind: String,
    },
    /// A node ended (or was skipped); `path` is its file in the project.
    NodeFinished {
        run: u64,
        path: String,
        result: NodeResult,
    },
    /// The environment's relations are being pointed at the new builds.
    Publishing { run: u64, changes: usize },
    /// The state store recorded the run.
    Recorded { run: u64 },
    RunFinished {
        run: u64,
        status: RunStatus,
        elapsed_ms: u64,
    },
}

/// What a run that got as far as running nodes returns.
#[derive(Debug)]
pub struct RunOutcome {
    pub run: u64,
    pub status: RunStatus,
    /// One per node that started or was skipped, in run order.
    pub results: Vec<NodeResult>,
    pub elapsed: std::time::Duration,
    /// What failed after the nodes ran (publishing, recording): reported
    /// after their results, never instead of them.
    pub error: Option<EngineError>,
}

pub(crate) fn send(events: &Events, event: Event) {
    let _ = events.send(event);
}
