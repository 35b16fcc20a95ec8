//! The scheduler: runs selected nodes as their dependencies finish.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use orbital_core::dag::RelationName;
use orbital_core::data_test::Severity;
use orbital_core::plan::{Action, Repair};
use orbital_core::remote::{BuildTask, Fence, TaskOutcome};
use orbital_core::{Dag, NodeId};
use orbital_plugin_host::types::{ModelTask, Relation, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::database::Warehouse;
use crate::plugins::LoadedPlugins;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Nodes running at once.
    pub threads: usize,
    /// Asks materializations to rebuild from scratch.
    pub full_refresh: bool,
    /// When the run started, RFC 3339 in UTC: what the run record says and
    /// what materializations (snapshots) stamp rows with.
    pub started_at: String,
    /// Stops the run: see [`execute`].
    pub cancel: CancellationToken,
    /// Where stateless builds may be handed (peers); `None`: all built here.
    pub delegate: Option<Delegation>,
}

/// Hands a model's build to a peer (see [`orbital_core::remote`]).
pub trait Delegate: Send + Sync {
    fn build(&self, task: BuildTask) -> orbital_plugin_host::BoxFuture<'_, TaskOutcome>;
}

/// [`RunOptions::delegate`]: a [`Delegate`], shared by the run's tasks.
#[derive(Clone)]
pub struct Delegation(pub Arc<dyn Delegate>);

impl std::fmt::Debug for Delegation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Delegation")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    /// Already built with the same fingerprint: nothing ran.
    Reused,
    Error,
    Skipped,
    /// A data test that found no failing rows.
    Pass,
    /// A data test of severity `error` that found failing rows.
    Fail,
    /// A data test of severity `warn` that found failing rows.
    Warn,
    /// Stopped by the run's cancellation while it ran.
    Cancelled,
}

/// What to do with one selected node.
#[derive(Debug, Clone)]
pub struct Work {
    pub action: Action,
    /// Where the node's fingerprint lives.
    pub physical: RelationName,
    /// What users query: the environment's view.
    pub relation: RelationName,
    /// For a stateful model continuing a table: that table.
    pub previous: Option<RelationName>,
    /// Where the warehouse disagreed with the state store.
    pub repair: Option<Repair>,
}

/// Per node id: what to do (selected nodes) and which relation readers of
/// the node read (every node something reads).
#[derive(Debug, Clone, Default)]
pub struct Assignments {
    pub work: Vec<Option<Work>>,
    pub reads: Vec<Option<RelationName>>,
    /// Per test: the table its failing rows are kept in (`--store-failures`),
    /// or `None`.
    pub failures: Vec<Option<RelationName>>,
}

/// How many failing rows a failed test shows.
pub const FAILING_ROWS_SHOWN: usize = 10;

/// Some rows of a query, as text (`None` for NULL): the failing rows a test
/// shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl From<orbital_plugin_host::types::RowSet> for Rows {
    fn from(set: orbital_plugin_host::types::RowSet) -> Self {
        use orbital_plugin_host::types::Value as V;
        let cell = |value: V| match value {
            V::Null => None,
            V::Boolean(b) => Some(b.to_string()),
            V::Integer(i) => Some(i.to_string()),
            V::Real(r) => Some(r.to_string()),
            V::Bytes(bytes) => Some(format!("<{} bytes>", bytes.len())),
            V::Numeric(text)
            | V::Text(text)
            | V::Date(text)
            | V::Timestamp(text)
            | V::Timestamptz(text)
            | V::Json(text)
            | V::Uuid(text) => Some(text),
        };
        Rows {
            columns: set.columns.into_iter().map(|c| c.name).collect(),
            rows: set
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(cell).collect())
                .collect(),
        }
    }
}

/// The outcome of one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeResult {
    pub name: String,
    /// `model`, `seed` or `test`.
    pub kind: String,
    pub status: Status,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// What was done, e.g. `created view`.
    pub message: String,
    pub relation: String,
    pub rows_affected: Option<u64>,
    /// For a data test: how many rows failed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<u64>,
    /// For a failed data test: its first [`FAILING_ROWS_SHOWN`] failing rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_rows: Option<Rows>,
    /// For a data test with `--store-failures`: the table holding all its
    /// failing rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_failures: Option<String>,
    /// Set where the warehouse disagreed with the state store: `missing`
    /// (its build was gone: built again), `repoint` (the environment's
    /// relation was missing or read another build: pointed back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
    #[serde(skip)]
    pub id: NodeId,
}

/// Progress as it happens, for the CLI's progress display.
#[derive(Debug, Clone)]
pub enum Event {
    Started { id: NodeId },
    Finished(Box<NodeResult>),
}

/// Runs `selection` (in topological order) and returns one result per node
/// that started or was skipped, in that order. Nodes outside the selection
/// are taken as already built. `plugins` may be `None` when no node needs
/// building; data tests query `database` (the run's handle,
/// [`Warehouse::for_run`]) directly.
///
/// A selected test of a model also holds back the selected nodes built from
/// that model (unless the test reads them), which are skipped if it fails:
/// what `orbital build` promises.
///
/// Once `options.cancel` fires, no node starts, and the running ones are stopped:
/// their plugin calls at the next epoch tick, their statements on the
/// server. They end `cancelled`; nodes that never started have no result.
pub async fn execute(
    plugins: Option<Arc<LoadedPlugins>>,
    database: Warehouse,
    dag: Arc<Dag>,
    selection: &[NodeId],
    assignments: Arc<Assignments>,
    options: &RunOptions,
    events: UnboundedSender<Event>,
) -> Vec<NodeResult> {
    let cancel = &options.cancel;
    let mut schedule = Schedule::new(&dag, selection);
    let mut results: Vec<Option<NodeResult>> = vec![None; dag.nodes.len()];
    let mut running = JoinSet::new();
    let mut task_nodes = HashMap::new();
    let mut interrupter: Option<tokio::task::JoinHandle<()>> = None;

    loop {
        if cancel.is_cancelled() && interrupter.is_none() {
            interrupter = Some(tokio::spawn(interrupt_until_done(database.clone())));
        }
        while running.len() < options.threads.max(1) && !cancel.is_cancelled() {
            let Some(id) = schedule.ready.pop_front() else {
                break;
            };
            if let Some(upstream) = &schedule.blocked_by[id] {
                let result = skipped(&dag, id, upstream);
                let _ = events.send(Event::Finished(Box::new(result.clone())));
                schedule.release(&dag, &result);
                results[id] = Some(result);
                continue;
            }
            let _ = events.send(Event::Started { id });
            let context = Context {
                plugins: plugins.clone(),
                database: database.clone(),
                dag: dag.clone(),
                assignments: assignments.clone(),
                options: options.clone(),
            };
            let task = running.spawn(async move { context.run_node(id).await });
            task_nodes.insert(task.id(), id);
        }
        if running.is_empty() {
            break;
        }
        let joined = tokio::select! {
            joined = running.join_next_with_id() => joined,
            () = cancel.cancelled(), if interrupter.is_none() => continue,
        };
        let Some(joined) = joined else {
            break;
        };
        let mut result = match joined {
            Ok((_, result)) => result,
            // A panic in the host is a bug; it fails this node only.
            Err(e) => internal_error(&dag, task_nodes[&e.id()], &e),
        };
        if cancel.is_cancelled() && matches!(result.status, Status::Error | Status::Fail) {
            result.status = Status::Cancelled;
            result.error = Some("cancelled while it ran".into());
        }
        let _ = events.send(Event::Finished(Box::new(result.clone())));
        schedule.release(&dag, &result);
        let id = result.id;
        results[id] = Some(result);
    }
    if let Some(interrupter) = interrupter {
        interrupter.abort();
    }
    selection
        .iter()
        .filter_map(|&id| results[id].take())
        .collect()
}

/// How often a cancelled run's statements are cancelled again while its
/// tasks finish: one sent just as the first cancel ran is caught by the next.
const INTERRUPT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

async fn interrupt_until_done(database: Warehouse) {
    loop {
        if let Err(e) = database.interrupt().await {
            tracing::warn!("cannot cancel the run's statements: {}", e.message);
        }
        tokio::time::sleep(INTERRUPT_EVERY).await;
    }
}

fn internal_error(dag: &Dag, id: NodeId, error: &tokio::task::JoinError) -> NodeResult {
    NodeResult {
        status: Status::Error,
        error: Some(format!("internal error (please report it): {error}")),
        ..skipped(dag, id, "")
    }
}

/// Which selected nodes may start: each waits for its selected upstreams
/// (and a node built from a tested model for that model's selected tests).
struct Schedule {
    selected: Vec<bool>,
    /// Test -> the nodes it holds back.
    gates: HashMap<NodeId, Vec<NodeId>>,
    waiting: Vec<usize>,
    /// The failed node a node inherits, which skips it.
    blocked_by: Vec<Option<String>>,
    ready: VecDeque<NodeId>,
}

impl Schedule {
    fn new(dag: &Dag, selection: &[NodeId]) -> Self {
        let mut selected = vec![false; dag.nodes.len()];
        selection.iter().for_each(|&id| selected[id] = true);
        let mut waiting: Vec<usize> = dag
            .nodes
            .iter()
            .map(|node| node.depends_on.iter().filter(|d| selected[**d]).count())
            .collect();
        let gates = test_gates(dag, selection, &selected);
        for held in gates.values().flatten() {
            waiting[*held] += 1;
        }
        let ready = selection
            .iter()
            .copied()
            .filter(|&id| waiting[id] == 0)
            .collect();
        Self {
            blocked_by: vec![None; dag.nodes.len()],
            selected,
            gates,
            waiting,
            ready,
        }
    }

    /// Marks a node done: what waits on it waits for one fewer node, and
    /// inherits the failure if it did not succeed.
    fn release(&mut self, dag: &Dag, result: &NodeResult) {
        let id = result.id;
        let failure = match result.status {
            Status::Success | Status::Reused | Status::Pass | Status::Warn | Status::Skipped => {
                self.blocked_by[id].clone()
            }
            Status::Error | Status::Fail | Status::Cancelled => Some(dag.nodes[id].name.clone()),
        };
        let children = dag.children[id].iter().filter(|&&c| self.selected[c]);
        let held = self.gates.get(&id).into_iter().flatten();
        for &next in children.chain(held) {
            if failure.is_some() && self.blocked_by[next].is_none() {
                self.blocked_by[next] = failure.clone();
            }
            self.waiting[next] -= 1;
            if self.waiting[next] == 0 {
                self.ready.push_back(next);
            }
        }
    }
}

/// For each selected test of a model: the selected non-test nodes that read
/// that model, except any the test itself reads (which would wait on each
/// other).
fn test_gates(dag: &Dag, selection: &[NodeId], selected: &[bool]) -> HashMap<NodeId, Vec<NodeId>> {
    let mut gates = HashMap::new();
    for &test in selection {
        let Some(model) = dag.nodes[test].as_test().and_then(|t| t.checks) else {
            continue;
        };
        let upstream = dag.ancestors(test, None);
        let held: Vec<NodeId> = dag.children[model]
            .iter()
            .copied()
            .filter(|&c| selected[c] && !dag.nodes[c].is_test() && !upstream.contains(&c))
            .collect();
        if !held.is_empty() {
            gates.insert(test, held);
        }
    }
    gates
}

fn skipped(dag: &Dag, id: NodeId, upstream: &str) -> NodeResult {
    let node = &dag.nodes[id];
    NodeResult {
        name: node.name.clone(),
        kind: node.kind_name().to_string(),
        status: Status::Skipped,
        duration_ms: 0,
        error: Some(format!("skipped because upstream `{upstream}` failed")),
        message: String::new(),
        relation: if node.is_test() {
            node.name.clone()
        } else {
            relation_text(&wit_relation(&node.relation))
        },
        rows_affected: None,
        failures: None,
        failing_rows: None,
        stored_failures: None,
        repair: None,
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
    plugins: Option<Arc<LoadedPlugins>>,
    database: Warehouse,
    dag: Arc<Dag>,
    assignments: Arc<Assignments>,
    options: RunOptions,
}

impl Context {
    async fn run_node(&self, id: NodeId) -> NodeResult {
        let node = &self.dag.nodes[id];
        let started = Instant::now();
        if let Some(test) = node.as_test() {
            return self.run_test(id, test.severity, started).await;
        }
        let work = self.assignments.work[id].as_ref();
        let (target, outcome) = match work {
            None => (
                wit_relation(&node.relation),
                Err("internal error: the node has no work assigned".to_string()),
            ),
            Some(work) => (wit_relation(&work.relation), self.perform(id, work).await),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let repair = work.and_then(|w| w.repair);
        let (status, mut message, rows_affected, error) = match outcome {
            Ok(Done::Built(message, rows)) => (Status::Success, message, rows, None),
            Ok(Done::Reused) => (Status::Reused, "reused".to_string(), None, None),
            Ok(Done::BuiltMeanwhile(by)) => {
                let message = match by {
                    Some(n) => format!("reused: run {n} built it meanwhile"),
                    None => "reused: another run built it (noted in the warehouse)".to_string(),
                };
                (Status::Reused, message, None, None)
            }
            Err(error) => (Status::Error, String::new(), None, Some(error)),
        };
        match repair {
            Some(Repair::Missing) => {
                message = format!("{message} (its build was missing from the warehouse)")
            }
            Some(Repair::Repoint) => {
                message =
                    "repointed: the environment's relation was missing or read another build".into()
            }
            None => {}
        }
        NodeResult {
            name: node.name.clone(),
            kind: node.kind_name().to_string(),
            status,
            duration_ms,
            error,
            message,
            relation: relation_text(&target),
            rows_affected,
            failures: None,
            failing_rows: None,
            stored_failures: None,
            repair,
            id,
        }
    }

    /// Counts the rows a test's query returns: none is a pass.
    async fn run_test(&self, id: NodeId, severity: Severity, started: Instant) -> NodeResult {
        let node = &self.dag.nodes[id];
        // Kept failing rows are counted and shown from their table, not by
        // running the test again.
        let mut stored_failures = None;
        let failing = match self.render(id) {
            Ok(sql) => match self.store_failures(id, &sql).await {
                Ok(Some(table)) => {
                    let kept = format!("SELECT * FROM {}", table.quoted());
                    stored_failures = Some(table);
                    Ok(kept)
                }
                Ok(None) => Ok(sql),
                Err(e) => Err(e),
            },
            Err(error) => Err(error),
        };
        let counted = match &failing {
            Ok(sql) => self.count_failures(sql).await,
            Err(error) => Err(error.clone()),
        };
        let mut failing_rows = None;
        if let (Ok(sql), Ok(1..)) = (&failing, &counted) {
            let sample =
                format!("SELECT * FROM (\n{sql}\n) AS orbital_failures LIMIT {FAILING_ROWS_SHOWN}");
            match self.database.query(crate::database::plain(&sample)).await {
                Ok(rows) => failing_rows = Some(Rows::from(rows)),
                Err(e) => {
                    tracing::warn!("{}: cannot read its failing rows: {}", node.name, e.message)
                }
            }
        }
        let (status, message, failures, error) = match counted {
            Ok(0) => (Status::Pass, "pass".to_string(), Some(0), None),
            Ok(n) => {
                let status = match severity {
                    Severity::Error => Status::Fail,
                    Severity::Warn => Status::Warn,
                };
                let rows = if n == 1 { "row" } else { "rows" };
                let text = match &stored_failures {
                    Some(table) => format!("{n} failing {rows}, kept in {table}"),
                    None => format!("{n} failing {rows}"),
                };
                (
                    status,
                    text.clone(),
                    Some(n),
                    (status == Status::Fail).then_some(text),
                )
            }
            Err(error) => (Status::Error, String::new(), None, Some(error)),
        };
        NodeResult {
            name: node.name.clone(),
            kind: node.kind_name().to_string(),
            status,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error,
            message,
            // What the progress lines show: the test's name.
            relation: node.name.clone(),
            rows_affected: None,
            failures,
            failing_rows,
            stored_failures: stored_failures.map(|r: RelationName| r.to_string()),
            repair: None,
            id,
        }
    }

    /// How many rows the test query `sql` returns.
    async fn count_failures(&self, sql: &str) -> Result<u64, String> {
        let count = format!("SELECT count(*) FROM (\n{sql}\n) AS orbital_failures");
        let rows = self
            .database
            .query(crate::database::plain(&count))
            .await
            .map_err(|e| e.message)?;
        match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Integer(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
            other => Err(format!("the failing-row count came back as {other:?}")),
        }
    }

    /// Keeps every row test `id`'s query `sql` returns in the table the run
    /// assigned it, replacing the last run's (none with no such table).
    async fn store_failures(&self, id: NodeId, sql: &str) -> Result<Option<RelationName>, String> {
        let Some(Some(table)) = self.assignments.failures.get(id) else {
            return Ok(None);
        };
        let quoted = table.quoted();
        let statements = vec![
            crate::database::plain(&format!("DROP TABLE IF EXISTS {quoted}")),
            crate::database::plain(&format!(
                "CREATE TABLE {quoted} AS SELECT * FROM (\n{sql}\n) AS orbital_failures"
            )),
        ];
        self.database
            .transaction(statements)
            .await
            .map_err(|e| format!("cannot store its failing rows in {table}: {}", e.message))?;
        Ok(Some(table.clone()))
    }

    /// A model's or test's SQL reading the relations this run assigned; for
    /// a build continuing the table `this` (quoted), its incremental SQL.
    fn render(&self, id: NodeId) -> Result<String, String> {
        self.render_build(id, None)
    }

    fn render_build(&self, id: NodeId, this: Option<&str>) -> Result<String, String> {
        let mut unread = None;
        let rendered = orbital_core::compile::render_build(&self.dag, id, this, |dep| match &self
            .assignments
            .reads[dep]
        {
            Some(relation) => relation.quoted(),
            None => {
                unread = Some(self.dag.nodes[dep].name.clone());
                String::new()
            }
        });
        match unread {
            Some(dep) => Err(format!(
                "`{dep}` is not built in this environment; build it first (e.g. orbital build --select +{})",
                self.dag.nodes[id].name
            )),
            None => Ok(rendered.unwrap_or_default()),
        }
    }

    async fn perform(&self, id: NodeId, work: &Work) -> Result<Done, String> {
        if !work.action.runs() {
            return Ok(Done::Reused);
        }
        // Without a full refresh, a fresh build another run finished while
        // this one waited for it is reused; anything else is built anyway,
        // after it.
        let reuse = work.action == Action::Build && !self.options.full_refresh;
        let claim = match self.database.claim(&work.physical, reuse).await {
            Ok(crate::Claimed::Build(claim)) => claim,
            Ok(crate::Claimed::Built { by }) => return Ok(Done::BuiltMeanwhile(by)),
            Err(e) => return Err(e.message),
        };
        let built = self.build(id, work).await;
        if built.is_ok() {
            claim.built().await;
        }
        built
    }

    async fn build(&self, id: NodeId, work: &Work) -> Result<Done, String> {
        let Some(plugins) = &self.plugins else {
            return Err("internal error: a build without loaded plugins".into());
        };
        let node = &self.dag.nodes[id];
        let target = wit_relation(&work.physical);
        let built = match node.as_model() {
            None => crate::seed::load(plugins, &self.database, node, target).await,
            Some(model) => {
                // A full refresh rebuilds from scratch, whatever the plan continues.
                let previous = work
                    .previous
                    .as_ref()
                    .filter(|_| !self.options.full_refresh);
                let this = previous.map(RelationName::quoted);
                let sql = self.render_build(id, this.as_deref())?;
                let config = serde_json::to_string(&model.config).unwrap_or_else(|_| "{}".into());
                let (pre, post) = (
                    model.config.hooks(orbital_core::project::PRE_HOOK),
                    model.config.hooks(orbital_core::project::POST_HOOK),
                );
                let mut note = None;
                // Hooks run here, around the build: a peer would not run them.
                if previous.is_none() && pre.is_empty() && post.is_empty() {
                    match self.delegated(plugins, node, work, &sql, &config).await {
                        Ok(done) => return done,
                        Err(why) => note = why,
                    }
                }
                let task = ModelTask {
                    model: node.name.clone(),
                    relation: target,
                    previous: previous.map(wit_relation),
                    sql,
                    config,
                    full_refresh: self.options.full_refresh,
                    run_started_at: self.options.started_at.clone(),
                };
                self.hooks(orbital_core::project::PRE_HOOK, &pre, &work.physical)
                    .await?;
                let built =
                    materialize(plugins, &self.database, &model.config.materialized, &task).await?;
                self.hooks(orbital_core::project::POST_HOOK, &post, &work.physical)
                    .await?;
                Ok(match note {
                    Some(why) => (format!("{} ({why})", built.0), built.1),
                    None => built,
                })
            }
        };
        built.map(|(message, rows)| Done::Built(message, rows))
    }
}

impl Context {
    /// Runs a model's `hooks` of `key` (`pre_hook`, `post_hook`) in order,
    /// with `{{ this }}` as the relation the build makes.
    async fn hooks(&self, key: &str, hooks: &[&str], this: &RelationName) -> Result<(), String> {
        let quoted = this.quoted();
        for (index, hook) in hooks.iter().enumerate() {
            let sql = orbital_core::project::hook_sql(hook, &quoted);
            if let Err(e) = self.database.execute(crate::database::plain(&sql)).await {
                let which = match hooks.len() {
                    1 => String::new(),
                    n => format!(" {} of {n}", index + 1),
                };
                return Err(format!("{key}{which} failed: {}", e.message));
            }
        }
        Ok(())
    }
}

/// Builds a task a peer handed over, with `plugins` and `database` (this
/// process's connection to the warehouse): the materialization's message
/// and rows. The caller checked that `plugins` are the ones the task names.
pub async fn build_task(
    plugins: &LoadedPlugins,
    database: &Warehouse,
    task: &BuildTask,
) -> Result<(String, Option<u64>), String> {
    let model_task = ModelTask {
        model: task.model.clone(),
        relation: wit_relation(&task.relation),
        previous: None,
        sql: task.sql.clone(),
        config: task.config.clone(),
        full_refresh: task.full_refresh,
        run_started_at: task.run_started_at.clone(),
    };
    materialize(plugins, database, &task.materialized, &model_task).await
}

/// Runs `task` through the materialization `materialized` names, with the
/// task's own handle on `database`: its message and rows.
async fn materialize(
    plugins: &LoadedPlugins,
    database: &Warehouse,
    materialized: &str,
    task: &ModelTask,
) -> Result<(String, Option<u64>), String> {
    let Some(materialization) = plugins.materializations.get(materialized) else {
        return Err(format!(
            "no plugin provides materialized = '{materialized}'"
        ));
    };
    plugins
        .host
        .materialize(
            &plugins.adapter,
            materialization,
            database.for_task(&task.model),
            task,
            database.interrupt_flag(),
        )
        .await
        .map(|outcome| (outcome.message, outcome.rows_affected))
        .map_err(|e| e.to_string())
}

impl Context {
    /// Hands the build of a stateless model to a peer, if the run may: its
    /// result, or `Err` to build it here, with why when a peer had it (it
    /// was lost, or refused it).
    async fn delegated(
        &self,
        plugins: &LoadedPlugins,
        node: &orbital_core::Node,
        work: &Work,
        sql: &str,
        config: &str,
    ) -> Result<Result<Done, String>, Option<String>> {
        let Some(Delegation(delegate)) = self.options.delegate.as_ref() else {
            return Err(None);
        };
        let Some(model) = node.as_model() else {
            return Err(None);
        };
        let materialized = model.config.materialized.as_str();
        let hashes = plugins.plugin_hashes();
        let strategy = hashes.strategies.get(materialized);
        let stateless = orbital_core::remote::STATELESS.contains(&materialized);
        let (true, true, Some(strategy)) = (work.action == Action::Build, stateless, strategy)
        else {
            return Err(None);
        };
        let task = BuildTask {
            model: node.name.clone(),
            materialized: materialized.to_string(),
            relation: work.physical.clone(),
            sql: sql.to_string(),
            config: config.to_string(),
            full_refresh: self.options.full_refresh,
            run_started_at: self.options.started_at.clone(),
            adapter: hashes.adapter,
            strategy: *strategy,
            target: String::new(),
            warehouse: String::new(),
            fence: Fence {
                run: 0,
                token: 0,
                attempt: 0,
            },
        };
        match delegate.build(task).await {
            TaskOutcome::Built {
                peer,
                message,
                rows,
            } => Ok(Ok(Done::Built(format!("{message} (on peer {peer})"), rows))),
            TaskOutcome::Failed { peer, error } => Ok(Err(format!("on peer {peer}: {error}"))),
            TaskOutcome::NotTaken { why } if why.is_empty() => Err(None),
            TaskOutcome::NotTaken { why } => {
                tracing::info!("{}: built here: {why}", node.name);
                Err(Some(why))
            }
        }
    }
}

enum Done {
    Built(String, Option<u64>),
    Reused,
    /// Another run built it ([`crate::Claimed::Built`]).
    BuiltMeanwhile(Option<u64>),
}
