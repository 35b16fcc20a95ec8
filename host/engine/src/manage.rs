//! The state requests: `plan`, `promote`, `gc` and `runs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Instant, SystemTime};

use orbital_cas::{EnvEntry, NodeRun, NodeStatus, RunRecord, RunStatus};
use orbital_core::Hash;
use orbital_core::plan::{Action, Change};
use orbital_runner::Publish;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::request::{EnvironmentsRequest, GcRequest, PlanRequest, PromoteRequest, Selector};
use crate::session::{Records, Session};
use crate::{Engine, in_place, lock};

/// What `plan` shows for one node.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlanEntry {
    pub name: String,
    /// `model`, `seed`, ...: no allocation per node for the daemon's plans.
    pub kind: std::borrow::Cow<'static, str>,
    pub change: Change,
    pub action: Action,
    pub fingerprint: Hash,
    /// For `continue`: the fingerprint whose table the build continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<Hash>,
    /// Where the warehouse disagrees with the state store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<orbital_core::plan::Repair>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub affects: Vec<String>,
}

/// What a run of the same selection would do.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlanReport {
    pub environment: String,
    pub nodes: Vec<PlanEntry>,
    pub removed: Vec<String>,
}

/// One environment: what each of its models' relations reads.
#[derive(Debug, Serialize)]
pub struct Environment {
    pub name: String,
    /// How many times its pointers changed (counted in the warehouse):
    /// peers converge on the highest.
    pub version: u64,
    /// Who made that change: a daemon's certificate SHA-256, or `cli`.
    pub changed_by: Option<String>,
    pub models: Vec<EnvironmentModel>,
}

/// One model of an environment.
#[derive(Debug, Serialize)]
pub struct EnvironmentModel {
    pub model: String,
    /// What users query.
    pub relation: String,
    pub fingerprint: Hash,
    /// The build it reads, where the store knows it.
    pub build: Option<String>,
    pub built_at: Option<String>,
}

/// What `promote` did.
#[derive(Debug, Serialize, Deserialize)]
pub struct Promoted {
    pub from: String,
    pub to: String,
    pub promoted: usize,
    pub removed: usize,
}

/// What `gc` dropped (or, with `dry_run`, would drop).
#[derive(Debug)]
pub struct Collected {
    pub dry_run: bool,
    pub relations: Vec<(Hash, orbital_cas::BuildRecord)>,
    pub objects: usize,
    pub parses: usize,
}

impl Engine {
    /// What a run would build, reuse or remove, with SQL diffs.
    pub async fn plan(&self, request: PlanRequest) -> Result<PlanReport, EngineError> {
        let started = Instant::now();
        let session = Session::opened(
            self,
            &request.project,
            &request.selector,
            request.env.as_deref(),
            None,
            Records::Early,
        )
        .await?;
        tracing::debug!(elapsed = ?started.elapsed(), "plan: project opened");
        let connected = session.connect_sharing().await?;
        tracing::debug!(elapsed = ?started.elapsed(), "plan: connected and fingerprinted");
        let selection = session.select(&request.selector, &connected)?;
        tracing::debug!(elapsed = ?started.elapsed(), "plan: selected");
        let dag = &session.compiled.dag;
        let plan = session.plan(&connected, &selection, false)?;
        tracing::debug!(elapsed = ?started.elapsed(), "plan: planned");
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
            entries.push(PlanEntry {
                name: node.name.clone(),
                kind: node.kind_name().into(),
                change: step.change,
                action: step.action,
                fingerprint: step.fingerprint,
                continues: step.previous,
                repair: step.repair,
                diff,
                affects,
            });
        }
        let report = PlanReport {
            environment: session.environment.clone(),
            nodes: entries,
            removed: plan.removed.clone(),
        };
        crate::discard((session, connected, plan, selection));
        tracing::debug!(elapsed = ?started.elapsed(), "plan: reported");
        Ok(report)
    }
    /// Points environment `to` at `from`'s builds, atomically; runs no
    /// model SQL.
    pub async fn promote(&self, request: PromoteRequest) -> Result<Promoted, EngineError> {
        let started = Instant::now();
        let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let (from, to) = (request.from.clone(), request.to.clone());
        orbital_core::plan::check_environment_name(&from)?;
        let mut session = Session::opened(
            self,
            &request.project,
            &request.selector,
            Some(request.to.as_str()),
            None,
            Records::OnConnect,
        )
        .await?;
        // `from`'s builds are checked, whatever `to`'s schema cookie says.
        session.always_verify = true;
        // A run of this process on `to` holds its turn: busy, as across
        // processes, rather than waiting behind it.
        let queue = self.queue(&session.state_dir(), &session.target_name, &to);
        let _turn = queue.try_lock_owned().map_err(|_| {
            EngineError::Busy(format!(
                "environment `{to}` of target `{}` has a run in progress; try again when it finishes",
                session.target_name
            ))
        })?;
        let _gc_lock = lock::gc(&session.state_dir(), false)?;
        let _lock = lock::environment(&session.state_dir(), &session.target_name, &to)?;
        let connected = session.connect().await?;
        let run_lock = crate::run::lock_environment(&session, &connected).await?;
        let source = match &connected.warehouse {
            Some(w) => session.store.environment(w, &from)?,
            None => BTreeMap::new(),
        };
        let Some(warehouse) = connected.warehouse.clone().filter(|_| !source.is_empty()) else {
            return Err(EngineError::Usage(format!(
                "environment `{from}` of target `{}` has nothing to promote (build it first: orbital run --env {from})",
                session.target_name
            )));
        };
        let mut changes = Vec::new();
        let mut entries: Vec<(String, EnvEntry)> = Vec::new();
        let index = session.node_index();
        for (name, entry) in &source {
            let Some(build) = connected.builds.get(&entry.fingerprint) else {
                return Err(EngineError::Database(format!(
                    "environment `{from}` points `{name}` at a build the store does not know; run `orbital run --env {from}` first"
                )));
            };
            let relation = session.env_relation_named(&index, name);
            let physical = build.relation.clone();
            // The store is checked against the warehouse, as a run checks it.
            if let Some(catalog) = &connected.catalog
                && !catalog.exists(&physical)
            {
                return Err(EngineError::Database(format!(
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
            // Published elsewhere now (a new `alias` or `schema`): the old
            // relation goes.
            if let Some(old) = connected.recorded.get(name).map(|e| &e.relation)
                && *old != relation
            {
                changes.push(Publish::Remove {
                    relation: old.clone(),
                });
            }
            changes.push(Publish::Point {
                relation: relation.clone(),
                physical,
            });
            entries.push((
                name.clone(),
                EnvEntry {
                    relation,
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
        for entry in dropped
            .iter()
            .filter_map(|name| connected.recorded.get(name))
        {
            changes.push(Publish::Remove {
                relation: entry.relation.clone(),
            });
        }
        run_lock
            .check()
            .await
            .map_err(|e| EngineError::Database(format!("nothing was promoted: {}", e.message)))?;
        if !changes.is_empty() {
            let plugins = session.adapter_plugins(&connected).await?;
            orbital_runner::publish(&plugins, &changes).await?;
        }
        let version = match entries.is_empty() && dropped.is_empty() {
            true => None,
            false => Some(crate::run::bump_environment(&session, &connected).await?),
        };
        let nodes = entries
            .iter()
            .map(|(name, entry)| NodeRun {
                name: name.clone(),
                status: NodeStatus::Promoted,
                duration_ms: 0,
                fingerprint: Some(entry.fingerprint),
                error: None,
            })
            .collect();
        in_place(|| {
            session.store.write(|w| {
                for (name, entry) in &entries {
                    w.set_env(&warehouse, &to, name, entry)?;
                }
                for name in &dropped {
                    w.remove_env(&warehouse, &to, name)?;
                }
                if let Some(version) = &version {
                    w.set_env_version(&warehouse, &to, version)?;
                }
                w.add_run(RunRecord {
                    id: 0,
                    command: format!("promote {from}"),
                    target: session.target_name.clone(),
                    environment: to.clone(),
                    started_at,
                    elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    status: RunStatus::Succeeded,
                    error: None,
                    holder: None,
                    nodes,
                })
            })
        })?;
        drop(run_lock);
        Ok(Promoted {
            from,
            to,
            promoted: entries.len(),
            removed: dropped.len(),
        })
    }

    /// Drops builds no environment uses, then store objects nothing reaches.
    pub async fn gc(&self, request: GcRequest) -> Result<Collected, EngineError> {
        let dry_run = request.dry_run;
        let session = Session::opened(
            self,
            &request.project,
            &request.selector,
            None,
            None,
            Records::OnConnect,
        )
        .await?;
        let _gc_lock = lock::gc(&session.state_dir(), true)?;
        let connected = session.connect().await?;
        let mut dead = Vec::new();
        if let Some(warehouse) = &connected.warehouse {
            let environments = session.store.environments(warehouse)?;
            let live = reachable(&environments, &connected.builds);
            dead = connected
                .builds
                .iter()
                .filter(|(fp, _)| !live.contains(*fp))
                .map(|(fp, record)| (*fp, record.clone()))
                .collect();
            if !dry_run && !dead.is_empty() {
                let plugins = session.adapter_plugins(&connected).await?;
                let relations: Vec<_> = dead.iter().map(|(_, r)| r.relation.clone()).collect();
                orbital_runner::drop_physical(&plugins, &relations).await?;
                in_place(|| {
                    session.store.write(|w| {
                        for (fp, _) in &dead {
                            w.remove_build(warehouse, fp)?;
                        }
                        Ok(())
                    })
                })?;
            }
        }
        let (objects, parses) = in_place(|| {
            session
                .store
                .collect_garbage(&session.parse_keys(), dry_run)
        })?;
        Ok(Collected {
            dry_run,
            relations: dead,
            objects,
            parses,
        })
    }

    /// The environments of the project's target, with what each points
    /// at (the latest build of each model it holds).
    pub async fn environments(
        &self,
        request: EnvironmentsRequest,
    ) -> Result<Vec<Environment>, EngineError> {
        let selector = Selector {
            target: request.target.clone(),
            ..Selector::default()
        };
        let session = Session::opened(
            self,
            &request.project,
            &selector,
            None,
            None,
            Records::Early,
        )
        .await?;
        let connected = session.connect().await?;
        let Some(warehouse) = &connected.warehouse else {
            return Ok(Vec::new());
        };
        let all = in_place(|| session.store.environments(warehouse))?;
        let mut versions = Vec::new();
        for name in all.keys() {
            versions.push(session.store.env_version(warehouse, name)?);
        }
        let environments = all
            .into_iter()
            .zip(versions)
            .map(|((name, entries), version)| Environment {
                version: version.version,
                changed_by: (!version.peer.is_empty()).then_some(version.peer),
                models: entries
                    .into_iter()
                    .map(|(model, entry)| EnvironmentModel {
                        build: connected
                            .builds
                            .get(&entry.fingerprint)
                            .map(|b| b.relation.to_string()),
                        built_at: connected
                            .builds
                            .get(&entry.fingerprint)
                            .map(|b| b.built_at.clone()),
                        relation: entry.relation.to_string(),
                        fingerprint: entry.fingerprint,
                        model,
                    })
                    .collect(),
                name,
            })
            .collect();
        crate::discard((session, connected));
        Ok(environments)
    }

    /// The stored object or installed plugin component named `hash`.
    pub fn object(&self, root: &Path, hash: &Hash) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.project_store(root)?.object_or_plugin(hash)?)
    }

    /// The latest `limit` runs of the project at `root`, newest first.
    pub fn runs(&self, root: &Path, limit: usize) -> Result<Vec<RunRecord>, EngineError> {
        Ok(self.project_store(root)?.runs(limit)?)
    }

    /// The latest `limit` runs with an id below `before`, newest first.
    pub fn runs_before(
        &self,
        root: &Path,
        before: u64,
        limit: usize,
    ) -> Result<Vec<RunRecord>, EngineError> {
        Ok(self.project_store(root)?.runs_before(before, limit)?)
    }

    /// Run `id` of the project at `root`.
    pub fn run_record(&self, root: &Path, id: u64) -> Result<Option<RunRecord>, EngineError> {
        Ok(self.project_store(root)?.run(id)?)
    }

    /// The state store of the project at `root` (what the daemon serves
    /// its peers from).
    pub fn project_store(
        &self,
        root: &Path,
    ) -> Result<std::sync::Arc<orbital_cas::Store>, EngineError> {
        let config = orbital_core::ProjectConfig::load(root)?;
        self.store(&crate::components::store_path(root, &config))
    }
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
