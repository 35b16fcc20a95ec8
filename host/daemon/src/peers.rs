//! The daemon's peers: the list in `<data-dir>/peers.toml`, the peer
//! endpoint it serves them on (`--peer-listen`), and what `/v1/peers` says
//! of each, checked live.
//!
//! ```toml
//! [[peer]]
//! name = "ci"
//! address = "10.0.0.7:7400"
//! sha256 = "<the peer's certificate SHA-256, as its daemon prints it>"
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::DaemonError;

/// How long a status check waits for a peer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a component no peer had is not asked for again.
const RETRY_MISSING: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersFile {
    #[serde(default)]
    peer: Vec<Peer>,
}

/// One peer of the list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Peer {
    name: String,
    address: SocketAddr,
    sha256: String,
}

/// What came from one peer.
#[derive(Debug, Clone, Copy, Default)]
struct Exchanged {
    objects: u64,
    bytes: u64,
    /// Answers refused because an object did not match its hash.
    rejected: u64,
}

type Fetched = Vec<(orbital_core::Hash, Vec<u8>)>;

/// Why a fetch from a peer came to nothing.
#[derive(Debug)]
enum FetchError {
    Peer(orbital_peer::PeerError),
    Silent,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Peer(e) => e.fmt(f),
            FetchError::Silent => write!(f, "no answer within {} s", CHECK_TIMEOUT.as_secs()),
        }
    }
}

/// The peers and what the daemon last heard from each.
pub(crate) struct Peers {
    list: Vec<Peer>,
    identity: orbital_peer::Identity,
    /// Per peer (in list order): when it last answered a hello.
    last_contact: Mutex<Vec<Option<SystemTime>>>,
    /// Per peer (in list order): what came from it since this daemon
    /// started.
    exchanged: Mutex<Vec<Exchanged>>,
    /// Components asked of every peer in vain, and when: not asked again
    /// for [`RETRY_MISSING`], so requests do not wait on peers each time.
    asked: Mutex<std::collections::HashMap<orbital_core::Hash, std::time::Instant>>,
    server: Option<orbital_peer::Server>,
}

/// Reads `<data_dir>/peers.toml` (no file: no peers). A file that does not
/// parse, names a peer twice, or gives a hash that is not 64 hex digits is
/// an error naming the file (and line and column where toml has them).
pub(crate) fn load(data_dir: &Path) -> Result<Vec<Peer>, DaemonError> {
    let path = data_dir.join("peers.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(DaemonError::File { path, source }),
    };
    let bad = |message: String| DaemonError::Identity(format!("{}: {message}", path.display()));
    let file: PeersFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut names = BTreeSet::new();
    for peer in &file.peer {
        if !names.insert(peer.name.as_str()) {
            return Err(bad(format!("peer `{}` is listed twice", peer.name)));
        }
        let hex = peer.sha256.len() == 64 && peer.sha256.chars().all(|c| c.is_ascii_hexdigit());
        if !hex {
            return Err(bad(format!(
                "peer `{}`: sha256 must be 64 hex digits (the certificate SHA-256 its daemon prints)",
                peer.name
            )));
        }
    }
    Ok(file.peer)
}

impl Peers {
    /// The peers of `data_dir`, served on `listen` (when given) from `objects`.
    pub(crate) fn start(
        list: Vec<Peer>,
        identity: orbital_peer::Identity,
        listen: Option<SocketAddr>,
        objects: Arc<dyn orbital_peer::Objects>,
    ) -> Result<Self, DaemonError> {
        let allowed = list.iter().map(|p| p.sha256.to_ascii_lowercase()).collect();
        let server = listen
            .map(|addr| {
                orbital_peer::Server::start(
                    &identity,
                    addr,
                    allowed,
                    objects,
                    orbital_peer::Limits::default(),
                )
                .map_err(|e| DaemonError::Tls(e.to_string()))
            })
            .transpose()?;
        Ok(Self {
            last_contact: Mutex::new(vec![None; list.len()]),
            exchanged: Mutex::new(vec![Exchanged::default(); list.len()]),
            asked: Mutex::default(),
            list,
            identity,
            server,
        })
    }

    /// Whether any peer is listed.
    pub(crate) fn any(&self) -> bool {
        !self.list.is_empty()
    }

    /// Where peers reach this daemon, if it serves them.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().and_then(|s| s.local_addr().ok())
    }

    pub(crate) fn close(&self) {
        if let Some(server) = &self.server {
            server.close();
        }
    }

    /// Each peer, checked now: connected or not (and why not), round-trip
    /// time, the protocol versions and store format it speaks, and when it
    /// last answered.
    pub(crate) async fn status(&self) -> Vec<Value> {
        let checks = self.list.iter().map(|peer| self.check(peer));
        let results = futures::future::join_all(checks).await;
        let mut contacts = self
            .last_contact
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let exchanged = self
            .exchanged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.list
            .iter()
            .zip(results)
            .enumerate()
            .map(|(i, (peer, result))| {
                let mut status = json!({
                    "name": peer.name,
                    "address": peer.address.to_string(),
                    "sha256": peer.sha256,
                    "connected": result.is_ok(),
                });
                match result {
                    Ok((hello, rtt)) => {
                        contacts[i] = Some(SystemTime::now());
                        status["rtt_ms"] = json!(rtt.as_secs_f64() * 1000.0);
                        status["protocol_versions"] = json!([hello.versions.0, hello.versions.1]);
                        status["store_format"] = json!(hello.store_format);
                        status["error"] = Value::Null;
                    }
                    Err(error) => status["error"] = json!(error),
                }
                status["last_contact"] =
                    json!(contacts[i].map(|t| humantime::format_rfc3339_seconds(t).to_string()));
                status["received"] = json!({
                    "objects": exchanged[i].objects,
                    "bytes": exchanged[i].bytes,
                    "rejected": exchanged[i].rejected,
                });
                status
            })
            .collect()
    }

    /// Fetches the plugin components `orbital.toml` names by hash
    /// (`blake3:<hash>`) that the project's store lacks from the peers that
    /// have them, each checked against its hash, and installs them. Returns
    /// how many came; what no peer has is left for the engine to report.
    pub(crate) async fn fetch_plugins(&self, project: &Path, store: &orbital_cas::Store) -> usize {
        let Ok(config) = orbital_core::ProjectConfig::load(project) else {
            // The engine reports a project that does not load.
            return 0;
        };
        let mut lacking: Vec<orbital_core::Hash> = config
            .plugins
            .components
            .iter()
            .filter_map(|c| match c {
                orbital_core::ComponentRef::Installed(hash) => Some(*hash),
                orbital_core::ComponentRef::Path(_) => None,
            })
            .filter(|hash| matches!(store.plugin(hash), Ok(None)))
            .collect();
        {
            let asked = self
                .asked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            lacking.retain(|h| asked.get(h).is_none_or(|at| at.elapsed() > RETRY_MISSING));
        }
        if lacking.is_empty() {
            return 0;
        }
        let mut fetched = 0;
        for (i, peer) in self.list.iter().enumerate() {
            if lacking.is_empty() {
                break;
            }
            let answer = self.fetch_from(peer, &lacking).await;
            self.count(i, &answer);
            match answer {
                Ok(components) => {
                    let installed = store.write(|w| {
                        for (_, bytes) in &components {
                            w.put_plugin(bytes)?;
                        }
                        Ok(())
                    });
                    match installed {
                        Ok(()) => {
                            fetched += components.len();
                            lacking.retain(|h| components.iter().all(|(got, _)| got != h));
                        }
                        Err(e) => {
                            tracing::warn!("cannot install plugins from peer {}: {e}", peer.name)
                        }
                    }
                }
                Err(e) => tracing::warn!("peer {}: {e}", peer.name),
            }
        }
        let now = std::time::Instant::now();
        let mut asked = self
            .asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        asked.retain(|_, at| at.elapsed() <= RETRY_MISSING);
        asked.extend(lacking.into_iter().map(|h| (h, now)));
        fetched
    }

    /// Counts what came from peer `i`, or that it sent an object that did
    /// not match its hash.
    fn count(&self, i: usize, answer: &Result<Fetched, FetchError>) {
        let mut exchanged = self
            .exchanged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let counts = &mut exchanged[i];
        match answer {
            Ok(objects) => {
                counts.objects += objects.len() as u64;
                counts.bytes += objects.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
            }
            Err(FetchError::Peer(orbital_peer::PeerError::Corrupt { .. })) => counts.rejected += 1,
            Err(_) => {}
        }
    }

    async fn fetch_from(
        &self,
        peer: &Peer,
        hashes: &[orbital_core::Hash],
    ) -> Result<Fetched, FetchError> {
        let client = self.connect(peer).await?;
        let fetched = client.fetch(hashes).await.map_err(FetchError::Peer);
        client.close().await;
        fetched
    }

    /// Connects to `peer` and exchanges hellos.
    async fn check(&self, peer: &Peer) -> Result<(orbital_peer::Hello, Duration), String> {
        let client = self.connect(peer).await.map_err(|e| e.to_string())?;
        let answer = (client.hello.clone(), client.rtt());
        client.close().await;
        Ok(answer)
    }

    /// A greeted connection to `peer`, within [`CHECK_TIMEOUT`].
    async fn connect(&self, peer: &Peer) -> Result<orbital_peer::PeerClient, FetchError> {
        let connecting = orbital_peer::PeerClient::connect(
            &self.identity,
            peer.address,
            &peer.sha256,
            orbital_peer::Limits::default(),
        );
        tokio::time::timeout(CHECK_TIMEOUT, connecting)
            .await
            .map_err(|_| FetchError::Silent)?
            .map_err(FetchError::Peer)
    }
}
