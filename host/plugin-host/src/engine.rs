//! The engine: compiles components once per process and instantiates them
//! per call from pre-linked `InstancePre`s in a pooling allocator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::bindings::adapter::exports::orbital::plugin::dialect::Guest as DialectGuest;
use crate::bindings::adapter::{Adapter as AdapterBindings, AdapterPre};
use crate::bindings::macros::exports::orbital::plugin::expander::{Call, Signature};
use crate::bindings::macros::{Macros as MacrosBindings, MacrosPre};
use crate::bindings::materialization::{
    Materialization as MaterializationBindings, MaterializationPre,
};
use crate::bindings::v0_2::connected_adapter::ConnectedAdapterPre;
use crate::bindings::v0_2::materialization::MaterializationPre as MaterializationPreV0_2;
use crate::bindings::v0_2::materialization::exports::orbital::plugin0_2_0::strategy as strategy_v0_2;
use crate::error::PluginError;
use crate::state::{
    AdapterInstance, AdapterState, Database, Guard, Guarded, Interrupt, MacroState, TaskState, arm,
};
use crate::types::{AdapterInfo, Column, ModelTask, Outcome, PluginInfo};

/// A component's bytes: borrowed from the binary for a bundled one (no
/// copy per process), owned for one read from a file or the store.
pub type Bytes = std::borrow::Cow<'static, [u8]>;

/// How often the epoch advances: the granularity of deadlines and yields.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Limits applied to every plugin call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time a call may spend in plugin code (host database time excluded).
    pub timeout: Duration,
    /// Linear memory one instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// How many calls may run at once (sizes the instance pool).
    pub concurrency: u32,
    /// Where compiled components are cached across processes; None: no cache.
    pub cache_dir: Option<std::path::PathBuf>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_bytes: 256 << 20,
            concurrency: 8,
            cache_dir: None,
        }
    }
}

/// A loaded plugin, by world.
pub enum Plugin {
    Adapter(Box<Adapter>),
    Materialization(Materialization),
    Macros(MacroPlugin),
}

/// A compiled macro plugin, ready to instantiate.
pub struct MacroPlugin {
    pub info: PluginInfo,
    /// The macros it claims.
    pub signatures: Vec<Signature>,
    pre: MacrosPre<MacroState>,
}

/// A compiled adapter, ready to instantiate.
pub struct Adapter {
    pub info: AdapterInfo,
    pre: AdapterPre<AdapterState>,
    /// Its own connection (plugin API 0.2.0), when it brings one.
    pub(crate) connected: Option<ConnectedAdapterPre<AdapterState>>,
}

impl Adapter {
    /// Whether it connects to its database itself (see [`PluginHost::connect`]).
    pub fn has_connection(&self) -> bool {
        self.connected.is_some()
    }
}

/// A compiled materialization, ready to instantiate.
pub struct Materialization {
    pub info: PluginInfo,
    /// The name models use in `materialized = '...'`.
    pub strategy: String,
    /// Whether its builds continue the model's previous table, as the
    /// plugin declares it (0.2.0); `None` for a 0.1.0 component, which
    /// cannot say: the host's built-in names (`incremental`, `snapshot`)
    /// then decide.
    pub keeps_history: Option<bool>,
    pre: StrategyPre,
}

impl Plugin {
    /// The version of `orbital:plugin` the component was built against.
    pub fn api_version(&self) -> &'static str {
        match self {
            Plugin::Materialization(m) if m.keeps_history.is_some() => "0.2.0",
            Plugin::Adapter(a) if a.has_connection() => "0.2.0",
            _ => "0.1.0",
        }
    }
}

/// A materialization's pre-linked instance, by the API version it was
/// built against: both link to the same 0.1.0 imports.
enum StrategyPre {
    V0_1(MaterializationPre<TaskState>),
    V0_2(MaterializationPreV0_2<TaskState>),
}

/// Loads and runs plugins. Create one per process.
pub struct PluginHost {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
    adapter_linker: Linker<AdapterState>,
    /// [`Self::adapter_linker`] plus `wasi:http`, for adapters with their
    /// own connection only; made on first use.
    connected_linker: std::sync::OnceLock<Result<Linker<AdapterState>, String>>,
    task_linker: Linker<TaskState>,
    macro_linker: Linker<MacroState>,
    /// Components compiled by this host, by the blake3 hash of their bytes:
    /// a second run in the same process (the daemon) compiles nothing.
    compiled: std::sync::Mutex<std::collections::HashMap<[u8; 32], Component>>,
    _ticker: EpochTicker,
}

impl PluginHost {
    pub fn new(limits: Limits) -> Result<Self, PluginError> {
        let engine_error = |e: wasmtime::Error| PluginError::Engine(e.into());
        let engine = Engine::new(&engine_config(&limits)).map_err(engine_error)?;
        let mut adapter_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut adapter_linker).map_err(engine_error)?;
        let mut task_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut task_linker).map_err(engine_error)?;
        MaterializationBindings::add_to_linker::<_, HasSelf<TaskState>>(
            &mut task_linker,
            |state| state,
        )
        .map_err(engine_error)?;
        let mut macro_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut macro_linker).map_err(engine_error)?;
        MacrosBindings::add_to_linker::<_, HasSelf<MacroState>>(&mut macro_linker, |state| state)
            .map_err(engine_error)?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            limits,
            adapter_linker,
            connected_linker: std::sync::OnceLock::new(),
            task_linker,
            macro_linker,
            compiled: Default::default(),
            _ticker: ticker,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles a component, or maps its cached machine code; CPU-heavy,
    /// so it runs off the async threads.
    async fn compile(&self, label: &str, bytes: Bytes) -> Result<Component, PluginError> {
        let key = *blake3::hash(&bytes).as_bytes();
        let known = self.compiled.lock().ok().and_then(|c| c.get(&key).cloned());
        if let Some(component) = known {
            return Ok(component);
        }
        let component = self.compile_new(label, bytes).await?;
        if let Ok(mut compiled) = self.compiled.lock() {
            compiled.insert(key, component.clone());
        }
        Ok(component)
    }

    async fn compile_new(&self, label: &str, bytes: Bytes) -> Result<Component, PluginError> {
        let engine = self.engine.clone();
        let cache = self.limits.cache_dir.clone();
        let load_error = |message: String| PluginError::Load {
            plugin: label.to_string(),
            message,
        };
        tokio::task::spawn_blocking(move || {
            crate::compiled::load(&engine, cache.as_deref(), &bytes)
        })
        .await
        .map_err(|e| load_error(e.to_string()))?
        .map_err(|e| load_error(format!("not a valid component: {e:#}")))
    }

    /// Compiles a component and loads it as the world it exports; `label`
    /// names it in errors until it names itself.
    pub async fn load(&self, label: &str, bytes: impl Into<Bytes>) -> Result<Plugin, PluginError> {
        let component = self.compile(label, bytes.into()).await?;
        let exports = exports(&self.engine, &component);
        let exports_interface = |interface: &str, version: &str| {
            exports
                .iter()
                .any(|e| e == &format!("orbital:plugin/{interface}@{version}"))
        };
        if exports_interface("strategy", "0.2.0") {
            self.load_materialization_v0_2(label, &component)
                .await
                .map(Plugin::Materialization)
        } else if exports_interface("dialect", "0.1.0") {
            self.load_adapter(label, &component)
                .await
                .map(|adapter| Plugin::Adapter(Box::new(adapter)))
        } else if exports_interface("strategy", "0.1.0") {
            self.load_materialization(label, &component)
                .await
                .map(Plugin::Materialization)
        } else if exports_interface("expander", "0.1.0") {
            self.load_macros(label, &component)
                .await
                .map(Plugin::Macros)
        } else {
            Err(PluginError::Load {
                plugin: label.to_string(),
                message: format!(
                    "it exports none of the worlds this host loads (adapter, materialization, macros of orbital:plugin@0.1.0; materialization of orbital:plugin@0.2.0); its exports: [{}]",
                    exports.join(", ")
                ),
            })
        }
    }

    async fn load_adapter(
        &self,
        label: &str,
        component: &Component,
    ) -> Result<Adapter, PluginError> {
        let has_connection = exports(&self.engine, component)
            .iter()
            .any(|e| e == "orbital:plugin/connection@0.2.0");
        // Only an adapter with its own connection may import `wasi:http`
        // (and is granted only its target's host when it connects).
        let linker = match has_connection {
            true => self.connected_linker()?,
            false => &self.adapter_linker,
        };
        let instance_pre = linker
            .instantiate_pre(component)
            .map_err(|e| wrong_world(label, "adapter", "0.1.0", e))?;
        let pre = AdapterPre::new(instance_pre.clone())
            .map_err(|e| wrong_world(label, "adapter", "0.1.0", e))?;
        let connected = match has_connection {
            true => Some(
                ConnectedAdapterPre::new(instance_pre)
                    .map_err(|e| wrong_world(label, "connected-adapter", "0.2.0", e))?,
            ),
            false => None,
        };
        let mut session = AdapterSession {
            instance: instantiate_adapter(
                &self.engine,
                &self.limits,
                &pre,
                label,
                &Interrupt::default(),
            )
            .await?,
            plugin: label.to_string(),
        };
        let info = session
            .call(async |dialect, store| dialect.call_describe(store).await)
            .await?;
        Ok(Adapter {
            info,
            pre,
            connected,
        })
    }

    async fn load_materialization(
        &self,
        label: &str,
        component: &Component,
    ) -> Result<Materialization, PluginError> {
        let pre = self
            .task_linker
            .instantiate_pre(component)
            .and_then(MaterializationPre::new)
            .map_err(|e| wrong_world(label, "materialization", "0.1.0", e))?;
        let mut store = self.describing_store(label).await?;
        let (info, strategy) = async {
            let bindings = pre.instantiate_async(&mut store).await?;
            let api = bindings.orbital_plugin_strategy();
            let info = api.call_describe(&mut store).await?;
            wasmtime::Result::Ok((info, api.call_strategy_name(&mut store).await?))
        }
        .await
        .map_err(|e| classify(&store.data().guard, e))?;
        Ok(Materialization {
            info,
            strategy,
            keeps_history: None,
            pre: StrategyPre::V0_1(pre),
        })
    }

    async fn load_materialization_v0_2(
        &self,
        label: &str,
        component: &Component,
    ) -> Result<Materialization, PluginError> {
        let pre = self
            .task_linker
            .instantiate_pre(component)
            .and_then(MaterializationPreV0_2::new)
            .map_err(|e| wrong_world(label, "materialization", "0.2.0", e))?;
        let mut store = self.describing_store(label).await?;
        let described = async {
            let bindings = pre.instantiate_async(&mut store).await?;
            bindings
                .orbital_plugin0_2_0_strategy()
                .call_describe(&mut store)
                .await
        }
        .await
        .map_err(|e| classify(&store.data().guard, e))?;
        Ok(Materialization {
            info: described.plugin,
            strategy: described.name,
            keeps_history: Some(described.keeps_history),
            pre: StrategyPre::V0_2(pre),
        })
    }

    fn connected_linker(&self) -> Result<&Linker<AdapterState>, PluginError> {
        self.connected_linker
            .get_or_init(|| {
                let mut linker = self.adapter_linker.clone();
                wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
                    .map_err(|e| format!("{e:#}"))?;
                Ok(linker)
            })
            .as_ref()
            .map_err(|message| PluginError::Engine(message.clone().into()))
    }

    /// A store to describe a materialization in: describing needs an
    /// instance, which gets a database that refuses everything.
    async fn describing_store(&self, label: &str) -> Result<Store<TaskState>, PluginError> {
        self.task_store(label, Arc::new(NoDatabase), None, &Interrupt::default())
            .await
    }

    async fn load_macros(
        &self,
        label: &str,
        component: &Component,
    ) -> Result<MacroPlugin, PluginError> {
        let pre = self
            .macro_linker
            .instantiate_pre(component)
            .and_then(MacrosPre::new)
            .map_err(|e| wrong_world(label, "macros", "0.1.0", e))?;
        let mut session = self.macro_session_of(label, &pre).await?;
        let info = session
            .call(async |expander, store| expander.call_describe(store).await)
            .await?;
        let signatures = session
            .call(async |expander, store| expander.call_signatures(store).await)
            .await?;
        Ok(MacroPlugin {
            info,
            signatures,
            pre,
        })
    }

    /// One instance of a macro plugin, reused for every call of a compile
    /// (each call under the plugin's time limit).
    pub async fn macro_session(&self, plugin: &MacroPlugin) -> Result<MacroSession, PluginError> {
        self.macro_session_of(&plugin.info.name, &plugin.pre).await
    }

    async fn macro_session_of(
        &self,
        plugin: &str,
        pre: &MacrosPre<MacroState>,
    ) -> Result<MacroSession, PluginError> {
        let guard = Guard::new(plugin, self.limits.memory_bytes, self.limits.timeout);
        let mut store = Store::new(&self.engine, MacroState::new(guard));
        arm(&mut store);
        let bindings = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| classify(&store.data().guard, e))?;
        Ok(MacroSession { store, bindings })
    }

    async fn task_store(
        &self,
        plugin: &str,
        database: Arc<dyn Database>,
        adapter: Option<&Adapter>,
        interrupt: &Interrupt,
    ) -> Result<Store<TaskState>, PluginError> {
        let adapter_instance = match adapter {
            Some(adapter) => Some(
                instantiate_adapter(
                    &self.engine,
                    &self.limits,
                    &adapter.pre,
                    &adapter.info.plugin.name,
                    interrupt,
                )
                .await?,
            ),
            None => None,
        };
        let guard = Guard::interruptible(
            plugin,
            self.limits.memory_bytes,
            self.limits.timeout,
            interrupt.clone(),
        );
        let mut store = Store::new(
            &self.engine,
            TaskState::new(guard, database, adapter_instance),
        );
        arm(&mut store);
        Ok(store)
    }

    /// Builds one model: a fresh materialization instance linked to a fresh
    /// adapter instance and `database`; `interrupt` stops it (and its
    /// adapter) at the next tick.
    pub async fn materialize(
        &self,
        adapter: &Adapter,
        materialization: &Materialization,
        database: Arc<dyn Database>,
        task: &ModelTask,
        interrupt: &Interrupt,
    ) -> Result<Outcome, PluginError> {
        let plugin = materialization.info.name.as_str();
        let mut store = self
            .task_store(plugin, database, Some(adapter), interrupt)
            .await?;
        let result = match &materialization.pre {
            StrategyPre::V0_1(pre) => {
                async {
                    let bindings = pre.instantiate_async(&mut store).await?;
                    bindings
                        .orbital_plugin_strategy()
                        .call_materialize(&mut store, task)
                        .await
                }
                .await
            }
            StrategyPre::V0_2(pre) => {
                async {
                    let bindings = pre.instantiate_async(&mut store).await?;
                    let outcome = bindings
                        .orbital_plugin0_2_0_strategy()
                        .call_materialize(&mut store, &task_v0_2(task))
                        .await?;
                    Ok(outcome.map(|o| Outcome {
                        rows_affected: o.rows_affected,
                        message: o.message,
                    }))
                }
                .await
            }
        };
        match result {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(message)) => Err(PluginError::Failed {
                plugin: plugin.to_string(),
                message,
            }),
            Err(error) => {
                let state = store.data();
                Err(match (&state.adapter_failure, &state.adapter) {
                    (Some(adapter_error), Some(adapter)) => {
                        classify_ref(&adapter.store.data().guard, adapter_error)
                    }
                    _ => classify(&state.guard, error),
                })
            }
        }
    }

    /// An adapter instance for the host's own dialect calls (seeds, introspection).
    pub async fn adapter_session(&self, adapter: &Adapter) -> Result<AdapterSession, PluginError> {
        let name = adapter.info.plugin.name.clone();
        let instance = instantiate_adapter(
            &self.engine,
            &self.limits,
            &adapter.pre,
            &name,
            &Interrupt::default(),
        )
        .await?;
        Ok(AdapterSession {
            instance,
            plugin: name,
        })
    }
}

/// The names a component exports, e.g. `orbital:plugin/dialect@0.1.0`.
fn exports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

fn engine_config(limits: &Limits) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    // Each call holds two component instances (materialization + adapter);
    // a wasip2 component has a handful of core instances, memories and tables.
    let components = limits.concurrency.saturating_mul(2).saturating_add(8);
    pool.total_component_instances(components)
        .total_core_instances(components.saturating_mul(8))
        .total_memories(components.saturating_mul(2))
        .total_tables(components.saturating_mul(4))
        .total_stacks(components)
        // The limiter enforces the user's limit and records that it did;
        // the pool's own ceiling sits above it.
        .max_memory_size(limits.memory_bytes.saturating_mul(2).max(64 << 20));
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

async fn instantiate_adapter(
    engine: &Engine,
    limits: &Limits,
    pre: &AdapterPre<AdapterState>,
    plugin: &str,
    interrupt: &Interrupt,
) -> Result<AdapterInstance, PluginError> {
    let guard = Guard::interruptible(
        plugin,
        limits.memory_bytes,
        limits.timeout,
        interrupt.clone(),
    );
    let mut store = Store::new(engine, AdapterState::new(guard));
    arm(&mut store);
    let bindings: AdapterBindings = pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| classify(&store.data().guard, e))?;
    Ok(AdapterInstance { store, bindings })
}

/// An adapter instance the host calls directly.
pub struct AdapterSession {
    instance: AdapterInstance,
    plugin: String,
}

impl AdapterSession {
    /// Calls one dialect export under the adapter's limits.
    pub async fn call<R>(
        &mut self,
        f: impl AsyncFnOnce(&DialectGuest, &mut Store<AdapterState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let AdapterInstance { store, bindings } = &mut self.instance;
        store.data_mut().guard().restart();
        f(bindings.orbital_plugin_dialect(), store)
            .await
            .map_err(|e| classify(&store.data().guard, e))
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }
}

/// A live macro plugin instance.
pub struct MacroSession {
    store: Store<MacroState>,
    bindings: MacrosBindings,
}

impl MacroSession {
    async fn call<R>(
        &mut self,
        f: impl AsyncFnOnce(
            &crate::bindings::macros::exports::orbital::plugin::expander::Guest,
            &mut Store<MacroState>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.store.data_mut().guard().restart();
        f(self.bindings.orbital_plugin_expander(), &mut self.store)
            .await
            .map_err(|e| classify(&self.store.data().guard, e))
    }

    /// Expands one call: the SQL text for its position, or the plugin's
    /// own error message. `catalog` answers the plugin's column look-ups
    /// (lowercase relation name -> its columns) during this call.
    pub async fn expand(
        &mut self,
        call: &Call,
        catalog: BTreeMap<String, Result<Vec<Column>, String>>,
    ) -> Result<Result<String, String>, PluginError> {
        self.store.data_mut().catalog = catalog;
        let result = self
            .call(async |expander, store| expander.call_expand(store, call).await)
            .await;
        self.store.data_mut().catalog.clear();
        result
    }
}

/// Turns a failed call into what the user should read.
pub(crate) fn classify(guard: &Guard, error: wasmtime::Error) -> PluginError {
    classify_ref(guard, &error)
}

fn classify_ref(guard: &Guard, error: &wasmtime::Error) -> PluginError {
    let plugin = guard.plugin.clone();
    if guard.interrupted {
        return PluginError::Interrupted { plugin };
    }
    if guard.timed_out {
        return PluginError::Timeout {
            plugin,
            limit_ms: guard.budget_ms(),
        };
    }
    if guard.memory_exceeded {
        return PluginError::Memory {
            plugin,
            limit_mb: guard.memory_limit_mb(),
        };
    }
    let stderr = panic_message(&guard.stderr_text());
    let trap = error
        .downcast_ref::<wasmtime::Trap>()
        .map(ToString::to_string);
    let message = match (stderr.is_empty(), trap) {
        (false, _) => stderr.replace('\n', " "),
        (true, Some(trap)) => trap,
        (true, None) => format!("{error:#}"),
    };
    PluginError::Trap { plugin, message }
}

/// A Rust guest's panic output without the boilerplate around the message.
fn panic_message(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    let text = lines.join(" ");
    match (text.find("panicked at "), text.starts_with("thread ")) {
        (Some(at), true) => text[at..].to_string(),
        _ => text,
    }
}

fn wrong_world(label: &str, world: &str, version: &str, error: wasmtime::Error) -> PluginError {
    PluginError::Load {
        plugin: label.to_string(),
        message: format!(
            "it does not implement the `{world}` world of orbital:plugin@{version}: {error:#}"
        ),
    }
}

/// The same task as 0.2.0 spells it (its records are its own types).
fn task_v0_2(task: &ModelTask) -> strategy_v0_2::ModelTask {
    strategy_v0_2::ModelTask {
        model: task.model.clone(),
        relation: task.relation.clone(),
        previous: task.previous.clone(),
        sql: task.sql.clone(),
        config: task.config.clone(),
        full_refresh: task.full_refresh,
        run_started_at: task.run_started_at.clone(),
    }
}

/// The database handed to an instance that must not touch one.
struct NoDatabase;

impl Database for NoDatabase {
    fn execute(
        &self,
        _: crate::types::Statement,
    ) -> crate::BoxFuture<'_, Result<u64, crate::types::DbError>> {
        Box::pin(async { Err(refused()) })
    }
    fn query(
        &self,
        _: crate::types::Statement,
    ) -> crate::BoxFuture<'_, Result<crate::types::RowSet, crate::types::DbError>> {
        Box::pin(async { Err(refused()) })
    }
    fn transaction(
        &self,
        _: Vec<crate::types::Statement>,
    ) -> crate::BoxFuture<'_, Result<Vec<u64>, crate::types::DbError>> {
        Box::pin(async { Err(refused()) })
    }
    fn log(&self, _: crate::types::LogLevel, _: &str) {}
}

fn refused() -> crate::types::DbError {
    crate::types::DbError {
        message: "no database while loading the plugin".into(),
        code: None,
        transient: false,
    }
}

/// Advances the engine's epoch every [`TICK`] until dropped. Dropping wakes
/// the thread at once (its channel closes), so a process exits without
/// waiting out a tick.
struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("orbital-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    engine.increment_epoch();
                }
            })
            .ok();
        Self {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
