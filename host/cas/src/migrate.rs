//! Upgrades a store written by an older format, inside the transaction
//! that opens it: all or nothing.
//!
//! Each step reads the older records with their own (frozen) types and
//! writes today's. A step is never edited once released.

use redb::{ReadableTable, WriteTransaction};
use serde::Deserialize;

use crate::records::{NodeRun, NodeStatus, RunRecord, RunStatus};
use crate::{ACTIVE_RUNS, OBJECTS, RUNS, Result, decode, encode};

/// Brings a store of format `from` up to [`crate::FORMAT`].
pub(crate) fn migrate(txn: &WriteTransaction, from: u32) -> Result<()> {
    if from < 2 {
        runs_with_status(txn)?;
    }
    Ok(())
}

/// Format 1's run record: statuses as text, no run status or holder.
#[derive(Deserialize)]
struct RunRecordV1 {
    id: u64,
    command: String,
    target: String,
    environment: String,
    started_at: String,
    elapsed_ms: u64,
    nodes: Vec<NodeRunV1>,
}

#[derive(Deserialize)]
struct NodeRunV1 {
    name: String,
    status: String,
    duration_ms: u64,
    fingerprint: Option<orbital_core::Hash>,
    error: Option<String>,
}

/// 1 -> 2: every run record gets a status (failed if a node failed, else
/// succeeded: format 1 recorded runs only once they ended) and typed node
/// statuses; the active-runs table appears, empty.
fn runs_with_status(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(ACTIVE_RUNS)?;
    let mut runs = txn.open_table(RUNS)?;
    let mut objects = txn.open_table(OBJECTS)?;
    let entries: Vec<(u64, Vec<u8>)> = runs
        .iter()?
        .map(|item| item.map(|(id, hash)| (id.value(), hash.value().to_vec())))
        .collect::<Result<_, _>>()?;
    for (id, old_hash) in entries {
        let Some(bytes) = objects
            .get(old_hash.as_slice())?
            .map(|v| v.value().to_vec())
        else {
            continue;
        };
        let old: RunRecordV1 = decode(&bytes)?;
        let record = upgrade(old);
        let encoded = encode(&record)?;
        let hash = orbital_core::Hash::of(&encoded);
        objects.insert(hash.0.as_slice(), encoded.as_slice())?;
        objects.remove(old_hash.as_slice())?;
        runs.insert(id, hash.0.as_slice())?;
    }
    Ok(())
}

fn upgrade(old: RunRecordV1) -> RunRecord {
    let nodes: Vec<NodeRun> = old
        .nodes
        .into_iter()
        .map(|n| NodeRun {
            status: node_status(&n.status),
            name: n.name,
            duration_ms: n.duration_ms,
            fingerprint: n.fingerprint,
            error: n.error,
        })
        .collect();
    let status = if nodes.iter().any(|n| n.status.failed()) {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    RunRecord {
        id: old.id,
        command: old.command,
        target: old.target,
        environment: old.environment,
        started_at: old.started_at,
        elapsed_ms: old.elapsed_ms,
        status,
        error: None,
        holder: None,
        nodes,
    }
}

/// Format 1 wrote `format!("{:?}", status).to_lowercase()`, or `promoted`.
fn node_status(text: &str) -> NodeStatus {
    match text {
        "success" => NodeStatus::Success,
        "reused" => NodeStatus::Reused,
        "skipped" => NodeStatus::Skipped,
        "pass" => NodeStatus::Pass,
        "fail" => NodeStatus::Fail,
        "warn" => NodeStatus::Warn,
        "promoted" => NodeStatus::Promoted,
        _ => NodeStatus::Error,
    }
}
