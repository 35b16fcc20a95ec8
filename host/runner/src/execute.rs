//! The scheduler: runs selected nodes as their dependencies finish.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use orbital_core::dag::RelationName;
use orbital_core::plan::Action;
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
    /// Already built with the same fingerprint: nothing ran.
    Reused,
    Error,
    Skipped,
}

/// What to do with one selected node.
#[derive(Debug, Clone)]
pub struct Work {
    pub action: Action,
    /// Where the node's fingerprint lives.
    pub physical: RelationName,
    /// What users query: the environment's view.
    pub relation: RelationName,
}

/// Per node id: what to do (selected nodes) and which relation readers of
/// the node read (every node something reads).
#[derive(Debug, Clone, Default)]
pub struct Assignments {
    pub work: Vec<Option<Work>>,
    pub reads: Vec<Option<RelationName>>,
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
/// `runtime` may be `None` when no node needs building.
pub async fn execute(
    runtime: Option<Arc<Runtime>>,
    dag: Arc<Dag>,
    selection: &[NodeId],
    assignments: Arc<Assignments>,
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
            let context = Context {
                runtime: runtime.clone(),
                dag: dag.clone(),
                assignments: assignments.clone(),
                options: options.clone(),
                run_started_at: run_started_at.clone(),
            };
            let task = running.spawn(async move { context.run_node(id).await });
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
        Status::Success | Status::Reused => blocked_by[id].clone(),
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
        relation: relation_text(&wit_relation(&node.relation)),
        rows_affected: None,
        id,
    }
}

pub(crate) fn wit_relation(name: &RelationName) -> Relation {
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

/// What one node task needs.
struct Context {
    runtime: Option<Arc<Runtime>>,
    dag: Arc<Dag>,
    assignments: Arc<Assignments>,
    options: RunOptions,
    run_started_at: String,
}

impl Context {
    async fn run_node(&self, id: NodeId) -> NodeResult {
        let node = &self.dag.nodes[id];
        let started = Instant::now();
        let (target, outcome) = match &self.assignments.work[id] {
            None => (
                wit_relation(&node.relation),
                Err("internal error: the node has no work assigned".to_string()),
            ),
            Some(work) => (wit_relation(&work.relation), self.perform(id, work).await),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, message, rows_affected, error) = match outcome {
            Ok(Done::Built(message, rows)) => (Status::Success, message, rows, None),
            Ok(Done::Reused) => (Status::Reused, "reused".to_string(), None, None),
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

    async fn perform(&self, id: NodeId, work: &Work) -> Result<Done, String> {
        if work.action != Action::Build {
            return Ok(Done::Reused);
        }
        let Some(runtime) = &self.runtime else {
            return Err("internal error: a build without a plugin runtime".into());
        };
        let node = &self.dag.nodes[id];
        let target = wit_relation(&work.physical);
        let built = match node.as_model() {
            None => crate::seed::load(runtime, node, target).await,
            Some(model) => {
                let mut unread = None;
                let rendered =
                    orbital_core::compile::render_model(&self.dag, id, |dep| {
                        match &self.assignments.reads[dep] {
                            Some(relation) => relation.quoted(),
                            None => {
                                unread = Some(self.dag.nodes[dep].name.clone());
                                String::new()
                            }
                        }
                    });
                let sql = rendered.unwrap_or_default();
                if let Some(dep) = unread {
                    return Err(format!("internal error: no relation to read `{dep}` from"));
                }
                let task = ModelTask {
                    model: node.name.clone(),
                    relation: target,
                    previous: None,
                    sql,
                    config: serde_json::to_string(&model.config).unwrap_or_else(|_| "{}".into()),
                    full_refresh: self.options.full_refresh,
                    run_started_at: self.run_started_at.clone(),
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
        built.map(|(message, rows)| Done::Built(message, rows))
    }
}

enum Done {
    Built(String, Option<u64>),
    Reused,
}
