//! `seed`, `run` and `build`: plan against the environment, build what it
//! lacks, point the environment at the results, record everything.
//!
//! The order is what keeps a crash harmless: physical relations are built
//! (each atomically, under a name no environment uses yet), then the
//! environment's views are replaced in one database transaction, then the
//! store records the builds, the environment's pointers and the run in one
//! redb transaction. A process killed before the last step leaves physical
//! relations the store does not know, which the next run simply builds again.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use orbital_cas::{BuildRecord, EnvEntry, NodeRun, RelationRecord, RunRecord};
use orbital_core::Selection;
use orbital_core::plan::{Action, Plan};
use orbital_runner::{Assignments, NodeResult, Publish, RunOptions, Status, Work};

use crate::diagnostics::Failure;
use crate::session::{Connected, Records, Session};
use crate::{Cli, RunArgs, Scope, lock, report};

/// How long a run waits for another process's run on the same warehouse.
const RUN_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

pub fn run(
    cli: &Cli,
    args: &RunArgs,
    scope: Scope,
    command: &str,
    output: &report::Output,
) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let session = Session::open(
        cli,
        &args.select,
        args.env.as_deref(),
        args.threads,
        Records::OnConnect,
    )?;
    let _gc_lock = lock::gc(&session.state_dir(), false)?;
    let _env_lock = lock::environment(
        &session.state_dir(),
        &session.target_name,
        &session.environment,
    )?;
    let uses_state = Selection::uses_state(&args.select.select, &args.select.exclude);
    if !uses_state {
        // A selector that cannot resolve stops the command before it
        // connects (and creates a SQLite file).
        Selection::resolve(
            &session.compiled.dag,
            &args.select.select,
            &args.select.exclude,
        )?;
    }
    if matches!(scope, Scope::Seeds | Scope::Both) && !uses_state {
        // Read every selected seed before connecting, so a malformed CSV
        // stops the command with nothing written.
        let mut early = Selection::resolve(
            &session.compiled.dag,
            &args.select.select,
            &args.select.exclude,
        )?;
        early
            .nodes
            .retain(|&id| session.compiled.dag.nodes[id].is_seed());
        crate::check_seeds(&session.project, &session.compiled, &early)?;
    }
    let runtime = &session.runtime;
    let (results, dag, finished) = runtime.block_on(async {
        let connected = session.connect().await?;
        let run_lock = connected
            .database
            .lock_runs(RUN_LOCK_WAIT)
            .await
            .map_err(|e| Failure::Environment(format!("cannot lock the warehouse: {}", e.message)))?
            .ok_or_else(|| {
                Failure::Busy(format!(
                    "another orbital run has held target `{}` for over {} s; try again when it finishes",
                    session.target_name,
                    RUN_LOCK_WAIT.as_secs()
                ))
            })?;
        let mut selection = session.select(&args.select, &connected)?;
        let dag = &session.compiled.dag;
        if matches!(scope, Scope::Both | Scope::Tests) {
            with_tests(dag, &mut selection);
        }
        selection.nodes.retain(|&id| scope.includes(&dag.nodes[id]));
        if matches!(scope, Scope::Seeds | Scope::Both) && uses_state {
            crate::check_seeds(&session.project, &session.compiled, &selection)?;
        }
        let plan = session.plan(&connected, &selection, args.full_refresh)?;
        if scope == Scope::Both {
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
        let removing = args.select.select.is_empty() && args.select.exclude.is_empty();
        let removed: Vec<String> = if removing {
            plan.removed.clone()
        } else {
            Vec::new()
        };
        let runtime = match &connected.runtime {
            Some(runtime) => Some(runtime.clone()),
            None if needs_plugins(&plan, &removed) => {
                let strategies = plan
                    .steps
                    .iter()
                    .filter(|step| step.action.runs())
                    .filter_map(|step| dag.nodes[step.id].as_model())
                    .map(|model| model.config.materialized.as_str())
                    .collect();
                Some(session.start_runtime_for(&connected, &strategies).await?)
            }
            None => None,
        };
        if let Some(runtime) = &runtime {
            let strategies = plan.steps.iter().filter_map(|step| {
                let node = &dag.nodes[step.id];
                node.as_model()
                    .filter(|_| step.action.runs())
                    .map(|m| (node.name.as_str(), m.config.materialized.as_str()))
            });
            runtime.check_strategies(strategies)?;
            if let Some(schema) = &session.target.schema
                && plan.steps.iter().any(|s| s.action.runs())
            {
                orbital_runner::ensure_schemas(runtime, std::slice::from_ref(schema)).await?;
            }
        }
        let assignments = Arc::new(assign(&session, &connected, &plan));
        let options = RunOptions {
            threads: session.threads,
            full_refresh: args.full_refresh,
            started_at: started_at.clone(),
        };
        let dag = Arc::new(session.compiled.dag.clone());
        let results = output
            .run(
                runtime.clone(),
                connected.database.clone(),
                dag.clone(),
                &selection.nodes,
                assignments.clone(),
                &options,
            )
            .await;
        // What went wrong after the nodes ran (publishing, recording) is
        // reported after their results, never instead of them.
        let finished = async {
            let mut warehouse = connected.warehouse.clone();
            let changes = publications(&session, &connected, &plan, &results, &removed);
            run_lock.check().map_err(|e| {
                Failure::Environment(format!("nothing was published or recorded: {}", e.message))
            })?;
            if let Some(runtime) = &runtime {
                if warehouse.is_none() {
                    warehouse = connected.database.warehouse_id(true).await.map_err(|e| {
                        Failure::Environment(format!(
                            "cannot record the warehouse identity: {}",
                            e.message
                        ))
                    })?;
                }
                orbital_runner::publish(runtime, &changes).await?;
            }
            if let Some(warehouse) = &warehouse {
                // A whole-project run in which every node was built or
                // reused leaves the environment and the store in agreement
                // (a node that failed may still point at a build that is
                // gone): the schema cookie says so until the next CREATE or
                // DROP (`Session::connect`).
                let whole = removing
                    && plan.steps.len()
                        == dag
                            .nodes
                            .iter()
                            .filter(|n| !n.is_test() && !n.is_ephemeral())
                            .count()
                    && results.iter().all(|r| {
                        dag.nodes[r.id].is_test()
                            || matches!(r.status, Status::Success | Status::Reused)
                    });
                let agreed = match whole {
                    true => connected.database.schema_cookie().await.map_err(|e| {
                        Failure::Environment(format!(
                            "cannot read the warehouse's schema version: {}",
                            e.message
                        ))
                    })?,
                    false => None,
                };
                record(
                    &session,
                    &connected,
                    warehouse,
                    &plan,
                    &results,
                    &removed,
                    RunInfo {
                        command,
                        started_at: &started_at,
                        elapsed_ms: millis(started.elapsed()),
                        agreed,
                    },
                )?;
            } else if !session.compiled.fresh_parses.is_empty() {
                session.store.write(|w| save_caches(w, &session))?;
            }
            Ok::<_, Failure>(())
        }
        .await;
        // Closed on every path: SQLite checkpoints its WAL on the last close.
        if let Some(runtime) = &runtime {
            runtime.close().await;
        } else {
            connected.database.close().await;
        }
        Ok::<_, Failure>((results, dag, finished))
    })?;
    output.summary(&dag, &results, started.elapsed());
    finished?;
    let failed = results
        .iter()
        .any(|r| matches!(r.status, Status::Error | Status::Fail));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
            relation: session.env_relation(name),
            previous: step
                .previous
                .map(|fp| session.physical(connected, name, &fp)),
            repair: step.repair,
        });
    }
    assignments
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
    let mut changes: Vec<Publish> = plan
        .steps
        .iter()
        .filter(|step| step.action != Action::Reuse || step_moved(session, connected, step))
        .filter(|step| succeeded(step.id))
        .map(|step| {
            let name = &dag.nodes[step.id].name;
            Publish::Point {
                relation: session.env_relation(name),
                physical: session.physical(connected, name, &step.fingerprint),
            }
        })
        .collect();
    for name in removed {
        if let Some(entry) = connected.recorded.get(name) {
            changes.push(Publish::Remove {
                relation: entry.relation.name(),
            });
        }
    }
    changes
}

/// A full refresh rebuilds in place; the view needs no change then, but a
/// record whose relation differs (renamed environment layout) does.
fn step_moved(session: &Session, connected: &Connected, step: &orbital_core::plan::Step) -> bool {
    let name = &session.compiled.dag.nodes[step.id].name;
    connected
        .recorded
        .get(name)
        .is_none_or(|entry| entry.relation.name() != session.env_relation(name))
}

pub fn relation_record(name: &orbital_core::dag::RelationName) -> RelationRecord {
    RelationRecord {
        schema: name.schema.clone(),
        identifier: name.identifier.clone(),
    }
}

struct RunInfo<'a> {
    command: &'a str,
    started_at: &'a str,
    elapsed_ms: u64,
    /// The schema cookie at which the environment agrees with the store,
    /// for a whole-project run.
    agreed: Option<String>,
}

/// The parse results this session computed, for later sessions.
fn save_caches(w: &mut orbital_cas::Writer, session: &Session) -> orbital_cas::Result<()> {
    for (key, parsed) in &session.compiled.fresh_parses {
        w.put_parsed(key, parsed)?;
    }
    Ok(())
}

/// One store transaction: parse results, builds, pointers, the run.
fn record(
    session: &Session,
    connected: &Connected,
    warehouse: &str,
    plan: &Plan,
    results: &[NodeResult],
    removed: &[String],
    info: RunInfo<'_>,
) -> Result<(), Failure> {
    let dag = &session.compiled.dag;
    let status: std::collections::HashMap<_, _> = results.iter().map(|r| (r.id, r)).collect();
    session.store.write(|w| {
        let run_id = w.next_run_id()?;
        save_caches(w, session)?;
        let mut nodes = Vec::new();
        for step in &plan.steps {
            let node = &dag.nodes[step.id];
            let Some(result) = status.get(&step.id) else {
                continue;
            };
            let ok = matches!(result.status, Status::Success | Status::Reused);
            nodes.push(NodeRun {
                name: node.name.clone(),
                status: format!("{:?}", result.status).to_lowercase(),
                duration_ms: result.duration_ms,
                fingerprint: ok.then_some(step.fingerprint),
                error: result.error.clone(),
            });
            if !ok {
                continue;
            }
            let sql = match node.as_model() {
                Some(model) => Some(w.put_object(model.sql.as_bytes())?),
                None => None,
            };
            let physical = session.physical(connected, &node.name, &step.fingerprint);
            if step.action.runs() {
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
                        relation: relation_record(&physical),
                        kind: built_kind(node).into(),
                        materialized: node
                            .as_model()
                            .map_or("seed".into(), |m| m.config.materialized.clone()),
                        sql,
                        upstream,
                        run: run_id,
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
                    relation: relation_record(&session.env_relation(&node.name)),
                },
            )?;
        }
        for name in removed {
            w.remove_env(warehouse, &session.environment, name)?;
        }
        if let Some(cookie) = &info.agreed {
            w.put_verified_schema(warehouse, &session.environment, cookie)?;
        }
        // Tests build nothing: the run records only their outcome.
        for result in results.iter().filter(|r| dag.nodes[r.id].is_test()) {
            nodes.push(NodeRun {
                name: result.name.clone(),
                status: format!("{:?}", result.status).to_lowercase(),
                duration_ms: result.duration_ms,
                fingerprint: None,
                error: result.error.clone(),
            });
        }
        w.add_run(RunRecord {
            id: run_id,
            command: info.command.to_string(),
            target: session.target_name.clone(),
            environment: session.environment.clone(),
            started_at: info.started_at.to_string(),
            elapsed_ms: info.elapsed_ms,
            nodes,
        })?;
        Ok(())
    })?;
    Ok(())
}

/// How gc drops a build: views for the view materialization, tables otherwise.
fn built_kind(node: &orbital_core::Node) -> &'static str {
    match node.as_model() {
        Some(model) if model.config.materialized == "view" => "view",
        _ => "table",
    }
}
