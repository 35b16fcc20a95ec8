//! A server's connections (PostgreSQL, MySQL): the one that opened the
//! warehouse, kept, and a pool for the rest.
//!
//! The kept connection serves any statement whenever it is free, and the
//! pool opens another only while it is busy: every connection costs the
//! server a process and both sides a SCRAM exchange, which on a small
//! project is more than its models' SQL. A run with one statement in flight
//! at a time so authenticates once, as psql does.
//!
//! Locks are not taken here: each holds a connection of its own
//! ([`super::locks`]), so that no run's statements can end another's lock.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Database, Pool};
use tokio::sync::{Mutex, MutexGuard};

/// How long a call waits for the kept connection before the pool opens
/// another: a new connection costs a few milliseconds of CPU on each side,
/// more than most short statements take.
const PATIENCE: Duration = Duration::from_millis(3);

pub(super) struct Connections<DB: Database> {
    pool: Pool<DB>,
    kept: Arc<Mutex<Option<DB::Connection>>>,
}

impl<DB: Database> Clone for Connections<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            kept: self.kept.clone(),
        }
    }
}

/// A connection lent for one call.
pub(super) enum Lease<'a, DB: Database> {
    Kept(MutexGuard<'a, Option<DB::Connection>>),
    Pooled(PoolConnection<DB>),
}

impl<DB: Database> Connections<DB> {
    pub(super) fn new(pool: Pool<DB>, first: DB::Connection) -> Self {
        Self {
            pool,
            kept: Arc::new(Mutex::new(Some(first))),
        }
    }

    /// The kept connection if it is free or frees up within [`PATIENCE`],
    /// else an idle pooled one, else a new one.
    pub(super) async fn acquire(&self) -> Result<Lease<'_, DB>, sqlx::Error> {
        let patience = if self.pool.num_idle() > 0 {
            Duration::ZERO
        } else {
            PATIENCE
        };
        if let Ok(kept) = tokio::time::timeout(patience, self.kept.lock()).await
            && kept.is_some()
        {
            return Ok(Lease::Kept(kept));
        }
        Ok(Lease::Pooled(self.pool.acquire().await?))
    }

    /// Ends a lease; a kept connection the call found broken is dropped.
    pub(super) fn release(&self, lease: Lease<'_, DB>, broken: bool) {
        if let (Lease::Kept(mut kept), true) = (lease, broken) {
            kept.take();
        }
    }

    /// A new connection of the caller's own, outside the pool (whose
    /// connections may all be busy with long statements): what a session
    /// lock (PostgreSQL's advisory locks, MySQL's `GET_LOCK`) lives on.
    pub(super) async fn dedicated(&self) -> Result<DB::Connection, sqlx::Error> {
        DB::Connection::connect_with(&self.pool.connect_options()).await
    }

    pub(super) async fn close(&self) {
        if let Some(connection) = self.kept.lock().await.take() {
            let _ = connection.close().await;
        }
        self.pool.close().await;
    }
}

impl<DB: Database> Deref for Lease<'_, DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match self {
            // A kept lease is only made over a present connection.
            Lease::Kept(kept) => kept.as_ref().expect("a kept lease has its connection"),
            Lease::Pooled(pooled) => pooled,
        }
    }
}

impl<DB: Database> DerefMut for Lease<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match self {
            Lease::Kept(kept) => kept.as_mut().expect("a kept lease has its connection"),
            Lease::Pooled(pooled) => pooled,
        }
    }
}

/// Whether `error` ended the connection it happened on: an I/O or protocol
/// failure, or the server terminating the session (SQLSTATE class 57P,
/// 08, which MySQL's lost connections use too).
pub(super) fn ends_connection(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("57P0") || code.starts_with("08")),
        _ => false,
    }
}
