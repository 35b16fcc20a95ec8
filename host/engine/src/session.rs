//! The front half every stateful command shares: load the project, open the
//! state store, compile with its parse cache, learn the plugins'
//! hashes (from the store when it knows this set of components, else by
//! loading them), fingerprint, and read the environment's records.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use orbital_cas::{BuildRecord, EnvEntry, Store};
use orbital_core::dag::RelationName;
use orbital_core::plan::{
    Recorded, RecordedByName, environment_relation, environment_schema, physical_relation,
};
use orbital_core::{
    CompiledProject, Fingerprints, Hash, NodeId, PluginHashes, Project, ProjectConfig, Selection,
    Snapshot, Target,
};
use orbital_plugin_host::Limits;
use orbital_runner::{Component, LoadedPlugins, Warehouse};

use crate::Engine;
use crate::components::{components, state_dir, store_path};
use crate::error::EngineError;
use crate::kept::Kept;
use crate::macros::PluginMacros;
use crate::request::Selector;
use orbital_core::macros::SqlMacros;

pub struct Session {
    /// Shared with what the engine keeps of it ([`crate::kept`]).
    pub project: Arc<Project>,
    pub target_name: String,
    pub target: Target,
    pub environment: String,
    pub store: Arc<Store>,
    pub compiled: CompiledProject,
    pub components: Vec<Component>,
    pub threads: usize,
    /// What parse results depend on of the macro plugins
    /// ([`orbital_core::macros::SqlMacros::identity`]).
    macro_identity: String,
    pub engine: Engine,
    /// The target database being opened since the session started.
    early_database: std::sync::Mutex<Option<EarlyDatabase>>,
    /// A SQLite target's file identity ([`Warehouse::file_identity`]), and
    /// the warehouse id the store last read from that file.
    warehouse_file: Option<String>,
    known_warehouse: Option<String>,
    /// The snapshot key and file stamps the project matches, when it has a
    /// snapshot: what its saved fingerprints are checked against.
    stamped: Option<Stamped>,
    /// The environment's records, being read since the session started
    /// (see [`Records::Early`]).
    early_records: std::sync::Mutex<Option<EarlyRecords>>,
    /// Read the warehouse's catalog even when its schema cookie says this
    /// environment still agrees with the store: for a command that relies
    /// on another environment's builds (`promote`).
    pub always_verify: bool,
}

/// When a session reads the environment's records.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Records {
    /// On connecting, after the command has taken its locks: what a
    /// command that writes plans against.
    OnConnect,
    /// On a second thread from the start, beside loading the project: for
    /// a command that only reads (`plan`), which takes no lock.
    Early,
}

/// One environment's records, every build of its warehouse, and the
/// records as the planner reads them. Shared: a long-lived process keeps
/// them while the store's generation stays the same ([`read_records`]).
#[derive(Clone, Default)]
pub(crate) struct RecordMaps {
    recorded: Arc<BTreeMap<String, EnvEntry>>,
    builds: Arc<BTreeMap<Hash, BuildRecord>>,
    planned: Arc<RecordedByName>,
}

/// The warehouse whose records are being read, and the reading thread.
type EarlyRecords = (
    String,
    std::thread::JoinHandle<Result<RecordMaps, orbital_cas::CasError>>,
);

type Stamped = (Hash, Vec<(PathBuf, orbital_core::snapshot::Stamp)>);

type EarlyDatabase = tokio::task::JoinHandle<Result<(Warehouse, Option<String>), EngineError>>;

/// What the warehouse and the store say, once connected.
pub struct Connected {
    pub database: Warehouse,
    /// `None`: Orbital has never written to this database.
    pub warehouse: Option<String>,
    /// Set when the plugins had to be loaded to learn their hashes.
    pub loaded: Option<Arc<LoadedPlugins>>,
    /// Shared with the compile this process keeps, when it is that one.
    pub fingerprints: Arc<Fingerprints>,
    pub recorded: Arc<BTreeMap<String, EnvEntry>>,
    /// `recorded` as the planner reads it.
    planned: Arc<RecordedByName>,
    pub builds: Arc<BTreeMap<Hash, BuildRecord>>,
    /// Which component serves the adapter and each strategy.
    pub plugins: PluginHashes,
    /// The default environment's records, when this session's is another
    /// and the project has stateful models (see `PlanOptions::base`).
    pub base: Option<RecordedByName>,
    /// The warehouse's tables and views where builds and this environment
    /// live: what the store's records are checked against (`None` for a
    /// warehouse Orbital has never written).
    pub catalog: Option<orbital_runner::Catalog>,
}

/// The store's records checked against the warehouse's catalog.
struct Verified<'a> {
    session: &'a Session,
    connected: &'a Connected,
    catalog: &'a orbital_runner::Catalog,
}

impl orbital_core::plan::WarehouseState for Verified<'_> {
    fn has_build(&self, fingerprint: &Hash) -> bool {
        self.connected
            .builds
            .get(fingerprint)
            .is_some_and(|build| self.catalog.exists(&build.relation))
    }

    fn points_at(&self, id: orbital_core::NodeId, fingerprint: &Hash) -> bool {
        let name = &self.session.compiled.dag.nodes[id].name;
        self.catalog.reads(
            &self.session.env_relation(id),
            &self.session.physical(self.connected, name, fingerprint),
        )
    }
}

impl Session {
    /// Loads and compiles the project and opens its store. Blocking, so
    /// only [`Session::opened`] calls it, on a blocking thread of a tokio
    /// runtime (it starts opening the target database on that runtime
    /// meanwhile).
    fn open(
        engine: &Engine,
        root: &Path,
        selector: &Selector,
        environment: Option<&str>,
        threads: Option<usize>,
        records: Records,
    ) -> Result<Self, EngineError> {
        if let Some(threads) = threads {
            orbital_core::config::check_threads(threads)
                .map_err(|e| EngineError::Usage(format!("--threads: {e}")))?;
        }
        let config = ProjectConfig::load(root)?;
        let (target_name, target) = config.target(selector.target.as_deref())?;
        let (target_name, target) = (target_name.to_string(), target.clone());
        let config = config
            .running_on(&target_name)
            .with_vars(selector.vars.as_deref())?;
        let environment = environment
            .unwrap_or(orbital_core::plan::DEFAULT_ENVIRONMENT)
            .to_string();
        orbital_core::plan::check_environment_name(&environment)?;
        let store = engine.store(&store_path(root, &config))?;
        // Opening SQLite reads its whole schema (20k entries for a 10k-model
        // warehouse), and a server takes a round trip or more: let that run
        // while the project loads. Not a SQLite file that does not exist
        // yet, so a command that stops at a bad model creates nothing.
        let pool_size = threads.or(target.threads).unwrap_or(4).max(1);
        let warehouse_file = Warehouse::file_identity(&target.url, root);
        let known_warehouse = match &warehouse_file {
            Some(file) => store.warehouse_of_file(file)?,
            None => None,
        };
        let early_records = match (&known_warehouse, records) {
            (Some(warehouse), Records::Early) => {
                let (store, id, env) = (store.clone(), warehouse.clone(), environment.clone());
                let engine = engine.clone();
                let reading = std::thread::spawn(move || read_records(&engine, &store, &id, &env));
                Some((warehouse.clone(), reading))
            }
            _ => None,
        };
        let early_database = (known_warehouse.is_none()
            && Warehouse::opens_without_creating(&target.url, root))
        .then(|| {
            let (url, name) = (target.url.clone(), target_name.clone());
            let (engine, root) = (engine.clone(), root.to_path_buf());
            tokio::runtime::Handle::current()
                .spawn(async move { open_database(&engine, &url, &root, &name, pool_size).await })
        });
        let components = components(root, &config, || Ok(store.clone()))?;
        let macros = PluginMacros::new(engine, &components, &config)?;
        let (project, compiled, stamped) = load(
            engine,
            root,
            config,
            &target,
            &store,
            &macros,
            SaveParses::WithTheRun,
        )?;
        // The default environment's names are checked against the other
        // environments once connected (`Session::connect`).
        orbital_core::plan::check_relation_names(&compiled.dag, &target, &environment, &[])?;
        tracing::debug!("relation names checked");
        let threads = threads.or(target.threads).unwrap_or(4).max(1);
        Ok(Self {
            project,
            target_name,
            target,
            environment,
            store,
            compiled,
            components,
            threads,
            macro_identity: SqlMacros::identity(&macros),
            engine: engine.clone(),
            early_database: std::sync::Mutex::new(early_database),
            warehouse_file,
            known_warehouse,
            stamped,
            early_records: std::sync::Mutex::new(early_records),
            always_verify: false,
        })
    }

    /// [`Session::open`] on one of the runtime's blocking threads.
    pub async fn opened(
        engine: &Engine,
        root: &Path,
        selector: &Selector,
        environment: Option<&str>,
        threads: Option<usize>,
        records: Records,
    ) -> Result<Self, EngineError> {
        let (engine, root, selector) = (engine.clone(), root.to_path_buf(), selector.clone());
        let environment = environment.map(str::to_string);
        crate::blocking(move || {
            Session::open(
                &engine,
                &root,
                &selector,
                environment.as_deref(),
                threads,
                records,
            )
        })
        .await?
    }

    pub fn state_dir(&self) -> PathBuf {
        state_dir(&self.project.root, &self.project.config)
    }

    fn limits(&self) -> Limits {
        limits(&self.engine, &self.project.config, self.threads)
    }

    /// Loads every plugin component and connects them to `database`.
    pub async fn load_plugins(
        &self,
        database: &Warehouse,
    ) -> Result<Arc<LoadedPlugins>, EngineError> {
        self.load_plugins_with(database, self.components.clone())
            .await
    }

    /// Loads only the components a run needs, now that `connected` knows
    /// which serves what: the adapter and the materializations of
    /// `strategies`. Loading a component costs a read of its compiled form
    /// even when cached, which on a small project is most of the run.
    pub async fn load_plugins_for(
        &self,
        connected: &Connected,
        strategies: &std::collections::BTreeSet<&str>,
    ) -> Result<Arc<LoadedPlugins>, EngineError> {
        let known = &connected.plugins;
        let wanted = |hash: &Hash| {
            *hash == known.adapter
                || strategies
                    .iter()
                    .any(|s| known.strategies.get(*s) == Some(hash))
        };
        let components = self
            .components
            .iter()
            .filter(|c| wanted(&c.hash))
            .cloned()
            .collect();
        self.load_plugins_with(&connected.database, components)
            .await
    }

    /// The plugins loaded while connecting, else only the adapter (what
    /// publishing and dropping need: its SQL).
    pub async fn adapter_plugins(
        &self,
        connected: &Connected,
    ) -> Result<Arc<LoadedPlugins>, EngineError> {
        match &connected.loaded {
            Some(loaded) => Ok(loaded.clone()),
            None => self.load_plugins_for(connected, &Default::default()).await,
        }
    }

    async fn load_plugins_with(
        &self,
        database: &Warehouse,
        components: Vec<Component>,
    ) -> Result<Arc<LoadedPlugins>, EngineError> {
        Ok(LoadedPlugins::start(
            &self.target_name,
            &self.target,
            &self.project.root,
            components,
            self.engine.plugin_host(self.limits())?,
            database.clone(),
        )
        .await?)
    }

    /// Connects to the target and reads what the store records for it.
    pub async fn connect(&self) -> Result<Connected, EngineError> {
        let early = self
            .early_database
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let (database, warehouse) = match (early, &self.known_warehouse) {
            (Some(opening), _) => opening.await.map_err(|e| {
                EngineError::Internal(format!("opening the target database failed: {e}"))
            })??,
            // A SQLite pool opens lazily: nothing reads the file until a
            // statement runs. A SQLite file that does not exist yet holds no
            // warehouse id: it is created by the first statement that
            // writes, so a command that stops before building anything
            // leaves no file behind.
            (None, known)
                if known.is_some()
                    || !Warehouse::opens_without_creating(&self.target.url, &self.project.root) =>
            {
                let database = self
                    .engine
                    .warehouse(
                        &self.target.url,
                        &self.project.root,
                        &self.target_name,
                        self.threads,
                    )
                    .await?;
                (database, known.clone())
            }
            (None, _) => {
                open_database(
                    &self.engine,
                    &self.target.url,
                    &self.project.root,
                    &self.target_name,
                    self.threads,
                )
                .await?
            }
        };
        if let (None, Some(file), Some(id)) =
            (&self.known_warehouse, &self.warehouse_file, &warehouse)
        {
            self.store.write(|w| w.put_warehouse_file(file, id))?;
        }
        if let Some(warehouse) = &warehouse {
            check_default_names(
                &self.compiled,
                &self.target,
                &self.environment,
                &self.store,
                warehouse,
            )?;
        }
        let set_key = orbital_runner::plugin_set_key(&self.components, self.target.scheme());
        let (plugins, loaded) = match self.store.plugin_set(&set_key)? {
            Some(plugins) => (plugins, None),
            None => {
                let loaded = self.load_plugins(&database).await?;
                let plugins = loaded.plugin_hashes().clone();
                crate::in_place(|| self.store.write(|w| w.put_plugin_set(&set_key, &plugins)))?;
                (plugins, Some(loaded))
            }
        };
        // One catalog query checks what the store records (see
        // `orbital_runner::Catalog`); it runs while the records are read.
        // Not when a SQLite file's schema cookie is the one at which this
        // environment last agreed with the store: then no relation has been
        // created, dropped or redefined since. The cookie is read from the
        // file's header: opening the file would parse its whole schema
        // (15-20 ms at 1k models, 130-160 ms at 10k).
        let unchanged = match &warehouse {
            Some(w) if !self.always_verify => self.schema_unchanged(w),
            _ => false,
        };
        // A plugin's own connection lists no catalog: the store is trusted.
        let catalog = (warehouse.is_some() && !unchanged && database.lists_catalog()).then(|| {
            let database = database.clone();
            let schemas = self.catalog_schemas();
            tokio::spawn(async move { database.catalog(&schemas).await })
        });
        // Reading the records (redb pages) and fingerprinting (hashing) are
        // independent: on two cores, one hides behind the other, unless
        // the records have been read since the session started.
        let early = self
            .early_records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let (fingerprints, records) = std::thread::scope(|scope| {
            let records = scope.spawn(|| -> Result<RecordMaps, EngineError> {
                Ok(match (&warehouse, early) {
                    (Some(w), Some((read, reading))) if *w == read => reading
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
                    (Some(w), _) => read_records(&self.engine, &self.store, w, &self.environment)?,
                    (None, _) => Default::default(),
                })
            });
            let fingerprints = self.fingerprints(&plugins);
            tracing::debug!("fingerprinted");
            let records = records
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (fingerprints, records)
        });
        let fingerprints = fingerprints.map_err(|(strategy, model)| {
            let installed: Vec<&str> = plugins.strategies.keys().map(String::as_str).collect();
            self.project
                .unknown_materialization(&model, &strategy, &installed)
        })?;
        let RecordMaps {
            recorded,
            builds,
            planned,
        } = records?;
        tracing::debug!("records read");
        let stateful = self.compiled.dag.nodes.iter().any(|n| n.is_stateful());
        let base = match &warehouse {
            Some(w) if stateful && self.environment != orbital_core::plan::DEFAULT_ENVIRONMENT => {
                let base = self
                    .store
                    .environment(w, orbital_core::plan::DEFAULT_ENVIRONMENT)?;
                Some(self::recorded(&base))
            }
            _ => None,
        };
        let catalog = match catalog {
            Some(reading) => Some(
                reading
                    .await
                    .map_err(|e| EngineError::Internal(format!("reading the catalog failed: {e}")))?
                    .map_err(|e| self.catalog_unread(&e))?,
            ),
            None => None,
        };
        Ok(Connected {
            database,
            warehouse,
            loaded,
            fingerprints,
            planned,
            recorded,
            builds,
            plugins,
            base,
            catalog,
        })
    }

    /// Whether a SQLite warehouse's schema cookie is the one recorded when
    /// this environment last agreed with the store. Any doubt is a no.
    fn schema_unchanged(&self, warehouse: &str) -> bool {
        let Some(current) = Warehouse::sqlite_schema_cookie(&self.target.url, &self.project.root)
        else {
            return false;
        };
        self.store
            .verified_schema(warehouse, &self.environment)
            .is_ok_and(|verified| verified == Some(current))
    }

    /// The schemas builds and this environment's relations live in.
    /// Why the catalog could not be read, as the engine reports it.
    pub(crate) fn catalog_unread(&self, e: &orbital_plugin_host::types::DbError) -> EngineError {
        EngineError::Database(format!(
            "target `{}`: cannot read the warehouse's catalog: {}",
            self.target_name, e.message
        ))
    }

    pub(crate) fn catalog_schemas(&self) -> Vec<Option<String>> {
        let mut schemas = vec![self.target.schema.clone()];
        let environment = environment_schema(&self.target, &self.environment);
        if !schemas.contains(&environment) {
            schemas.push(environment);
        }
        // Models with a `schema` config are published in schemas of their own.
        let published: std::collections::BTreeSet<&Option<String>> = self
            .compiled
            .dag
            .nodes
            .iter()
            .filter(|node| !node.is_test())
            .map(|node| &node.relation.schema)
            .filter(|schema| **schema != self.target.schema)
            .collect();
        for schema in published {
            let in_environment = environment_relation(
                &self.environment,
                &RelationName {
                    schema: schema.clone(),
                    identifier: String::new(),
                },
            )
            .schema;
            if !schemas.contains(&in_environment) {
                schemas.push(in_environment);
            }
        }
        schemas
    }

    /// The project's fingerprints.
    fn fingerprints(&self, plugins: &PluginHashes) -> Result<Arc<Fingerprints>, (String, String)> {
        // The compile this process keeps, when it is this session's: its
        // fingerprints are kept with it, or made from the previous
        // compile's.
        let kept = (self.engine.kept_project(&self.project.root))
            .filter(|kept| Arc::ptr_eq(&kept.dag, &self.compiled.dag));
        match kept {
            Some(kept) => kept.fingerprints(plugins, || self.whole_fingerprints(plugins)),
            None => self.whole_fingerprints(plugins).map(Arc::new),
        }
    }

    /// Every node's fingerprint: saved beside the project's snapshot when
    /// nothing they depend on changed (10k models: a 640 kB read instead of
    /// 17 ms of hashing), else computed and saved.
    fn whole_fingerprints(&self, plugins: &PluginHashes) -> Result<Fingerprints, (String, String)> {
        let saved = self.stamped.as_ref().map(|(key, files)| {
            let check = orbital_core::snapshot::fingerprint_key(key, files, plugins);
            (key, check)
        });
        if let Some((key, check)) = &saved
            && let Ok(Some(fingerprints)) = self.store.fingerprints(key, check)
            && fingerprints.full.len() == self.compiled.dag.nodes.len()
        {
            return Ok(fingerprints);
        }
        let fingerprints =
            orbital_core::fingerprint::fingerprint(&self.project, &self.compiled.dag, plugins)?;
        if let Some((key, check)) = &saved
            && let Err(e) = self.store.save_fingerprints(key, check, &fingerprints)
        {
            tracing::warn!("cannot save the project's fingerprints: {e}");
        }
        Ok(fingerprints)
    }

    /// The selection, with `state:` selectors answered against `connected`.
    pub fn select(
        &self,
        selector: &Selector,
        connected: &Connected,
    ) -> Result<Selection, EngineError> {
        let diff = orbital_core::plan::state_diff(
            &self.compiled.dag,
            &connected.fingerprints,
            &connected.planned,
        );
        Ok(Selection::resolve_with_state(
            &self.compiled.dag,
            &selector.select,
            &selector.exclude,
            Some(&diff),
        )?)
    }

    /// The plan of `selection` against this session's environment.
    pub fn plan(
        &self,
        connected: &Connected,
        selection: &Selection,
        full_refresh: bool,
    ) -> Result<orbital_core::plan::Plan, EngineError> {
        let verified = connected.catalog.as_ref().map(|catalog| Verified {
            session: self,
            connected,
            catalog,
        });
        Ok(orbital_core::plan::plan(
            &self.compiled.dag,
            &connected.fingerprints,
            &selection.nodes,
            &self.environment,
            &connected.planned,
            |fp| connected.builds.contains_key(fp),
            orbital_core::plan::PlanOptions {
                warehouse: verified
                    .as_ref()
                    .map(|v| v as &dyn orbital_core::plan::WarehouseState),
                full_refresh,
                base: connected.base.as_ref(),
            },
        )?)
    }

    /// Where a fingerprint of `name` lives: where it was built, else where it will be.
    pub fn physical(&self, connected: &Connected, name: &str, fingerprint: &Hash) -> RelationName {
        match connected.builds.get(fingerprint) {
            Some(record) => record.relation.clone(),
            None => physical_relation(&self.target, name, fingerprint),
        }
    }

    /// What users query for node `id` in this session's environment.
    pub fn env_relation(&self, id: NodeId) -> RelationName {
        environment_relation(&self.environment, &self.compiled.dag.nodes[id].relation)
    }

    /// What users query in this session's environment for the node named
    /// `name` (by `index`, from [`Session::node_index`]); one the project no
    /// longer has is published under its name.
    pub fn env_relation_named(&self, index: &HashMap<&str, NodeId>, name: &str) -> RelationName {
        match index.get(name) {
            Some(&id) => self.env_relation(id),
            None => environment_relation(
                &self.environment,
                &RelationName {
                    schema: self.target.schema.clone(),
                    identifier: name.to_string(),
                },
            ),
        }
    }

    /// Each node's id by name.
    pub fn node_index(&self) -> HashMap<&str, NodeId> {
        let nodes = self.compiled.dag.nodes.iter().enumerate();
        nodes.map(|(id, node)| (node.name.as_str(), id)).collect()
    }

    /// The parse-cache keys of the project as it is now (what `gc` keeps).
    pub fn parse_keys(&self) -> std::collections::BTreeSet<Hash> {
        let dialect = self.target.parser_dialect();
        let identity = &self.macro_identity;
        let tests = self.project.tests.iter();
        self.project
            .models
            .iter()
            .map(|m| m.parse_key(dialect, identity))
            .chain(tests.map(|t| orbital_core::compile::parse_key(dialect, identity, &t.sql)))
            .collect()
    }
}

/// [`orbital_core::plan::check_relation_names`] for the default
/// environment against `warehouse`'s others, asking the store for their
/// names only where a name could collide with one.
fn check_default_names(
    compiled: &CompiledProject,
    target: &Target,
    environment: &str,
    store: &Store,
    warehouse: &str,
) -> Result<(), EngineError> {
    let dag = &compiled.dag;
    let could_collide = target.schema.is_none()
        && environment == orbital_core::plan::DEFAULT_ENVIRONMENT
        && dag
            .nodes
            .iter()
            .any(|n| n.relation.identifier.contains("__"));
    if !could_collide {
        return Ok(());
    }
    let environments = store.environment_names(warehouse)?;
    Ok(orbital_core::plan::check_relation_names(
        dag,
        target,
        environment,
        &environments,
    )?)
}

/// One environment's records and every build of `warehouse`: read from the
/// store, or as the engine kept them while no write has changed the store
/// since (10k records and builds: about 15 ms of reading and decoding).
fn read_records(
    engine: &Engine,
    store: &Store,
    warehouse: &str,
    environment: &str,
) -> Result<RecordMaps, orbital_cas::CasError> {
    let read = || -> Result<RecordMaps, orbital_cas::CasError> {
        let recorded = store.environment(warehouse, environment)?;
        Ok(RecordMaps {
            planned: Arc::new(self::recorded(&recorded)),
            recorded: Arc::new(recorded),
            builds: Arc::new(store.builds(warehouse)?),
        })
    };
    if !engine.options().keep_projects {
        return read();
    }
    // Read before the records: a write in between makes the kept records
    // look older than they are, never newer.
    let generation = store.generation()?;
    let key = (
        store.path().to_path_buf(),
        warehouse.to_string(),
        environment.to_string(),
    );
    if let Some((at, records)) = crate::lock(&engine.shared.records).get(&key)
        && *at == generation
    {
        return Ok(records.clone());
    }
    let records = read()?;
    crate::lock(&engine.shared.records).insert(key, (generation, records.clone()));
    Ok(records)
}

/// The environment records as the planner reads them.
pub fn recorded(entries: &BTreeMap<String, EnvEntry>) -> RecordedByName {
    entries
        .iter()
        .map(|(name, e)| {
            (
                name.clone(),
                Recorded {
                    fingerprint: e.fingerprint,
                    local: e.local,
                },
            )
        })
        .collect()
}

/// Opens the target database and reads the warehouse identity Orbital keeps
/// in it (`None` for a database Orbital never wrote).
async fn open_database(
    engine: &Engine,
    url: &str,
    root: &Path,
    target_name: &str,
    threads: usize,
) -> Result<(Warehouse, Option<String>), EngineError> {
    let database = engine.warehouse(url, root, target_name, threads).await?;
    let warehouse = database.warehouse_id(false).await.map_err(|e| {
        EngineError::Database(format!(
            "target `{target_name}`: cannot read the warehouse identity: {}",
            e.message
        ))
    })?;
    Ok((database, warehouse))
}

/// This binary, as the size and modification time of its file: a rebuilt
/// `orbital` may compile differently, so it never trusts an older one's
/// snapshots.
fn build_identity() -> String {
    std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| format!("{} {:?}", m.len(), m.modified().ok()))
        .unwrap_or_default()
}

/// The project and its compiled graph: from the store's snapshot when no
/// source file has changed since it was taken, else read and compiled (with
/// the parse cache) and snapshotted for the next command.
pub(crate) fn load(
    engine: &Engine,
    root: &Path,
    config: ProjectConfig,
    target: &Target,
    store: &Store,
    macros: &PluginMacros,
    parses: SaveParses,
) -> Result<(Arc<Project>, CompiledProject, Option<Stamped>), EngineError> {
    let read_at = SystemTime::now();
    // Macro plugins write SQL the snapshot keeps: they are part of its key.
    let identity = format!("{} {}", build_identity(), SqlMacros::identity(macros));
    let key = orbital_core::snapshot::key(&config, target, &identity);
    // The compile this process kept is the saved snapshot's twin: when its
    // key is this one, the saved one need not be decoded.
    // A dbt model's text also depends on what its Jinja reads outside the
    // project's files (`env_var()`): a dbt project is always compiled
    // (through the parse cache), never restored from a snapshot.
    let dbt = config.dbt.is_some();
    let kept = engine
        .kept_project(root)
        .filter(|kept| kept.key == key && !dbt);
    // Decoding the snapshot (23 MB for 10k models) and stamping every file
    // are independent until compared: one core decodes while the others stat.
    // A kept project's watch says which files changed since its stamps.
    let watch = engine.watch(root);
    let (files, snapshot) = std::thread::scope(|scope| {
        let snapshot = kept.is_none().then(|| scope.spawn(|| store.snapshot(&key)));
        let files = match &watch {
            Some(watch) => {
                let known = kept
                    .as_ref()
                    .and_then(|kept| Some((&kept.files, kept.watched?)));
                watch
                    .stamps(&config, known)
                    .map(|(files, at)| (files, Some(at)))
            }
            None => orbital_core::snapshot::stamp_files(root, &config).map(|files| (files, None)),
        };
        let snapshot = snapshot.map(|decoding| {
            decoding
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        (files, snapshot.transpose())
    });
    let ((files, watched), snapshot) = (files?, snapshot?.flatten());
    tracing::debug!(files = files.len(), elapsed = ?read_at.elapsed().unwrap_or_default(), "files stamped");
    let read = Read {
        engine,
        root,
        key,
        read_at,
        target,
        store,
        macros,
        parses,
        watched,
    };
    if let Some(kept) = kept {
        match kept.changed(&files) {
            Some(changed) if changed.is_empty() => {
                tracing::info!(
                    files = files.len(),
                    "no source file changed: project kept in memory"
                );
                let compiled = CompiledProject {
                    dag: kept.dag.clone(),
                    fresh_parses: Vec::new(),
                };
                return Ok((kept.project.clone(), compiled, Some((key, files))));
            }
            Some(changed) => {
                if let Some(project) = Project::clone(&kept.project).reloaded(&changed) {
                    tracing::info!(changed = changed.len(), "read again what changed");
                    let (project, models) = project?;
                    let (dialect, macro_identity) =
                        (target.parser_dialect(), SqlMacros::identity(macros));
                    let replaced: Vec<Hash> = (models.iter())
                        .filter_map(|&index| kept.project.models.get(index))
                        .map(|old| old.parse_key(dialect, &macro_identity))
                        .collect();
                    let seeds = project.seeds.len();
                    let changed = Changed {
                        dag: &kept.dag,
                        models: &models,
                        replaced: &replaced,
                        since: kept.since(models.iter().map(|m| seeds + m).collect()),
                    };
                    return read.compile(project, files, false, Some(changed));
                }
            }
            None => {}
        }
    }
    if let Some(snapshot) = snapshot
        && snapshot.matches(&key, &files)
        && !dbt
    {
        tracing::info!(
            files = files.len(),
            "no source file changed: project restored from the state snapshot"
        );
        let (project, dag) = snapshot.restore(root, config);
        let (project, dag) = (Arc::new(project), Arc::new(dag));
        engine.keep_project(root, || Kept {
            key,
            files: files.clone(),
            watched,
            project: project.clone(),
            dag: dag.clone(),
            racy: Vec::new(),
            fingerprints: Default::default(),
            since: None,
        });
        let compiled = CompiledProject {
            dag,
            fresh_parses: Vec::new(),
        };
        return Ok((project, compiled, Some((key, files))));
    }
    let started = std::time::Instant::now();
    let project = Project::load_with_config(root, config)?;
    tracing::debug!(elapsed = ?started.elapsed(), "project read");
    read.compile(project, files, !dbt, None)
}

/// The last compile of a project of which only some model files changed.
struct Changed<'a> {
    dag: &'a orbital_core::Dag,
    /// Those models, by index, ascending.
    models: &'a [usize],
    /// Their parse keys in that compile.
    replaced: &'a [Hash],
    /// That compile's fingerprints, for the new one's ([`Kept::since`]).
    since: Option<(crate::kept::Prints, Vec<NodeId>)>,
}

/// What [`load`] compiles a project read from disk with.
struct Read<'a> {
    engine: &'a Engine,
    root: &'a Path,
    key: Hash,
    read_at: SystemTime,
    target: &'a Target,
    store: &'a Store,
    macros: &'a PluginMacros,
    parses: SaveParses,
    /// The watch's event number the files' stamps are as new as.
    watched: Option<u64>,
}

impl Read<'_> {
    /// Compiles `project`, read from `files`; saves its parse results and,
    /// with `snapshot`, its snapshot (a compile of a few files read again
    /// in a daemon leaves that to the next command that reads it whole).
    /// With `changed`, only the changed models are compiled again.
    fn compile(
        &self,
        project: Project,
        files: Vec<(PathBuf, orbital_core::snapshot::Stamp)>,
        snapshot: bool,
        changed: Option<Changed<'_>>,
    ) -> Result<(Arc<Project>, CompiledProject, Option<Stamped>), EngineError> {
        let started = std::time::Instant::now();
        let compiled = {
            let cache = self.store.parse_cache()?;
            let replaced = changed.as_ref().map(|c| c.replaced);
            self.engine.compile_with_parses(&cache, replaced, |cache| {
                orbital_core::compile(
                    &project,
                    self.target,
                    orbital_core::CompileOptions {
                        cache,
                        macros: self.macros,
                        strategies: self.macros,
                        previous: changed.as_ref().map(|c| orbital_core::Previous {
                            dag: c.dag,
                            changed: c.models,
                        }),
                    },
                )
            })?
        };
        tracing::info!(elapsed = ?started.elapsed(), "project compiled");
        let key = self.key;
        let mut stamped = None;
        // The two caches are written at once: a redb transaction of parse
        // results (10k models: ~150 ms) beside the snapshot file.
        let saved = std::thread::scope(|scope| {
            let saving = (self.parses == SaveParses::Now && !compiled.fresh_parses.is_empty())
                .then(|| {
                    scope.spawn(|| crate::run::save_parses(self.store, &compiled.fresh_parses))
                });
            let captured = snapshot
                .then(|| Snapshot::capture(&key, &files, self.read_at, &project, &compiled.dag))
                .flatten();
            if let Some(snapshot) = captured {
                match self.store.save_snapshot(&snapshot) {
                    Ok(()) => stamped = Some(key),
                    // A cache: without it the next command reads the project again.
                    Err(e) => tracing::warn!("cannot save the project snapshot: {e}"),
                }
            }
            saving.map(|saving| {
                saving
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        });
        saved.transpose()?;
        tracing::debug!(elapsed = ?started.elapsed(), "caches saved");
        let racy = Snapshot::racy(&files, self.read_at);
        // Read again in a daemon and not snapshotted, the project is still
        // named by its stamps when none is too fresh to trust.
        let trusted = !snapshot && racy.is_empty() && project.config.dbt.is_none();
        let project = Arc::new(project);
        self.engine.keep_project(self.root, || Kept {
            key,
            files: files.clone(),
            watched: self.watched,
            project: project.clone(),
            dag: compiled.dag.clone(),
            racy,
            fingerprints: Default::default(),
            since: changed.and_then(|c| c.since),
        });
        let stamped = stamped.or(trusted.then_some(key)).map(|key| (key, files));
        let mut compiled = compiled;
        if self.parses == SaveParses::Now {
            compiled.fresh_parses.clear();
        }
        Ok((project, compiled, stamped))
    }
}

/// Whether [`load`] saves the parse results it computed, or leaves them in
/// `fresh_parses` for the run's own store transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaveParses {
    Now,
    WithTheRun,
}

/// The plugin limits of a project's orbital.toml, for `threads` calls at once.
pub(crate) fn limits(engine: &Engine, config: &ProjectConfig, threads: usize) -> Limits {
    let settings = &config.plugins;
    Limits {
        timeout: Duration::from_millis(settings.timeout_ms),
        memory_bytes: usize::try_from(settings.memory_limit_mb << 20).unwrap_or(usize::MAX),
        concurrency: u32::try_from(threads).unwrap_or(u32::MAX),
        cache_dir: engine.options().cache_dir.clone(),
    }
}
