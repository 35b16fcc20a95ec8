//! An adapter's own connection (plugin API 0.2.0): one adapter instance
//! per open session, in a store granted the network its target allows.
//! The runner pools these as it pools its own drivers' connections.
//!
//! A session's calls wait on the database, so they have no time limit of
//! their own; the memory limit holds, and an interrupt (a cancelled run)
//! stops the call: the caller then drops the session, whose instance may
//! be left mid-call.

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::bindings::v0_2::connected_adapter::ConnectedAdapter;
use crate::engine::{Adapter, PluginHost, classify};
use crate::error::PluginError;
use crate::network::Grants;
use crate::state::{AdapterState, Guard, Interrupt, arm};
use crate::types::{DbError, RowSet, Statement};

/// One open session of an adapter's own connection.
pub struct PluginConnection {
    store: Store<AdapterState>,
    bindings: ConnectedAdapter,
    session: ResourceAny,
}

impl PluginHost {
    /// Opens a session of `adapter`'s own connection to `url`, with the
    /// target's other `settings`, reaching only what `grants` allow. The
    /// outer error is the plugin's failure; the inner one the database's
    /// (refused credentials, an unreachable server), with what the grants
    /// refused added to it.
    pub async fn connect(
        &self,
        adapter: &Adapter,
        url: &str,
        settings: &[(String, String)],
        grants: &Grants,
    ) -> Result<Result<PluginConnection, DbError>, PluginError> {
        let plugin = adapter.info.plugin.name.clone();
        let Some(pre) = &adapter.connected else {
            return Err(PluginError::Load {
                plugin,
                message: "it brings no connection of its own (orbital:plugin/connection@0.2.0)"
                    .into(),
            });
        };
        let guard = Guard::new(&plugin, self.limits.memory_bytes, std::time::Duration::MAX);
        let grants = grants.for_session();
        let mut store = Store::new(&self.engine, AdapterState::networked(guard, grants));
        arm(&mut store);
        let bindings = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| classify(&store.data().guard, e))?;
        let opened = bindings
            .orbital_plugin0_2_0_connection()
            .session()
            .call_open(&mut store, url, settings)
            .await
            .map_err(|e| classify(&store.data().guard, e))?;
        Ok(match opened {
            Ok(session) => Ok(PluginConnection {
                store,
                bindings,
                session,
            }),
            Err(error) => Err(with_refusals(&store, error)),
        })
    }
}

impl PluginConnection {
    /// Runs one statement; `interrupt` stops the call.
    pub async fn execute(
        &mut self,
        statement: &Statement,
        interrupt: &Interrupt,
    ) -> Result<Result<u64, DbError>, PluginError> {
        self.call(interrupt, async |bindings, store, session| {
            bindings
                .orbital_plugin0_2_0_connection()
                .session()
                .call_execute(store, session, statement)
                .await
        })
        .await
    }

    /// Runs a query; `interrupt` stops the call.
    pub async fn query(
        &mut self,
        statement: &Statement,
        interrupt: &Interrupt,
    ) -> Result<Result<RowSet, DbError>, PluginError> {
        self.call(interrupt, async |bindings, store, session| {
            bindings
                .orbital_plugin0_2_0_connection()
                .session()
                .call_query(store, session, statement)
                .await
        })
        .await
    }

    /// Runs the statements as one unit where the database can.
    pub async fn transaction(
        &mut self,
        statements: &[Statement],
        interrupt: &Interrupt,
    ) -> Result<Result<Vec<u64>, DbError>, PluginError> {
        self.call(interrupt, async |bindings, store, session| {
            bindings
                .orbital_plugin0_2_0_connection()
                .session()
                .call_transaction(store, session, statements)
                .await
        })
        .await
    }

    /// Takes the database lock `name` for this session without waiting
    /// (see the `connection` interface): `None` when the database has
    /// no such locks.
    pub async fn try_lock(
        &mut self,
        name: &str,
        interrupt: &Interrupt,
    ) -> Result<Result<Option<bool>, DbError>, PluginError> {
        self.call(interrupt, async |bindings, store, session| {
            bindings
                .orbital_plugin0_2_0_connection()
                .session()
                .call_try_lock(store, session, name)
                .await
        })
        .await
    }

    /// Lets go of the database lock `name` this session took.
    pub async fn unlock(
        &mut self,
        name: &str,
        interrupt: &Interrupt,
    ) -> Result<Result<(), DbError>, PluginError> {
        self.call(interrupt, async |bindings, store, session| {
            bindings
                .orbital_plugin0_2_0_connection()
                .session()
                .call_unlock(store, session, name)
                .await
        })
        .await
    }

    async fn call<R>(
        &mut self,
        interrupt: &Interrupt,
        f: impl AsyncFnOnce(
            &ConnectedAdapter,
            &mut Store<AdapterState>,
            ResourceAny,
        ) -> wasmtime::Result<Result<R, DbError>>,
    ) -> Result<Result<R, DbError>, PluginError> {
        let guard = &mut self.store.data_mut().guard;
        guard.restart();
        guard.set_interrupt(interrupt.clone());
        let result = f(&self.bindings, &mut self.store, self.session)
            .await
            .map_err(|e| classify(&self.store.data().guard, e))?;
        Ok(result.map_err(|error| with_refusals(&self.store, error)))
    }

    /// Closes the session (the plugin's resource is dropped).
    pub async fn close(mut self) {
        let _ = self.session.resource_drop_async(&mut self.store).await;
    }
}

/// A database error with what the target's grants refused the plugin, if
/// anything: "connection refused" alone would hide why.
fn with_refusals(store: &Store<AdapterState>, mut error: DbError) -> DbError {
    if let Some(refused) = store.data().grants.refusals() {
        error.message = format!("{} ({refused})", error.message);
        error.transient = false;
    }
    error
}
