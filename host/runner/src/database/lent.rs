//! The other side of [`super::remote`]: a warehouse this process lends a
//! peer, over one connection. The peer's statements run under run handles
//! of their own (tagged and cancelled as this process's runs are), and the
//! locks and claims it takes are kept here by id until it lets go of them
//! or its connection ends (dropping the [`Lent`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orbital_core::remote::session::{WarehouseAnswer, WarehouseOp};
use orbital_plugin_host::types::DbError;

use super::locks::{Claim, Claimed, RunLock};
use super::remote::{error_to_wire, from_wire, rows_to_wire};
use super::{Warehouse, random_u64};

/// How many of a peer's runs keep their handles; older ones are made again
/// if they speak again (only a cancel of theirs then misses statements).
const RUNS_KEPT: usize = 256;

/// A warehouse lent to one peer connection.
pub struct Lent {
    warehouse: Warehouse,
    /// The peer's run ids, and the handles their statements run under.
    runs: Mutex<HashMap<u64, Warehouse>>,
    locks: Mutex<HashMap<u64, Arc<RunLock>>>,
    claims: Mutex<HashMap<u64, Claim>>,
    next: AtomicU64,
    /// Calls being answered.
    answering: AtomicU64,
}

/// Counts a call as being answered while it lives.
struct Answering<'a>(&'a AtomicU64);

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How often [`Lent::end`] cancels again while calls are still answered.
const CANCEL_AGAIN: Duration = Duration::from_millis(100);

impl Lent {
    pub fn new(warehouse: Warehouse) -> Self {
        Self {
            warehouse,
            runs: Mutex::default(),
            locks: Mutex::default(),
            claims: Mutex::default(),
            next: AtomicU64::new(1),
            answering: AtomicU64::new(0),
        }
    }

    /// Answers one call of the peer's run `run`.
    pub async fn call(&self, run: u64, op: WarehouseOp) -> WarehouseAnswer {
        self.answering.fetch_add(1, Ordering::SeqCst);
        let _answering = Answering(&self.answering);
        match self.answer(run, op).await {
            Ok(answer) => answer,
            Err(error) => WarehouseAnswer::Failed(error_to_wire(error)),
        }
    }

    async fn answer(&self, run: u64, op: WarehouseOp) -> Result<WarehouseAnswer, DbError> {
        let handle = self.handle(run);
        Ok(match op {
            WarehouseOp::Open => WarehouseAnswer::Opened {
                scheme: self.warehouse.scheme().to_string(),
            },
            WarehouseOp::Execute(statement) => {
                WarehouseAnswer::Affected(handle.execute(from_wire(statement)).await?)
            }
            WarehouseOp::Query(statement) => {
                WarehouseAnswer::Rows(rows_to_wire(handle.query(from_wire(statement)).await?))
            }
            WarehouseOp::Transaction(statements) => WarehouseAnswer::AffectedEach(
                handle
                    .transaction(statements.into_iter().map(from_wire).collect())
                    .await?,
            ),
            WarehouseOp::LockEnvironment { scope, wait_ms } => {
                let wait = Duration::from_millis(wait_ms);
                match handle.lock_environment(&scope, wait).await? {
                    Some(held) => {
                        let id = self.next.fetch_add(1, Ordering::Relaxed);
                        lock(&self.locks).insert(id, Arc::new(held));
                        WarehouseAnswer::Locked(Some(id))
                    }
                    None => WarehouseAnswer::Locked(None),
                }
            }
            WarehouseOp::CheckLock(id) => {
                let held = lock(&self.locks).get(&id).cloned();
                held.ok_or_else(|| lost("environment lock", id))?
                    .check()
                    .await?;
                WarehouseAnswer::Done
            }
            WarehouseOp::Unlock(id) => {
                lock(&self.locks).remove(&id);
                WarehouseAnswer::Done
            }
            WarehouseOp::Claim { relation, reuse } => match handle.claim(&relation, reuse).await? {
                Claimed::Build(claim) => {
                    let id = self.next.fetch_add(1, Ordering::Relaxed);
                    lock(&self.claims).insert(id, claim);
                    WarehouseAnswer::ClaimBuild(id)
                }
                Claimed::Built { .. } => WarehouseAnswer::ClaimBuilt,
            },
            WarehouseOp::ClaimBuilt(id) => {
                let claim = lock(&self.claims).remove(&id);
                claim.ok_or_else(|| lost("build claim", id))?.built().await;
                WarehouseAnswer::Done
            }
            WarehouseOp::ReleaseClaim(id) => {
                // Dropping a claim lets go of it.
                lock(&self.claims).remove(&id);
                WarehouseAnswer::Done
            }
            WarehouseOp::Interrupt => {
                handle.interrupt().await?;
                WarehouseAnswer::Done
            }
        })
    }

    /// The peer's connection ended: its statements still running are
    /// cancelled, as a server cancels a lost client's. A statement that was
    /// on its way to the server (waiting for a connection) when the cancel
    /// went out is caught by the next one: cancels go out until no call is
    /// being answered.
    pub async fn end(&self) {
        let runs: Vec<Warehouse> = lock(&self.runs).drain().map(|(_, handle)| handle).collect();
        loop {
            for handle in &runs {
                if let Err(e) = handle.interrupt().await {
                    tracing::warn!("cannot cancel a lost peer's statements: {}", e.message);
                }
            }
            if self.answering.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(CANCEL_AGAIN).await;
        }
    }

    /// The handle run `run`'s statements go through (0: no run).
    fn handle(&self, run: u64) -> Warehouse {
        if run == 0 {
            return self.warehouse.clone();
        }
        let mut runs = lock(&self.runs);
        if let Some(handle) = runs.get(&run) {
            return handle.clone();
        }
        if runs.len() >= RUNS_KEPT
            && let Some(old) = runs.keys().next().copied()
        {
            runs.remove(&old);
        }
        // An id of its own: the peer's run ids may equal this process's.
        let handle = self
            .warehouse
            .for_run(random_u64() >> 1, orbital_plugin_host::Interrupt::default());
        runs.insert(run, handle.clone());
        handle
    }
}

/// A lock or claim this connection does not hold (any more).
fn lost(what: &str, id: u64) -> DbError {
    DbError {
        message: format!(
            "the {what} {id} is not held for this connection: a connection to the peer was lost, so another run may have taken it"
        ),
        code: None,
        transient: false,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
