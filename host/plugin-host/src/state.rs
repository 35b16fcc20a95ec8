//! What each plugin instance's store holds, and the host side of the imports.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::network::{GrantedHttp, Grants};

use crate::bindings::adapter::Adapter as AdapterBindings;
use crate::bindings::adapter::exports::orbital::plugin::dialect as adapter_dialect;
use crate::bindings::materialization::orbital::plugin::{database, dialect};
use crate::types::{Column, LogLevel, LogicalType, Relation, RelationKind, RowSet, Statement};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The target database as a plugin sees it. The runner implements it over
/// its connection pool.
pub trait Database: Send + Sync {
    fn execute(&self, statement: Statement) -> BoxFuture<'_, Result<u64, database::DbError>>;
    fn query(&self, statement: Statement) -> BoxFuture<'_, Result<RowSet, database::DbError>>;
    fn transaction(
        &self,
        statements: Vec<Statement>,
    ) -> BoxFuture<'_, Result<Vec<u64>, database::DbError>>;
    fn log(&self, level: LogLevel, message: &str);
}

const STDERR_CAPACITY: usize = 64 * 1024;

/// Per-call guard rails: memory, time and captured stderr.
pub(crate) struct Guard {
    pub plugin: String,
    memory_limit: usize,
    pub memory_exceeded: bool,
    budget: Duration,
    started: Instant,
    /// Time spent in host calls (database, adapter), which the budget excludes.
    host_time: Duration,
    pub timed_out: bool,
    /// Set from outside to stop the call at the next tick (a cancelled run).
    interrupt: Interrupt,
    pub interrupted: bool,
    pub stderr: MemoryOutputPipe,
}

/// A flag that stops every plugin call that carries it at its next epoch
/// tick (about 10 ms), for a cancelled run. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<std::sync::atomic::AtomicBool>);

impl Interrupt {
    pub fn interrupt(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Guard {
    pub fn new(plugin: &str, memory_limit: usize, budget: Duration) -> Self {
        Self::interruptible(plugin, memory_limit, budget, Interrupt::default())
    }

    pub fn interruptible(
        plugin: &str,
        memory_limit: usize,
        budget: Duration,
        interrupt: Interrupt,
    ) -> Self {
        Self {
            plugin: plugin.to_string(),
            memory_limit,
            memory_exceeded: false,
            budget,
            started: Instant::now(),
            host_time: Duration::ZERO,
            timed_out: false,
            interrupt,
            interrupted: false,
            stderr: MemoryOutputPipe::new(STDERR_CAPACITY),
        }
    }

    /// What the plugin wrote to stderr (a panic message, usually), trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_string()
    }

    fn over_budget(&self) -> bool {
        self.started.elapsed().saturating_sub(self.host_time) > self.budget
    }

    pub fn budget_ms(&self) -> u64 {
        u64::try_from(self.budget.as_millis()).unwrap_or(u64::MAX)
    }

    pub fn memory_limit_mb(&self) -> u64 {
        (self.memory_limit >> 20) as u64
    }

    /// Makes `interrupt` the flag that stops this instance's calls (a
    /// pooled connection serves one run after another).
    pub fn set_interrupt(&mut self, interrupt: Interrupt) {
        self.interrupt = interrupt;
        self.interrupted = false;
    }

    /// Starts the clock for a new export call.
    pub fn restart(&mut self) {
        self.started = Instant::now();
        self.host_time = Duration::ZERO;
    }
}

impl ResourceLimiter for Guard {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Store data that carries a [`Guard`] and WASI.
pub(crate) trait Guarded: WasiView + Send + 'static {
    fn guard(&mut self) -> &mut Guard;
}

/// WASI with nothing granted: no files, environment, arguments or network,
/// a wall clock stuck at the epoch; stderr is kept for error messages.
pub(crate) fn sandboxed_wasi(guard: &Guard) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    builder
        .stderr(guard.stderr.clone())
        .wall_clock(FrozenClock)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder.build()
}

/// [`sandboxed_wasi`] plus TCP to what `grants` allow (and name look-ups),
/// and the real wall clock (a connection's protocols need the time).
fn networked_wasi(guard: &Guard, grants: &Arc<Grants>) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    let check = grants.clone();
    builder
        .stderr(guard.stderr.clone())
        .allow_tcp(true)
        .allow_udp(false)
        .allow_ip_name_lookup(true)
        .socket_addr_check(move |address, use_| {
            let allowed = check.check_socket(address, use_);
            Box::pin(async move { allowed })
        });
    builder.build()
}

struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// Arms the deadline: the epoch ticks every [`crate::engine::TICK`]; at each
/// tick the plugin either yields to the runtime or, past its budget, stops.
pub(crate) fn arm<T: Guarded>(store: &mut Store<T>) {
    store.limiter(|data| data.guard());
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut context| {
        let guard = context.data_mut().guard();
        if guard.interrupt.is_set() {
            guard.interrupted = true;
            return Err(wasmtime::Error::msg("interrupted"));
        }
        if guard.over_budget() {
            guard.timed_out = true;
            return Err(wasmtime::Error::msg("time limit reached"));
        }
        Ok(UpdateDeadline::Yield(1))
    });
}

/// The store data of a plugin that reaches nothing but the host's pure
/// imports: adapters (none) and macro plugins (the catalog); or, for an
/// adapter's own connection, the network its target grants.
pub struct PureState {
    pub(crate) guard: Guard,
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    http_hooks: GrantedHttp,
    pub(crate) grants: Arc<Grants>,
    /// For a macro call: the columns of the relations passed to it, which
    /// the host looked up before the call (see `orbital_core::catalog`).
    pub(crate) catalog: BTreeMap<String, Result<Vec<Column>, String>>,
}

/// An adapter instance's store data.
pub type AdapterState = PureState;
/// A macro plugin instance's store data.
pub type MacroState = PureState;

impl PureState {
    pub(crate) fn new(guard: Guard) -> Self {
        let grants = Grants::none();
        Self {
            wasi: sandboxed_wasi(&guard),
            guard,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            http_hooks: GrantedHttp(grants.clone()),
            grants,
            catalog: BTreeMap::new(),
        }
    }

    /// For an adapter's own connection: the network `grants` allow.
    pub(crate) fn networked(guard: Guard, grants: Arc<Grants>) -> Self {
        Self {
            wasi: networked_wasi(&guard, &grants),
            guard,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            http_hooks: GrantedHttp(grants.clone()),
            grants,
            catalog: BTreeMap::new(),
        }
    }
}

impl WasiHttpView for PureState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl WasiView for PureState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Guarded for PureState {
    fn guard(&mut self) -> &mut Guard {
        &mut self.guard
    }
}

/// A live adapter instance in its own store.
pub struct AdapterInstance {
    pub(crate) store: Store<AdapterState>,
    pub(crate) bindings: AdapterBindings,
}

/// A materialization instance's store data: its database and its adapter.
pub struct TaskState {
    pub(crate) guard: Guard,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) database: Arc<dyn Database>,
    /// None only while a materialization is loaded and described.
    pub(crate) adapter: Option<AdapterInstance>,
    /// Set when the adapter failed under a call, so the error names it.
    pub(crate) adapter_failure: Option<wasmtime::Error>,
}

impl TaskState {
    pub(crate) fn new(
        guard: Guard,
        database: Arc<dyn Database>,
        adapter: Option<AdapterInstance>,
    ) -> Self {
        Self {
            wasi: sandboxed_wasi(&guard),
            guard,
            table: ResourceTable::new(),
            database,
            adapter,
            adapter_failure: None,
        }
    }

    /// Runs host work off the plugin's clock.
    async fn off_clock<R>(&mut self, work: impl AsyncFnOnce(&mut Self) -> R) -> R {
        let started = Instant::now();
        let result = work(self).await;
        self.guard.host_time += started.elapsed();
        result
    }
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Guarded for TaskState {
    fn guard(&mut self) -> &mut Guard {
        &mut self.guard
    }
}

impl crate::bindings::adapter::orbital::plugin::types::Host for TaskState {}

impl database::Host for TaskState {
    async fn execute(
        &mut self,
        statement: Statement,
    ) -> wasmtime::Result<Result<u64, database::DbError>> {
        Ok(self
            .off_clock(async |s| s.database.execute(statement).await)
            .await)
    }

    async fn query(
        &mut self,
        statement: Statement,
    ) -> wasmtime::Result<Result<RowSet, database::DbError>> {
        Ok(self
            .off_clock(async |s| s.database.query(statement).await)
            .await)
    }

    async fn transaction(
        &mut self,
        statements: Vec<Statement>,
    ) -> wasmtime::Result<Result<Vec<u64>, database::DbError>> {
        Ok(self
            .off_clock(async |s| s.database.transaction(statements).await)
            .await)
    }

    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.database.log(level, &message);
        Ok(())
    }
}

/// Forwards one `dialect` import to the adapter instance's export, off the
/// materialization's clock, remembering an adapter failure for the error.
macro_rules! forward {
    ($self:ident, $call:ident ( $($arg:expr),* )) => {{
        $self
            .off_clock(async |s| {
                let Some(adapter) = s.adapter.as_mut() else {
                    return Err(wasmtime::Error::msg("no adapter is linked while the plugin loads"));
                };
                adapter.store.data_mut().guard.restart();
                let dialect = adapter.bindings.orbital_plugin_dialect();
                let result = dialect.$call(&mut adapter.store $(, $arg)*).await;
                result.map_err(|e| {
                    s.adapter_failure = Some(wasmtime::Error::msg(e.to_string()));
                    e
                })
            })
            .await
    }};
}

impl dialect::Host for TaskState {
    async fn describe(&mut self) -> wasmtime::Result<dialect::AdapterInfo> {
        let info = forward!(self, call_describe())?;
        Ok(dialect::AdapterInfo {
            plugin: info.plugin,
            url_schemes: info.url_schemes,
            parser_dialect: info.parser_dialect,
            transactional_ddl: info.transactional_ddl,
        })
    }
    async fn quote_identifier(&mut self, name: String) -> wasmtime::Result<String> {
        forward!(self, call_quote_identifier(&name))
    }
    async fn render_relation(&mut self, relation: Relation) -> wasmtime::Result<String> {
        forward!(self, call_render_relation(&relation))
    }
    async fn relation_kind_query(&mut self, relation: Relation) -> wasmtime::Result<Statement> {
        forward!(self, call_relation_kind_query(&relation))
    }
    async fn columns_query(&mut self, relation: Relation) -> wasmtime::Result<Statement> {
        forward!(self, call_columns_query(&relation))
    }
    async fn create_schema(
        &mut self,
        database: Option<String>,
        schema: String,
    ) -> wasmtime::Result<Vec<Statement>> {
        forward!(self, call_create_schema(database.as_deref(), &schema))
    }
    async fn create_view(
        &mut self,
        relation: Relation,
        sql: String,
    ) -> wasmtime::Result<Vec<Statement>> {
        forward!(self, call_create_view(&relation, &sql))
    }
    async fn create_table_as(
        &mut self,
        relation: Relation,
        sql: String,
    ) -> wasmtime::Result<Vec<Statement>> {
        forward!(self, call_create_table_as(&relation, &sql))
    }
    async fn create_table(
        &mut self,
        relation: Relation,
        columns: Vec<Column>,
    ) -> wasmtime::Result<Vec<Statement>> {
        forward!(self, call_create_table(&relation, &columns))
    }
    async fn drop_relation(
        &mut self,
        relation: Relation,
        kind: RelationKind,
    ) -> wasmtime::Result<Vec<Statement>> {
        forward!(self, call_drop_relation(&relation, kind))
    }
    async fn swap_relation(&mut self, swap: dialect::Swap) -> wasmtime::Result<Vec<Statement>> {
        let swap = adapter_dialect::Swap {
            staged: swap.staged,
            target: swap.target,
            existing: swap.existing,
        };
        forward!(self, call_swap_relation(&swap))
    }
    async fn insert_select(
        &mut self,
        relation: Relation,
        columns: Vec<String>,
        sql: String,
    ) -> wasmtime::Result<Vec<Statement>> {
        forward!(self, call_insert_select(&relation, &columns, &sql))
    }
    async fn insert_values(
        &mut self,
        relation: Relation,
        columns: Vec<String>,
        row_count: u32,
    ) -> wasmtime::Result<String> {
        forward!(self, call_insert_values(&relation, &columns, row_count))
    }
    async fn merge(
        &mut self,
        target: Relation,
        source: Relation,
        unique_key: Vec<String>,
        columns: Vec<String>,
    ) -> wasmtime::Result<Vec<Statement>> {
        forward!(self, call_merge(&target, &source, &unique_key, &columns))
    }
    async fn delete_insert(
        &mut self,
        target: Relation,
        source: Relation,
        unique_key: Vec<String>,
        columns: Vec<String>,
    ) -> wasmtime::Result<Vec<Statement>> {
        forward!(
            self,
            call_delete_insert(&target, &source, &unique_key, &columns)
        )
    }
    async fn add_column(
        &mut self,
        relation: Relation,
        column: Column,
    ) -> wasmtime::Result<Vec<Statement>> {
        forward!(self, call_add_column(&relation, &column))
    }
    async fn drop_column(
        &mut self,
        relation: Relation,
        name: String,
    ) -> wasmtime::Result<Vec<Statement>> {
        forward!(self, call_drop_column(&relation, &name))
    }
    async fn column_type(&mut self, logical: LogicalType) -> wasmtime::Result<String> {
        forward!(self, call_column_type(logical))
    }
}

impl crate::bindings::adapter::orbital::plugin::types::Host for PureState {}

impl crate::bindings::macros::orbital::plugin::catalog::Host for PureState {
    /// Answers for the relations passed to the call being expanded: the
    /// host looks them up before the call, because working out a model's
    /// columns may mean expanding that model's macros first.
    async fn columns(&mut self, relation: String) -> wasmtime::Result<Result<Vec<Column>, String>> {
        Ok(match self.catalog.get(&relation.to_lowercase()) {
            Some(columns) => columns.clone(),
            None => Err(format!(
                "`{relation}` is not a model, seed or source passed to this call: a macro can ask for the columns of the relations it is given"
            )),
        })
    }
}
