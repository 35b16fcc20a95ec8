//! The scheduler: runs selected nodes as their dependencies finish.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use orbital_core::{Dag, NodeId};
use orbital_plugins::types::{ModelTask, Relation};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

use crate::plugins::Runtime;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Nodes running at once.
    pub threads: usize,
    /// Asks materializations to rebuild from scratch.
    pub full_refresh: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Error,
    Skipped,
}

/// The outcome of one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    pub name: String,
    /// `model` or `seed`.
    pub kind: &'static str,
    pub status: Status,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// What was done, e.g. `created view`.
    pub message: String,
    pub relation: String,
    pub rows_affected: Option<u64>,
    #[serde(skip)]
    pub id: NodeId,
}

/// Progress as it happens, for the CLI's progress display.
#[derive(Debug, Clone)]
pub enum Event {
    Started { id: NodeId },
    Finished(NodeResult),
}

/// Runs `selection` (in topological order) and returns one result per node,
/// in that order. Nodes outside the selection are taken as already built.
pub async fn execute(
    runtime: Arc<Runtime>,
    dag: Arc<Dag>,
    selection: &[NodeId],
    options: &RunOptions,
    events: UnboundedSender<Event>,
) -> Vec<NodeResult> {
    let mut selected = vec![false; dag.nodes.len()];
    selection.iter().for_each(|&id| selected[id] = true);
    let mut waiting: Vec<usize> = (0..dag.nodes.len())
        .map(|id| {
            dag.nodes[id]
                .depends_on
                .iter()
                .filter(|d| selected[**d])
                .count()
        })
        .collect();
    let mut blocked_by: Vec<Option<String>> = vec![None; dag.nodes.len()];
    let mut ready: VecDeque<NodeId> = selection
        .iter()
        .copied()
        .filter(|&id| waiting[id] == 0)
        .collect();
    let mut results: Vec<Option<NodeResult>> = vec![None; dag.nodes.len()];
    let mut running = JoinSet::new();
    let mut task_nodes = HashMap::new();
    let run_started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();

    loop {
        while running.len() < options.threads.max(1) {
            let Some(id) = ready.pop_front() else { break };
            if let Some(upstream) = &blocked_by[id] {
                let result = skipped(&dag, id, upstream);
                let _ = events.send(Event::Finished(result.clone()));
                release(
                    &dag,
                    id,
                    &result,
                    &selected,
                    &mut waiting,
                    &mut blocked_by,
                    &mut ready,
                );
                results[id] = Some(result);
                continue;
            }
            let _ = events.send(Event::Started { id });
            let (runtime, dag, options, started_at) = (
                runtime.clone(),
                dag.clone(),
                options.clone(),
                run_started_at.clone(),
            );
            let task = running
                .spawn(async move { run_node(&runtime, &dag, id, &options, &started_at).await });
            task_nodes.insert(task.id(), id);
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let result = match joined {
            Ok((_, result)) => result,
            // A panic in the host is a bug; it fails this node only.
            Err(e) => internal_error(&dag, task_nodes[&e.id()], &e),
        };
        let _ = events.send(Event::Finished(result.clone()));
        let id = result.id;
        release(
            &dag,
            id,
            &result,
            &selected,
            &mut waiting,
            &mut blocked_by,
            &mut ready,
        );
        results[id] = Some(result);
    }
    selection
        .iter()
        .filter_map(|&id| results[id].take())
        .collect()
}

fn internal_error(dag: &Dag, id: NodeId, error: &tokio::task::JoinError) -> NodeResult {
    NodeResult {
        status: Status::Error,
        error: Some(format!("internal error (please report it): {error}")),
        ..skipped(dag, id, "")
    }
}

/// Marks `id` done: its selected children wait for one fewer node, and
/// inherit the failure if it did not succeed.
fn release(
    dag: &Dag,
    id: NodeId,
    result: &NodeResult,
    selected: &[bool],
    waiting: &mut [usize],
    blocked_by: &mut [Option<String>],
    ready: &mut VecDeque<NodeId>,
) {
    let failure = match result.status {
        Status::Success => blocked_by[id].clone(),
        Status::Error => Some(dag.nodes[id].name.clone()),
        Status::Skipped => blocked_by[id].clone(),
    };
    for &child in &dag.children[id] {
        if !selected[child] {
            continue;
        }
        if failure.is_some() && blocked_by[child].is_none() {
            blocked_by[child] = failure.clone();
        }
        waiting[child] -= 1;
        if waiting[child] == 0 {
            ready.push_back(child);
        }
    }
}

fn skipped(dag: &Dag, id: NodeId, upstream: &str) -> NodeResult {
    let node = &dag.nodes[id];
    NodeResult {
        name: node.name.clone(),
        kind: node.kind_name(),
        status: Status::Skipped,
        duration_ms: 0,
        error: Some(format!("skipped because upstream `{upstream}` failed")),
        message: String::new(),
        relation: relation_text(&relation(dag, id)),
        rows_affected: None,
        id,
    }
}

pub(crate) fn relation(dag: &Dag, id: NodeId) -> Relation {
    let name = &dag.nodes[id].relation;
    Relation {
        database: None,
        schema: name.schema.clone(),
        identifier: name.identifier.clone(),
    }
}

fn relation_text(relation: &Relation) -> String {
    match &relation.schema {
        Some(schema) => format!("{schema}.{}", relation.identifier),
        None => relation.identifier.clone(),
    }
}

async fn run_node(
    runtime: &Runtime,
    dag: &Dag,
    id: NodeId,
    options: &RunOptions,
    run_started_at: &str,
) -> NodeResult {
    let node = &dag.nodes[id];
    let started = Instant::now();
    let target = relation(dag, id);
    let outcome = match node.as_model() {
        None => crate::seed::load(runtime, node, target.clone()).await,
        Some(model) => {
            let task = ModelTask {
                model: node.name.clone(),
                relation: target.clone(),
                previous: None,
                sql: model.sql.clone(),
                config: serde_json::to_string(&model.config).unwrap_or_else(|_| "{}".into()),
                full_refresh: options.full_refresh,
                run_started_at: run_started_at.to_string(),
            };
            match runtime.materializations.get(&model.config.materialized) {
                Some(materialization) => runtime
                    .host
                    .materialize(
                        &runtime.adapter,
                        materialization,
                        runtime.database.for_task(&node.name),
                        &task,
                    )
                    .await
                    .map(|outcome| (outcome.message, outcome.rows_affected))
                    .map_err(|e| e.to_string()),
                None => Err(format!(
                    "no plugin provides materialized = '{}'",
                    model.config.materialized
                )),
            }
        }
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (status, message, rows_affected, error) = match outcome {
        Ok((message, rows)) => (Status::Success, message, rows, None),
        Err(error) => (Status::Error, String::new(), None, Some(error)),
    };
    NodeResult {
        name: node.name.clone(),
        kind: node.kind_name(),
        status,
        duration_ms,
        error,
        message,
        relation: relation_text(&target),
        rows_affected,
        id,
    }
}
