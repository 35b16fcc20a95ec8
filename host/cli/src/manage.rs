//! The state commands: `plan`, `promote`, `gc` and `runs`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use orbital_cas::{EnvEntry, NodeRun, RunRecord};
use orbital_core::Hash;
use orbital_core::plan::Change;
use orbital_runner::Publish;

use crate::diagnostics::Failure;
use crate::run::relation_record;
use crate::session::{Records, Session};
use crate::{Cli, SelectArgs, lock, report};

/// `orbital plan`: what a run would do, with SQL diffs.
pub fn plan(
    cli: &Cli,
    select: &SelectArgs,
    env: Option<&str>,
    output: &report::Output,
) -> Result<ExitCode, Failure> {
    let session = Session::open(cli, select, env, None, Records::Early)?;
    let runtime = &session.runtime;
    let connected = runtime.block_on(session.connect())?;
    let selection = session.select(select, &connected)?;
    let dag = &session.compiled.dag;
    let plan = session.plan(&connected, &selection, false)?;
    let mut entries = Vec::new();
    for step in &plan.steps {
        let node = &dag.nodes[step.id];
        let diff = match (step.change, node.as_model()) {
            (Change::Modified, Some(model)) => {
                let old = connected
                    .recorded
                    .get(&node.name)
                    .and_then(|e| e.sql)
                    .and_then(|hash| session.store.object(&hash).ok().flatten())
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .unwrap_or_default();
                Some(sql_diff(&node.name, &old, &model.sql))
            }
            _ => None,
        };
        let affects: Vec<String> = if step.change == Change::Modified {
            dag.descendants(step.id, None)
                .into_iter()
                .filter(|&d| !dag.nodes[d].is_test())
                .map(|d| dag.nodes[d].name.clone())
                .collect()
        } else {
            Vec::new()
        };
        entries.push(report::PlanEntry {
            name: node.name.clone(),
            kind: node.kind_name(),
            change: step.change,
            action: step.action,
            fingerprint: step.fingerprint,
            continues: step.previous,
            repair: step.repair,
            diff,
            affects,
        });
    }
    output.plan(&session.environment, &entries, &plan.removed);
    // The process exits next: see `Session::finish`.
    std::mem::forget((entries, plan, selection));
    session.finish(connected);
    Ok(ExitCode::SUCCESS)
}

/// A unified diff of canonical SQL, with references shown as written.
fn sql_diff(name: &str, old: &str, new: &str) -> String {
    let (old, new) = (
        orbital_core::compile::readable(old),
        orbital_core::compile::readable(new),
    );
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name} (recorded)"), &format!("{name} (project)"))
        .to_string()
}

/// `orbital promote FROM --to TO`: point TO at FROM's builds, atomically.
pub fn promote(
    cli: &Cli,
    select: &SelectArgs,
    from: &str,
    to: &str,
    output: &report::Output,
) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    orbital_core::plan::check_environment_name(from)?;
    let mut session = Session::open(cli, select, Some(to), None, Records::OnConnect)?;
    // `from`'s builds are checked, whatever `to`'s schema cookie says.
    session.always_verify = true;
    let _gc_lock = lock::gc(&session.state_dir(), false)?;
    let _lock = lock::environment(&session.state_dir(), &session.target_name, to)?;
    let runtime = &session.runtime;
    let moved = runtime.block_on(async {
        let connected = session.connect().await?;
        let source = match &connected.warehouse {
            Some(w) => session.store.environment(w, from)?,
            None => BTreeMap::new(),
        };
        let Some(warehouse) = connected.warehouse.clone().filter(|_| !source.is_empty()) else {
            return Err(Failure::Usage(format!(
                "environment `{from}` of target `{}` has nothing to promote (build it first: orbital run --env {from})",
                session.target_name
            )));
        };
        let mut changes = Vec::new();
        let mut entries: Vec<(String, EnvEntry)> = Vec::new();
        for (name, entry) in &source {
            let Some(build) = connected.builds.get(&entry.fingerprint) else {
                return Err(Failure::Environment(format!(
                    "environment `{from}` points `{name}` at a build the store does not know; run `orbital run --env {from}` first"
                )));
            };
            let relation = session.env_relation(name);
            let physical = build.relation.name();
            // The store is checked against the warehouse, as a run checks it.
            if let Some(catalog) = &connected.catalog
                && !catalog.exists(&physical)
            {
                return Err(Failure::Environment(format!(
                    "environment `{from}` points `{name}` at a build the warehouse no longer has ({}); run `orbital run --env {from}` first to rebuild it",
                    physical.identifier
                )));
            }
            let in_place = connected
                .recorded
                .get(name)
                .is_some_and(|e| e.fingerprint == entry.fingerprint);
            let reads_it = connected
                .catalog
                .as_ref()
                .is_none_or(|catalog| catalog.reads(&relation, &physical));
            if in_place && reads_it {
                continue;
            }
            changes.push(Publish::Point {
                relation: relation.clone(),
                physical,
            });
            entries.push((
                name.clone(),
                EnvEntry {
                    relation: relation_record(&relation),
                    ..entry.clone()
                },
            ));
        }
        let dropped: Vec<String> = connected
            .recorded
            .keys()
            .filter(|name| !source.contains_key(*name))
            .cloned()
            .collect();
        for name in &dropped {
            changes.push(Publish::Remove {
                relation: session.env_relation(name),
            });
        }
        if !changes.is_empty() {
            let runtime = match &connected.runtime {
                Some(runtime) => runtime.clone(),
                // Only the adapter: publishing and dropping are its SQL.
                None => {
                    session
                        .start_runtime_for(&connected, &Default::default())
                        .await?
                }
            };
            orbital_runner::publish(&runtime, &changes).await?;
            runtime.close().await;
        }
        let nodes = entries
            .iter()
            .map(|(name, entry)| NodeRun {
                name: name.clone(),
                status: "promoted".into(),
                duration_ms: 0,
                fingerprint: Some(entry.fingerprint),
                error: None,
            })
            .collect();
        session.store.write(|w| {
            for (name, entry) in &entries {
                w.set_env(&warehouse, to, name, entry)?;
            }
            for name in &dropped {
                w.remove_env(&warehouse, to, name)?;
            }
            w.add_run(RunRecord {
                id: 0,
                command: format!("promote {from}"),
                target: session.target_name.clone(),
                environment: to.to_string(),
                started_at,
                elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                nodes,
            })
        })?;
        Ok((entries.len(), dropped.len()))
    })?;
    output.promoted(from, to, moved.0, moved.1);
    Ok(ExitCode::SUCCESS)
}

/// `orbital gc`: drop builds no environment reaches, then store objects
/// nothing reaches.
pub fn gc(
    cli: &Cli,
    select: &SelectArgs,
    dry_run: bool,
    output: &report::Output,
) -> Result<ExitCode, Failure> {
    let session = Session::open(cli, select, None, None, Records::OnConnect)?;
    let _gc_lock = lock::gc(&session.state_dir(), true)?;
    let runtime = &session.runtime;
    let dropped = runtime.block_on(async {
        let connected = session.connect().await?;
        let Some(warehouse) = &connected.warehouse else {
            return Ok::<_, Failure>(Vec::new());
        };
        let environments = session.store.environments(warehouse)?;
        let live = reachable(&environments, &connected.builds);
        let dead: Vec<(Hash, orbital_cas::BuildRecord)> = connected
            .builds
            .iter()
            .filter(|(fp, _)| !live.contains(*fp))
            .map(|(fp, record)| (*fp, record.clone()))
            .collect();
        if !dry_run && !dead.is_empty() {
            let runtime = match &connected.runtime {
                Some(runtime) => runtime.clone(),
                // Only the adapter: publishing and dropping are its SQL.
                None => {
                    session
                        .start_runtime_for(&connected, &Default::default())
                        .await?
                }
            };
            let relations: Vec<_> = dead.iter().map(|(_, r)| r.relation.name()).collect();
            orbital_runner::drop_physical(&runtime, &relations).await?;
            runtime.close().await;
            session.store.write(|w| {
                for (fp, _) in &dead {
                    w.remove_build(warehouse, fp)?;
                }
                Ok(())
            })?;
        }
        Ok(dead)
    })?;
    let (objects, parses) = session
        .store
        .collect_garbage(&session.parse_keys(), dry_run)?;
    output.garbage(&dropped, objects, parses, dry_run);
    Ok(ExitCode::SUCCESS)
}

/// Every build an environment points at, and everything those read at
/// query time (a view reads its upstream builds).
fn reachable(
    environments: &BTreeMap<String, BTreeMap<String, EnvEntry>>,
    builds: &BTreeMap<Hash, orbital_cas::BuildRecord>,
) -> BTreeSet<Hash> {
    let mut live = BTreeSet::new();
    let mut stack: Vec<Hash> = environments
        .values()
        .flat_map(|env| env.values().map(|e| e.fingerprint))
        .collect();
    while let Some(fp) = stack.pop() {
        if live.insert(fp)
            && let Some(build) = builds.get(&fp)
        {
            stack.extend(build.upstream.iter().copied());
        }
    }
    live
}

/// `orbital runs`: past runs, newest first.
pub fn runs(cli: &Cli, limit: usize, output: &report::Output) -> Result<ExitCode, Failure> {
    let config = orbital_core::ProjectConfig::load(&cli.project)?;
    let store = orbital_cas::Store::open(
        &crate::session::state_dir(&cli.project, &config).join("state.redb"),
    )?;
    output.runs(&store.runs(limit)?);
    Ok(ExitCode::SUCCESS)
}
