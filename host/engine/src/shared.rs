//! State other engines share with this one (the daemon's peers): builds
//! they made in a warehouse this engine also writes to, reused instead of
//! rebuilt once the warehouse confirms they are still there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use orbital_cas::BuildRecord;
use orbital_core::Hash;
use orbital_core::remote::{BuildTask, Fence, TaskOutcome};

use crate::EngineError;
use crate::session::{Connected, Session};

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What an engine's peers do for it: builds made elsewhere, asked for
/// like an action cache, and builds handed to them.
pub trait BuildSource: Send + Sync {
    /// Of `fingerprints`, the builds recorded in `warehouse` by others.
    /// Whatever cannot be asked is simply not returned.
    fn builds<'a>(
        &'a self,
        warehouse: &'a str,
        fingerprints: Vec<Hash>,
    ) -> BoxFuture<'a, Vec<BuildRecord>>;

    /// Builds `task` on one of `peers` (names of the daemon's list) with a
    /// free slot, or says why not.
    fn run_task<'a>(&'a self, peers: &'a [String], task: BuildTask) -> BoxFuture<'a, TaskOutcome>;

    /// The peer that reaches target `target` for this engine, which then
    /// reaches it only through that peer (its statements, locks and
    /// claims), if one is configured to.
    fn reach(&self, _target: &str) -> Option<Arc<dyn orbital_runner::Link>> {
        None
    }
}

/// A run's [`orbital_runner::Delegate`]: its tasks go to the run's peers,
/// each try under the run's fence.
pub(crate) struct RunDelegate {
    pub(crate) source: Arc<dyn BuildSource>,
    pub(crate) peers: Vec<String>,
    pub(crate) target: String,
    pub(crate) warehouse: String,
    pub(crate) run: u64,
    pub(crate) token: u64,
    pub(crate) attempts: std::sync::atomic::AtomicU32,
}

impl orbital_runner::Delegate for RunDelegate {
    fn build(&self, mut task: BuildTask) -> orbital_plugin_host::BoxFuture<'_, TaskOutcome> {
        task.target = self.target.clone();
        task.warehouse = self.warehouse.clone();
        task.fence = Fence {
            run: self.run,
            token: self.token,
            attempt: self
                .attempts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        self.source.run_task(&self.peers, task)
    }
}

/// What [`crate::Engine::share_with`] set.
pub(crate) struct Sharing {
    pub(crate) node: String,
    pub(crate) builds: Arc<dyn BuildSource>,
}

/// How many sets of loaded components tasks of peers keep.
const TASK_PLUGINS_KEPT: usize = 32;

/// Which loaded components a peer's task is built with: (project folder,
/// warehouse id, adapter, materialization).
pub(crate) type TaskPluginsKey = (std::path::PathBuf, String, Hash, Hash);

/// How many times the upstream of what came is asked for in turn.
const WALK_ROUNDS: usize = 8;

impl Session {
    /// [`Session::connect`], then the builds the engine's peers (see
    /// [`crate::Engine::share_with`]) have that the store lacks.
    pub(crate) async fn connect_sharing(&self) -> Result<Connected, EngineError> {
        let mut connected = self.connect().await?;
        if let Some(sharing) = self.engine.sharing() {
            let taken = self
                .adopt_builds(sharing.builds.as_ref(), &mut connected)
                .await?;
            if taken > 0 {
                tracing::info!("reusing {taken} builds peers made");
            }
        }
        Ok(connected)
    }

    /// Asks `source` for the builds of this project's nodes the store does
    /// not have, then for their upstream fingerprints in turn (as git walks
    /// wants and haves). A build is taken only if it is one that was asked
    /// for and its relation is in the warehouse's catalog (the builder's
    /// gc may have dropped it); it is recorded in the store and planned as
    /// any other. Returns how many were taken.
    pub(crate) async fn adopt_builds(
        &self,
        source: &dyn BuildSource,
        connected: &mut Connected,
    ) -> Result<usize, EngineError> {
        let Some(warehouse) = connected.warehouse.clone() else {
            return Ok(0);
        };
        let dag = &self.compiled.dag;
        let mut wanted: Vec<Hash> = dag
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_test() && !n.is_ephemeral())
            .map(|(id, _)| connected.fingerprints.full[id])
            .filter(|fp| !connected.builds.contains_key(fp))
            .collect();
        let mut asked: BTreeSet<Hash> = wanted.iter().copied().collect();
        let mut came: BTreeMap<Hash, BuildRecord> = BTreeMap::new();
        for _ in 0..WALK_ROUNDS {
            if wanted.is_empty() {
                break;
            }
            let answer = source.builds(&warehouse, std::mem::take(&mut wanted)).await;
            for record in answer {
                if !asked.contains(&record.fingerprint) {
                    tracing::warn!("a peer sent build {} unasked: ignored", record.fingerprint);
                    continue;
                }
                for upstream in &record.upstream {
                    if !connected.builds.contains_key(upstream) && asked.insert(*upstream) {
                        wanted.push(*upstream);
                    }
                }
                came.insert(record.fingerprint, record);
            }
        }
        if came.is_empty() {
            return Ok(0);
        }
        if connected.catalog.is_none() {
            let schemas = self.catalog_schemas();
            let catalog = connected.database.catalog(&schemas).await;
            connected.catalog = Some(catalog.map_err(|e| self.catalog_unread(&e))?);
        }
        let catalog = connected.catalog.as_ref();
        let taken: Vec<BuildRecord> = came
            .into_values()
            .filter(|record| catalog.is_some_and(|c| c.exists(&record.relation)))
            .collect();
        crate::in_place(|| {
            self.store.write(|w| {
                for record in &taken {
                    w.record_build(&warehouse, record)?;
                }
                Ok(())
            })
        })?;
        let count = taken.len();
        Arc::make_mut(&mut connected.builds).extend(taken.into_iter().map(|r| (r.fingerprint, r)));
        Ok(count)
    }
}

impl crate::Engine {
    /// Builds a task a peer handed over, on the project at `root`: on its
    /// target of the task's target's name, with this engine's connection,
    /// and with the project's components, which must be the ones the task
    /// names (its fingerprint covers them). The materialization's message
    /// and rows, or why the build failed; `Err` when it could not start
    /// here (no such target, other components, no connection).
    /// Target `target` of the project in `root`, lent to a peer that does
    /// not reach it ([`orbital_runner::Lent`]): this process's connection
    /// pool, shared with its own runs.
    pub async fn lend(
        &self,
        root: &std::path::Path,
        target: &str,
    ) -> Result<orbital_runner::Lent, EngineError> {
        let config = orbital_core::ProjectConfig::load(root)?;
        let (target_name, target) = config.target(Some(target))?;
        let threads = target.threads.unwrap_or(4).max(1);
        let database = self
            .warehouse(&target.url, root, target_name, threads)
            .await?;
        if let Some(peer) = database.via() {
            return Err(EngineError::Usage(format!(
                "target `{target_name}` is reached through peer {peer} here too: it cannot be lent on"
            )));
        }
        Ok(orbital_runner::Lent::new(database))
    }

    pub async fn run_task(
        &self,
        root: &std::path::Path,
        task: &BuildTask,
    ) -> Result<Result<(String, Option<u64>), String>, EngineError> {
        let config = orbital_core::ProjectConfig::load(root)?;
        let (target_name, target) = config.target(Some(&task.target))?;
        let threads = target.threads.unwrap_or(4).max(1);
        let database = self
            .warehouse(&target.url, root, target_name, threads)
            .await?;
        // A target of the same name elsewhere may be another database.
        let ours = database.warehouse_id(false).await.map_err(|e| {
            EngineError::Database(format!("cannot read the warehouse identity: {}", e.message))
        })?;
        if ours.as_deref() != Some(task.warehouse.as_str()) {
            return Err(EngineError::Usage(format!(
                "target `{target_name}` of this daemon is another warehouse than the run's"
            )));
        }
        // The components a task names are named by their bytes' hash:
        // loaded once for every task of this target that names them.
        let key = (
            root.to_path_buf(),
            task.warehouse.clone(),
            task.adapter,
            task.strategy,
        );
        let kept = crate::lock(&self.shared.task_plugins).get(&key).cloned();
        let plugins = match kept {
            Some(plugins) => plugins,
            None => {
                let plugins = self
                    .task_plugins(root, &config, target_name, threads, task, &database)
                    .await?;
                let mut kept = crate::lock(&self.shared.task_plugins);
                if kept.len() >= TASK_PLUGINS_KEPT {
                    kept.clear();
                }
                kept.insert(key, plugins.clone());
                plugins
            }
        };
        Ok(orbital_runner::build_task(&plugins, &database, task).await)
    }

    /// The components `task` is built with, from this daemon's project
    /// (which must load them: the fingerprint covers them), loaded.
    async fn task_plugins(
        &self,
        root: &std::path::Path,
        config: &orbital_core::ProjectConfig,
        target_name: &str,
        threads: usize,
        task: &BuildTask,
        database: &orbital_runner::Warehouse,
    ) -> Result<Arc<orbital_runner::LoadedPlugins>, EngineError> {
        let (_, target) = config.target(Some(target_name))?;
        let store = self.store(&crate::components::store_path(root, config))?;
        let components: Vec<_> = crate::components::components(root, config, || Ok(store))?
            .into_iter()
            .filter(|c| c.hash == task.adapter || c.hash == task.strategy)
            .collect();
        for (role, hash) in [
            ("adapter", task.adapter),
            ("materialization", task.strategy),
        ] {
            if !components.iter().any(|c| c.hash == hash) {
                return Err(EngineError::Usage(format!(
                    "this daemon's project does not load the {role} the task is built with (blake3:{hash})"
                )));
            }
        }
        let host = self.plugin_host(crate::session::limits(self, config, threads))?;
        Ok(orbital_runner::LoadedPlugins::start(
            target_name,
            target,
            root,
            components,
            host,
            database.clone(),
        )
        .await?)
    }
}
