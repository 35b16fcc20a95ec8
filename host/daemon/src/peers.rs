//! The daemon's peers: the list in `<data-dir>/peers.toml`, the peer
//! endpoint it serves them on (`--peer-listen`), and what `/v1/peers` says
//! of each, checked live.
//!
//! ```toml
//! [[peer]]
//! name = "ci"
//! address = "10.0.0.7:7400"
//! sha256 = "<the peer's certificate SHA-256, as its daemon prints it>"
//! tasks = 4            # how many of a run's builds it takes at once
//! reaches = ["prod"]   # targets this daemon reaches only through it
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

/// How often environments are exchanged with every peer (and at once
/// after a run or a promote here).
const SYNC_EVERY: Duration = Duration::from_secs(5);

/// How long a peer that could not be reached is not asked for builds (the
/// sync loop keeps trying it), so plans do not wait on a peer that is down.
const SKIP_DOWN: Duration = Duration::from_secs(30);

/// How long a plan or a run waits for a peer to answer its connection
/// before it goes on without that peer's builds.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// How many fingerprints one `FindBuilds` asks about.
const BUILDS_PER_REQUEST: usize = 4096;

/// How many times a fetch is retried on a new connection, resuming large
/// objects from what came.
const FETCH_ATTEMPTS: usize = 4;

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
    /// How many of a run's tasks it builds at once (default 4).
    #[serde(default = "default_tasks")]
    tasks: usize,
    /// Targets of the project that this daemon reaches only through this
    /// peer: their statements, locks and claims run on its connection.
    #[serde(default)]
    reaches: Vec<String>,
}

fn default_tasks() -> usize {
    4
}

/// What came from one peer.
#[derive(Debug, Clone, Copy, Default)]
struct Exchanged {
    objects: u64,
    bytes: u64,
    /// Build records it had that this daemon reused.
    builds: u64,
    /// Environment records taken from it (newer than this daemon's).
    environments: u64,
    /// Answers refused because an object did not match its hash.
    rejected: u64,
    /// Environment records announced to it that it took.
    environments_sent: u64,
    /// Tasks it built for this daemon's runs.
    tasks: u64,
    /// Tasks it was lost while building (built here instead).
    tasks_lost: u64,
}

type Fetched = Vec<(orbital_core::Hash, Vec<u8>)>;

/// Why a fetch from a peer came to nothing.
#[derive(Debug)]
pub(crate) enum FetchError {
    Peer(orbital_peer::PeerError),
    /// No answer within this long.
    Silent(Duration),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Peer(e) => e.fmt(f),
            FetchError::Silent(within) => {
                write!(f, "no answer within {} ms", within.as_millis())
            }
        }
    }
}

/// The peers and what the daemon last heard from each.
pub(crate) struct Peers {
    list: Vec<Peer>,
    identity: Arc<orbital_peer::Identity>,
    /// Per peer (in list order): when it last answered a hello.
    last_contact: Mutex<Vec<Option<SystemTime>>>,
    /// Per peer (in list order): what came from it since this daemon
    /// started.
    exchanged: Mutex<Vec<Exchanged>>,
    /// Components asked of every peer in vain, and when: not asked again
    /// for [`RETRY_MISSING`], so requests do not wait on peers each time.
    asked: Mutex<std::collections::HashMap<orbital_core::Hash, std::time::Instant>>,
    /// Per peer (in list order): since when it could not be reached.
    down: Mutex<Vec<Option<std::time::Instant>>>,
    server: Option<orbital_peer::Server>,
    /// The project's state store: what is shared, and where what comes goes.
    store: Arc<orbital_cas::Store>,
    /// Wakes the sync loop (a run or a promote changed an environment, or
    /// a peer announced records whose SQL is to be fetched).
    changed: Arc<tokio::sync::Notify>,
    /// SQL objects taken environment records name that the store lacks.
    wanted_sql: Arc<Mutex<BTreeSet<orbital_core::Hash>>>,
    /// Per peer (in list order): its free task slots.
    slots: Vec<Arc<tokio::sync::Semaphore>>,
    /// The environment versions last announced to the peers.
    announced: Mutex<std::collections::HashMap<(String, String), orbital_cas::EnvVersion>>,
    /// Per peer (in list order): warehouse calls sent to it, and the
    /// connection they and tasks go on.
    calls: Vec<Arc<std::sync::atomic::AtomicU64>>,
    links: Vec<Arc<tokio::sync::Mutex<Option<Arc<orbital_peer::PeerClient>>>>>,
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
        if peer.name.trim().is_empty() {
            return Err(bad("a peer has an empty name".into()));
        }
        if peer.tasks == 0 {
            return Err(bad(format!(
                "peer `{}`: tasks must be at least 1 (how many of a run's builds it takes at once)",
                peer.name
            )));
        }
        if !names.insert(peer.name.as_str()) {
            return Err(bad(format!("peer `{}` is listed twice", peer.name)));
        }
        for target in &peer.reaches {
            if target.trim().is_empty() {
                return Err(bad(format!(
                    "peer `{}`: reaches lists an empty target name",
                    peer.name
                )));
            }
            let other = file.peer.iter().find(|p| p.reaches.contains(target));
            if let Some(other) = other.filter(|other| other.name != peer.name) {
                return Err(bad(format!(
                    "target `{target}` is reached through peers `{}` and `{}`: name one",
                    other.name, peer.name
                )));
            }
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

impl Peer {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Peers {
    /// The peers of `data_dir`, served on `listen` (when given) from the
    /// project's `store`.
    pub(crate) fn start(
        list: Vec<Peer>,
        identity: orbital_peer::Identity,
        listen: Option<SocketAddr>,
        store: Arc<orbital_cas::Store>,
        builder: Builder,
    ) -> Result<Self, DaemonError> {
        let changed = Arc::new(tokio::sync::Notify::new());
        let wanted_sql = Arc::new(Mutex::new(BTreeSet::new()));
        let objects: Arc<dyn orbital_peer::Objects> = Arc::new(Shared {
            store: store.clone(),
            wanted_sql: wanted_sql.clone(),
            changed: changed.clone(),
            lending: crate::lending::Lending::new(builder.engine.clone(), builder.project.clone()),
            builder,
        });
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
            down: Mutex::new(vec![None; list.len()]),
            slots: list
                .iter()
                .map(|p| Arc::new(tokio::sync::Semaphore::new(p.tasks)))
                .collect(),
            calls: list.iter().map(|_| Arc::default()).collect(),
            links: list.iter().map(|_| Arc::default()).collect(),
            list,
            identity: Arc::new(identity),
            server,
            store,
            changed,
            wanted_sql,
            announced: Mutex::default(),
        })
    }

    /// Says an environment may have changed here: the sync loop announces
    /// it to the peers now rather than at its next turn.
    pub(crate) fn changed(&self) {
        self.changed.notify_one();
    }

    /// Exchanges environment records with every peer at start, every
    /// [`SYNC_EVERY`] and after each change here, until `stop`.
    pub(crate) async fn sync_loop(self: Arc<Self>, stop: orbital_engine::CancellationToken) {
        if !self.any() {
            return;
        }
        loop {
            self.sync().await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.changed.notified() => {}
                () = tokio::time::sleep(SYNC_EVERY) => {}
            }
        }
    }

    /// One exchange with every peer at once: this store's environments
    /// changed since the last announcement go to each, and each peer's
    /// newer ones are taken. A peer that is down gets them at the next
    /// exchange after it is back (it asks for what is newer too).
    async fn sync(&self) {
        let ours = match self.store.env_versions() {
            Ok(ours) => ours,
            Err(e) => return tracing::warn!("peers: cannot read the environments: {e}"),
        };
        let changed: Vec<orbital_cas::EnvRecord> = {
            let announced = lock(&self.announced);
            ours.iter()
                .filter(|(w, e, v)| announced.get(&(w.clone(), e.clone())) != Some(v))
                .filter_map(|(w, e, _)| self.store.env_record(w, e).ok())
                .collect()
        };
        let exchanges = (0..self.list.len()).map(|i| self.exchange(i, &ours, &changed));
        futures::future::join_all(exchanges).await;
        let mut announced = lock(&self.announced);
        for record in changed {
            announced.insert((record.warehouse, record.env), record.version);
        }
    }

    /// Announces `changed` to peer `i` and takes what it has newer than
    /// `ours`.
    async fn exchange(
        &self,
        i: usize,
        ours: &[(String, String, orbital_cas::EnvVersion)],
        changed: &[orbital_cas::EnvRecord],
    ) {
        let peer = &self.list[i];
        // A peer that is not up yet (daemons restarting one after another)
        // is not marked down by the exchange: only a plan or a run that
        // waited on it marks it. Reaching it clears the mark.
        let client = match self.connect(peer, CHECK_TIMEOUT).await {
            Ok(client) => {
                self.reached(i);
                client
            }
            Err(e) => return tracing::debug!("peer {}: {e}", peer.name),
        };
        if !changed.is_empty() {
            match client.announce(changed).await {
                Ok(taken) => lock(&self.exchanged)[i].environments_sent += u64::from(taken),
                Err(e) => tracing::warn!("peer {}: announcing environments: {e}", peer.name),
            }
        }
        match client.environments(ours).await {
            Ok(records) if !records.is_empty() => {
                let taken = self.store.write(|w| {
                    let mut taken = 0u64;
                    for record in &records {
                        taken += u64::from(w.adopt_environment(record)?);
                    }
                    Ok(taken)
                });
                want_sql(&self.store, &self.wanted_sql, &records);
                match taken {
                    Ok(taken) => {
                        lock(&self.exchanged)[i].environments += taken;
                        if taken > 0 {
                            tracing::info!(
                                "took {taken} environment records from peer {}",
                                peer.name
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!("peer {}: cannot take its environments: {e}", peer.name)
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("peer {}: asking for environments: {e}", peer.name),
        }
        self.fetch_sql(i, &client).await;
        client.close().await;
    }

    /// Whether `name` is a listed peer.
    pub(crate) fn lists(&self, name: &str) -> bool {
        self.list.iter().any(|p| p.name == name)
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
        for (i, result) in results.iter().enumerate() {
            if result.is_ok() {
                self.contacted(i);
            }
        }
        let contacts = lock(&self.last_contact).clone();
        let exchanged = lock(&self.exchanged).clone();
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
                    "builds": exchanged[i].builds,
                    "environments": exchanged[i].environments,
                    "rejected": exchanged[i].rejected,
                });
                status["sent"] = json!({
                    "environments": exchanged[i].environments_sent,
                    "tasks": exchanged[i].tasks,
                    "tasks_lost": exchanged[i].tasks_lost,
                    "warehouse_calls": self.calls[i].load(std::sync::atomic::Ordering::Relaxed),
                });
                status["reaches"] = json!(peer.reaches);
                // One object that did not match its hash: no object is
                // asked of it again until this daemon restarts.
                status["distrusted"] = json!(exchanged[i].rejected > 0);
                status
            })
            .collect()
    }

    /// Fetches the plugin components `orbital.toml` names by hash
    /// (`blake3:<hash>`) that the project's store lacks from the peers that
    /// have them, each checked against its hash, and installs them. Returns
    /// how many came; what no peer has is left for the engine to report.
    pub(crate) async fn fetch_plugins(&self, project: &Path, store: &orbital_cas::Store) -> usize {
        // A dbt project names no components, and loading its config reads
        // every schema file: not on each request.
        if orbital_core::dbt::is_dbt_project(project) {
            return 0;
        }
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
            let asked = lock(&self.asked);
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
            if self.recently_down(i) || lock(&self.exchanged)[i].rejected > 0 {
                continue;
            }
            let answer = self.fetch_from(i, &lacking).await;
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
        let mut asked = lock(&self.asked);
        asked.retain(|_, at| at.elapsed() <= RETRY_MISSING);
        asked.extend(lacking.into_iter().map(|h| (h, now)));
        fetched
    }

    /// Counts what came from peer `i`, or that it sent an object that did
    /// not match its hash.
    fn count(&self, i: usize, answer: &Result<Fetched, FetchError>) {
        let mut exchanged = lock(&self.exchanged);
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

    /// Fetches `hashes` from peer `i`; a connection that breaks is made
    /// again and large objects resume from what came.
    async fn fetch_from(
        &self,
        i: usize,
        hashes: &[orbital_core::Hash],
    ) -> Result<Fetched, FetchError> {
        let mut partial = orbital_peer::Partial::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let client = self.connect_to(i).await?;
            let fetched = client.fetch_with(hashes, &mut partial).await;
            client.close().await;
            match fetched {
                Err(orbital_peer::PeerError::Connect { message, .. })
                    if attempt < FETCH_ATTEMPTS =>
                {
                    tracing::warn!(
                        "peer {}: {message}; resuming from {} bytes",
                        self.list[i].name,
                        partial.bytes()
                    );
                }
                fetched => return fetched.map_err(FetchError::Peer),
            }
        }
    }

    /// Connects to `peer` and exchanges hellos.
    async fn check(&self, peer: &Peer) -> Result<(orbital_peer::Hello, Duration), String> {
        let client = self
            .connect(peer, CHECK_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let answer = (client.hello.clone(), client.rtt());
        client.close().await;
        Ok(answer)
    }

    /// Fetches from peer `i` the SQL objects taken environment records
    /// name that the store lacks (what `plan` diffs against), each checked
    /// against its hash; what it lacks too is asked of the next peer.
    async fn fetch_sql(&self, i: usize, client: &orbital_peer::PeerClient) {
        let lacking: Vec<orbital_core::Hash> = {
            let mut wanted = lock(&self.wanted_sql);
            wanted.retain(|hash| matches!(self.store.object(hash), Ok(None)));
            wanted.iter().copied().collect()
        };
        if lacking.is_empty() {
            return;
        }
        let answer = client.fetch(&lacking).await.map_err(FetchError::Peer);
        self.count(i, &answer);
        let stored = answer.map(|objects| {
            self.store.write(|w| {
                for (_, bytes) in &objects {
                    w.put_object(bytes)?;
                }
                Ok(objects.len())
            })
        });
        match stored {
            Ok(Ok(_)) => {
                lock(&self.wanted_sql).retain(|hash| matches!(self.store.object(hash), Ok(None)))
            }
            Ok(Err(e)) => tracing::warn!("peer {}: cannot store SQL: {e}", self.list[i].name),
            Err(e) => tracing::warn!("peer {}: fetching SQL: {e}", self.list[i].name),
        }
    }

    /// A greeted connection to peer `i`, noting whether it could be had.
    async fn connect_to(&self, i: usize) -> Result<orbital_peer::PeerClient, FetchError> {
        self.connect_within(i, CHECK_TIMEOUT).await
    }

    /// [`Peers::connect_to`], waiting at most `timeout`.
    async fn connect_within(
        &self,
        i: usize,
        timeout: Duration,
    ) -> Result<orbital_peer::PeerClient, FetchError> {
        let connected = self.connect(&self.list[i], timeout).await;
        match &connected {
            Ok(_) => self.reached(i),
            Err(_) => {
                let mut down = lock(&self.down);
                down[i] = Some(down[i].unwrap_or_else(std::time::Instant::now));
            }
        }
        connected
    }

    /// Notes that peer `i` answered a hello just now: it is not down.
    fn reached(&self, i: usize) {
        lock(&self.down)[i] = None;
        self.contacted(i);
    }

    /// Notes that peer `i` answered a hello just now.
    fn contacted(&self, i: usize) {
        lock(&self.last_contact)[i] = Some(SystemTime::now());
    }

    /// Whether peer `i` could not be reached lately.
    fn recently_down(&self, i: usize) -> bool {
        lock(&self.down)[i].is_some_and(|since| since.elapsed() < SKIP_DOWN)
    }

    /// A greeted connection to `peer`, within `timeout`.
    async fn connect(
        &self,
        peer: &Peer,
        timeout: Duration,
    ) -> Result<orbital_peer::PeerClient, FetchError> {
        connect(&self.identity, peer, timeout).await
    }
}

/// A greeted connection to `peer` as `identity`, within `timeout`.
pub(crate) async fn connect(
    identity: &orbital_peer::Identity,
    peer: &Peer,
    timeout: Duration,
) -> Result<orbital_peer::PeerClient, FetchError> {
    let connecting = orbital_peer::PeerClient::connect(
        identity,
        peer.address,
        &peer.sha256,
        orbital_peer::Limits::default(),
    );
    tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| FetchError::Silent(timeout))?
        .map_err(FetchError::Peer)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Builds peers made, like an action cache: each peer (that is up) is
/// asked for the fingerprints no peer before it had. And tasks handed to
/// peers with a free slot.
impl orbital_engine::BuildSource for Peers {
    fn reach(&self, target: &str) -> Option<Arc<dyn orbital_engine::Link>> {
        let i = self
            .list
            .iter()
            .position(|p| p.reaches.iter().any(|t| t == target))?;
        let peer = &self.list[i];
        Some(Arc::new(crate::lending::PeerLink {
            peer: peer.clone(),
            target: target.to_string(),
            identity: self.identity.clone(),
            calls: self.calls[i].clone(),
            client: self.links[i].clone(),
        }))
    }

    fn run_task<'a>(
        &'a self,
        peers: &'a [String],
        task: orbital_core::remote::BuildTask,
    ) -> orbital_engine::BoxFuture<'a, orbital_core::remote::TaskOutcome> {
        use orbital_core::remote::TaskOutcome;
        Box::pin(async move {
            let mut refused = Vec::new();
            for name in peers {
                let Some(i) = self.list.iter().position(|p| &p.name == name) else {
                    continue;
                };
                if self.recently_down(i) {
                    continue;
                }
                // A peer with no free slot is passed over: the task is built
                // here rather than waiting on it.
                let Ok(_slot) = self.slots[i].clone().try_acquire_owned() else {
                    continue;
                };
                // The peer's kept connection: tasks come many at once.
                let connecting = || self.connect_within(i, ASK_TIMEOUT);
                let client = match crate::lending::kept_client(&self.links[i], connecting).await {
                    Ok(client) => client,
                    Err(e) => {
                        tracing::warn!("peer {name}: {e}");
                        continue;
                    }
                };
                let built = client.build(&task).await;
                match built {
                    Ok((message, rows)) => {
                        lock(&self.exchanged)[i].tasks += 1;
                        return TaskOutcome::Built {
                            peer: name.clone(),
                            message,
                            rows,
                        };
                    }
                    Err(orbital_peer::PeerError::Protocol { code, message, .. })
                        if code == "task.failed" =>
                    {
                        return TaskOutcome::Failed {
                            peer: name.clone(),
                            error: message,
                        };
                    }
                    Err(orbital_peer::PeerError::Protocol { code, message, .. })
                        if code == "task.refused" =>
                    {
                        refused.push(format!("peer {name} refused it: {message}"));
                    }
                    // Lost mid-task: whatever it did is harmless (a staging
                    // name, then the fingerprint's relation); built here.
                    Err(e) => {
                        lock(&self.down)[i] = Some(std::time::Instant::now());
                        lock(&self.exchanged)[i].tasks_lost += 1;
                        return TaskOutcome::NotTaken {
                            why: format!(
                                "peer {name} was lost while building it: built here ({e})"
                            ),
                        };
                    }
                }
            }
            TaskOutcome::NotTaken {
                why: refused.join("; "),
            }
        })
    }

    fn builds<'a>(
        &'a self,
        warehouse: &'a str,
        fingerprints: Vec<orbital_core::Hash>,
    ) -> orbital_engine::BoxFuture<'a, Vec<orbital_cas::BuildRecord>> {
        Box::pin(async move {
            let mut wanted = fingerprints;
            let mut found = Vec::new();
            for i in 0..self.list.len() {
                if wanted.is_empty() {
                    break;
                }
                if self.recently_down(i) {
                    continue;
                }
                let client = match self.connect_within(i, ASK_TIMEOUT).await {
                    Ok(client) => client,
                    Err(e) => {
                        tracing::warn!("peer {}: {e}", self.list[i].name);
                        continue;
                    }
                };
                let mut came = Vec::new();
                for batch in wanted.chunks(BUILDS_PER_REQUEST) {
                    match client.find_builds(warehouse, batch).await {
                        Ok(builds) => came.extend(builds),
                        Err(e) => {
                            tracing::warn!("peer {}: asking for builds: {e}", self.list[i].name);
                            break;
                        }
                    }
                }
                client.close().await;
                lock(&self.exchanged)[i].builds += came.len() as u64;
                let had: std::collections::HashSet<_> =
                    came.iter().map(|b| b.fingerprint).collect();
                wanted.retain(|fp| !had.contains(fp));
                found.extend(came);
            }
            found
        })
    }
}

/// Notes the SQL objects `records` name that `store` lacks, to be fetched.
fn want_sql(
    store: &orbital_cas::Store,
    wanted: &Mutex<BTreeSet<orbital_core::Hash>>,
    records: &[orbital_cas::EnvRecord],
) {
    let mut wanted = lock(wanted);
    // Hashes no peer had pile up no further than this.
    if wanted.len() > 100_000 {
        wanted.clear();
    }
    wanted.extend(
        records
            .iter()
            .flat_map(|r| r.entries.iter().filter_map(|(_, e)| e.sql))
            .filter(|hash| matches!(store.object(hash), Ok(None))),
    );
}

/// Who builds the tasks peers hand this daemon: its engine, on its project.
pub(crate) struct Builder {
    pub(crate) engine: orbital_engine::Engine,
    pub(crate) project: std::path::PathBuf,
}

/// What this daemon serves its peers: the project's store, noting the SQL
/// of environment records peers announce (fetched by the sync loop), and
/// builds of the tasks they hand it.
struct Shared {
    store: Arc<orbital_cas::Store>,
    wanted_sql: Arc<Mutex<BTreeSet<orbital_core::Hash>>>,
    changed: Arc<tokio::sync::Notify>,
    builder: Builder,
    lending: crate::lending::Lending,
}

impl orbital_peer::Objects for Shared {
    fn object(
        &self,
        hash: &orbital_core::Hash,
    ) -> Result<Option<Vec<u8>>, orbital_peer::PeerError> {
        orbital_peer::Objects::object(self.store.as_ref(), hash)
    }

    fn objects(
        &self,
        hashes: &[orbital_core::Hash],
    ) -> Result<Vec<Option<Vec<u8>>>, orbital_peer::PeerError> {
        orbital_peer::Objects::objects(self.store.as_ref(), hashes)
    }

    fn sizes(
        &self,
        hashes: &[orbital_core::Hash],
    ) -> Result<Vec<Option<u64>>, orbital_peer::PeerError> {
        orbital_peer::Objects::sizes(self.store.as_ref(), hashes)
    }

    fn builds(
        &self,
        warehouse: &str,
        fingerprints: &[orbital_core::Hash],
    ) -> Result<Vec<orbital_cas::BuildRecord>, orbital_peer::PeerError> {
        orbital_peer::Objects::builds(self.store.as_ref(), warehouse, fingerprints)
    }

    fn environments(
        &self,
        known: &[(String, String, orbital_cas::EnvVersion)],
    ) -> Result<Vec<orbital_cas::EnvRecord>, orbital_peer::PeerError> {
        orbital_peer::Objects::environments(self.store.as_ref(), known)
    }

    fn build(
        &self,
        task: orbital_core::remote::BuildTask,
    ) -> orbital_peer::BoxFuture<'_, Result<(String, Option<u64>), orbital_peer::TaskError>> {
        Box::pin(async move {
            let Builder { engine, project } = &self.builder;
            tracing::info!(
                "building {} for run {} of a peer (try {})",
                task.model,
                task.fence.run,
                task.fence.attempt
            );
            // The build's own failure is the task's; anything before it
            // (no such target, other components, a plugin that does not
            // load here) sends the task elsewhere.
            match engine.run_task(project, &task).await {
                Ok(built) => built.map_err(orbital_peer::TaskError::Failed),
                Err(e) => Err(orbital_peer::TaskError::Refused(e.to_string())),
            }
        })
    }

    fn warehouse(
        &self,
        connection: u64,
        call: orbital_core::remote::session::WarehouseCall,
    ) -> orbital_peer::BoxFuture<'_, orbital_core::remote::session::WarehouseAnswer> {
        Box::pin(self.lending.call(connection, call))
    }

    fn disconnected(&self, connection: u64) {
        self.lending.disconnected(connection);
    }

    fn adopt(&self, records: &[orbital_cas::EnvRecord]) -> Result<usize, orbital_peer::PeerError> {
        let taken = orbital_peer::Objects::adopt(self.store.as_ref(), records)?;
        if taken > 0 {
            want_sql(&self.store, &self.wanted_sql, records);
            self.changed.notify_one();
        }
        Ok(taken)
    }
}
