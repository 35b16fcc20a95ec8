//! `seed`, `run`, `build` and `test`: plan against the environment, build
//! what it lacks, point the environment at the results, record everything.
//!
//! The order is what keeps a crash harmless: physical relations are built
//! (each atomically, under a name no environment uses yet), then the
//! environment's views are replaced in one database transaction, then the
//! store records the builds, the environment's pointers and the run in one
//! redb transaction. A process killed before the last step leaves physical
//! relations the store does not know, which the next run simply builds
//! again, and a run record still `running`, which the next open of the
//! store marks `interrupted`. A cancelled run stops before publishing: the
//! same as a crash, but recorded as `cancelled`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use orbital_cas::{BuildRecord, EnvEntry, EnvVersion, NodeRun, NodeStatus, RunRecord, RunStatus};
use orbital_core::Selection;
use orbital_core::plan::{Action, Plan};
use orbital_runner::{Assignments, NodeResult, Publish, RunOptions, Status, Work};
use tokio_util::sync::CancellationToken;

use crate::error::EngineError;
use crate::events::{Event, Events, RunOutcome, send};
use crate::request::{RunCommand, RunRequest};
use crate::session::{Connected, Records, Session};
use crate::{Engine, in_place, lock};

/// How long a run waits for another process's run on the same warehouse.
const RUN_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

impl Engine {
    /// Runs `request`: the one way to run, for `seed`, `run`, `build` and
    /// `test`. Events go to `events` as they happen; `cancel` stops the run
    /// cleanly (nothing is published; the run is recorded `cancelled`).
    ///
    /// A second run on the same (target, environment) in this process waits
    /// for the first; one in another process fails at once with
    /// [`EngineError::Busy`]. `Err` means no node ran; a run whose nodes
    /// ran returns `Ok`, with any failure after them in
    /// [`RunOutcome::error`].
    pub async fn run(
        &self,
        request: RunRequest,
        events: Events,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, EngineError> {
        let started = Instant::now();
        let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        if !request.peers.is_empty() && self.sharing().is_none() {
            return Err(EngineError::Usage(format!(
                "this run names peers ({}) but has none: run it through a daemon whose peers.toml lists them",
                request.peers.join(", ")
            )));
        }
        let session = Session::opened(
            self,
            &request.project,
            &request.selector,
            request.env.as_deref(),
            request.threads,
            Records::OnConnect,
        )
        .await?;
        in_place(|| check_before_connecting(&session, &request))?;
        let mut ledger = Ledger {
            session: &session,
            command: request.command,
            started_at: started_at.clone(),
            started,
            id: None,
        };
        let queue = self.queue(
            &session.state_dir(),
            &session.target_name,
            &session.environment,
        );
        let _turn = match queue.clone().try_lock_owned() {
            Ok(turn) => turn,
            Err(_) => {
                let id = ledger.open(RunStatus::Queued)?;
                send(
                    &events,
                    Event::RunQueued {
                        run: id,
                        target: session.target_name.clone(),
                        environment: session.environment.clone(),
                    },
                );
                tokio::select! {
                    turn = queue.lock_owned() => turn,
                    () = cancel.cancelled() => {
                        return Err(ledger.fail(EngineError::Cancelled, &events));
                    }
                }
            }
        };
        let locks = lock::gc(&session.state_dir(), false).and_then(|gc| {
            lock::environment(
                &session.state_dir(),
                &session.target_name,
                &session.environment,
            )
            .map(|env| (gc, env))
        });
        let _locks = match locks {
            Ok(locks) => locks,
            Err(e) => return Err(ledger.fail(e, &events)),
        };
        let started = (started_at.as_str(), started);
        let ran = run_nodes(&mut ledger, &request, &events, &cancel, started).await;
        let outcome = match ran {
            Ok(ran) => Ok(ledger.finish(ran, &events)),
            Err(e) => Err(ledger.fail(e, &events)),
        };
        drop(ledger);
        crate::discard(session);
        outcome
    }
}

/// What a selection that cannot resolve, or a malformed seed, stops before
/// anything connects (and a SQLite file is created).
fn check_before_connecting(session: &Session, request: &RunRequest) -> Result<(), EngineError> {
    let selector = &request.selector;
    if Selection::uses_state(&selector.select, &selector.exclude) {
        return Ok(());
    }
    let mut early = Selection::resolve(&session.compiled.dag, &selector.select, &selector.exclude)?;
    if request.command.loads_seeds() {
        early
            .nodes
            .retain(|&id| session.compiled.dag.nodes[id].is_seed());
        crate::compile::check_seeds(&session.project, &session.compiled, &early)?;
    }
    Ok(())
}

/// What the nodes did, and what went wrong after them.
struct Ran {
    results: Vec<NodeResult>,
    cancelled: bool,
    after: Option<EngineError>,
}

/// A run's record in the store, from its start to its end.
struct Ledger<'a> {
    session: &'a Session,
    command: RunCommand,
    started_at: String,
    started: Instant,
    id: Option<u64>,
}

impl Ledger<'_> {
    /// Records the run as `status` (queued or running), taking its id if it
    /// has none yet.
    fn open(&mut self, status: RunStatus) -> Result<u64, EngineError> {
        let mut record = self.record(status, Vec::new(), None);
        let id = in_place(|| {
            self.session.store.write(|w| match self.id {
                Some(id) => {
                    record.id = id;
                    w.update_run(&record).map(|()| id)
                }
                None => w.add_run(record),
            })
        })?;
        self.id = Some(id);
        Ok(id)
    }

    fn record(&self, status: RunStatus, nodes: Vec<NodeRun>, error: Option<String>) -> RunRecord {
        RunRecord {
            id: self.id.unwrap_or_default(),
            command: self.command.name().to_string(),
            target: self.session.target_name.clone(),
            environment: self.session.environment.clone(),
            started_at: self.started_at.clone(),
            elapsed_ms: millis(self.started.elapsed()),
            status,
            error,
            holder: (!status.is_final()).then(crate::process::me),
            nodes,
        }
    }

    /// Records that the run stopped on `error` before its nodes ran (if it
    /// has a record); returns the error.
    fn fail(&self, error: EngineError, events: &Events) -> EngineError {
        let Some(id) = self.id else {
            return error;
        };
        let status = match error.kind() {
            crate::ErrorKind::Cancelled => RunStatus::Cancelled,
            _ => RunStatus::Failed,
        };
        let mut record = self.record(status, Vec::new(), Some(error.to_string()));
        record.id = id;
        if let Err(e) = in_place(|| self.session.store.write(|w| w.update_run(&record))) {
            tracing::warn!("cannot record the end of run {id}: {e}");
        }
        send(
            events,
            Event::RunFinished {
                run: id,
                status,
                elapsed_ms: record.elapsed_ms,
            },
        );
        error
    }

    /// The outcome of a run whose nodes ran. A run that recorded itself has
    /// its final record already; a cancelled one, or one whose recording
    /// failed, is recorded here.
    fn finish(&self, ran: Ran, events: &Events) -> RunOutcome {
        let id = self.id.unwrap_or_default();
        let failed = ran
            .results
            .iter()
            .any(|r| matches!(r.status, Status::Error | Status::Fail));
        let status = if ran.cancelled {
            RunStatus::Cancelled
        } else if failed || ran.after.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        let recorded = !ran.cancelled && ran.after.is_none();
        if !recorded {
            let nodes = ran.results.iter().map(|r| node_run(r, None)).collect();
            let mut record =
                self.record(status, nodes, ran.after.as_ref().map(ToString::to_string));
            record.id = id;
            if let Err(e) = in_place(|| self.session.store.write(|w| w.update_run(&record))) {
                tracing::warn!("cannot record the end of run {id}: {e}");
            }
        }
        let elapsed = self.started.elapsed();
        send(
            events,
            Event::RunFinished {
                run: id,
                status,
                elapsed_ms: millis(elapsed),
            },
        );
        RunOutcome {
            run: id,
            status,
            results: ran.results,
            elapsed,
            error: ran.after,
        }
    }
}

/// Connects, records the run as running, plans, runs the nodes, publishes
/// and records the outcome: the part of a run that holds its locks.
async fn run_nodes(
    ledger: &mut Ledger<'_>,
    request: &RunRequest,
    events: &Events,
    cancel: &CancellationToken,
    (started_at, request_started): (&str, Instant),
) -> Result<Ran, EngineError> {
    let session = ledger.session;
    let command = request.command;
    let selector = &request.selector;
    let uses_state = Selection::uses_state(&selector.select, &selector.exclude);
    let mut connected = session.connect_sharing().await?;
    if !delegates_to(request, &connected).is_empty() && connected.warehouse.is_none() {
        // Peers check their target against the warehouse's identity: a
        // run that may hand them builds gives the warehouse one first.
        connected.warehouse = record_identity(&connected.database).await?;
    }
    let run_lock = lock_environment(session, &connected).await?;
    // Recorded once it holds the warehouse: a run that cannot connect or
    // lock leaves no record (unless it queued in this process first).
    let id = ledger.open(RunStatus::Running)?;
    let mut selection = session.select(selector, &connected)?;
    let dag = &session.compiled.dag;
    if command.runs_tests() {
        with_tests(dag, &mut selection);
    }
    selection
        .nodes
        .retain(|&id| command.includes(&dag.nodes[id]));
    if command.loads_seeds() && uses_state {
        in_place(|| crate::compile::check_seeds(&session.project, &session.compiled, &selection))?;
    }
    let plan = session.plan(&connected, &selection, request.full_refresh)?;
    if command == RunCommand::Build {
        // `build` runs a test only when all it reads will exist: a
        // relationships test to an unselected, never-built model waits
        // for a build that has it (`orbital test` runs it and says why not).
        selection.nodes.retain(|&id| {
            !dag.nodes[id].is_test()
                || dag.nodes[id]
                    .depends_on
                    .iter()
                    .all(|&d| plan.reads[d].is_some())
        });
    }
    // Only a whole-project run may drop what the project no longer has.
    let removing = selector.is_everything();
    let removed: Vec<String> = if removing {
        plan.removed.clone()
    } else {
        Vec::new()
    };
    let database = connected
        .database
        .for_run(id, orbital_plugin_host::Interrupt::default());
    let plugins = match &connected.loaded {
        Some(loaded) => Some(loaded.clone()),
        None if needs_plugins(&plan, &removed) => {
            let strategies = plan
                .steps
                .iter()
                .filter(|step| step.action.runs())
                .filter_map(|step| dag.nodes[step.id].as_model())
                .map(|model| model.config.materialized.as_str())
                .collect();
            Some(session.load_plugins_for(&connected, &strategies).await?)
        }
        None => None,
    };
    if let Some(plugins) = &plugins {
        let strategies = plan.steps.iter().filter_map(|step| {
            let node = &dag.nodes[step.id];
            node.as_model()
                .filter(|_| step.action.runs())
                .map(|m| (node.name.as_str(), m.config.materialized.as_str()))
        });
        plugins.check_strategies(strategies)?;
        if let Some(schema) = &session.target.schema
            && plan.steps.iter().any(|s| s.action.runs())
        {
            orbital_runner::ensure_schemas(plugins, std::slice::from_ref(schema)).await?;
        }
    }
    let mut assignments = assign(session, &connected, &plan);
    assignments.failures = failure_tables(session, request.store_failures);
    let assignments = Arc::new(assignments);
    let options = RunOptions {
        threads: session.threads,
        full_refresh: request.full_refresh,
        started_at: started_at.to_string(),
        cancel: cancel.clone(),
        delegate: delegation(session, &connected, request, id),
    };
    send(
        events,
        started_event(id, session, request.command, &selection),
    );
    let results = execute(
        id,
        session,
        plugins.clone(),
        database,
        &selection.nodes,
        assignments,
        &options,
        events,
    )
    .await;
    if cancel.is_cancelled() {
        crate::discard(connected);
        return Ok(Ran {
            results,
            cancelled: true,
            after: None,
        });
    }
    // What went wrong after the nodes ran (publishing, recording) is
    // reported after their results, never instead of them.
    let after = publish_and_record(
        id,
        session,
        &connected,
        &plan,
        &results,
        &removed,
        plugins.as_deref(),
        &run_lock,
        events,
        RunInfo {
            command,
            started_at,
            started: request_started,
            removing,
        },
    )
    .await
    .err();
    drop(run_lock);
    crate::discard(connected);
    Ok(Ran {
        results,
        cancelled: false,
        after,
    })
}

/// The event that says which nodes start now.
fn started_event(id: u64, session: &Session, command: RunCommand, selection: &Selection) -> Event {
    let dag = &session.compiled.dag;
    let count = |kind: &str| {
        selection
            .nodes
            .iter()
            .filter(|n| dag.nodes[**n].kind_name() == kind)
            .count()
    };
    Event::RunStarted {
        run: id,
        command,
        target: session.target_name.clone(),
        environment: session.environment.clone(),
        threads: session.threads,
        seeds: count("seed"),
        models: count("model"),
        tests: count("test"),
    }
}

/// Runs the nodes, passing the runner's progress on as the run's events.
#[allow(clippy::too_many_arguments)]
async fn execute(
    id: u64,
    session: &Session,
    plugins: Option<Arc<orbital_runner::LoadedPlugins>>,
    database: orbital_runner::Warehouse,
    selection: &[orbital_core::NodeId],
    assignments: Arc<Assignments>,
    options: &RunOptions,
    events: &Events,
) -> Vec<NodeResult> {
    let dag = session.compiled.dag.clone();
    let (sender, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let work = orbital_runner::execute(
        plugins,
        database,
        dag.clone(),
        selection,
        assignments,
        options,
        sender,
    );
    let forward = async {
        while let Some(event) = progress.recv().await {
            send(
                events,
                match event {
                    orbital_runner::Event::Started { id: node } => Event::NodeStarted {
                        run: id,
                        node: dag.nodes[node].name.clone(),
                        kind: dag.nodes[node].kind_name().to_string(),
                    },
                    orbital_runner::Event::Finished(result) => Event::NodeFinished {
                        run: id,
                        path: dag.nodes[result.id].path.display().to_string(),
                        result: *result,
                    },
                },
            );
        }
    };
    let (results, ()) = tokio::join!(work, forward);
    results
}

struct RunInfo<'a> {
    command: RunCommand,
    started_at: &'a str,
    started: Instant,
    /// A whole-project run, which may drop what the project no longer has.
    removing: bool,
}

/// Points the environment at what was built, then records the run.
#[allow(clippy::too_many_arguments)]
async fn publish_and_record(
    id: u64,
    session: &Session,
    connected: &Connected,
    plan: &Plan,
    results: &[NodeResult],
    removed: &[String],
    plugins: Option<&orbital_runner::LoadedPlugins>,
    run_lock: &orbital_runner::RunLock,
    events: &Events,
    info: RunInfo<'_>,
) -> Result<(), EngineError> {
    let dag = &session.compiled.dag;
    let mut warehouse = connected.warehouse.clone();
    let changes = publications(session, connected, plan, results, removed);
    run_lock.check().await.map_err(|e| {
        EngineError::Database(format!("nothing was published or recorded: {}", e.message))
    })?;
    if let Some(plugins) = plugins {
        if warehouse.is_none() {
            warehouse = record_identity(&connected.database).await?;
        }
        send(
            events,
            Event::Publishing {
                run: id,
                changes: changes.len(),
            },
        );
        orbital_runner::publish(plugins, &changes).await?;
    }
    let Some(warehouse) = &warehouse else {
        if !session.compiled.fresh_parses.is_empty() {
            in_place(|| session.store.write(|w| save_caches(w, session)))?;
        }
        return Ok(());
    };
    let version = match pointers_change(session, connected, plan, results, removed) {
        true => Some(bump_environment(session, connected).await?),
        false => None,
    };
    // A whole-project run in which every node was built or reused leaves
    // the environment and the store in agreement (a node that failed may
    // still point at a build that is gone): the schema cookie says so
    // until the next CREATE or DROP (`Session::connect`).
    let whole = info.removing
        && plan.steps.len()
            == dag
                .nodes
                .iter()
                .filter(|n| !n.is_test() && !n.is_ephemeral())
                .count()
        && results.iter().all(|r| {
            dag.nodes[r.id].is_test() || matches!(r.status, Status::Success | Status::Reused)
        });
    let agreed = match whole {
        true => connected.database.schema_cookie().await.map_err(|e| {
            EngineError::Database(format!(
                "cannot read the warehouse's schema version: {}",
                e.message
            ))
        })?,
        false => None,
    };
    in_place(|| {
        record(
            id,
            session,
            connected,
            warehouse,
            plan,
            results,
            removed,
            &info,
            agreed.as_deref(),
            version.as_ref(),
        )
    })?;
    send(events, Event::Recorded { run: id });
    Ok(())
}

/// Adds the tests of every selected node (dbt's eager indirect selection):
/// `orbital test -s orders` runs the tests that read `orders`. A test the
/// selection excluded by name stays out only if nothing it reads is selected.
fn with_tests(dag: &orbital_core::Dag, selection: &mut Selection) {
    let mut selected = vec![false; dag.nodes.len()];
    selection.nodes.iter().for_each(|&id| selected[id] = true);
    let mut added = false;
    for (id, node) in dag.nodes.iter().enumerate() {
        if node.is_test() && !selected[id] && node.depends_on.iter().any(|&d| selected[d]) {
            selected[id] = true;
            added = true;
        }
    }
    if added {
        // Keep topological order, which the scheduler expects.
        selection.nodes = dag
            .order
            .iter()
            .copied()
            .filter(|&id| selected[id])
            .collect();
    }
}

fn needs_plugins(plan: &Plan, removed: &[String]) -> bool {
    !removed.is_empty() || plan.steps.iter().any(|s| s.action != Action::Reuse)
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Per node: what to do, where its build lives, and what readers read.
fn assign(session: &Session, connected: &Connected, plan: &Plan) -> Assignments {
    let dag = &session.compiled.dag;
    let mut assignments = Assignments {
        work: vec![None; dag.nodes.len()],
        reads: vec![None; dag.nodes.len()],
        failures: Vec::new(),
    };
    for (id, read) in plan.reads.iter().enumerate() {
        assignments.reads[id] =
            read.map(|fp| session.physical(connected, &dag.nodes[id].name, &fp));
    }
    for step in &plan.steps {
        let name = &dag.nodes[step.id].name;
        assignments.work[step.id] = Some(Work {
            action: step.action,
            physical: session.physical(connected, name, &step.fingerprint),
            relation: session.env_relation(step.id),
            previous: step
                .previous
                .map(|fp| session.physical(connected, name, &fp)),
            repair: step.repair,
        });
    }
    assignments
}

/// Per test whose failing rows are kept (every test with `all`, else those
/// configured `store_failures = true`), the table they are kept in: in the
/// target's schema (which builds have made), `failures__<test>`, and for
/// an environment other than the default `<env>__failures__<test>`.
fn failure_tables(session: &Session, all: bool) -> Vec<Option<orbital_core::dag::RelationName>> {
    let default = session.environment == orbital_core::plan::DEFAULT_ENVIRONMENT;
    session
        .compiled
        .dag
        .nodes
        .iter()
        .map(|node| {
            let kept = node.as_test().is_some_and(|t| all || t.store_failures);
            kept.then(|| orbital_core::dag::RelationName {
                schema: session.target.schema.clone(),
                identifier: match default {
                    true => format!("failures__{}", node.name),
                    false => format!("{}__failures__{}", session.environment, node.name),
                },
            })
        })
        .collect()
}

/// The environment's view changes: every node that succeeded and whose
/// pointer moves, and the nodes the project dropped.
fn publications(
    session: &Session,
    connected: &Connected,
    plan: &Plan,
    results: &[NodeResult],
    removed: &[String],
) -> Vec<Publish> {
    let dag = &session.compiled.dag;
    let succeeded = |id| {
        results
            .iter()
            .any(|r| r.id == id && matches!(r.status, Status::Success | Status::Reused))
    };
    let published: Vec<&orbital_core::plan::Step> = plan
        .steps
        .iter()
        .filter(|step| step.action != Action::Reuse || step_moved(session, connected, step))
        .filter(|step| succeeded(step.id))
        .collect();
    // A node now published elsewhere (a new `alias` or `schema`) leaves its
    // old relation: dropped first, in case another node now takes it.
    let mut changes: Vec<Publish> = published
        .iter()
        .filter_map(|step| {
            let old = &connected.recorded.get(&dag.nodes[step.id].name)?.relation;
            (*old != session.env_relation(step.id)).then(|| Publish::Remove {
                relation: old.clone(),
            })
        })
        .collect();
    changes.extend(published.iter().map(|step| {
        let name = &dag.nodes[step.id].name;
        Publish::Point {
            relation: session.env_relation(step.id),
            physical: session.physical(connected, name, &step.fingerprint),
        }
    }));
    for name in removed {
        if let Some(entry) = connected.recorded.get(name) {
            changes.push(Publish::Remove {
                relation: entry.relation.clone(),
            });
        }
    }
    changes
}

/// Where the run may hand its stateless builds: the peers it names, when
/// the engine has peers (a run naming peers is refused earlier otherwise)
/// and the warehouse has its identity (what a peer checks its own target
/// against; a warehouse Orbital never wrote is built here).
fn delegation(
    session: &Session,
    connected: &Connected,
    request: &RunRequest,
    id: u64,
) -> Option<orbital_runner::Delegation> {
    let peers = delegates_to(request, connected);
    let sharing = session.engine.sharing().filter(|_| !peers.is_empty())?;
    let warehouse = connected.warehouse.clone()?;
    Some(orbital_runner::Delegation(Arc::new(
        crate::shared::RunDelegate {
            source: sharing.builds.clone(),
            peers,
            target: session.target_name.clone(),
            warehouse,
            run: id,
            token: orbital_runner::random_u64(),
            attempts: Default::default(),
        },
    )))
}

/// The peers a run hands its stateless builds to: those it names, else the
/// peer that holds the target's connection, when only a peer reaches it.
fn delegates_to(request: &RunRequest, connected: &Connected) -> Vec<String> {
    match (request.peers.is_empty(), connected.database.via()) {
        (true, Some(peer)) => vec![peer.to_string()],
        _ => request.peers.clone(),
    }
}

/// The warehouse's identity, written into it if it has none yet.
async fn record_identity(
    database: &orbital_runner::Warehouse,
) -> Result<Option<String>, EngineError> {
    database.warehouse_id(true).await.map_err(|e| {
        EngineError::Database(format!(
            "cannot record the warehouse identity: {}",
            e.message
        ))
    })
}

/// The session's environment, locked in the warehouse. Runs on other
/// environments of the warehouse go on meanwhile; what they build in
/// common is claimed per relation as it is built.
pub(crate) async fn lock_environment(
    session: &Session,
    connected: &Connected,
) -> Result<orbital_runner::RunLock, EngineError> {
    let scope = format!(
        "{}\0{}",
        session.environment,
        orbital_core::plan::environment_schema(&session.target, &session.environment)
            .unwrap_or_default()
    );
    connected
        .database
        .lock_environment(&scope, RUN_LOCK_WAIT)
        .await
        .map_err(|e| EngineError::Database(format!("cannot lock the environment: {}", e.message)))?
        .ok_or_else(|| {
            EngineError::Busy(format!(
                "another orbital run has held environment `{}` of target `{}` for over {} s; try again when it finishes",
                session.environment,
                session.target_name,
                RUN_LOCK_WAIT.as_secs()
            ))
        })
}

/// Whether the run moves any of the environment's pointers: then its
/// version is bumped, for peers to converge on.
fn pointers_change(
    session: &Session,
    connected: &Connected,
    plan: &Plan,
    results: &[NodeResult],
    removed: &[String],
) -> bool {
    let dag = &session.compiled.dag;
    let ok: std::collections::HashSet<_> = results
        .iter()
        .filter(|r| matches!(r.status, Status::Success | Status::Reused))
        .map(|r| r.id)
        .collect();
    !removed.is_empty()
        || plan.steps.iter().any(|step| {
            ok.contains(&step.id)
                && connected
                    .recorded
                    .get(&dag.nodes[step.id].name)
                    .is_none_or(|e| e.fingerprint != step.fingerprint)
        })
}

/// The next version of the session's environment, counted in the
/// warehouse under the environment's lock (which the caller holds).
pub(crate) async fn bump_environment(
    session: &Session,
    connected: &Connected,
) -> Result<EnvVersion, EngineError> {
    let version = connected
        .database
        .bump_environment(&session.environment)
        .await
        .map_err(|e| {
            EngineError::Database(format!(
                "cannot count environment `{}`'s version: {}",
                session.environment, e.message
            ))
        })?;
    Ok(EnvVersion {
        version,
        peer: session.engine.node().to_string(),
    })
}

/// A full refresh rebuilds in place; the view needs no change then, but a
/// record whose relation differs (renamed environment layout) does.
fn step_moved(session: &Session, connected: &Connected, step: &orbital_core::plan::Step) -> bool {
    let name = &session.compiled.dag.nodes[step.id].name;
    connected
        .recorded
        .get(name)
        .is_none_or(|entry| entry.relation != session.env_relation(step.id))
}

/// The parse results this session computed, for later sessions.
fn save_caches(w: &mut orbital_cas::Writer, session: &Session) -> orbital_cas::Result<()> {
    for (key, parsed) in &session.compiled.fresh_parses {
        w.put_parsed(key, parsed)?;
    }
    Ok(())
}

/// Saves parse results in a transaction of their own (`compile`, `ls`).
pub(crate) fn save_parses(
    store: &orbital_cas::Store,
    parses: &[(orbital_core::Hash, orbital_core::ParsedModel)],
) -> Result<(), EngineError> {
    store.write(|w| {
        for (key, parsed) in parses {
            w.put_parsed(key, parsed)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// One store transaction: parse results, builds, pointers, the run's
/// final record.
#[allow(clippy::too_many_arguments)]
fn record(
    id: u64,
    session: &Session,
    connected: &Connected,
    warehouse: &str,
    plan: &Plan,
    results: &[NodeResult],
    removed: &[String],
    info: &RunInfo<'_>,
    agreed: Option<&str>,
    version: Option<&EnvVersion>,
) -> Result<(), EngineError> {
    let dag = &session.compiled.dag;
    let status: std::collections::HashMap<_, _> = results.iter().map(|r| (r.id, r)).collect();
    session.store.write(|w| {
        save_caches(w, session)?;
        let mut nodes = Vec::new();
        for step in &plan.steps {
            let node = &dag.nodes[step.id];
            let Some(result) = status.get(&step.id) else {
                continue;
            };
            let ok = matches!(result.status, Status::Success | Status::Reused);
            nodes.push(node_run(result, ok.then_some(step.fingerprint)));
            if !ok {
                continue;
            }
            let sql = match node.as_model() {
                Some(model) => Some(w.put_object(model.sql.as_bytes())?),
                None => None,
            };
            let physical = session.physical(connected, &node.name, &step.fingerprint);
            // A build another run made while this one waited is recorded by
            // that run; this one records it only if that run has not (yet).
            let built_elsewhere = result.status == Status::Reused;
            if step.action.runs()
                && !(built_elsewhere && w.has_build(warehouse, &step.fingerprint)?)
            {
                let upstream = node
                    .depends_on
                    .iter()
                    .filter_map(|dep| plan.reads[*dep])
                    .collect();
                w.record_build(
                    warehouse,
                    &BuildRecord {
                        node: node.name.clone(),
                        fingerprint: step.fingerprint,
                        relation: physical,
                        kind: built_kind(node).into(),
                        materialized: node
                            .as_model()
                            .map_or("seed".into(), |m| m.config.materialized.clone()),
                        sql,
                        upstream,
                        run: id,
                        built_at: info.started_at.to_string(),
                    },
                )?;
            }
            w.set_env(
                warehouse,
                &session.environment,
                &node.name,
                &EnvEntry {
                    fingerprint: step.fingerprint,
                    local: connected.fingerprints.local[step.id],
                    sql,
                    relation: session.env_relation(step.id),
                },
            )?;
        }
        for name in removed {
            w.remove_env(warehouse, &session.environment, name)?;
        }
        if let Some(cookie) = agreed {
            w.put_verified_schema(warehouse, &session.environment, cookie)?;
        }
        if let Some(version) = version {
            w.set_env_version(warehouse, &session.environment, version)?;
        }
        // Tests build nothing: the run records only their outcome.
        for result in results.iter().filter(|r| dag.nodes[r.id].is_test()) {
            nodes.push(node_run(result, None));
        }
        let failed = nodes.iter().any(|n| n.status.failed());
        w.update_run(&RunRecord {
            id,
            command: info.command.name().to_string(),
            target: session.target_name.clone(),
            environment: session.environment.clone(),
            started_at: info.started_at.to_string(),
            elapsed_ms: millis(info.started.elapsed()),
            status: if failed {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            },
            error: None,
            holder: None,
            nodes,
        })
    })?;
    Ok(())
}

/// A node's result as the run record keeps it.
fn node_run(result: &NodeResult, fingerprint: Option<orbital_core::Hash>) -> NodeRun {
    NodeRun {
        name: result.name.clone(),
        status: node_status(result.status),
        duration_ms: result.duration_ms,
        fingerprint,
        error: result.error.clone(),
    }
}

fn node_status(status: Status) -> NodeStatus {
    match status {
        Status::Success => NodeStatus::Success,
        Status::Reused => NodeStatus::Reused,
        Status::Error => NodeStatus::Error,
        Status::Skipped => NodeStatus::Skipped,
        Status::Pass => NodeStatus::Pass,
        Status::Fail => NodeStatus::Fail,
        Status::Warn => NodeStatus::Warn,
        Status::Cancelled => NodeStatus::Cancelled,
    }
}

/// How gc drops a build: views for the view materialization, tables otherwise.
fn built_kind(node: &orbital_core::Node) -> &'static str {
    match node.as_model() {
        Some(model) if model.config.materialized == "view" => "view",
        _ => "table",
    }
}
