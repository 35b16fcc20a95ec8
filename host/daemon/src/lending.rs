//! Targets only a peer reaches, both ways.
//!
//! - **Borrowing**: a peer listed with `reaches = ["prod"]` in peers.toml
//!   holds target `prod`'s connection for this daemon. Its runs there send
//!   every statement, lock and claim to that peer ([`PeerLink`], one QUIC
//!   connection kept open), and hand it their stateless builds.
//! - **Lending**: what a peer sends this daemon for one of its targets runs
//!   on this daemon's pool for that target ([`Lending`]); the locks and
//!   claims it takes are held until it lets go or its connection ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orbital_core::remote::session::{SqlError, WarehouseAnswer, WarehouseCall, WarehouseOp};
use orbital_engine::Lent;

/// How long a call waits to connect to the peer that holds the target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// This daemon's way to a target through the peer that reaches it: one
/// connection, made on first use and again once it is lost (what was held
/// on the lost one is gone with it at the peer).
pub(crate) struct PeerLink {
    pub(crate) peer: crate::peers::Peer,
    pub(crate) target: String,
    pub(crate) identity: Arc<orbital_peer::Identity>,
    /// Calls sent to this peer (shown by `/v1/peers`).
    pub(crate) calls: Arc<AtomicU64>,
    pub(crate) client: Arc<tokio::sync::Mutex<Option<Arc<orbital_peer::PeerClient>>>>,
}

/// A peer's kept connection: the open one in `slot`, else one `connect`
/// makes (and `slot` keeps). Made once, it carries every call and task to
/// that peer: a connection's handshake, and its draining when closed, cost
/// more than most calls.
pub(crate) async fn kept_client<E, Connecting>(
    slot: &tokio::sync::Mutex<Option<Arc<orbital_peer::PeerClient>>>,
    connect: impl FnOnce() -> Connecting,
) -> Result<Arc<orbital_peer::PeerClient>, E>
where
    Connecting: std::future::Future<Output = Result<orbital_peer::PeerClient, E>>,
{
    let mut slot = slot.lock().await;
    if let Some(client) = slot.as_ref().filter(|c| c.is_open()) {
        return Ok(client.clone());
    }
    let client = connect().await?;
    Ok(slot.insert(Arc::new(client)).clone())
}

impl PeerLink {
    async fn client(&self) -> Result<Arc<orbital_peer::PeerClient>, String> {
        kept_client(&self.client, || async {
            crate::peers::connect(&self.identity, &self.peer, CONNECT_TIMEOUT)
                .await
                .map_err(|e| format!("cannot be reached: {e}"))
        })
        .await
    }
}

impl orbital_engine::Link for PeerLink {
    fn peer(&self) -> &str {
        self.peer.name()
    }

    fn call(
        &self,
        run: u64,
        op: WarehouseOp,
    ) -> orbital_engine::BoxFuture<'_, Result<WarehouseAnswer, String>> {
        Box::pin(async move {
            let client = self.client().await?;
            self.calls.fetch_add(1, Ordering::Relaxed);
            let call = WarehouseCall {
                target: self.target.clone(),
                run,
                op,
            };
            client.warehouse(call).await.map_err(|e| match e {
                orbital_peer::PeerError::Connect { message, .. } => format!("was lost: {message}"),
                other => other.to_string(),
            })
        })
    }
}

/// The targets this daemon lends its peers, by peer connection.
pub(crate) struct Lending {
    engine: orbital_engine::Engine,
    project: std::path::PathBuf,
    lent: Mutex<HashMap<(u64, String), Arc<Lent>>>,
}

impl Lending {
    pub(crate) fn new(engine: orbital_engine::Engine, project: std::path::PathBuf) -> Self {
        Self {
            engine,
            project,
            lent: Mutex::default(),
        }
    }

    /// Answers `call` of peer connection `connection`.
    pub(crate) async fn call(&self, connection: u64, call: WarehouseCall) -> WarehouseAnswer {
        let WarehouseCall { target, run, op } = call;
        let lent = match self.lent(connection, &target).await {
            Ok(lent) => lent,
            Err(message) => {
                return WarehouseAnswer::Failed(SqlError {
                    message,
                    code: None,
                    transient: false,
                });
            }
        };
        lent.call(run, op).await
    }

    /// What connection `connection` was lent of `target`, lent now if
    /// nothing yet.
    async fn lent(&self, connection: u64, target: &str) -> Result<Arc<Lent>, String> {
        let key = (connection, target.to_string());
        if let Some(lent) = lock(&self.lent).get(&key) {
            return Ok(lent.clone());
        }
        let lent = self
            .engine
            .lend(&self.project, target)
            .await
            .map_err(|e| format!("this daemon cannot lend target `{target}`: {e}"))?;
        tracing::info!("lending target `{target}` to a peer");
        Ok(lock(&self.lent)
            .entry(key)
            .or_insert_with(|| Arc::new(lent))
            .clone())
    }

    /// Peer connection `connection` ended: its locks and claims are let go
    /// of (calls still running keep theirs until they end).
    pub(crate) fn disconnected(&self, connection: u64) {
        let mut ended = Vec::new();
        lock(&self.lent).retain(|(held_by, _), lent| {
            let keep = *held_by != connection;
            if !keep {
                ended.push(lent.clone());
            }
            keep
        });
        for lent in ended {
            tokio::spawn(async move { lent.end().await });
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
