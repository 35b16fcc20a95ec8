//! What keeps concurrent runs on one warehouse apart.
//!
//! - **Environment locks**: one run at a time publishes to an environment.
//!   On PostgreSQL a session advisory lock keyed by the environment, on
//!   MySQL a named lock (`GET_LOCK`) keyed by the database and the
//!   environment, each on a connection of the run's own, which the server
//!   releases if the process dies. Through an adapter's own connection,
//!   the adapter's lock (`try-lock`, plugin API 0.2.0) on a session of the
//!   run's own, under the name MySQL's lock has. Runs on different
//!   environments do not wait for each other.
//! - **Build claims**: one run at a time builds a physical relation; a run
//!   that needs a relation another run is building waits, then reuses that
//!   build instead of making it again.
//!   - In one process (the daemon's runs share a [`Warehouse`]): a mutex
//!     per relation, which also says which run built it.
//!   - Across processes on PostgreSQL: a session advisory lock keyed by the
//!     relation, on a connection kept for claims, and the table
//!     `_orbital_builds`, where a finished build is noted with its
//!     relation's oid. A waiter reuses only a relation noted there with
//!     the oid it has now: one dropped, or made again by a build that died
//!     half way, has another oid.
//!   - Across processes through an adapter's own connection: the
//!     adapter's lock (`try-lock`) on a session kept for claims, without a
//!     note: a waiter builds the relation again once the lock is free.
//!   - Across processes on MySQL: the same with a named lock (`GET_LOCK`)
//!     and the relation's creation time for its oid. MySQL keeps that time
//!     to the second, so a relation dropped and made again by hand within
//!     the second its build was noted is taken for that build.
//!
//! SQLite runs one writer at a time; across processes on SQLite a second
//! build of a relation replaces the first, as before.
//!
//! A target reached through a peer ([`super::remote`]) has both taken
//! there, by the peer, for as long as the connection to it lasts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use orbital_core::dag::RelationName;
use orbital_plugin_host::types::DbError;
use sqlx::Row;
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::{PgConnection, PgRow};
use tokio::sync::{Mutex, OwnedMutexGuard};

use orbital_core::remote::session::{WarehouseAnswer, WarehouseOp};

use super::plugin::PluginLink;
use super::remote::Remote;
use super::{Backend, Warehouse, connections::Connections, db_error};
use orbital_plugin_host::{Interrupt, PluginConnection};

/// How often a lock held by another process is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// The transaction-scoped lock under which `_orbital_builds` is created.
const BUILDS_TABLE_KEY: i64 = 0x6f72_6269_7461_6c01;

/// Takes a build's claim and says whether the relation is noted as built
/// whole (its oid is the one noted).
const TAKE_CLAIM: &str = "SELECT pg_try_advisory_lock($1), EXISTS (SELECT 1 FROM _orbital_builds \
     WHERE relation = $2 AND oid = to_regclass($2)::oid)";

/// Notes a finished build and lets go of its claim, in one round trip.
const NOTE_BUILT: &str = "WITH noted AS (INSERT INTO _orbital_builds (relation, oid) \
     SELECT $2, to_regclass($2)::oid WHERE to_regclass($2) IS NOT NULL \
     ON CONFLICT (relation) DO UPDATE SET oid = excluded.oid) \
     SELECT pg_advisory_unlock($1)";

const RELEASE_CLAIM: &str = "SELECT pg_advisory_unlock($1)";

/// MySQL: takes a build's claim (the lock named after the relation) and
/// says whether the relation is noted as built whole (the creation time
/// noted is the one it has).
const MYSQL_TAKE_CLAIM: &str = "SELECT GET_LOCK(CONCAT('orbital ', SHA1(CONCAT(DATABASE(), CHAR(0), 'build ', ?))), 0), \
     EXISTS (SELECT 1 FROM _orbital_builds b WHERE b.relation = ? AND b.created = \
     (SELECT COALESCE(CAST(CREATE_TIME AS CHAR), 'view') FROM information_schema.tables \
      WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?))";

/// MySQL: notes a finished build.
const MYSQL_NOTE_BUILT: &str = "INSERT INTO _orbital_builds (relation, created) \
     SELECT ?, COALESCE(CAST(CREATE_TIME AS CHAR), 'view') FROM information_schema.tables \
     WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ? \
     ON DUPLICATE KEY UPDATE created = VALUES(created)";

/// MySQL: lets go of a build's claim.
const MYSQL_RELEASE_CLAIM: &str =
    "SELECT RELEASE_LOCK(CONCAT('orbital ', SHA1(CONCAT(DATABASE(), CHAR(0), 'build ', ?))))";

/// A step of a build's claim on MySQL, on the claims connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MySqlClaim {
    Take,
    Note,
    Release,
}

/// The lock a claim holds in the warehouse, across processes.
#[derive(Clone, Copy)]
enum ClaimLock {
    /// PostgreSQL's session advisory lock with this key.
    Advisory(i64),
    /// MySQL's named lock (`GET_LOCK`) for the relation.
    Named,
    /// An adapter's lock (`try-lock`) named [`build_lock`], on the claims
    /// session of its own connection.
    Plugin,
}

/// The builds being claimed in this process.
#[derive(Default)]
pub(super) struct Claims {
    /// Relation -> which run built it, once one has.
    held: std::sync::Mutex<HashMap<String, Arc<Mutex<Option<u64>>>>>,
    /// PostgreSQL: the connection cross-process claims live on.
    connection: Mutex<Option<PgConnection>>,
    /// MySQL: the connection cross-process claims live on.
    mysql_connection: Mutex<Option<MySqlConnection>>,
    /// An adapter's own connection: the session its claims live on.
    plugin_session: Mutex<Option<PluginConnection>>,
    /// `_orbital_builds` exists.
    table_made: std::sync::OnceLock<()>,
}

/// Held while a run builds a relation.
pub struct Claim {
    relation: String,
    /// Where the relation lives (MySQL's note looks it up).
    name: RelationName,
    turn: Option<OwnedMutexGuard<Option<u64>>>,
    /// The warehouse lock, when one is held.
    lock: Option<ClaimLock>,
    /// The claim's id at the peer that took it, for a remote target.
    remote: Option<u64>,
    warehouse: Warehouse,
}

/// What claiming a build found.
pub enum Claimed {
    /// Build it, then say so with [`Claim::built`] (dropping the claim
    /// says the build failed).
    Build(Claim),
    /// Another run built it: run `by` of this process while this one
    /// waited, or (`None`) a run the warehouse's `_orbital_builds` noted
    /// (of another process, or one that ended before recording it).
    Built { by: Option<u64> },
}

/// Held for a run on an environment; dropping it (or the process dying)
/// releases the lock.
pub struct RunLock {
    held: Held,
}

/// Where a run lock lives.
enum Held {
    /// Nowhere: SQLite serializes writers itself.
    Nothing,
    /// On a PostgreSQL connection of its own.
    Connection(Arc<Mutex<PgConnection>>),
    /// On a MySQL connection of its own.
    MySql(Arc<Mutex<MySqlConnection>>),
    /// At the peer that holds the target's connection, under this id.
    Remote { remote: Arc<Remote>, id: u64 },
    /// On a session of an adapter's own connection, under this name.
    Plugin {
        session: Arc<Mutex<PluginConnection>>,
        name: String,
    },
}

impl RunLock {
    /// Whether the lock is still held: on PostgreSQL it lives on one
    /// connection, and a run whose lock connection broke must not publish,
    /// since another run may have taken the environment meanwhile.
    pub async fn check(&self) -> Result<(), DbError> {
        let alive = match &self.held {
            Held::Nothing => return Ok(()),
            Held::Remote { remote, id } => {
                return match remote.call(0, WarehouseOp::CheckLock(*id)).await? {
                    WarehouseAnswer::Done => Ok(()),
                    other => Err(remote.unexpected(&other)),
                };
            }
            Held::Connection(held) => sqlx::query("SELECT 1")
                .execute(&mut *held.lock().await)
                .await
                .map(drop),
            Held::MySql(held) => sqlx::query("SELECT 1")
                .execute(&mut *held.lock().await)
                .await
                .map(drop),
            // Asking again while holding it says it is held.
            Held::Plugin { session, name } => {
                let mut session = session.lock().await;
                return match PluginLink::try_lock(&mut session, name, &Interrupt::default()).await {
                    Ok(Some(true)) => Ok(()),
                    _ => Err(lost_lock()),
                };
            }
        };
        alive.map_err(|_| lost_lock())
    }
}

fn lost_lock() -> DbError {
    DbError {
        message: "the connection holding the environment's run lock was lost, so another run may have started".into(),
        code: None,
        transient: false,
    }
}

impl Drop for RunLock {
    /// A remote lock is let go of at the peer (a local one goes with its
    /// connection).
    fn drop(&mut self) {
        if let Held::Remote { remote, id } = &self.held
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (remote, id) = (remote.clone(), *id);
            runtime.spawn(async move {
                if let Err(e) = remote.call(0, WarehouseOp::Unlock(id)).await {
                    tracing::warn!("cannot release the environment's run lock: {}", e.message);
                }
            });
        }
    }
}

/// A wait for an environment's run lock, between tries.
#[derive(Default)]
struct Waiting {
    started: Option<std::time::Instant>,
    said: bool,
}

impl Waiting {
    /// After a try that found the lock held: `false` when `wait` has run
    /// out, an error when the run was cancelled, else `true` after a pause
    /// (saying once that it waits).
    async fn again(&mut self, warehouse: &Warehouse, wait: Duration) -> Result<bool, DbError> {
        let started = *self.started.get_or_insert_with(std::time::Instant::now);
        if started.elapsed() >= wait {
            return Ok(false);
        }
        if warehouse.run.interrupt.is_set() {
            return Err(cancelled_waiting());
        }
        if !self.said {
            tracing::warn!("another orbital run holds this environment; waiting for it");
            self.said = true;
        }
        tokio::time::sleep(RETRY_EVERY.min(wait)).await;
        Ok(true)
    }
}

fn cancelled_waiting() -> DbError {
    DbError {
        message: "cancelled while waiting for another run".into(),
        code: Some(super::CANCELLED.into()),
        transient: false,
    }
}

/// The name of environment `scope`'s run lock, as a named lock (MySQL's,
/// an adapter's `try-lock`) is asked for.
fn environment_lock(scope: &str) -> String {
    format!("environment {scope}")
}

/// The name of a build's claim on `relation` (quoted), as a named lock
/// (MySQL's, an adapter's `try-lock`) is asked for.
fn build_lock(relation: &str) -> String {
    format!("build {relation}")
}

/// A stable advisory lock key for `what`.
fn key(what: &str) -> i64 {
    let hash = blake3::hash(what.as_bytes());
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&hash.as_bytes()[..8]);
    i64::from_le_bytes(bytes)
}

impl Warehouse {
    /// Takes the run lock of environment `scope` (the environment's name
    /// and where its relations live), waiting up to `wait` for another
    /// orbital process to finish its run there. SQLite serializes writers
    /// itself, and each project's file lock covers its own runs.
    /// `Ok(None)`: the wait ran out.
    pub async fn lock_environment(
        &self,
        scope: &str,
        wait: Duration,
    ) -> Result<Option<RunLock>, DbError> {
        let connections = match &self.backend {
            Backend::Postgres(connections) => connections,
            Backend::MySql(connections) => {
                return self.lock_mysql_environment(connections, scope, wait).await;
            }
            Backend::Remote(remote) => {
                let op = WarehouseOp::LockEnvironment {
                    scope: scope.to_string(),
                    wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                };
                return match remote.call(self.run.id, op).await? {
                    WarehouseAnswer::Locked(id) => Ok(id.map(|id| RunLock {
                        held: Held::Remote {
                            remote: remote.clone(),
                            id,
                        },
                    })),
                    other => Err(remote.unexpected(&other)),
                };
            }
            Backend::Plugin(link) => {
                return self.lock_plugin_environment(link, scope, wait).await;
            }
            Backend::Sqlite(_) => {
                return Ok(Some(RunLock {
                    held: Held::Nothing,
                }));
            }
        };
        let key = key(&format!("orbital environment\0{scope}"));
        let mut connection = connections.dedicated().await.map_err(db_error)?;
        let mut waiting = Waiting::default();
        loop {
            let (taken,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut connection)
                .await
                .map_err(db_error)?;
            if taken {
                return Ok(Some(RunLock {
                    held: Held::Connection(Arc::new(Mutex::new(connection))),
                }));
            }
            if !waiting.again(self, wait).await? {
                return Ok(None);
            }
        }
    }

    /// [`Warehouse::lock_environment`] on MySQL: a named lock, which is
    /// server-wide, so its name holds the database's; names are at most 64
    /// characters, hence the digest.
    async fn lock_mysql_environment(
        &self,
        connections: &Connections<sqlx::MySql>,
        scope: &str,
        wait: Duration,
    ) -> Result<Option<RunLock>, DbError> {
        let mut connection = connections.dedicated().await.map_err(db_error)?;
        let mut waiting = Waiting::default();
        loop {
            let (taken,): (Option<i64>,) = sqlx::query_as(
                "SELECT GET_LOCK(CONCAT('orbital ', SHA1(CONCAT(DATABASE(), CHAR(0), ?))), 0)",
            )
            .bind(environment_lock(scope))
            .fetch_one(&mut connection)
            .await
            .map_err(db_error)?;
            if taken == Some(1) {
                return Ok(Some(RunLock {
                    held: Held::MySql(Arc::new(Mutex::new(connection))),
                }));
            }
            if !waiting.again(self, wait).await? {
                return Ok(None);
            }
        }
    }

    /// [`Warehouse::lock_environment`] through an adapter's own
    /// connection: its lock named as MySQL's named lock is, so that the
    /// mysql-wire adapter and the built-in driver exclude each other.
    async fn lock_plugin_environment(
        &self,
        link: &PluginLink,
        scope: &str,
        wait: Duration,
    ) -> Result<Option<RunLock>, DbError> {
        let name = environment_lock(scope);
        let mut session = link.dedicated().await?;
        let mut waiting = Waiting::default();
        loop {
            match PluginLink::try_lock(&mut session, &name, &self.run.interrupt).await? {
                Some(true) => {
                    return Ok(Some(RunLock {
                        held: Held::Plugin {
                            session: Arc::new(Mutex::new(session)),
                            name,
                        },
                    }));
                }
                Some(false) => {
                    if !waiting.again(self, wait).await? {
                        return Ok(None);
                    }
                }
                // No locks in this database: the project's file lock
                // keeps its runs apart.
                None => {
                    session.close().await;
                    return Ok(Some(RunLock {
                        held: Held::Nothing,
                    }));
                }
            }
        }
    }

    /// Claims the build of `relation` for this handle's run, waiting while
    /// another run builds it. With `reuse`, a build another run finished
    /// meanwhile is [`Claimed::Built`]; without, the caller builds anyway
    /// (a full refresh, or a stateful model continuing its table).
    pub async fn claim(&self, relation: &RelationName, reuse: bool) -> Result<Claimed, DbError> {
        let name = relation.quoted();
        let entry = lock_unpoisoned(&self.claims.held)
            .entry(name.clone())
            .or_default()
            .clone();
        let turn = self.wait_for(entry.lock_owned()).await?;
        let mut claim = Claim {
            relation: name,
            name: relation.clone(),
            turn: Some(turn),
            lock: None,
            remote: None,
            warehouse: self.clone(),
        };
        if let Some(by) = claim.turn.as_deref().copied().flatten()
            && reuse
        {
            return Ok(Claimed::Built { by: Some(by) });
        }
        if let Backend::Remote(remote) = &self.backend {
            let op = WarehouseOp::Claim {
                relation: relation.clone(),
                reuse,
            };
            match remote.call(self.run.id, op).await? {
                WarehouseAnswer::ClaimBuild(id) => claim.remote = Some(id),
                WarehouseAnswer::ClaimBuilt => {
                    claim.release().await;
                    return Ok(Claimed::Built { by: None });
                }
                other => return Err(remote.unexpected(&other)),
            }
        }
        if let Backend::Postgres(connections) = &self.backend {
            let key = key(&format!("orbital build\0{}", claim.relation));
            // Not through `wait_for`: dropped between the server granting
            // the lock and the answer arriving, it would leave the lock held.
            let noted = self.lock_build(connections, key, &claim.relation).await?;
            claim.lock = Some(ClaimLock::Advisory(key));
            if noted && reuse {
                claim.release().await;
                return Ok(Claimed::Built { by: None });
            }
        }
        if let Backend::MySql(connections) = &self.backend {
            let noted = self.lock_mysql_build(connections, relation).await?;
            claim.lock = Some(ClaimLock::Named);
            if noted && reuse {
                claim.release().await;
                return Ok(Claimed::Built { by: None });
            }
        }
        // No note of finished builds here: after waiting, the build is made
        // again (it replaces the other's), but never at the same time.
        if let Backend::Plugin(link) = &self.backend
            && self.lock_plugin_build(link, &claim.relation).await?
        {
            claim.lock = Some(ClaimLock::Plugin);
        }
        Ok(Claimed::Build(claim))
    }

    /// Takes the adapter's lock for `relation` on the claims session,
    /// trying again while another process holds it (unless this handle's
    /// run is cancelled). `false`: the adapter's database has no locks.
    async fn lock_plugin_build(&self, link: &PluginLink, relation: &str) -> Result<bool, DbError> {
        let name = build_lock(relation);
        let mut said = false;
        loop {
            if self.run.interrupt.is_set() {
                return Err(cancelled_waiting());
            }
            match self.on_plugin_claims_session(link, &name, true).await? {
                Some(true) => return Ok(true),
                None => return Ok(false),
                Some(false) => {
                    if !said {
                        tracing::warn!(
                            "another orbital run is building {relation}; waiting for it"
                        );
                        said = true;
                    }
                    tokio::time::sleep(RETRY_EVERY).await;
                }
            }
        }
    }

    /// Takes (`take`) or lets go of the adapter's lock `name` on the
    /// session claims live on, opening it if needed. A session whose call
    /// failed without a database code is dropped with its claims, as a
    /// broken claims connection is (see [`Warehouse::on_claims_connection`]).
    async fn on_plugin_claims_session(
        &self,
        link: &PluginLink,
        name: &str,
        take: bool,
    ) -> Result<Option<bool>, DbError> {
        let mut slot = self.claims.plugin_session.lock().await;
        let session = match slot.as_mut() {
            Some(session) => session,
            None => slot.insert(link.dedicated().await?),
        };
        // Not the run's interrupt: an interrupted call leaves the session,
        // and every claim on it, unusable.
        let calm = Interrupt::default();
        let result = if take {
            PluginLink::try_lock(session, name, &calm).await
        } else {
            PluginLink::unlock(session, name, &calm)
                .await
                .map(|()| None)
        };
        if result.as_ref().is_err_and(|e| e.code.is_none()) {
            slot.take();
        }
        result
    }

    /// [`Warehouse::lock_build`] on MySQL.
    async fn lock_mysql_build(
        &self,
        connections: &Connections<sqlx::MySql>,
        relation: &RelationName,
    ) -> Result<bool, DbError> {
        self.ensure_builds_table().await?;
        loop {
            if self.run.interrupt.is_set() {
                return Err(cancelled_waiting());
            }
            let Some(row) = self
                .on_mysql_claims_connection(connections, MySqlClaim::Take, relation)
                .await?
            else {
                continue;
            };
            let taken: Option<i64> = row.try_get(0).map_err(db_error)?;
            if taken == Some(1) {
                let noted: i64 = row.try_get(1).map_err(db_error)?;
                return Ok(noted == 1);
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// [`Warehouse::on_claims_connection`] on MySQL: runs `step` for
    /// `relation`; the row a query returns.
    async fn on_mysql_claims_connection(
        &self,
        connections: &Connections<sqlx::MySql>,
        step: MySqlClaim,
        relation: &RelationName,
    ) -> Result<Option<sqlx::mysql::MySqlRow>, DbError> {
        let mut slot = self.claims.mysql_connection.lock().await;
        let connection = match slot.as_mut() {
            Some(connection) => connection,
            None => slot.insert(connections.dedicated().await.map_err(db_error)?),
        };
        let quoted = relation.quoted();
        // The lock is named after the quoted relation; the note finds it
        // by schema (NULL: the connection's database) and identifier.
        let (schema, identifier) = (relation.schema.clone(), relation.identifier.clone());
        let query = match step {
            MySqlClaim::Take => sqlx::query(MYSQL_TAKE_CLAIM)
                .bind(quoted.clone())
                .bind(quoted)
                .bind(schema)
                .bind(identifier),
            MySqlClaim::Note => sqlx::query(MYSQL_NOTE_BUILT)
                .bind(quoted)
                .bind(schema)
                .bind(identifier),
            MySqlClaim::Release => sqlx::query(MYSQL_RELEASE_CLAIM).bind(quoted),
        };
        let result = if step == MySqlClaim::Note {
            query.execute(&mut *connection).await.map(|_| None)
        } else {
            query.fetch_one(&mut *connection).await.map(Some)
        };
        if let Err(error) = &result
            && super::connections::ends_connection(error)
        {
            slot.take();
        }
        result.map_err(db_error)
    }

    /// Awaits `future` unless this handle's run is cancelled first.
    async fn wait_for<T>(
        &self,
        future: impl std::future::Future<Output = T>,
    ) -> Result<T, DbError> {
        let mut future = std::pin::pin!(future);
        loop {
            if self.run.interrupt.is_set() {
                return Err(cancelled_waiting());
            }
            tokio::select! {
                done = &mut future => return Ok(done),
                () = tokio::time::sleep(RETRY_EVERY) => {}
            }
        }
    }

    /// Takes the advisory lock `key` on the claims connection, trying again
    /// while another process holds it (unless this handle's run is
    /// cancelled); says whether `relation` is noted as built whole.
    async fn lock_build(
        &self,
        connections: &Connections<sqlx::Postgres>,
        key: i64,
        relation: &str,
    ) -> Result<bool, DbError> {
        self.ensure_builds_table().await?;
        loop {
            if self.run.interrupt.is_set() {
                return Err(cancelled_waiting());
            }
            let row = self
                .on_claims_connection(connections, TAKE_CLAIM, key, relation)
                .await?;
            let taken: bool = row.try_get(0).map_err(db_error)?;
            if taken {
                return row.try_get(1).map_err(db_error);
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Creates `_orbital_builds` if it is missing, once per process, under
    /// a transaction-scoped lock (two `CREATE TABLE IF NOT EXISTS` at once
    /// can both try to create it).
    async fn ensure_builds_table(&self) -> Result<(), DbError> {
        if self.claims.table_made.get().is_some() {
            return Ok(());
        }
        if self.is_mysql() {
            // MySQL keys a text column only by a prefix: a bounded name.
            self.execute(super::plain(
                "CREATE TABLE IF NOT EXISTS _orbital_builds \
                 (relation VARCHAR(512) PRIMARY KEY, created VARCHAR(64) NOT NULL)",
            ))
            .await?;
            let _ = self.claims.table_made.set(());
            return Ok(());
        }
        self.transaction(vec![
            super::plain(&format!("SELECT pg_advisory_xact_lock({BUILDS_TABLE_KEY})")),
            super::plain(
                "CREATE TABLE IF NOT EXISTS _orbital_builds (relation TEXT PRIMARY KEY, oid OID NOT NULL)",
            ),
        ])
        .await?;
        let _ = self.claims.table_made.set(());
        Ok(())
    }

    /// Runs `sql` (binding `key`, then `relation`) on the connection
    /// claims live on, opening it if needed. If it broke, the claims it held
    /// went with it (another process may then build the same relation: the
    /// second build replaces the first), and the next call opens another.
    async fn on_claims_connection(
        &self,
        connections: &Connections<sqlx::Postgres>,
        sql: &'static str,
        key: i64,
        relation: &str,
    ) -> Result<PgRow, DbError> {
        let mut slot = self.claims.connection.lock().await;
        let connection = match slot.as_mut() {
            Some(connection) => connection,
            None => slot.insert(connections.dedicated().await.map_err(db_error)?),
        };
        let mut query = sqlx::query(sql).bind(key);
        if sql.contains("$2") {
            query = query.bind(relation);
        }
        let result = query.fetch_one(connection).await;
        if let Err(error) = &result
            && super::connections::ends_connection(error)
        {
            slot.take();
        }
        result.map_err(db_error)
    }
}

#[cfg(test)]
impl Warehouse {
    /// The relations with a claim entry.
    pub(super) fn claims_held(&self) -> Vec<String> {
        lock_unpoisoned(&self.claims.held).keys().cloned().collect()
    }
}

impl Claim {
    /// Says the build succeeded: runs waiting for it reuse it.
    pub async fn built(mut self) {
        let run = self.warehouse.run.id;
        if let Some(turn) = self.turn.as_mut() {
            **turn = Some(run);
        }
        if let (Some(ClaimLock::Advisory(key)), Backend::Postgres(connections)) =
            (self.lock, &self.warehouse.backend)
        {
            let noted = self
                .warehouse
                .on_claims_connection(connections, NOTE_BUILT, key, &self.relation)
                .await;
            if let Err(e) = noted {
                tracing::warn!("cannot note the build of {}: {}", self.relation, e.message);
            }
            self.lock = None;
        }
        if let (Some(lock @ ClaimLock::Named), Backend::MySql(connections)) =
            (self.lock, &self.warehouse.backend)
        {
            let noted = self
                .warehouse
                .on_mysql_claims_connection(connections, MySqlClaim::Note, &self.name)
                .await;
            if let Err(e) = noted {
                tracing::warn!("cannot note the build of {}: {}", self.relation, e.message);
            }
            unlock(&self.warehouse, lock, &self.name).await;
            self.lock = None;
        }
        if let (Some(id), Backend::Remote(remote)) = (self.remote, &self.warehouse.backend) {
            match remote
                .call(self.warehouse.run.id, WarehouseOp::ClaimBuilt(id))
                .await
            {
                Ok(WarehouseAnswer::Done) => {}
                Ok(other) => tracing::warn!("{}", remote.unexpected(&other).message),
                Err(e) => {
                    tracing::warn!("cannot note the build of {}: {}", self.relation, e.message)
                }
            }
            self.remote = None;
        }
        self.release().await;
    }

    /// Lets go of the claim without noting a build.
    async fn release(mut self) {
        if let Some(lock) = self.lock.take() {
            unlock(&self.warehouse, lock, &self.name).await;
        }
        if let Some(id) = self.remote.take() {
            release_remote(&self.warehouse, id, &self.relation).await;
        }
        self.forget();
    }

    /// Ends this process's turn, and drops the relation's entry if no run
    /// waits for it.
    fn forget(&mut self) {
        let Some(turn) = self.turn.take() else {
            return;
        };
        drop(turn);
        let mut held = lock_unpoisoned(&self.warehouse.claims.held);
        if held
            .get(&self.relation)
            .is_some_and(|entry| Arc::strong_count(entry) == 1)
        {
            held.remove(&self.relation);
        }
    }
}

impl Drop for Claim {
    /// A claim dropped without [`Claim::built`] or a release (its build
    /// failed or panicked) lets go of its advisory lock on a task of its own.
    fn drop(&mut self) {
        let (lock, remote) = (self.lock.take(), self.remote.take());
        if (lock.is_some() || remote.is_some())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (warehouse, relation, name) = (
                self.warehouse.clone(),
                self.relation.clone(),
                self.name.clone(),
            );
            runtime.spawn(async move {
                if let Some(lock) = lock {
                    unlock(&warehouse, lock, &name).await;
                }
                if let Some(id) = remote {
                    release_remote(&warehouse, id, &relation).await;
                }
            });
        }
        self.forget();
    }
}

/// Lets go of claim `id` on `relation` at the peer that took it.
async fn release_remote(warehouse: &Warehouse, id: u64, relation: &str) {
    let Backend::Remote(remote) = &warehouse.backend else {
        return;
    };
    if let Err(e) = remote
        .call(warehouse.run.id, WarehouseOp::ReleaseClaim(id))
        .await
    {
        tracing::warn!("cannot release the claim on {relation}: {}", e.message);
    }
}

/// Lets go of the warehouse lock of a claim on `relation`.
async fn unlock(warehouse: &Warehouse, lock: ClaimLock, relation: &RelationName) {
    let unlocked = match (lock, &warehouse.backend) {
        (ClaimLock::Advisory(key), Backend::Postgres(connections)) => warehouse
            .on_claims_connection(connections, RELEASE_CLAIM, key, &relation.quoted())
            .await
            .map(drop),
        (ClaimLock::Named, Backend::MySql(connections)) => warehouse
            .on_mysql_claims_connection(connections, MySqlClaim::Release, relation)
            .await
            .map(drop),
        (ClaimLock::Plugin, Backend::Plugin(link)) => warehouse
            .on_plugin_claims_session(link, &build_lock(&relation.quoted()), false)
            .await
            .map(drop),
        _ => return,
    };
    if let Err(e) = unlocked {
        tracing::warn!(
            "cannot release the claim on {}: {}",
            relation.quoted(),
            e.message
        );
    }
}

fn lock_unpoisoned<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent whatever panicked while holding it.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
