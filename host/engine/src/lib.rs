//! # orbital-engine: the control plane's engine
//!
//! Everything a front end asks of Orbital, as a library: open a project's
//! state store, compile (with its snapshot and parse cache and the macro
//! plugins), fingerprint, select, plan, run (assign, execute, publish,
//! record), check seeds, promote, collect garbage, read run history, and
//! install or describe plugins. The CLI and the daemon are its front ends;
//! they parse requests and render results, nothing more.
//!
//! One [`Engine`] per process holds what runs share: one state store handle
//! per state folder, one plugin host per set of limits (so a component is
//! compiled once per process), one connection pool per target database,
//! and a queue per (state folder, target, environment).
//!
//! A run ([`Engine::run`]) reports typed events as it goes ([`Event`]) and
//! stops cleanly when its [`CancellationToken`] fires. The engine creates
//! no tokio runtime: its async functions run on the caller's (a
//! multi-thread runtime), and its blocking work (compiling, store writes)
//! runs on the runtime's blocking threads.
//!
//! May depend on the core, the state store, the runner and the plugin host;
//! never on a front end (clap, terminals, HTTP).

mod compile;
mod components;
mod connect;
mod docs;
mod error;
mod events;
mod kept;
mod lineage;
mod lock;
mod macros;
mod manage;
mod plugins;
mod process;
mod request;
mod run;
mod session;
mod shared;
mod show;
mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use orbital_cas::Store;
use orbital_plugin_host::{Limits, PluginHost};
use orbital_runner::Warehouse;

pub use compile::{node_json, user_sql};
pub use components::state_dir;
pub use docs::{DocsColumn, DocsDocument, DocsNode, DocsRequest, LastResult, site as docs_site};
pub use error::{EngineError, ErrorKind};
pub use events::{Event, Events, RunOutcome};
pub use lineage::LineageRequest;
pub use manage::{Collected, Environment, EnvironmentModel, PlanEntry, PlanReport, Promoted};
pub use orbital_cas::{BuildRecord, Holder, NodeRun, NodeStatus, RunRecord, RunStatus};
pub use orbital_runner::{CancellationToken, Lent, Link, NodeResult, Rows, Status};
pub use plugins::{Described, Installed, ListedIn};
pub use request::{
    Columns, CompileRequest, Compiled, Details, EnvironmentsRequest, GcRequest, Listing,
    PlanRequest, PromoteRequest, RunCommand, RunRequest, Selector,
};
pub use shared::{BoxFuture, BuildSource};
pub use show::{SHOW_LIMIT_MAX, ShowRequest};

/// What the engine is configured with by its front end.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Where compiled plugin components are cached across processes.
    pub cache_dir: Option<PathBuf>,
    /// Keep each project's last compile in memory (a long-lived process:
    /// the daemon), so a request on an unchanged project decodes no
    /// snapshot, and one after an edit skips the snapshot it knows is stale.
    pub keep_projects: bool,
}

/// The engine of one process. Cheap to clone: clones share everything.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

struct Shared {
    options: EngineOptions,
    /// Set by [`Engine::share_with`].
    sharing: std::sync::OnceLock<shared::Sharing>,
    stores: Mutex<HashMap<PathBuf, Arc<Store>>>,
    hosts: Mutex<HashMap<HostKey, Arc<PluginHost>>>,
    warehouses: tokio::sync::Mutex<HashMap<(String, PathBuf), Pooled>>,
    queues: Mutex<HashMap<QueueKey, Arc<tokio::sync::Mutex<()>>>>,
    /// With [`EngineOptions::keep_projects`]: each project's last compile,
    /// by project folder.
    projects: Mutex<HashMap<PathBuf, Arc<kept::Kept>>>,
    /// With [`EngineOptions::keep_projects`]: a watch on each project
    /// folder, so that a request stamps only the files that changed.
    watches: Mutex<HashMap<PathBuf, Arc<watch::Watch>>>,
    /// With [`EngineOptions::keep_projects`]: the records last read of each
    /// (store, warehouse, environment), at the store's generation then.
    records: Mutex<HashMap<RecordsKey, (u64, session::RecordMaps)>>,
    /// With [`EngineOptions::keep_projects`]: the parse results the last
    /// compiles used.
    parses: std::sync::RwLock<HashMap<orbital_core::Hash, orbital_core::compile::ParsedModel>>,
    /// With [`EngineOptions::keep_projects`]: each project's last details.
    details: Mutex<HashMap<PathBuf, Arc<request::Details>>>,
    /// The components peers' tasks were built with, loaded (see
    /// [`Engine::run_task`]).
    task_plugins: Mutex<HashMap<shared::TaskPluginsKey, Arc<orbital_runner::LoadedPlugins>>>,
}

/// Whose records are kept: (store file, warehouse, environment).
type RecordsKey = (PathBuf, String, String);

/// One environment of one target of one project: (state folder, target,
/// environment).
type QueueKey = (PathBuf, String, String);

/// What a plugin host is built for: hosts with the same limits are one.
type HostKey = (std::time::Duration, usize, u32, Option<PathBuf>);

/// A warehouse pool kept for later runs, and the SQLite file it was opened
/// on (a file deleted and made again is another warehouse: a new pool).
struct Pooled {
    warehouse: Warehouse,
    file: Option<String>,
}

impl Engine {
    pub fn new(options: EngineOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                options,
                sharing: std::sync::OnceLock::new(),
                stores: Mutex::default(),
                hosts: Mutex::default(),
                warehouses: tokio::sync::Mutex::default(),
                queues: Mutex::default(),
                projects: Mutex::default(),
                watches: Mutex::default(),
                records: Mutex::default(),
                parses: std::sync::RwLock::default(),
                details: Mutex::default(),
                task_plugins: Mutex::default(),
            }),
        }
    }

    /// The last compile of the project in `root` this process kept.
    pub(crate) fn kept_project(&self, root: &Path) -> Option<Arc<kept::Kept>> {
        if !self.shared.options.keep_projects {
            return None;
        }
        lock(&self.shared.projects).get(root).cloned()
    }

    /// The watch on the project in `root`, when this engine keeps projects.
    pub(crate) fn watch(&self, root: &Path) -> Option<Arc<watch::Watch>> {
        if !self.shared.options.keep_projects {
            return None;
        }
        let mut watches = lock(&self.shared.watches);
        let watch = watches
            .entry(root.to_path_buf())
            .or_insert_with(|| Arc::new(watch::Watch::new(root)));
        Some(watch.clone())
    }

    pub(crate) fn kept_details(
        &self,
        root: &Path,
        version: &orbital_core::Hash,
    ) -> Option<Arc<request::Details>> {
        lock(&self.shared.details)
            .get(root)
            .filter(|kept| kept.version == *version)
            .cloned()
    }

    pub(crate) fn keep_details(&self, root: &Path, details: Arc<request::Details>) {
        if self.shared.options.keep_projects {
            lock(&self.shared.details).insert(root.to_path_buf(), details);
        }
    }

    /// Keeps `make()` as the last compile of the project in `root`, when
    /// this engine keeps projects (`make` is not called otherwise).
    pub(crate) fn keep_project(&self, root: &Path, make: impl FnOnce() -> kept::Kept) {
        if self.shared.options.keep_projects {
            let replaced = lock(&self.shared.projects).insert(root.to_path_buf(), Arc::new(make()));
            // Freeing a 10k-model project takes milliseconds: not on the
            // request's path.
            discard(replaced);
        }
    }

    /// Compiles through `store`'s parse cache, and when this engine keeps
    /// projects, through the parse results the last compile used first.
    /// A whole compile (`replaced` is `None`) keeps those it used (and
    /// made) for the next; a compile of changed models adds those it made
    /// and forgets the `replaced` ones (the changed models' old texts).
    pub(crate) fn compile_with_parses(
        &self,
        store: &dyn orbital_core::compile::ParseCache,
        replaced: Option<&[orbital_core::Hash]>,
        compile: impl FnOnce(
            &dyn orbital_core::compile::ParseCache,
        ) -> orbital_core::Result<orbital_core::CompiledProject>,
    ) -> orbital_core::Result<orbital_core::CompiledProject> {
        if !self.shared.options.keep_projects {
            return compile(store);
        }
        let memo = kept::MemoParses {
            memory: &self.shared.parses,
            store,
            used: Mutex::default(),
        };
        let compiled = compile(&memo)?;
        let mut used = memo.used.into_inner().unwrap_or_else(|e| e.into_inner());
        used.extend(compiled.fresh_parses.iter().cloned());
        let mut memory = self
            .shared
            .parses
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match replaced {
            None => *memory = used,
            Some(replaced) => {
                for key in replaced {
                    memory.remove(key);
                }
                memory.extend(used);
            }
        }
        Ok(compiled)
    }

    /// Who this engine is in the environment versions it writes (see
    /// [`orbital_cas::EnvVersion`]): a daemon's certificate SHA-256, else
    /// `cli`.
    pub fn node(&self) -> &str {
        self.shared.sharing.get().map_or("cli", |s| s.node.as_str())
    }

    /// Makes this engine a peer: `node` names it in the environment
    /// versions it writes, and plans and runs ask `builds` for builds made
    /// elsewhere before building. Set once; later calls are ignored.
    pub fn share_with(&self, node: String, builds: Arc<dyn BuildSource>) {
        let _ = self.shared.sharing.set(shared::Sharing { node, builds });
    }

    pub(crate) fn sharing(&self) -> Option<&shared::Sharing> {
        self.shared.sharing.get()
    }

    pub fn options(&self) -> &EngineOptions {
        &self.shared.options
    }

    /// The state store at `path`, opened once per process. On first open,
    /// runs whose process died are marked interrupted.
    pub fn store(&self, path: &Path) -> Result<Arc<Store>, EngineError> {
        let mut stores = lock(&self.shared.stores);
        if let Some(store) = stores.get(path) {
            return Ok(store.clone());
        }
        let store = Arc::new(Store::open(path)?);
        let interrupted = store.recover_runs(process::is_dead)?;
        if !interrupted.is_empty() {
            tracing::warn!(
                runs = ?interrupted,
                "runs whose process ended before they finished are marked interrupted"
            );
        }
        stores.insert(path.to_path_buf(), store.clone());
        Ok(store)
    }

    /// The plugin host for `limits`, created once per process.
    pub(crate) fn plugin_host(&self, limits: Limits) -> Result<Arc<PluginHost>, EngineError> {
        let key = (
            limits.timeout,
            limits.memory_bytes,
            limits.concurrency,
            limits.cache_dir.clone(),
        );
        let mut hosts = lock(&self.shared.hosts);
        if let Some(host) = hosts.get(&key) {
            return Ok(host.clone());
        }
        let host = Arc::new(PluginHost::new(limits).map_err(orbital_runner::RunnerError::from)?);
        hosts.insert(key, host.clone());
        Ok(host)
    }

    /// The connection pool of the database `url` names (relative to
    /// `root`), opened once per process and shared by its runs.
    pub(crate) async fn warehouse(
        &self,
        url: &str,
        root: &Path,
        target_name: &str,
        threads: usize,
    ) -> Result<Warehouse, EngineError> {
        let link = self.sharing().and_then(|s| s.builds.reach(target_name));
        let key = match &link {
            Some(link) => (
                format!("peer {} {target_name}", link.peer()),
                root.to_path_buf(),
            ),
            None => (url.to_string(), root.to_path_buf()),
        };
        let file = Warehouse::file_identity(url, root).filter(|_| link.is_none());
        let mut pools = self.shared.warehouses.lock().await;
        if let Some(pooled) = pools.get(&key)
            && (pooled.file.is_none() || pooled.file == file)
        {
            return Ok(pooled.warehouse.clone());
        }
        let opened = match link {
            Some(link) => {
                let scheme = url.split_once("://").map_or(url, |(scheme, _)| scheme);
                Warehouse::remote(link, scheme).await.map_err(|source| {
                    orbital_runner::RunnerError::Connect {
                        target: target_name.to_string(),
                        source,
                    }
                    .into()
                })
            }
            None if !connect::built_in(url) => {
                self.plugin_warehouse(url, root, target_name, threads).await
            }
            None => Warehouse::open(url, root, threads).await.map_err(|source| {
                orbital_runner::RunnerError::Connect {
                    target: target_name.to_string(),
                    source,
                }
                .into()
            }),
        };
        let warehouse = opened?;
        if let Some(stale) = pools.insert(
            key,
            Pooled {
                warehouse: warehouse.clone(),
                file,
            },
        ) {
            stale.warehouse.close().await;
        }
        Ok(warehouse)
    }

    /// The queue of runs on one environment of one target of one project.
    pub(crate) fn queue(
        &self,
        state_dir: &Path,
        target: &str,
        environment: &str,
    ) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.shared.queues)
            .entry((
                state_dir.to_path_buf(),
                target.to_string(),
                environment.to_string(),
            ))
            .or_default()
            .clone()
    }

    /// Closes every connection pool (SQLite checkpoints its write-ahead log
    /// on the last close). Call it before the process exits.
    pub async fn close(&self) {
        let pools: Vec<Pooled> = self
            .shared
            .warehouses
            .lock()
            .await
            .drain()
            .map(|(_, pooled)| pooled)
            .collect();
        for pooled in pools {
            pooled.warehouse.close().await;
        }
    }
}

/// A mutex's data, even if a thread panicked while holding it: the maps
/// behind these locks are never left half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Drops `value` on a thread of its own: a compiled project and its records
/// (for 10k models, ~5 ms of freeing, a tenth of a plan) are freed off the
/// path of the answer.
pub(crate) fn discard<T: Send + 'static>(value: T) {
    std::thread::spawn(move || drop(value));
}

/// Runs blocking work (compiling, a store transaction) without stalling
/// the async runtime: on one of its blocking threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => EngineError::Internal(e.to_string()),
        })
}

/// Runs blocking work that borrows from the caller, on the current worker
/// thread, telling the runtime to move its other tasks elsewhere meanwhile.
pub(crate) fn in_place<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}
