//! A target whose adapter brings its own connection (plugin API 0.2.0):
//! the adapter's sessions, pooled here as the sqlx pools pool theirs, and
//! Orbital's own bookkeeping tables written in the adapter's dialect.
//!
//! An environment's run lock is the adapter's (`try-lock`), on a session
//! kept for the run; an adapter whose database has none leaves runs apart
//! only within one project (its file lock). Build claims take the
//! adapter's lock too, without a note of finished builds. What such a
//! target does not get: a catalog listing (the store is trusted, and
//! publishing asks the adapter what stands at each view's name).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orbital_plugin_host::types::{
    Column, DbError, LogicalType, Relation, RowSet, Statement, Value,
};
use orbital_plugin_host::{
    Adapter, AdapterSession, Grants, Interrupt, PluginConnection, PluginError, PluginHost,
};

use super::{Failed, cancelled, plain};
use crate::error::DatabaseError;

/// Calls the adapter's dialect export `$call` on the link's instance.
macro_rules! dialect {
    ($link:ident, $call:ident ( $($arg:expr),* )) => {
        $link
            .dialect
            .lock()
            .await
            .call(async |d, s| d.$call(s $(, $arg)*).await)
            .await
            .map_err(plugin_error)
    };
}

/// The sessions of one target's plugin connection.
pub(crate) struct PluginLink {
    host: Arc<PluginHost>,
    adapter: Arc<Adapter>,
    url: String,
    settings: Vec<(String, String)>,
    grants: Arc<Grants>,
    /// The URL scheme, as `orbital.toml` writes it.
    pub(super) scheme: String,
    idle: Mutex<Vec<PluginConnection>>,
    /// At most this many sessions at once.
    permits: tokio::sync::Semaphore,
    /// An adapter instance for the host's own dialect SQL.
    dialect: tokio::sync::Mutex<AdapterSession>,
}

impl PluginLink {
    /// Opens the first session, so a wrong URL or password fails here.
    pub(crate) async fn open(
        host: Arc<PluginHost>,
        adapter: Arc<Adapter>,
        target: &str,
        url: &str,
        settings: Vec<(String, String)>,
        threads: usize,
    ) -> Result<Self, DatabaseError> {
        let plugin = adapter.info.plugin.name.clone();
        let grants = Grants::for_target(target, url)
            .await
            .map_err(DatabaseError::Url)?;
        let plugin_failed = |e: PluginError| DatabaseError::Url(e.to_string());
        let first = first_session(&host, &adapter, url, &settings, &grants)
            .await
            .map_err(plugin_failed)?
            .map_err(|e| DatabaseError::Url(format!("adapter `{plugin}`: {}", e.message)))?;
        let dialect = host
            .adapter_session(&adapter)
            .await
            .map_err(plugin_failed)?;
        let scheme = url.split_once("://").map_or(url, |(s, _)| s).to_string();
        Ok(Self {
            host,
            adapter,
            url: url.to_string(),
            settings,
            grants,
            scheme,
            idle: Mutex::new(vec![first]),
            permits: tokio::sync::Semaphore::new(threads.max(1)),
            dialect: tokio::sync::Mutex::new(dialect),
        })
    }

    /// Runs `call` on an idle session (or a new one), racing `interrupt`.
    /// A session whose call failed in the plugin, was interrupted, or
    /// failed without a database code (a lost connection, an answer the
    /// plugin did not understand) is dropped: it may be unusable.
    ///
    /// What may be tried again: a session that could not be opened ran
    /// nothing, and a statement the adapter calls `transient` the database
    /// undid (see the `connection` interface of plugin API 0.2.0).
    async fn with_session<R>(
        &self,
        interrupt: &Interrupt,
        call: impl AsyncFnOnce(&mut PluginConnection) -> Result<Result<R, DbError>, PluginError>,
    ) -> Result<R, Failed> {
        let _permit = self.permits.acquire().await.map_err(|_| closed())?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut session = match idle {
            Some(session) => session,
            None => self
                .host
                .connect(&self.adapter, &self.url, &self.settings, &self.grants)
                .await
                .map_err(|e| Failed::from(plugin_error(e)))?
                .map_err(|error| Failed {
                    unapplied: error.transient,
                    broken: false,
                    error,
                })?,
        };
        let result = tokio::select! {
            result = call(&mut session) => result,
            () = interrupted(interrupt) => return Err(Failed::from(cancelled())),
        };
        match result {
            Ok(Ok(answer)) => {
                self.keep(session);
                Ok(answer)
            }
            Ok(Err(error)) => {
                let broken = error.code.is_none();
                if !broken {
                    self.keep(session);
                }
                Err(Failed {
                    unapplied: error.transient,
                    broken,
                    error,
                })
            }
            Err(error) => Err(Failed::from(plugin_error(error))),
        }
    }

    fn keep(&self, session: PluginConnection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session);
    }

    pub(super) async fn execute(
        &self,
        statement: &Statement,
        interrupt: &Interrupt,
    ) -> Result<u64, Failed> {
        self.with_session(interrupt, async |s| s.execute(statement, interrupt).await)
            .await
    }

    pub(super) async fn query(
        &self,
        statement: &Statement,
        interrupt: &Interrupt,
    ) -> Result<RowSet, Failed> {
        self.with_session(interrupt, async |s| s.query(statement, interrupt).await)
            .await
    }

    pub(super) async fn transaction(
        &self,
        statements: &[Statement],
        interrupt: &Interrupt,
    ) -> Result<Vec<u64>, Failed> {
        self.with_session(interrupt, async |s| {
            s.transaction(statements, interrupt).await
        })
        .await
    }

    /// A session outside the pool, for a lock that lives as long as the
    /// run.
    pub(super) async fn dedicated(&self) -> Result<PluginConnection, DbError> {
        first_session(
            &self.host,
            &self.adapter,
            &self.url,
            &self.settings,
            &self.grants,
        )
        .await
        .map_err(plugin_error)?
    }

    /// Takes the database lock `name` on `session` without waiting; `None`
    /// when the adapter's database has no such locks.
    pub(super) async fn try_lock(
        session: &mut PluginConnection,
        name: &str,
        interrupt: &Interrupt,
    ) -> Result<Option<bool>, DbError> {
        session
            .try_lock(name, interrupt)
            .await
            .map_err(plugin_error)?
    }

    /// Lets go of the database lock `name` that `session` took.
    pub(super) async fn unlock(
        session: &mut PluginConnection,
        name: &str,
        interrupt: &Interrupt,
    ) -> Result<(), DbError> {
        session
            .unlock(name, interrupt)
            .await
            .map_err(plugin_error)?
    }

    /// Closes every idle session.
    pub(super) async fn close(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for session in idle {
            session.close().await;
        }
    }

    /// Whether `table` (in the session's database) exists, by the
    /// adapter's relation-kind query.
    async fn exists(&self, table: &str, interrupt: &Interrupt) -> Result<bool, DbError> {
        let relation = own_table(table);
        let query = dialect!(self, call_relation_kind_query(&relation))?;
        Ok(!self
            .query(&query, interrupt)
            .await
            .map_err(|f| f.error)?
            .rows
            .is_empty())
    }

    /// Creates Orbital's table `table` with `columns` of portable types,
    /// by the adapter's `create-table`.
    async fn create(
        &self,
        table: &str,
        columns: &[(&str, LogicalType)],
        interrupt: &Interrupt,
    ) -> Result<(), DbError> {
        let mut typed = Vec::with_capacity(columns.len());
        for (name, logical) in columns {
            let logical = *logical;
            typed.push(Column {
                name: (*name).to_string(),
                data_type: dialect!(self, call_column_type(logical))?,
            });
        }
        let relation = own_table(table);
        let statements = dialect!(self, call_create_table(&relation, &typed))?;
        for statement in &statements {
            self.execute(statement, interrupt)
                .await
                .map_err(|f| f.error)?;
        }
        Ok(())
    }

    /// The warehouse's id from `_orbital_warehouse`, written first when
    /// `create` (see [`super::Warehouse::warehouse_id`]).
    pub(super) async fn warehouse_id(
        &self,
        create: bool,
        interrupt: &Interrupt,
    ) -> Result<Option<String>, DbError> {
        let read = plain("SELECT id FROM _orbital_warehouse LIMIT 1");
        if self.exists("_orbital_warehouse", interrupt).await? {
            let rows = self.query(&read, interrupt).await.map_err(|f| f.error)?;
            if let Some(Value::Text(id)) = rows.rows.first().and_then(|r| r.first()) {
                return Ok(Some(id.clone()));
            }
        } else if create {
            self.create(
                "_orbital_warehouse",
                &[("id", LogicalType::Text)],
                interrupt,
            )
            .await?;
        }
        if !create {
            return Ok(None);
        }
        let mut insert = plain("INSERT INTO _orbital_warehouse (id) VALUES (?)");
        insert.params = vec![Value::Text(super::new_warehouse_id())];
        self.execute(&insert, interrupt)
            .await
            .map_err(|f| f.error)?;
        match self
            .query(&read, interrupt)
            .await
            .map_err(|f| f.error)?
            .rows
            .first()
        {
            Some(row) => match row.first() {
                Some(Value::Text(id)) => Ok(Some(id.clone())),
                other => Err(bookkeeping(format!("_orbital_warehouse holds {other:?}"))),
            },
            None => Err(bookkeeping(
                "_orbital_warehouse holds no id after writing one".into(),
            )),
        }
    }

    /// Environment `env`'s next version: a row appended to
    /// `_orbital_environments` (a database without `UPDATE` can keep it).
    pub(super) async fn bump_environment(
        &self,
        env: &str,
        interrupt: &Interrupt,
    ) -> Result<u64, DbError> {
        if !self.exists("_orbital_environments", interrupt).await? {
            self.create(
                "_orbital_environments",
                &[
                    ("name", LogicalType::Text),
                    ("version", LogicalType::Integer),
                ],
                interrupt,
            )
            .await?;
        }
        let mut read = plain("SELECT max(version) FROM _orbital_environments WHERE name = ?");
        read.params = vec![Value::Text(env.to_string())];
        let current = match self
            .query(&read, interrupt)
            .await
            .map_err(|f| f.error)?
            .rows
            .first()
            .and_then(|r| r.first())
        {
            Some(Value::Integer(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Value::Null) | None => 0,
            Some(other) => return Err(bookkeeping(format!("max(version) returned {other:?}"))),
        };
        let next = current + 1;
        let next_value = Value::Integer(i64::try_from(next).unwrap_or(i64::MAX));
        let mut insert = plain("INSERT INTO _orbital_environments (name, version) VALUES (?, ?)");
        insert.params = vec![Value::Text(env.to_string()), next_value.clone()];
        match self.execute(&insert, interrupt).await {
            Ok(_) => Ok(next),
            // The table the host's own driver makes for this database (a
            // target that moved from `mysql://` to an adapter's own
            // connection): one row per environment, keyed by its name.
            Err(refused) if refused.error.code.is_some() => {
                let mut update =
                    plain("UPDATE _orbital_environments SET version = ? WHERE name = ?");
                update.params = vec![next_value, Value::Text(env.to_string())];
                self.execute(&update, interrupt)
                    .await
                    .map_err(|_| refused.error)?;
                Ok(next)
            }
            Err(failed) => Err(failed.error),
        }
    }
}

/// How often, and after how long, a first session the adapter says may
/// open later (a server starting up) is tried again.
const OPEN_ATTEMPTS: u32 = 4;
const OPEN_BACKOFF: Duration = Duration::from_millis(250);

/// The target's first session, tried again with backoff while opening
/// fails with a `transient` database error; a plugin's failure or any
/// other error is returned at once.
async fn first_session(
    host: &PluginHost,
    adapter: &Adapter,
    url: &str,
    settings: &[(String, String)],
    grants: &Grants,
) -> Result<Result<PluginConnection, DbError>, PluginError> {
    let mut backoff = OPEN_BACKOFF;
    let mut attempt = 1;
    loop {
        match host.connect(adapter, url, settings, grants).await? {
            Err(error) if error.transient && attempt < OPEN_ATTEMPTS => {
                tracing::warn!(
                    attempt,
                    "opening a session of adapter `{}` failed, retrying: {}",
                    adapter.info.plugin.name,
                    error.message
                );
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            opened => return Ok(opened),
        }
    }
}

fn own_table(identifier: &str) -> Relation {
    Relation {
        database: None,
        schema: None,
        identifier: identifier.to_string(),
    }
}

/// Resolves once `interrupt` is set.
async fn interrupted(interrupt: &Interrupt) {
    while !interrupt.is_set() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn closed() -> DbError {
    DbError {
        message: "the target's connections are closed".into(),
        code: None,
        transient: false,
    }
}

fn plugin_error(error: PluginError) -> DbError {
    DbError {
        message: error.to_string(),
        code: Some(error.code().into()),
        transient: false,
    }
}

fn bookkeeping(message: String) -> DbError {
    DbError {
        message,
        code: None,
        transient: false,
    }
}
