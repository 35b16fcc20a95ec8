//! PostgreSQL's connections: the one that opened the warehouse, kept, and a
//! pool for the rest.
//!
//! The kept connection serves any statement whenever it is free, and the
//! pool opens another only while it is busy: every connection costs the
//! server a process and both sides a SCRAM exchange, which on a small
//! project is more than its models' SQL. A run with one statement in flight
//! at a time so authenticates once, as psql does.
//!
//! The run lock is a session advisory lock on the kept connection. If that
//! connection breaks, the lock went with it: [`Connections::lock_lost`]
//! says so, and the run publishes nothing.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, Postgres};
use tokio::sync::{Mutex, MutexGuard};

/// The advisory lock key of orbital runs on a PostgreSQL warehouse.
const RUN_LOCK_KEY: i64 = 0x6f72_6269_7461_6c00; // "orbital\0"

/// How long a call waits for the kept connection before the pool opens
/// another: a new connection costs a few milliseconds of CPU on each side,
/// more than most short statements take.
const PATIENCE: Duration = Duration::from_millis(3);

#[derive(Clone)]
pub(super) struct Connections {
    pool: PgPool,
    kept: Arc<Mutex<Option<PgConnection>>>,
    /// The kept connection holds the run lock.
    locked: Arc<AtomicBool>,
    /// It broke while holding it.
    lock_lost: Arc<AtomicBool>,
}

/// A connection lent for one call.
pub(super) enum Lease<'a> {
    Kept(MutexGuard<'a, Option<PgConnection>>),
    Pooled(PoolConnection<Postgres>),
}

impl Connections {
    pub(super) fn new(pool: PgPool, first: PgConnection) -> Self {
        Self {
            pool,
            kept: Arc::new(Mutex::new(Some(first))),
            locked: Arc::new(AtomicBool::new(false)),
            lock_lost: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The kept connection if it is free or frees up within [`PATIENCE`],
    /// else an idle pooled one, else a new one.
    pub(super) async fn acquire(&self) -> Result<Lease<'_>, sqlx::Error> {
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

    /// Ends a lease; a kept connection the call found broken is dropped
    /// (with the run lock, if it held it).
    pub(super) fn release(&self, lease: Lease<'_>, broken: bool) {
        if let (Lease::Kept(mut kept), true) = (lease, broken) {
            kept.take();
            if self.locked.load(Ordering::SeqCst) {
                self.lock_lost.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Takes the run lock on the kept connection (a new one if it broke),
    /// trying every 200 ms for up to `wait`. `Ok(false)`: the wait ran out.
    pub(super) async fn lock_runs(&self, wait: Duration) -> Result<bool, sqlx::Error> {
        let mut kept = self.kept.lock().await;
        let mut connection = match kept.take() {
            Some(connection) => connection,
            None => self.pool.acquire().await?.detach(),
        };
        let started = std::time::Instant::now();
        let mut said = false;
        let taken = loop {
            let (taken,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                .bind(RUN_LOCK_KEY)
                .fetch_one(&mut connection)
                .await?;
            if taken || started.elapsed() >= wait {
                break taken;
            }
            if !said {
                tracing::warn!("another orbital run holds this warehouse; waiting for it");
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        *kept = Some(connection);
        self.locked.store(taken, Ordering::SeqCst);
        Ok(taken)
    }

    /// Releases the run lock by ending the session that holds it; the pool
    /// serves what comes after.
    pub(super) fn unlock_runs(&self) {
        if self.locked.swap(false, Ordering::SeqCst)
            && let Ok(mut kept) = self.kept.try_lock()
        {
            kept.take();
        }
    }

    pub(super) fn lock_lost(&self) -> bool {
        self.lock_lost.load(Ordering::SeqCst)
    }

    pub(super) async fn close(&self) {
        if let Some(connection) = self.kept.lock().await.take() {
            let _ = sqlx::Connection::close(connection).await;
        }
        self.pool.close().await;
    }
}

impl Deref for Lease<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            // A kept lease is only made over a present connection.
            Lease::Kept(kept) => kept.as_ref().expect("a kept lease has its connection"),
            Lease::Pooled(pooled) => pooled,
        }
    }
}

impl DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Lease::Kept(kept) => kept.as_mut().expect("a kept lease has its connection"),
            Lease::Pooled(pooled) => pooled,
        }
    }
}

/// Whether `error` ended the connection it happened on: an I/O or protocol
/// failure, or the server terminating the session (SQLSTATE class 57P,
/// 08).
pub(super) fn ends_connection(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("57P0") || code.starts_with("08")),
        _ => false,
    }
}
