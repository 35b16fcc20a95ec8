//! The host's side of the `database` import, backed by sqlx's concrete
//! drivers: SQLite (`sqlite://`), PostgreSQL (`postgres://`) and MySQL or
//! MariaDB (`mysql://`, `mariadb://`).
//!
//! The runner owns the connections; each task gets a [`TaskDatabase`] that
//! tags its log lines with the model. SQLite write transactions start with
//! `BEGIN IMMEDIATE` so concurrent writers wait on SQLite's busy timeout
//! instead of failing with a deadlock when a read lock cannot be upgraded.

mod connections;
mod lent;
mod locks;
mod mysql;
mod plugin;
mod postgres;
pub mod remote;
mod sqlite;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use orbital_core::remote::session::{WarehouseAnswer, WarehouseOp};
use orbital_plugin_host::types::{Column, DbError, LogLevel, RowSet, Statement, Value};
use orbital_plugin_host::{BoxFuture, Database};

pub use crate::error::DatabaseError;
pub use lent::Lent;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, TypeInfo, ValueRef};

pub(crate) fn plain(sql: &str) -> Statement {
    Statement {
        sql: sql.to_string(),
        params: Vec::new(),
    }
}

/// A fresh random id: 128 bits, which is enough to tell warehouses apart.
fn new_warehouse_id() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// 64 random bits from the clock, the process and the OS's hash seed (a
/// new one per call): ids and tokens, not cryptography.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

pub use locks::{Claim, Claimed, RunLock};

/// The code a statement of a cancelled run fails with (PostgreSQL's
/// `query_canceled`, also used for SQLite's interrupt).
pub const CANCELLED: &str = "57014";

/// What a statement of a cancelled run fails with.
fn cancelled() -> DbError {
    DbError {
        message: "canceling statement: the run was cancelled".into(),
        code: Some(CANCELLED.into()),
        transient: false,
    }
}

/// The transaction-scoped lock under which `_orbital_warehouse` is made.
const WAREHOUSE_ID_KEY: i64 = 0x6f72_6269_7461_6c02;

/// How long a statement waits for SQLite's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The target database, shared by every task and every run of a process.
/// A clone made by [`Warehouse::for_run`] speaks for one run: its
/// statements carry the run's tag and [`Warehouse::interrupt`] stops them.
#[derive(Clone)]
pub struct Warehouse {
    backend: Backend,
    run: RunTag,
    interrupts: Arc<Interrupts>,
    /// The builds this process's runs are making ([`locks`]).
    claims: Arc<locks::Claims>,
}

/// Which run a handle's statements belong to.
#[derive(Clone, Default)]
struct RunTag {
    /// 0: no run (commands that only read or publish).
    id: u64,
    /// `/* orbital run ... */ `: what PostgreSQL shows in pg_stat_activity,
    /// and what a cancel looks for there.
    comment: Option<Arc<str>>,
    interrupt: orbital_plugin_host::Interrupt,
}

/// What a cancelled run's statements are stopped by.
#[derive(Default)]
struct Interrupts {
    /// Tells this process's runs apart from other processes' on a server.
    nonce: String,
    /// SQLite: the run whose statement holds the one connection, and the
    /// run being cancelled; SQLite's progress handler (every
    /// [`PROGRESS_STEPS`] VM steps) stops the statement when they match.
    sqlite_owner: std::sync::atomic::AtomicU64,
    sqlite_stop: std::sync::atomic::AtomicU64,
}

/// How many SQLite VM steps run between checks for a cancel: about a
/// millisecond of work, and no measurable cost.
const PROGRESS_STEPS: std::ffi::c_int = 10_000;

/// SQLite's progress callback: non-zero interrupts the statement.
extern "C" fn sqlite_progress(context: *mut std::ffi::c_void) -> std::ffi::c_int {
    use std::sync::atomic::Ordering;
    // SAFETY: `context` is an `Interrupts` leaked for the connection's life
    // (`install_progress_handler`), so it is valid for every call.
    let interrupts = unsafe { &*(context as *const Interrupts) };
    let owner = interrupts.sqlite_owner.load(Ordering::SeqCst);
    std::ffi::c_int::from(owner != 0 && owner == interrupts.sqlite_stop.load(Ordering::SeqCst))
}

/// Installs [`sqlite_progress`] on a new connection. The callback's context
/// is one reference to `interrupts`, leaked: the connection may outlive
/// every `Warehouse` handle (sqlx closes it on its own thread), and a
/// process opens few connections.
async fn install_progress_handler(
    connection: &mut sqlx::SqliteConnection,
    interrupts: &Arc<Interrupts>,
) -> Result<(), sqlx::Error> {
    let mut handle = connection.lock_handle().await?;
    let context = Arc::into_raw(interrupts.clone()) as *mut std::ffi::c_void;
    // SAFETY: the handle is locked (no statement runs on it meanwhile) and
    // valid; the context lives forever (above).
    unsafe {
        libsqlite3_sys::sqlite3_progress_handler(
            handle.as_raw_handle().as_ptr(),
            PROGRESS_STEPS,
            Some(sqlite_progress),
            context,
        );
    }
    Ok(())
}

/// SQLite: one connection, because SQLite runs one writer at a time anyway,
/// and because each DDL statement makes every other connection reparse the
/// whole schema before its next statement (with a pool, building n models
/// cost O(n²) schema parsing). PostgreSQL and MySQL: the connection that
/// opened it, then more as tasks overlap ([`connections`]).
///
/// Remote: a target only a peer reaches ([`remote`]). Plugin: a target
/// whose adapter brings its own connection ([`plugin`]).
#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Link),
    Postgres(connections::Connections<sqlx::Postgres>),
    MySql(connections::Connections<sqlx::MySql>),
    Remote(Arc<remote::Remote>),
    /// A database the adapter connects to itself (plugin API 0.2.0).
    Plugin(Arc<plugin::PluginLink>),
}

/// Which SQL Orbital's own statements are written in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Sqlite,
    Postgres,
    MySql,
    /// Orbital's own statements go through the adapter's dialect.
    Plugin,
}

/// Runs one statement on a connection or transaction of either backend;
/// unparameterised text may hold several statements.
macro_rules! run_on {
    ($backend:ident, $executor:expr, $statement:expr) => {{
        let statement: &Statement = $statement;
        if statement.params.is_empty() {
            sqlx::raw_sql(AssertSqlSafe(statement.sql.clone()))
                .execute($executor)
                .await
                .map(|done| done.rows_affected())
        } else {
            sqlx::query_with(
                AssertSqlSafe(statement.sql.clone()),
                $backend::bind(&statement.params)?,
            )
            .execute($executor)
            .await
            .map(|done| done.rows_affected())
        }
    }};
}

/// Runs `statements` in one transaction on a lease of a server's
/// `connections`, each tagged with `this` handle's run, pushing the rows
/// each affected onto `affected`. (A macro, as [`run_on!`].)
macro_rules! server_transaction {
    ($driver:ident, $this:expr, $connections:expr, $statements:expr, $affected:expr) => {{
        let mut lease = $connections.acquire().await.map_err(failed_before_commit)?;
        let result = async {
            let mut transaction = sqlx::Connection::begin(&mut *lease)
                .await
                .map_err(failed_before_commit)?;
            for original in $statements {
                let statement = &*$this.tagged(original);
                $affected.push(
                    run_on!($driver, &mut *transaction, statement)
                        .map_err(failed_before_commit)
                        .map_err(|mut f| {
                            f.error = in_statement(f.error, original);
                            f
                        })?,
                );
            }
            transaction.commit().await.map_err(failed)
        }
        .await;
        settle($connections, lease, result)?;
    }};
}

/// The columns of a query that returned no rows (the rows name them
/// otherwise), as the database prepares the statement; `None` when it
/// returned rows, failed, or cannot be prepared. (A macro: an async fn
/// generic over executors is not `Send` here.)
macro_rules! empty_columns {
    ($executor:expr, $rows:expr, $sql:expr, $type_name:expr) => {{
        match $rows {
            Ok(rows) if rows.is_empty() => {
                use sqlx::{Executor as _, Statement as _};
                let sql = sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe($sql.to_string()));
                match $executor.prepare(sql).await {
                    Ok(prepared) => Some(
                        prepared
                            .columns()
                            .iter()
                            .map(|c| column_of(c, $type_name))
                            .collect::<Vec<_>>(),
                    ),
                    Err(_) => None,
                }
            }
            _ => None,
        }
    }};
}

/// How often, and after how long, a refused first connection to a server
/// is tried again.
const CONNECT_ATTEMPTS: u32 = 4;
const CONNECT_BACKOFF: Duration = Duration::from_millis(250);

/// A server's first connection, made by `connect`; a failure `retryable`
/// accepts (a server starting up, too many clients) is tried again with
/// backoff, any other is returned at once. One connection first: a pool
/// would retry a refused connection until its timeout and then report only
/// that it timed out.
async fn first_connection<C, F, Fut>(
    server: &str,
    connect: F,
    retryable: fn(&sqlx::Error) -> bool,
) -> Result<C, sqlx::Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<C, sqlx::Error>>,
{
    let mut backoff = CONNECT_BACKOFF;
    let mut attempt = 1;
    loop {
        match connect().await {
            Err(error) if attempt < CONNECT_ATTEMPTS && retryable(&error) => {
                tracing::warn!(attempt, "connecting to {server} failed, retrying: {error}");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// How often a call that certainly changed nothing is tried again, and the
/// first wait (doubling after each try).
const RETRIES: u32 = 3;
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Awaits `call` again, with backoff, while it fails without having taken
/// effect. (A macro: an async closure here makes the future not `Send`.)
macro_rules! retrying {
    ($call:expr) => {{
        let mut wait = RETRY_BACKOFF;
        let mut attempt = 1;
        loop {
            match $call.await {
                Err(failure) if failure.unapplied && attempt <= RETRIES => {
                    tracing::warn!(
                        attempt,
                        "retrying after a transient failure: {}",
                        failure.error.message
                    );
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
                result => break result.map_err(|failure: Failed| failure.error),
            }
        }
    }};
}

/// A failed call, and whether it certainly took no effect, so that trying
/// it again is safe.
struct Failed {
    error: DbError,
    unapplied: bool,
    /// The connection it happened on is gone.
    broken: bool,
}

impl From<DbError> for Failed {
    fn from(error: DbError) -> Self {
        Self {
            error,
            unapplied: false,
            broken: false,
        }
    }
}

/// A failure of a single statement: repeated only when the database says it
/// rolled back (serialization failure, deadlock, busy) or it never got a
/// connection; a connection lost mid-statement may have committed it.
fn failed(error: sqlx::Error) -> Failed {
    let unapplied = match &error {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            matches!(&*code, "40001" | "40P01" | "57P03" | "53300")
                || (code.len() < 5 && is_transient(&code))
        }),
        _ => false,
    };
    Failed {
        broken: connections::ends_connection(&error),
        error: db_error(error),
        unapplied,
    }
}

/// A failure inside a transaction before its COMMIT: the server rolls the
/// transaction back, so any transient failure leaves nothing behind.
/// A database's error with the statement it came from, so that the user
/// sees which of a plugin's statements failed. Only errors the database
/// raised (those with a code): a lost connection or a cancel is not the
/// statement's fault.
fn in_statement(mut error: DbError, statement: &Statement) -> DbError {
    const SHOWN: usize = 300;
    if error.code.is_none() || error.message.contains(STATEMENT_LABEL) {
        return error;
    }
    let text = statement
        .sql
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let shown = match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    };
    error.message = format!("{}{STATEMENT_LABEL}{shown}", error.message);
    error
}

const STATEMENT_LABEL: &str = "; in the statement: ";

fn failed_before_commit(error: sqlx::Error) -> Failed {
    let mut failure = failed(error);
    failure.unapplied |= failure.error.transient;
    failure
}

impl Warehouse {
    /// The file a `sqlite://` URL names, when it exists (not `:memory:`).
    pub(crate) fn existing_file(url: &str, base: &Path) -> Option<std::path::PathBuf> {
        let path = url.strip_prefix("sqlite://")?;
        if path.is_empty() || path == ":memory:" {
            return None;
        }
        let file = base.join(path);
        file.is_file().then_some(file)
    }

    /// Whether opening `url` may start before the project is known to be
    /// valid: it creates nothing (an existing SQLite file, or a server,
    /// also one an adapter plugin connects to).
    pub fn opens_without_creating(url: &str, base: &Path) -> bool {
        !url.starts_with("sqlite:") || Self::existing_file(url, base).is_some()
    }

    /// What tells an existing SQLite warehouse file apart without opening
    /// it: its device, inode and birth time, and its path. The same file
    /// keeps them through every write; a file deleted and made again, or
    /// another moved in its place, does not. `None`: not a SQLite file, or
    /// a file system that keeps no birth time.
    #[cfg(unix)]
    pub fn file_identity(url: &str, base: &Path) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let file = Self::existing_file(url, base)?;
        let metadata = std::fs::metadata(&file).ok()?;
        let born = metadata
            .created()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_nanos();
        let path = std::fs::canonicalize(&file).ok()?;
        Some(format!(
            "{}:{}:{born}:{}",
            metadata.dev(),
            metadata.ino(),
            path.display()
        ))
    }

    #[cfg(not(unix))]
    pub fn file_identity(_: &str, _: &Path) -> Option<String> {
        None
    }

    /// Connects to the database `url` names: a `sqlite://` file (created if
    /// needed; a relative path is relative to `base`), or a `postgres://` or
    /// `mysql://` server, whose transient connection failures are retried
    /// with backoff.
    pub async fn open(url: &str, base: &Path, threads: usize) -> Result<Self, DatabaseError> {
        let interrupts = Arc::new(Interrupts {
            nonce: new_warehouse_id()[..12].to_string(),
            ..Interrupts::default()
        });
        if is_postgres(url) {
            return postgres::connect(url, threads)
                .await
                .map(|(pool, first)| Self {
                    backend: Backend::Postgres(connections::Connections::new(pool, first)),
                    run: RunTag::default(),
                    interrupts,
                    claims: Arc::default(),
                });
        }
        if is_mysql(url) {
            return mysql::connect(url, threads)
                .await
                .map(|(pool, first)| Self {
                    backend: Backend::MySql(connections::Connections::new(pool, first)),
                    run: RunTag::default(),
                    interrupts,
                    claims: Arc::default(),
                });
        }
        let path = url.strip_prefix("sqlite://").ok_or_else(|| {
            DatabaseError::Url(format!(
                "`{}` is not a sqlite://, postgres:// or mysql:// URL",
                redact(url)
            ))
        })?;
        if path.is_empty() {
            return Err(DatabaseError::Url("the sqlite:// URL names no file".into()));
        }
        let in_memory = path == ":memory:";
        let options = if in_memory {
            SqliteConnectOptions::from_str("sqlite::memory:").map_err(|e| {
                DatabaseError::Server {
                    message: e.to_string(),
                    source: Some(e),
                }
            })?
        } else {
            let file = base.join(path);
            // SQLite's own word for these is "unable to open database
            // file", naming nothing: say which file, and why.
            if file.is_dir() {
                return Err(DatabaseError::Url(format!(
                    "{} is a directory, not a SQLite database file",
                    file.display()
                )));
            }
            if file.exists() {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&file)
                    .map_err(|source| DatabaseError::File {
                        message: format!("cannot open {} for writing", file.display()),
                        source,
                    })?;
            }
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|source| DatabaseError::File {
                    message: format!("cannot create {}", parent.display()),
                    source,
                })?;
            }
            // WAL with synchronous = NORMAL: a commit appends to the log
            // without waiting for the disk (each model's CREATE was an
            // fsync: most of a first build's time on SQLite); the log is
            // synced at each checkpoint. A power cut can lose the last
            // commits but never corrupts the file, and what it loses is
            // caught by the next run's catalog check, which builds it again.
            SqliteConnectOptions::new()
                .filename(file)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
        };
        // Lazy: a command that needs nothing of the file but the warehouse
        // id it already knows (see `file_identity`) never opens it.
        let link = sqlite::Link::lazy(options.busy_timeout(BUSY_TIMEOUT), interrupts.clone());
        Ok(Self {
            backend: Backend::Sqlite(link),
            run: RunTag::default(),
            interrupts,
            claims: Arc::default(),
        })
    }

    /// The target `link` reaches through a peer, which must be the kind of
    /// database `scheme` names (the project's URL for it, whose host this
    /// process need not reach).
    pub async fn remote(link: Arc<dyn remote::Link>, scheme: &str) -> Result<Self, DatabaseError> {
        let peer = link.peer().to_string();
        let theirs = match link.call(0, WarehouseOp::Open).await {
            Ok(WarehouseAnswer::Opened { scheme }) => scheme,
            Ok(WarehouseAnswer::Failed(error)) => {
                return Err(DatabaseError::Url(format!(
                    "peer {peer} cannot open the target: {}",
                    error.message
                )));
            }
            Ok(other) => {
                return Err(DatabaseError::Url(format!(
                    "peer {peer} answered an open with {other:?}"
                )));
            }
            Err(why) => {
                return Err(DatabaseError::Url(format!(
                    "peer {peer}, which holds the target's connection: {why}"
                )));
            }
        };
        fn kind(scheme: &str) -> &str {
            match scheme {
                "postgres" | "postgresql" => "postgres",
                "mysql" | "mariadb" => "mysql",
                other => other,
            }
        }
        let postgres = |scheme: &str| kind(scheme) == "postgres";
        if !matches!(kind(&theirs), "postgres" | "sqlite") {
            return Err(DatabaseError::Url(format!(
                "peer {peer}'s target is a {theirs}:// database: peers serve SQLite and PostgreSQL targets"
            )));
        }
        if kind(&theirs) != kind(scheme) {
            return Err(DatabaseError::Url(format!(
                "peer {peer}'s target is a {theirs}:// database, this project's a {scheme}:// one"
            )));
        }
        Ok(Self {
            backend: Backend::Remote(Arc::new(remote::Remote {
                link,
                postgres: postgres(&theirs),
            })),
            run: RunTag::default(),
            interrupts: Arc::default(),
            claims: Arc::default(),
        })
    }

    /// The URL scheme of this warehouse's database.
    pub fn scheme(&self) -> &str {
        match (&self.backend, self.flavor()) {
            (Backend::Plugin(link), _) => &link.scheme,
            (_, Flavor::Sqlite) => "sqlite",
            (_, Flavor::Postgres) => "postgres",
            (_, Flavor::MySql | Flavor::Plugin) => "mysql",
        }
    }

    /// A target whose adapter brings its own connection: `host` opens
    /// sessions of `adapter`'s connection to `url` for target `target`,
    /// at most `threads` at once, granted only `url`'s host and port.
    pub async fn plugin(
        host: Arc<orbital_plugin_host::PluginHost>,
        adapter: Arc<orbital_plugin_host::Adapter>,
        target: &str,
        url: &str,
        settings: Vec<(String, String)>,
        threads: usize,
    ) -> Result<Self, DatabaseError> {
        let link = plugin::PluginLink::open(host, adapter, target, url, settings, threads).await?;
        Ok(Self {
            backend: Backend::Plugin(Arc::new(link)),
            run: RunTag::default(),
            interrupts: Arc::default(),
            claims: Arc::default(),
        })
    }

    /// Whether [`Warehouse::catalog`] can list the database's relations;
    /// not for a plugin's own connection, whose adapter answers only what
    /// stands at one name.
    pub fn lists_catalog(&self) -> bool {
        !matches!(self.backend, Backend::Plugin(_))
    }

    fn flavor(&self) -> Flavor {
        match &self.backend {
            Backend::Sqlite(_) => Flavor::Sqlite,
            Backend::Postgres(_) => Flavor::Postgres,
            Backend::MySql(_) => Flavor::MySql,
            Backend::Remote(remote) if remote.postgres => Flavor::Postgres,
            Backend::Remote(_) => Flavor::Sqlite,
            Backend::Plugin(_) => Flavor::Plugin,
        }
    }

    /// The warehouse's identity: a random id Orbital keeps in the table
    /// `_orbital_warehouse`, so state recorded for one database is never
    /// taken for another's (a deleted and recreated database is a new
    /// warehouse). `create` writes one if there is none.
    pub async fn warehouse_id(&self, create: bool) -> Result<Option<String>, DbError> {
        if let Backend::Plugin(link) = &self.backend {
            return link.warehouse_id(create, &self.run.interrupt).await;
        }
        let probe = match self.flavor() {
            Flavor::Sqlite => {
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_orbital_warehouse'"
            }
            Flavor::Postgres => "SELECT 1 WHERE to_regclass('_orbital_warehouse') IS NOT NULL",
            Flavor::MySql => {
                "SELECT 1 FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = '_orbital_warehouse'"
            }
            Flavor::Plugin => unreachable!("a plugin's connection returned above"),
        };
        if !self.query(plain(probe)).await?.rows.is_empty() {
            let rows = self
                .query(plain("SELECT id FROM _orbital_warehouse LIMIT 1"))
                .await?;
            if let Some(Value::Text(id)) = rows.rows.first().and_then(|r| r.first()) {
                return Ok(Some(id.clone()));
            }
        }
        if !create {
            return Ok(None);
        }
        let id = new_warehouse_id();
        // Two runs may make it at once (on other environments): the first
        // one's id stands, under a lock on PostgreSQL, where two `CREATE
        // TABLE IF NOT EXISTS` at once can both try to create it.
        let (placeholder, lock) = self.bookkeeping();
        let dual = if self.flavor() == Flavor::MySql {
            " FROM DUAL"
        } else {
            ""
        };
        let mut insert = plain(&format!(
            "INSERT INTO _orbital_warehouse (id) SELECT {placeholder}{dual} \
             WHERE NOT EXISTS (SELECT 1 FROM _orbital_warehouse)"
        ));
        insert.params = vec![Value::Text(id)];
        let statements = lock.into_iter().chain([
            plain("CREATE TABLE IF NOT EXISTS _orbital_warehouse (id TEXT NOT NULL)"),
            insert,
        ]);
        self.transaction(statements.collect()).await?;
        let rows = self
            .query(plain("SELECT id FROM _orbital_warehouse LIMIT 1"))
            .await?;
        match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Text(id)) => Ok(Some(id.clone())),
            _ => Err(DbError {
                message: "_orbital_warehouse holds no id after writing one".into(),
                code: None,
                transient: false,
            }),
        }
    }

    /// For Orbital's own tables: the first parameter's placeholder, and on
    /// PostgreSQL the transaction lock their changes take (two `CREATE
    /// TABLE IF NOT EXISTS` at once can both try to create a table there;
    /// MySQL's metadata locks keep them apart).
    fn bookkeeping(&self) -> (&'static str, Option<Statement>) {
        match self.flavor() {
            Flavor::Sqlite | Flavor::MySql | Flavor::Plugin => ("?", None),
            Flavor::Postgres => (
                "$1",
                Some(plain(&format!(
                    "SELECT pg_advisory_xact_lock({WAREHOUSE_ID_KEY})"
                ))),
            ),
        }
    }

    /// Bumps environment `env`'s version in the warehouse (table
    /// `_orbital_environments`) and returns it: a counter every writer of
    /// this warehouse shares, so of two daemons' records of one
    /// environment the higher version is the later change. Called with the
    /// environment's lock held, so no other writer bumps it meanwhile.
    pub async fn bump_environment(&self, env: &str) -> Result<u64, DbError> {
        if let Backend::Plugin(link) = &self.backend {
            return link.bump_environment(env, &self.run.interrupt).await;
        }
        let (placeholder, lock) = self.bookkeeping();
        let (key_type, upsert) = match self.flavor() {
            // MySQL keys a text column only by a prefix: a bounded name.
            Flavor::MySql => (
                "VARCHAR(255)",
                "ON DUPLICATE KEY UPDATE version = version + 1",
            ),
            Flavor::Sqlite | Flavor::Postgres | Flavor::Plugin => (
                "TEXT",
                "ON CONFLICT (name) DO UPDATE SET version = _orbital_environments.version + 1",
            ),
        };
        let mut bump = plain(&format!(
            "INSERT INTO _orbital_environments (name, version) VALUES ({placeholder}, 1) {upsert}"
        ));
        bump.params = vec![Value::Text(env.to_string())];
        let statements = lock.into_iter().chain([
            plain(&format!(
                "CREATE TABLE IF NOT EXISTS _orbital_environments \
                 (name {key_type} PRIMARY KEY, version BIGINT NOT NULL)"
            )),
            bump,
        ]);
        self.transaction(statements.collect()).await?;
        let mut read = plain(&format!(
            "SELECT version FROM _orbital_environments WHERE name = {placeholder}"
        ));
        read.params = vec![Value::Text(env.to_string())];
        match self.query(read).await?.rows.first().and_then(|r| r.first()) {
            Some(Value::Integer(version)) => Ok(u64::try_from(*version).unwrap_or(0)),
            other => Err(DbError {
                message: format!("_orbital_environments holds no version for `{env}`: {other:?}"),
                code: None,
                transient: false,
            }),
        }
    }

    pub(crate) fn is_sqlite(&self) -> bool {
        self.flavor() == Flavor::Sqlite
    }

    pub(crate) fn is_mysql(&self) -> bool {
        self.flavor() == Flavor::MySql
    }

    /// The peer that holds this warehouse's connection, when this process
    /// reaches it only through one.
    pub fn via(&self) -> Option<&str> {
        match &self.backend {
            Backend::Remote(remote) => Some(remote.link.peer()),
            _ => None,
        }
    }

    /// This warehouse as run `id` speaks to it: its statements are tagged
    /// with the run, and stop once `interrupt` is set and
    /// [`Warehouse::interrupt`] is called.
    pub fn for_run(&self, id: u64, interrupt: orbital_plugin_host::Interrupt) -> Self {
        let comment = format!("/* orbital run {id} {} */ ", self.interrupts.nonce);
        Self {
            run: RunTag {
                id,
                comment: Some(comment.into()),
                interrupt,
            },
            ..self.clone()
        }
    }

    /// Stops this handle's run: no statement of it starts any more, and
    /// those running are cancelled on the server (PostgreSQL:
    /// `pg_cancel_backend`; MySQL: `KILL QUERY`; SQLite: the progress
    /// handler). Call it again
    /// while the run's tasks are still finishing: a statement on its way
    /// to the server when it was first called is caught the next time.
    pub async fn interrupt(&self) -> Result<(), DbError> {
        use std::sync::atomic::Ordering;
        self.run.interrupt.interrupt();
        match &self.backend {
            Backend::Sqlite(_) => {
                self.interrupts
                    .sqlite_stop
                    .store(self.run.id, Ordering::SeqCst);
                Ok(())
            }
            // The flag set above stops the sessions' calls.
            Backend::Plugin(_) => Ok(()),
            Backend::Remote(remote) => {
                match remote.call(self.run.id, WarehouseOp::Interrupt).await? {
                    WarehouseAnswer::Done => Ok(()),
                    other => Err(remote.unexpected(&other)),
                }
            }
            Backend::Postgres(_) => {
                let Some(comment) = &self.run.comment else {
                    return Ok(());
                };
                // The cancel runs untagged, on a connection of its own if the
                // run's are all busy.
                let untagged = Self {
                    run: RunTag::default(),
                    ..self.clone()
                };
                let mut cancel = plain(
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() \
                     AND state = 'active' AND starts_with(query, $1)",
                );
                cancel.params = vec![Value::Text(comment.to_string())];
                untagged.query_once(&cancel).await.map_err(|f| f.error)?;
                Ok(())
            }
            Backend::MySql(_) => {
                let Some(comment) = &self.run.comment else {
                    return Ok(());
                };
                let untagged = Self {
                    run: RunTag::default(),
                    ..self.clone()
                };
                let mut running = plain(
                    "SELECT ID FROM information_schema.PROCESSLIST \
                     WHERE ID <> CONNECTION_ID() AND COMMAND IN ('Query', 'Execute') \
                     AND LOCATE(?, INFO) = 1",
                );
                running.params = vec![Value::Text(comment.to_string())];
                let rows = untagged.query_once(&running).await.map_err(|f| f.error)?;
                for row in rows.rows {
                    if let Some(Value::Integer(id)) = row.first() {
                        // Already finished: nothing to stop.
                        let _ = untagged
                            .execute_once(&plain(&format!("KILL QUERY {id}")))
                            .await;
                    }
                }
                Ok(())
            }
        }
    }

    /// The flag that stops this handle's run's plugin calls.
    pub(crate) fn interrupt_flag(&self) -> &orbital_plugin_host::Interrupt {
        &self.run.interrupt
    }

    /// Refuses a statement of a cancelled run before it starts.
    fn check_interrupt(&self) -> Result<(), Failed> {
        if self.run.interrupt.is_set() {
            return Err(Failed::from(cancelled()));
        }
        Ok(())
    }

    /// `statement` as this handle sends it: tagged with its run on a server.
    fn tagged<'a>(&self, statement: &'a Statement) -> std::borrow::Cow<'a, Statement> {
        match (&self.backend, &self.run.comment) {
            (Backend::Postgres(_) | Backend::MySql(_), Some(comment)) => {
                std::borrow::Cow::Owned(Statement {
                    sql: format!("{comment}{}", statement.sql),
                    params: statement.params.clone(),
                })
            }
            _ => std::borrow::Cow::Borrowed(statement),
        }
    }

    /// Marks SQLite's one connection as serving this handle's run, for the
    /// progress handler.
    fn own(&self) {
        self.interrupts
            .sqlite_owner
            .store(self.run.id, std::sync::atomic::Ordering::SeqCst);
    }

    /// A handle for one task.
    pub fn for_task(&self, model: &str) -> Arc<TaskDatabase> {
        Arc::new(TaskDatabase {
            warehouse: self.clone(),
            model: model.to_string(),
        })
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(link) => link.close().await,
            Backend::Postgres(connections) => connections.close().await,
            Backend::MySql(connections) => connections.close().await,
            Backend::Plugin(link) => link.close().await,
            // The peer keeps its pool.
            Backend::Remote(_) => {}
        }
    }

    /// Runs one statement; returns the rows it affected.
    pub async fn execute(&self, statement: Statement) -> Result<u64, DbError> {
        retrying!(self.execute_once(&statement)).map_err(|e| in_statement(e, &statement))
    }

    /// Runs a query; returns its rows.
    pub async fn query(&self, statement: Statement) -> Result<RowSet, DbError> {
        retrying!(self.query_once(&statement)).map_err(|e| in_statement(e, &statement))
    }

    /// Runs the statements in one transaction (`BEGIN IMMEDIATE` on SQLite);
    /// returns the rows each affected. A transaction that failed before its
    /// COMMIT with a transient error (a lost connection, a deadlock) rolled
    /// back, and is run again.
    pub async fn transaction(&self, statements: Vec<Statement>) -> Result<Vec<u64>, DbError> {
        retrying!(self.transaction_once(&statements))
    }

    async fn execute_once(&self, statement: &Statement) -> Result<u64, Failed> {
        self.check_interrupt()?;
        let statement = &*self.tagged(statement);
        match &self.backend {
            Backend::Sqlite(link) => {
                let mut connection = link.acquire().await.map_err(failed)?;
                self.own();
                let result = run_on!(sqlite, &mut *connection, statement).map_err(failed);
                settle_sqlite(connection, result)
            }
            Backend::Postgres(connections) => {
                let mut lease = connections.acquire().await.map_err(failed)?;
                let result = run_on!(postgres, &mut *lease, statement).map_err(failed);
                settle(connections, lease, result)
            }
            Backend::MySql(connections) => {
                let mut lease = connections.acquire().await.map_err(failed)?;
                let result = run_on!(mysql, &mut *lease, statement).map_err(failed);
                settle(connections, lease, result)
            }
            // The peer retried what it could.
            Backend::Remote(remote) => Ok(remote.execute(self.run.id, statement).await?),
            Backend::Plugin(link) => link.execute(statement, &self.run.interrupt).await,
        }
    }

    async fn query_once(&self, statement: &Statement) -> Result<RowSet, Failed> {
        self.check_interrupt()?;
        let statement = &*self.tagged(statement);
        let sql = AssertSqlSafe(statement.sql.clone());
        match &self.backend {
            Backend::Sqlite(link) => {
                let arguments = sqlite::bind(&statement.params)?;
                let mut connection = link.acquire().await.map_err(failed)?;
                self.own();
                let rows = sqlx::query_with(sql, arguments)
                    .fetch_all(&mut *connection)
                    .await
                    .map_err(failed);
                let empty = empty_columns!(&mut *connection, &rows, &statement.sql, str::to_string);
                settle_sqlite(connection, rows)
                    .map(|rows| with_columns(sqlite::row_set(&rows), empty))
            }
            Backend::Postgres(connections) => {
                let arguments = postgres::bind(&statement.params)?;
                let mut lease = connections.acquire().await.map_err(failed)?;
                let rows = sqlx::query_with(sql, arguments)
                    .fetch_all(&mut *lease)
                    .await
                    .map_err(failed);
                let empty = empty_columns!(&mut *lease, &rows, &statement.sql, str::to_lowercase);
                settle(connections, lease, rows)
                    .map(|rows| with_columns(postgres::row_set(&rows), empty))
            }
            Backend::MySql(connections) => {
                let arguments = mysql::bind(&statement.params)?;
                let mut lease = connections.acquire().await.map_err(failed)?;
                let rows = if statement.params.is_empty() {
                    // The text protocol: a statement MySQL cannot prepare
                    // (SHOW, some DDL) runs as well.
                    sqlx::raw_sql(sql).fetch_all(&mut *lease).await
                } else {
                    sqlx::query_with(sql, arguments)
                        .fetch_all(&mut *lease)
                        .await
                }
                .map_err(failed);
                let empty = empty_columns!(&mut *lease, &rows, &statement.sql, str::to_lowercase);
                settle(connections, lease, rows)
                    .map(|rows| with_columns(mysql::row_set(&rows), empty))
            }
            Backend::Remote(remote) => Ok(remote.query(self.run.id, statement).await?),
            Backend::Plugin(link) => link.query(statement, &self.run.interrupt).await,
        }
    }

    async fn transaction_once(&self, statements: &[Statement]) -> Result<Vec<u64>, Failed> {
        self.check_interrupt()?;
        let mut affected = Vec::with_capacity(statements.len());
        // On error a transaction rolls back when dropped.
        match &self.backend {
            Backend::Sqlite(link) => {
                let mut connection = link.acquire().await.map_err(failed_before_commit)?;
                self.own();
                let result = async {
                    let mut transaction =
                        sqlx::Connection::begin_with(&mut *connection, "BEGIN IMMEDIATE")
                            .await
                            .map_err(failed_before_commit)?;
                    for statement in statements {
                        affected.push(
                            run_on!(sqlite, &mut *transaction, statement)
                                .map_err(failed_before_commit)
                                .map_err(|mut f| {
                                    f.error = in_statement(f.error, statement);
                                    f
                                })?,
                        );
                    }
                    transaction.commit().await.map_err(failed)
                }
                .await;
                settle_sqlite(connection, result)?;
            }
            Backend::Postgres(connections) => {
                server_transaction!(postgres, self, connections, statements, affected)
            }
            // DDL commits on its own in MySQL: a transaction holds only the
            // rows its statements change.
            Backend::MySql(connections) => {
                server_transaction!(mysql, self, connections, statements, affected)
            }
            Backend::Remote(remote) => {
                affected = remote.transaction(self.run.id, statements).await?;
            }
            Backend::Plugin(link) => {
                affected = link.transaction(statements, &self.run.interrupt).await?;
            }
        }
        Ok(affected)
    }
}

/// Returns a server's lease, dropping its connection if `result` says the
/// call broke it.
fn settle<T, DB: sqlx::Database>(
    connections: &connections::Connections<DB>,
    lease: connections::Lease<'_, DB>,
    result: Result<T, Failed>,
) -> Result<T, Failed> {
    connections.release(lease, result.as_ref().is_err_and(|f| f.broken));
    result
}

/// Returns SQLite's connection, forgetting it if `result` says the call
/// broke it.
fn settle_sqlite<T>(connection: sqlite::Lent<'_>, result: Result<T, Failed>) -> Result<T, Failed> {
    if result.as_ref().is_err_and(|f| f.broken) {
        connection.discard();
    }
    result
}

/// `set` with the `columns` its query was described with, when it had no
/// rows to name them.
fn with_columns(mut set: RowSet, columns: Option<Vec<Column>>) -> RowSet {
    if let Some(columns) = columns.filter(|_| set.columns.is_empty()) {
        set.columns = columns;
    }
    set
}

/// A column as the `database` import describes it: its name and its driver
/// type name shaped by `type_name`.
fn column_of(column: &impl sqlx::Column, type_name: impl Fn(&str) -> String) -> Column {
    Column {
        name: column.name().to_string(),
        data_type: type_name(column.type_info().name()),
    }
}

/// Rows as the `database` import returns them: each column's name and its
/// driver type name shaped by `type_name`; each non-NULL cell read by `cell`
/// from the row, its index and the type name of its value.
fn row_set<R: Row>(
    rows: &[R],
    type_name: impl Fn(&str) -> String,
    cell: impl Fn(&R, usize, &str) -> Value,
) -> RowSet
where
    usize: sqlx::ColumnIndex<R>,
{
    let columns = rows.first().map_or_else(Vec::new, |row| {
        row.columns()
            .iter()
            .map(|c| column_of(c, &type_name))
            .collect()
    });
    let rows = rows
        .iter()
        .map(|row| {
            (0..row.columns().len())
                .map(|index| match row.try_get_raw(index) {
                    Ok(raw) if !raw.is_null() => {
                        let kind = raw.type_info().name().to_string();
                        cell(row, index, &kind)
                    }
                    _ => Value::Null,
                })
                .collect()
        })
        .collect();
    RowSet { columns, rows }
}

/// A parameter the driver could not encode.
fn bind_error(error: sqlx::error::BoxDynError) -> DbError {
    DbError {
        message: format!("cannot bind parameter: {error}"),
        code: None,
        transient: false,
    }
}

/// Whether a failed statement may succeed if retried.
fn is_transient(code: &str) -> bool {
    if code.len() == 5 {
        // A PostgreSQL SQLSTATE: serialization failure, deadlock, a lost or
        // refused connection, a server shutting down or out of connections.
        return matches!(
            code,
            "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300"
        ) || code.starts_with("08");
    }
    // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
    code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn is_mysql(url: &str) -> bool {
    url.starts_with("mysql://") || url.starts_with("mariadb://")
}

/// The URL without its password, for messages.
pub(crate) use orbital_core::config::redacted as redact;

fn db_error(error: sqlx::Error) -> DbError {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string());
            let transient = code.as_deref().is_some_and(is_transient);
            DbError {
                message: db.message().to_string(),
                code,
                transient,
            }
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => DbError {
            message: error.to_string(),
            code: None,
            transient: true,
        },
        other => DbError {
            message: other.to_string(),
            code: None,
            transient: false,
        },
    }
}

/// The database as one task sees it.
pub struct TaskDatabase {
    warehouse: Warehouse,
    model: String,
}

impl Database for TaskDatabase {
    fn execute(&self, statement: Statement) -> BoxFuture<'_, Result<u64, DbError>> {
        Box::pin(self.warehouse.execute(statement))
    }

    fn query(&self, statement: Statement) -> BoxFuture<'_, Result<RowSet, DbError>> {
        Box::pin(self.warehouse.query(statement))
    }

    fn transaction(&self, statements: Vec<Statement>) -> BoxFuture<'_, Result<Vec<u64>, DbError>> {
        Box::pin(self.warehouse.transaction(statements))
    }

    fn log(&self, level: LogLevel, message: &str) {
        let model = self.model.as_str();
        match level {
            LogLevel::Debug => tracing::debug!(model, "{message}"),
            LogLevel::Info => tracing::info!(model, "{message}"),
            LogLevel::Warn => tracing::warn!(model, "{message}"),
            LogLevel::Error => tracing::error!(model, "{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(text: &str, params: Vec<Value>) -> Statement {
        Statement {
            sql: text.into(),
            params,
        }
    }

    /// Claims `relation` on `db` as run `run` and builds it as a table after
    /// `delay`; says whether it built it.
    pub(super) async fn claim_and_build(db: &Warehouse, run: u64, delay: Duration) -> Claimed2 {
        let db = db.for_run(run, orbital_plugin_host::Interrupt::default());
        let relation = orbital_core::dag::RelationName {
            schema: None,
            identifier: "claimed".into(),
        };
        match db.claim(&relation, true).await.unwrap() {
            Claimed::Build(claim) => {
                tokio::time::sleep(delay).await;
                db.execute(sql("CREATE TABLE claimed AS SELECT 1 AS n", vec![]))
                    .await
                    .unwrap();
                claim.built().await;
                Claimed2::Built
            }
            Claimed::Built { by } => Claimed2::Reused(by),
        }
    }

    /// What [`claim_and_build`] did.
    #[derive(Debug, PartialEq)]
    pub(super) enum Claimed2 {
        Built,
        Reused(Option<u64>),
    }

    /// Two handles on the server database `url`, standing for two
    /// processes, claim one relation from three runs (1 and 2 share the
    /// first handle): it is built once, and reused by the run of each.
    pub(super) async fn two_processes_claim_one_build(url: &str) -> (Warehouse, Warehouse) {
        let (a, b) = (
            Warehouse::open(url, Path::new("."), 2).await.unwrap(),
            Warehouse::open(url, Path::new("."), 2).await.unwrap(),
        );
        let slow = Duration::from_millis(500);
        let (first, second, third) = tokio::join!(
            claim_and_build(&a, 1, slow),
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                claim_and_build(&a, 2, Duration::ZERO).await
            },
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                claim_and_build(&b, 7, Duration::ZERO).await
            },
        );
        assert_eq!(first, Claimed2::Built);
        assert_eq!(second, Claimed2::Reused(Some(1)));
        assert_eq!(third, Claimed2::Reused(None));
        (a, b)
    }

    #[tokio::test]
    async fn runs_of_one_process_build_a_claimed_relation_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Warehouse::open("sqlite://t.db", dir.path(), 1)
            .await
            .unwrap();
        let (first, second) =
            tokio::join!(claim_and_build(&db, 1, Duration::from_millis(300)), async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                claim_and_build(&db, 2, Duration::ZERO).await
            },);
        assert_eq!(first, Claimed2::Built);
        assert_eq!(second, Claimed2::Reused(Some(1)));
        // Once no run holds it, the claim is forgotten: a later run builds.
        assert!(db.claims_held().is_empty());
        db.close().await;
    }

    #[test]
    fn only_what_certainly_took_no_effect_is_retried() {
        let lost = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        // A statement on its own may have committed before the connection went.
        assert!(!failed(lost()).unapplied);
        // Inside a transaction, before COMMIT, the server rolls it back.
        assert!(failed_before_commit(lost()).unapplied);
        // No connection was ever had.
        assert!(failed(sqlx::Error::PoolTimedOut).unapplied);
        assert!(!failed(sqlx::Error::RowNotFound).unapplied);
        assert!(!failed_before_commit(sqlx::Error::RowNotFound).unapplied);
    }

    #[tokio::test]
    async fn round_trips_typed_values_and_rolls_back_failed_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let db = Warehouse::open("sqlite://t.db", dir.path(), 1)
            .await
            .unwrap();
        db.execute(sql(
            "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB)",
            vec![],
        ))
        .await
        .unwrap();
        let row = vec![
            Value::Integer(7),
            Value::Real(1.5),
            Value::Text("x".into()),
            Value::Bytes(vec![1, 2]),
        ];
        db.execute(sql("INSERT INTO t VALUES (?, ?, ?, ?)", row.clone()))
            .await
            .unwrap();
        db.execute(sql(
            "INSERT INTO t VALUES (?, ?, ?, ?)",
            vec![Value::Null; 4],
        ))
        .await
        .unwrap();
        let rows = db
            .query(sql("SELECT * FROM t ORDER BY i NULLS LAST", vec![]))
            .await
            .unwrap();
        assert_eq!(rows.rows, vec![row, vec![Value::Null; 4]]);
        assert_eq!(rows.columns[0].name, "i");

        let failed = db
            .transaction(vec![
                sql("DELETE FROM t", vec![]),
                sql("INSERT INTO nope VALUES (1)", vec![]),
            ])
            .await
            .unwrap_err();
        assert!(
            failed.message.contains("no such table: nope"),
            "{}",
            failed.message
        );
        let count = db
            .query(sql("SELECT COUNT(*) FROM t", vec![]))
            .await
            .unwrap();
        assert_eq!(count.rows[0][0], Value::Integer(2));
    }
}

/// The PostgreSQL server the tests use: `ORBITAL_TEST_POSTGRES_URL`, set by
/// `tests/bin/with-postgres`. Missing in CI is a failure; elsewhere the
/// PostgreSQL tests are skipped with a note.
#[cfg(test)]
pub(crate) fn test_postgres_url() -> Option<String> {
    test_server_url("ORBITAL_TEST_POSTGRES_URL", "PostgreSQL", "with-postgres")
}

/// The URL of a test server in `variable`, which `tests/bin/<script>` sets;
/// in CI a missing one is a failure, elsewhere its tests are skipped.
#[cfg(test)]
fn test_server_url(variable: &str, server: &str, script: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI runs the {server} tests: run them under tests/bin/{script}")
        }
        Err(_) => {
            eprintln!("{variable} is not set: {server} tests skipped");
            None
        }
    }
}

#[cfg(test)]
mod postgres_tests {
    use super::*;

    fn sql(text: &str, params: Vec<Value>) -> Statement {
        Statement {
            sql: text.into(),
            params,
        }
    }

    #[tokio::test]
    async fn every_value_type_round_trips_through_postgres() {
        let Some(url) = test_postgres_url() else {
            return;
        };
        let db = Warehouse::open(&url, Path::new("."), 2).await.unwrap();
        let table = format!("round_trip_{}", std::process::id());
        db.execute(sql(
            &format!(
                "CREATE TABLE {table} (i2 smallint, i4 integer, i8 bigint, n numeric(30,10), \
                 r double precision, b boolean, t text, d date, ts timestamp, tz timestamptz, \
                 j json, jb jsonb, u uuid, by bytea)"
            ),
            vec![],
        ))
        .await
        .unwrap();
        let row = vec![
            Value::Integer(-7),
            Value::Integer(70_000),
            Value::Integer(9_000_000_000),
            Value::Numeric("12345678901234567890.0123456789".into()),
            Value::Real(1.5),
            Value::Boolean(true),
            Value::Text("héllo".into()),
            Value::Date("2024-02-29".into()),
            Value::Timestamp("2024-02-29 10:11:12.5".into()),
            Value::Timestamptz("2024-02-29 10:11:12+02:00".into()),
            Value::Json(r#"{"a":[1,2]}"#.into()),
            Value::Json(r#"{"b":null}"#.into()),
            Value::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
            Value::Bytes(vec![0, 255, 7]),
        ];
        let placeholders: Vec<String> = (1..=row.len()).map(|i| format!("${i}")).collect();
        let insert = format!("INSERT INTO {table} VALUES ({})", placeholders.join(", "));
        db.execute(sql(&insert, row.clone())).await.unwrap();
        db.execute(sql(&insert, vec![Value::Null; row.len()]))
            .await
            .unwrap();
        let rows = db
            .query(sql(
                &format!("SELECT * FROM {table} ORDER BY i2 NULLS LAST"),
                vec![],
            ))
            .await
            .unwrap();
        db.execute(sql(&format!("DROP TABLE {table}"), vec![]))
            .await
            .unwrap();
        let mut expected = row;
        // Values come back in the server's canonical form.
        expected[8] = Value::Timestamp("2024-02-29 10:11:12.500".into());
        expected[9] = Value::Timestamptz("2024-02-29 08:11:12+00:00".into());
        assert_eq!(rows.rows[0], expected);
        assert_eq!(rows.rows[1], vec![Value::Null; expected.len()]);
        assert_eq!(rows.columns[3].data_type, "numeric");
        let numerics = db
            .query(sql(
                "SELECT 0.0001::numeric, -1.50::numeric, 100::numeric, 0::numeric(5,2), 123456.789::numeric",
                vec![],
            ))
            .await
            .unwrap();
        let texts: Vec<Value> = ["0.0001", "-1.50", "100", "0.00", "123456.789"]
            .iter()
            .map(|t| Value::Numeric(t.to_string()))
            .collect();
        assert_eq!(numerics.rows[0], texts);
        db.close().await;
    }

    /// A fresh database on the test server, for tests that take the
    /// warehouse-wide run lock; its URL.
    async fn fresh_database(url: &str, name: &str) -> String {
        let admin = Warehouse::open(url, Path::new("."), 1).await.unwrap();
        for statement in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.execute(sql(&statement, vec![])).await.unwrap();
        }
        admin.close().await;
        let (base, _) = url.rsplit_once('/').unwrap();
        format!("{base}/{name}")
    }

    fn pid_of(rows: &RowSet) -> i64 {
        match rows.rows[0][0] {
            Value::Integer(pid) => pid,
            ref other => panic!("a pid, not {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_environment_lock_is_per_environment_and_lost_with_its_connection() {
        let Some(url) = test_postgres_url() else {
            return;
        };
        let url = fresh_database(&url, &format!("run_lock_{}", std::process::id())).await;
        let db = Warehouse::open(&url, Path::new("."), 2).await.unwrap();
        let wait = Duration::from_secs(5);
        let lock = db.lock_environment("prod", wait).await.unwrap().unwrap();
        let locker = pid_of(
            &db.query(sql(
                // pg_locks lists every database's: other tests hold some.
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                vec![],
            ))
            .await
            .unwrap(),
        );
        // Its own connection: statements do not run on it.
        let serving = pid_of(
            &db.query(sql("SELECT pg_backend_pid()", vec![]))
                .await
                .unwrap(),
        );
        assert_ne!(serving, locker);
        assert!(lock.check().await.is_ok());

        let other = Warehouse::open(&url, Path::new("."), 1).await.unwrap();
        assert!(
            other
                .lock_environment("prod", Duration::ZERO)
                .await
                .unwrap()
                .is_none(),
            "the lock is held"
        );
        let dev = other.lock_environment("dev", Duration::ZERO).await.unwrap();
        assert!(dev.is_some(), "another environment's lock is free");
        other
            .execute(sql(
                &format!("SELECT pg_terminate_backend({locker})"),
                vec![],
            ))
            .await
            .unwrap();
        let message = lock.check().await.unwrap_err().message;
        assert!(message.contains("run lock was lost"), "{message}");
        // The server lets go of it as the session ends.
        assert!(
            other
                .lock_environment("prod", wait)
                .await
                .unwrap()
                .is_some()
        );
        drop((lock, dev));
        db.close().await;
        other.close().await;
    }

    use super::tests::two_processes_claim_one_build;

    #[tokio::test]
    async fn a_peer_holds_a_remote_runs_environment_lock_until_it_lets_go() {
        let Some(url) = test_postgres_url() else {
            return;
        };
        let url = fresh_database(&url, &format!("remote_lock_{}", std::process::id())).await;
        let lender = Warehouse::open(&url, Path::new("."), 2).await.unwrap();
        let link = Arc::new(remote::tests::Direct(Lent::new(lender.clone())));
        let remote = Warehouse::remote(link, "postgresql").await.unwrap();
        assert!(!remote.is_sqlite());
        let wait = Duration::from_secs(5);
        let lock = remote
            .lock_environment("prod", wait)
            .await
            .unwrap()
            .unwrap();
        assert!(lock.check().await.is_ok());
        let other = Warehouse::open(&url, Path::new("."), 1).await.unwrap();
        let held = other
            .lock_environment("prod", Duration::ZERO)
            .await
            .unwrap();
        assert!(held.is_none(), "the peer holds it");
        drop(lock);
        let taken = other.lock_environment("prod", wait).await.unwrap();
        assert!(taken.is_some(), "let go of at the peer once dropped");
        drop(taken);
        // A lock the peer lost (its connection ended) fails its check.
        let lock = remote
            .lock_environment("prod", wait)
            .await
            .unwrap()
            .unwrap();
        other
            .execute(sql(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                vec![],
            ))
            .await
            .unwrap();
        let message = lock.check().await.unwrap_err().message;
        assert!(message.contains("run lock was lost"), "{message}");
        lender.close().await;
        other.close().await;
    }

    #[tokio::test]
    async fn a_claimed_build_is_made_once_across_processes_and_runs() {
        let Some(url) = test_postgres_url() else {
            return;
        };
        let url = fresh_database(&url, &format!("claims_{}", std::process::id())).await;
        // Two handles stand for two processes.
        let (a, b) = two_processes_claim_one_build(&url).await;
        // A relation dropped and made again by hand is not taken as built.
        a.execute(sql("DROP TABLE claimed", vec![])).await.unwrap();
        a.execute(sql("CREATE TABLE claimed (n int)", vec![]))
            .await
            .unwrap();
        let relation = orbital_core::dag::RelationName {
            schema: None,
            identifier: "claimed".into(),
        };
        assert!(matches!(
            b.claim(&relation, true).await.unwrap(),
            Claimed::Build(_)
        ));
        a.close().await;
        b.close().await;
    }

    #[tokio::test]
    async fn connection_faults_are_clear_errors() {
        let Some(url) = test_postgres_url() else {
            return;
        };
        let wrong_password = url.replacen(":orbital@", ":not-the-password@", 1);
        let error = Warehouse::open(&wrong_password, Path::new("."), 1)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("refused the credentials"), "{error}");
        assert!(!error.contains("not-the-password"), "{error}");
        let unknown = format!(
            "{}_nope",
            url.rsplit_once('/').unwrap().0.to_string() + "/orbital"
        );
        let error = Warehouse::open(&unknown, Path::new("."), 1)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("does not exist"), "{error}");
        let closed = "postgres://orbital:orbital@127.0.0.1:1/postgres";
        let error = Warehouse::open(closed, Path::new("."), 1)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("cannot reach the PostgreSQL server"),
            "{error}"
        );
    }
}

/// The MariaDB server `tests/bin/with-mariadb` starts (no database), for
/// tests that need one; `None` (outside CI) when it is not running.
#[cfg(test)]
pub(crate) fn test_mysql_url() -> Option<String> {
    test_server_url("ORBITAL_TEST_MYSQL_URL", "MariaDB", "with-servers")
        .map(|url| url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod mysql_tests {
    use super::*;

    fn sql(text: &str, params: Vec<Value>) -> Statement {
        Statement {
            sql: text.into(),
            params,
        }
    }

    /// A fresh database on the test server, named for the test; its URL.
    async fn fresh_database(server: &str, test: &str) -> String {
        let name = format!("orbital_unit_{test}_{}", std::process::id());
        let admin = Warehouse::open(server, Path::new("."), 1).await.unwrap();
        for statement in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.execute(sql(&statement, vec![])).await.unwrap();
        }
        admin.close().await;
        format!("{server}/{name}")
    }

    #[tokio::test]
    async fn every_value_type_round_trips_through_mariadb() {
        let Some(server) = test_mysql_url() else {
            return;
        };
        let url = fresh_database(&server, "values").await;
        let db = Warehouse::open(&url, Path::new("."), 2).await.unwrap();
        assert_eq!(db.scheme(), "mysql");
        db.execute(sql(
            "CREATE TABLE \"round trip\" (i2 smallint, i4 integer, i8 bigint, n decimal(30,10), \
             r double, b boolean, t text, d date, ts datetime(3), tz datetime, j json, \
             u char(36), bytes longblob, big bigint unsigned)",
            vec![],
        ))
        .await
        .unwrap();
        let row = vec![
            Value::Integer(-7),
            Value::Integer(70_000),
            Value::Integer(9_000_000_000),
            Value::Numeric("12345678901234567890.0123456789".into()),
            Value::Real(1.5),
            Value::Boolean(true),
            Value::Text("héllo".into()),
            Value::Date("2024-02-29".into()),
            Value::Timestamp("2024-02-29 10:11:12.5".into()),
            Value::Timestamptz("2024-02-29 10:11:12+02:00".into()),
            Value::Json(r#"{"a":[1,2]}"#.into()),
            Value::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
            Value::Bytes(vec![0, 255, 7]),
            Value::Integer(1),
        ];
        let insert = format!(
            "INSERT INTO \"round trip\" VALUES ({})",
            vec!["?"; row.len()].join(", ")
        );
        db.execute(sql(&insert, row.clone())).await.unwrap();
        db.execute(sql(&insert, vec![Value::Null; row.len()]))
            .await
            .unwrap();
        db.execute(sql(
            "UPDATE \"round trip\" SET big = 18446744073709551615 WHERE i2 = -7",
            vec![],
        ))
        .await
        .unwrap();
        let rows = db
            .query(sql(
                "SELECT * FROM \"round trip\" ORDER BY i2 IS NULL, i2",
                vec![],
            ))
            .await
            .unwrap();
        let mut expected = row;
        // What MySQL keeps: no zone (the instant, in UTC), JSON and UUIDs
        // as text, an unsigned value beyond i64 as an exact numeric.
        expected[8] = Value::Timestamp("2024-02-29 10:11:12.500".into());
        expected[9] = Value::Timestamp("2024-02-29 08:11:12".into());
        expected[10] = Value::Text(r#"{"a":[1,2]}"#.into());
        expected[11] = Value::Text("67e55044-10b1-426f-9247-bb680e5fe0c8".into());
        expected[13] = Value::Numeric("18446744073709551615".into());
        assert_eq!(rows.rows[0], expected);
        assert_eq!(rows.rows[1], vec![Value::Null; expected.len()]);
        assert_eq!(rows.columns[3].data_type, "decimal");
        // A query with no rows still names its columns.
        let empty = db
            .query(sql("SELECT i2, t FROM \"round trip\" WHERE 1 = 0", vec![]))
            .await
            .unwrap();
        let names: Vec<&str> = empty.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["i2", "t"]);
        // Errors keep MySQL's code and say which statement.
        let error = db
            .execute(sql("SELECT no_such_column FROM \"round trip\"", vec![]))
            .await
            .unwrap_err();
        assert!(
            error.message.contains("no_such_column"),
            "{}",
            error.message
        );
        assert_eq!(error.code.as_deref(), Some("42S22"));
        db.close().await;
    }

    #[tokio::test]
    async fn an_environment_lock_is_per_environment_and_lost_with_its_connection() {
        let Some(server) = test_mysql_url() else {
            return;
        };
        let url = fresh_database(&server, "locks").await;
        let db = Warehouse::open(&url, Path::new("."), 2).await.unwrap();
        let lock = db
            .lock_environment("prod", Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert!(lock.check().await.is_ok());
        let other = Warehouse::open(&url, Path::new("."), 1).await.unwrap();
        let held = other
            .lock_environment("prod", Duration::ZERO)
            .await
            .unwrap();
        assert!(held.is_none(), "the lock is held");
        let dev = other.lock_environment("dev", Duration::ZERO).await.unwrap();
        assert!(dev.is_some(), "another environment's lock is free");
        // The same environment name in another database is another lock.
        let elsewhere = fresh_database(&server, "locks_elsewhere").await;
        let third = Warehouse::open(&elsewhere, Path::new("."), 1)
            .await
            .unwrap();
        let prod_elsewhere = third
            .lock_environment("prod", Duration::ZERO)
            .await
            .unwrap();
        assert!(prod_elsewhere.is_some(), "locks are per database");
        // Its own connection, which the server lets go of as it ends.
        let holder = db
            .query(sql(
                "SELECT IS_USED_LOCK(CONCAT('orbital ', \
                 SHA1(CONCAT(DATABASE(), CHAR(0), 'environment prod')))), CONNECTION_ID()",
                vec![],
            ))
            .await
            .unwrap();
        let (Some(Value::Integer(holder)), Some(Value::Integer(serving))) =
            (holder.rows[0].first(), holder.rows[0].get(1))
        else {
            panic!("the lock's holder: {holder:?}");
        };
        assert_ne!(holder, serving);
        other
            .execute(sql(&format!("KILL {holder}"), vec![]))
            .await
            .unwrap();
        let message = lock.check().await.unwrap_err().message;
        assert!(message.contains("run lock was lost"), "{message}");
        let again = other
            .lock_environment("prod", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(again.is_some(), "a lost lock is free again");
        drop((lock, dev, prod_elsewhere, again));
        for warehouse in [db, other, third] {
            warehouse.close().await;
        }
    }

    #[tokio::test]
    async fn a_claimed_build_is_made_once_across_processes_and_runs() {
        use super::tests::two_processes_claim_one_build;
        let Some(server) = test_mysql_url() else {
            return;
        };
        let url = fresh_database(&server, "claims").await;
        // Two handles stand for two processes.
        let (a, b) = two_processes_claim_one_build(&url).await;
        // A relation dropped and made again by hand is not taken as built
        // (MySQL keeps creation times to the second: one later).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        a.execute(sql("DROP TABLE claimed", vec![])).await.unwrap();
        a.execute(sql("CREATE TABLE claimed (n int)", vec![]))
            .await
            .unwrap();
        let relation = orbital_core::dag::RelationName {
            schema: None,
            identifier: "claimed".into(),
        };
        let claimed = b.claim(&relation, true).await.unwrap();
        assert!(matches!(claimed, Claimed::Build(_)));
        // Held until let go: another process waits for it meanwhile.
        let waiting = tokio::time::timeout(Duration::from_millis(300), a.claim(&relation, true));
        assert!(waiting.await.is_err(), "the claim is held");
        drop(claimed);
        a.close().await;
        b.close().await;
    }

    /// Interrupting a run kills its running statement on the server
    /// (`KILL QUERY`), and nothing else.
    #[tokio::test]
    async fn an_interrupted_run_stops_its_statement_on_the_server() {
        let Some(server) = test_mysql_url() else {
            return;
        };
        let url = fresh_database(&server, "interrupt").await;
        let db = Warehouse::open(&url, Path::new("."), 2).await.unwrap();
        let run = db.for_run(41, orbital_plugin_host::Interrupt::default());
        let slow = tokio::spawn({
            let run = run.clone();
            async move {
                run.execute(sql("CREATE TABLE slow AS SELECT SLEEP(60) AS s", vec![]))
                    .await
            }
        });
        let running = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                       WHERE INFO LIKE '%SLEEP(60)%' AND ID <> CONNECTION_ID()";
        let count = |rows: RowSet| match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Integer(n)) => *n,
            other => panic!("a count, not {other:?}"),
        };
        while count(db.query(sql(running, vec![])).await.unwrap()) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        run.interrupt().await.unwrap();
        // Had it run its minute, it would have succeeded.
        let error = slow.await.unwrap().unwrap_err();
        assert!(error.message.contains("interrupted"), "{}", error.message);
        assert_eq!(count(db.query(sql(running, vec![])).await.unwrap()), 0);
        // The warehouse's other handles still work.
        assert!(db.query(sql("SELECT 1", vec![])).await.is_ok());
        db.close().await;
    }
}
