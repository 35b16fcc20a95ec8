//! A peer's two roles: [`Server`] answers other daemons' requests from its
//! store; [`PeerClient`] asks one peer, checking everything it receives.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use orbital_cas::{BuildRecord, EnvRecord, EnvVersion};
use orbital_core::Hash;
use orbital_core::remote::BuildTask;
use orbital_core::remote::session::{SqlError, WarehouseAnswer, WarehouseCall};

use crate::error::PeerError;
use crate::tls::{self, Identity};
use crate::wire::{self, Hello, Request, Response};

/// QUIC application error codes a connection is closed with.
const CLOSE_PROTOCOL: u32 = 1;

/// What a peer accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest message read, in bytes.
    pub max_message: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message: 16 << 20,
        }
    }
}

/// How many large objects are streamed from one peer at once.
const LARGE_AT_ONCE: usize = 4;

/// Objects at least this large are streamed (`ReadObject`), not batched.
pub const STREAM_FROM: u64 = 1 << 20;

/// What a server shares: objects by hash, builds, environment records.
/// The state store, or (in tests) a source that lies.
pub trait Objects: Send + Sync + 'static {
    fn object(&self, hash: &Hash) -> Result<Option<Vec<u8>>, PeerError>;

    /// Each of `hashes`' bytes, if held (a store reads them at once).
    fn objects(&self, hashes: &[Hash]) -> Result<Vec<Option<Vec<u8>>>, PeerError> {
        hashes.iter().map(|hash| self.object(hash)).collect()
    }

    /// Each of `hashes`' size, if held (a store copies no bytes for it).
    fn sizes(&self, hashes: &[Hash]) -> Result<Vec<Option<u64>>, PeerError> {
        Ok(self
            .objects(hashes)?
            .into_iter()
            .map(|bytes| bytes.map(|b| b.len() as u64))
            .collect())
    }

    /// Of `fingerprints`, the builds recorded in `warehouse`.
    fn builds(
        &self,
        _warehouse: &str,
        _fingerprints: &[Hash],
    ) -> Result<Vec<BuildRecord>, PeerError> {
        Ok(Vec::new())
    }

    /// The environment records newer than `known` (or not in it).
    fn environments(
        &self,
        _known: &[(String, String, EnvVersion)],
    ) -> Result<Vec<EnvRecord>, PeerError> {
        Ok(Vec::new())
    }

    /// Takes the records newer than the store's; how many were taken.
    fn adopt(&self, _records: &[EnvRecord]) -> Result<usize, PeerError> {
        Ok(0)
    }

    /// Builds a task another daemon handed over: the materialization's
    /// message and rows.
    fn build(&self, _task: BuildTask) -> BoxFuture<'_, Result<(String, Option<u64>), TaskError>> {
        Box::pin(async { Err(TaskError::Refused("this peer builds no tasks".into())) })
    }

    /// Answers a call on this peer's connection to one of its targets, for
    /// the peer connection `connection` (what it holds there is kept for
    /// that connection until [`Objects::disconnected`]).
    fn warehouse(&self, _connection: u64, _call: WarehouseCall) -> BoxFuture<'_, WarehouseAnswer> {
        Box::pin(async {
            WarehouseAnswer::Failed(SqlError {
                message: "this peer lends no warehouse".into(),
                code: None,
                transient: false,
            })
        })
    }

    /// Peer connection `connection` ended: what it held is let go of.
    fn disconnected(&self, _connection: u64) {}
}

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Why a task was not built.
#[derive(Debug, Clone)]
pub enum TaskError {
    /// Not taken (no such target, other components): build it elsewhere.
    Refused(String),
    /// The build ran and failed.
    Failed(String),
}

/// A store serves its objects and its installed plugin components, both
/// named by the blake3 hash of their bytes, its builds and its
/// environments.
impl Objects for orbital_cas::Store {
    fn object(&self, hash: &Hash) -> Result<Option<Vec<u8>>, PeerError> {
        Ok(self.object_or_plugin(hash)?)
    }

    fn objects(&self, hashes: &[Hash]) -> Result<Vec<Option<Vec<u8>>>, PeerError> {
        Ok(self.objects_or_plugins(hashes)?)
    }

    fn sizes(&self, hashes: &[Hash]) -> Result<Vec<Option<u64>>, PeerError> {
        Ok(self.object_sizes(hashes)?)
    }

    fn builds(
        &self,
        warehouse: &str,
        fingerprints: &[Hash],
    ) -> Result<Vec<BuildRecord>, PeerError> {
        Ok(self.builds_of(warehouse, fingerprints)?)
    }

    fn environments(
        &self,
        known: &[(String, String, EnvVersion)],
    ) -> Result<Vec<EnvRecord>, PeerError> {
        let known: std::collections::HashMap<(&str, &str), &EnvVersion> = known
            .iter()
            .map(|(w, e, v)| ((w.as_str(), e.as_str()), v))
            .collect();
        let mut newer = Vec::new();
        for (warehouse, env, version) in self.env_versions()? {
            let theirs = known.get(&(warehouse.as_str(), env.as_str()));
            if theirs.is_none_or(|theirs| version.newer_than(theirs)) {
                newer.push(self.env_record(&warehouse, &env)?);
            }
        }
        Ok(newer)
    }

    fn adopt(&self, records: &[EnvRecord]) -> Result<usize, PeerError> {
        Ok(self.write(|w| {
            let mut taken = 0;
            for record in records {
                taken += usize::from(w.adopt_environment(record)?);
            }
            Ok(taken)
        })?)
    }
}

/// Answers peers on one QUIC endpoint.
pub struct Server {
    endpoint: quinn::Endpoint,
    fingerprint: String,
    served: Arc<Served>,
}

impl Server {
    /// Listens on `addr` for the peers whose certificate SHA-256s are in
    /// `allowed`, answering from `objects`.
    pub fn start(
        identity: &Identity,
        addr: SocketAddr,
        allowed: BTreeSet<String>,
        objects: Arc<dyn Objects>,
        limits: Limits,
    ) -> Result<Self, PeerError> {
        let config = tls::server_config(identity, allowed)?;
        let endpoint = quinn::Endpoint::server(config, addr)
            .map_err(|source| PeerError::Listen { addr, source })?;
        let fingerprint = identity.fingerprint();
        let served = Arc::new(Served::default());
        tokio::spawn({
            let (endpoint, fingerprint) = (endpoint.clone(), fingerprint.clone());
            let served = served.clone();
            async move {
                while let Some(incoming) = endpoint.accept().await {
                    let (objects, fingerprint) = (objects.clone(), fingerprint.clone());
                    let served = served.clone();
                    tokio::spawn(async move {
                        match incoming.await {
                            Ok(connection) => {
                                let fingerprint = fingerprint.into();
                                serve(connection, objects, fingerprint, limits, served).await;
                            }
                            // An unpinned peer ends here, in the handshake.
                            Err(e) => tracing::warn!("a peer connection failed: {e}"),
                        }
                    });
                }
            }
        });
        Ok(Self {
            endpoint,
            fingerprint,
            served,
        })
    }

    /// What this server has streamed.
    pub fn served(&self) -> &Served {
        &self.served
    }

    pub fn local_addr(&self) -> Result<SocketAddr, PeerError> {
        self.endpoint.local_addr().map_err(|e| PeerError::Connect {
            peer: self.fingerprint.clone(),
            message: e.to_string(),
        })
    }

    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"closing");
    }
}

/// Serves one connection: a hello first, then any requests, each on its
/// own stream. A request that breaks the protocol is answered with its
/// error and closes the connection.
async fn serve(
    connection: quinn::Connection,
    objects: Arc<dyn Objects>,
    fingerprint: Arc<str>,
    limits: Limits,
    served: Arc<Served>,
) {
    let greeted = Arc::new(AtomicBool::new(false));
    let id = connection.stable_id() as u64;
    while let Ok((send, recv)) = connection.accept_bi().await {
        let stream = Stream {
            connection: connection.clone(),
            objects: objects.clone(),
            fingerprint: fingerprint.clone(),
            greeted: greeted.clone(),
            limits,
            served: served.clone(),
        };
        // The hello is answered before the next stream is read; after it,
        // requests are answered side by side.
        match greeted.load(Ordering::Acquire) {
            true => {
                tokio::spawn(stream.answer(send, recv));
            }
            false => stream.answer(send, recv).await,
        }
    }
    objects.disconnected(id);
}

/// What answering one request on one stream needs.
struct Stream {
    connection: quinn::Connection,
    objects: Arc<dyn Objects>,
    fingerprint: Arc<str>,
    greeted: Arc<AtomicBool>,
    limits: Limits,
    served: Arc<Served>,
}

impl Stream {
    async fn answer(self, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let (objects, limits) = (self.objects.as_ref(), self.limits);
        let mut streamed = None;
        let request: Result<Request, _> = wire::read(&mut recv, limits.max_message).await;
        let (response, fatal) = match request {
            Err(refused) => (Response::error(refused.code, refused.message), true),
            Ok(Request::Hello(hello)) => greet(&hello, &self.fingerprint, limits, &self.greeted),
            Ok(_) if !self.greeted.load(Ordering::Acquire) => (
                Response::error("hello.missing", "the first request must be a hello"),
                true,
            ),
            Ok(Request::ReadObject { hash, offset }) => {
                let (response, bytes) = read_object(objects, &hash, offset);
                streamed = bytes.map(|bytes| (hash, bytes, offset));
                (response, false)
            }
            Ok(Request::Build(task)) => {
                let response = match objects.build(*task).await {
                    Ok((message, rows)) => Response::Built { message, rows },
                    Err(TaskError::Refused(why)) => Response::error("task.refused", why),
                    Err(TaskError::Failed(why)) => Response::error("task.failed", why),
                };
                (response, false)
            }
            Ok(Request::Warehouse(call)) => {
                let id = self.connection.stable_id() as u64;
                (
                    Response::Warehouse(objects.warehouse(id, *call).await),
                    false,
                )
            }
            Ok(request) => (answer(request, objects, limits), false),
        };
        if let Ok(frame) = wire::encode(&response) {
            let _ = send.write_all(&frame).await;
            if let (Response::Stream { .. }, Some((hash, bytes, offset))) = (&response, streamed) {
                stream_bytes(&mut send, &hash, &bytes, offset, limits, &self.served).await;
            }
            let _ = send.finish();
        }
        if fatal {
            // Let the answer go out before the connection closes.
            let _ = send.stopped().await;
            self.connection
                .close(CLOSE_PROTOCOL.into(), b"protocol error");
        }
    }
}

fn greet(
    hello: &Hello,
    fingerprint: &str,
    limits: Limits,
    greeted: &AtomicBool,
) -> (Response, bool) {
    if wire::common_version(hello.versions, wire::PROTOCOL_VERSIONS).is_none() {
        let (low, high) = wire::PROTOCOL_VERSIONS;
        let message = format!(
            "this peer speaks protocol versions {low}-{high}, the asker {}-{}",
            hello.versions.0, hello.versions.1
        );
        return (Response::error("version.mismatch", message), true);
    }
    if greeted.swap(true, Ordering::AcqRel) {
        return (
            Response::error("hello.again", "one hello per connection"),
            false,
        );
    }
    (Response::Hello(our_hello(fingerprint, limits)), false)
}

fn our_hello(fingerprint: &str, limits: Limits) -> Hello {
    Hello {
        versions: wire::PROTOCOL_VERSIONS,
        store_format: wire::STORE_FORMAT,
        max_message: limits.max_message,
        peer: fingerprint.to_string(),
    }
}

/// The head of a `ReadObject` answer, and the object's bytes to stream.
fn read_object(objects: &dyn Objects, hash: &Hash, offset: u64) -> (Response, Option<Vec<u8>>) {
    match objects.object(hash) {
        Ok(Some(bytes)) if offset <= bytes.len() as u64 => (
            Response::Stream {
                size: bytes.len() as u64,
            },
            Some(bytes),
        ),
        Ok(Some(bytes)) => (
            Response::error(
                "object.offset",
                format!("offset {offset} is past the object's {} bytes", bytes.len()),
            ),
            None,
        ),
        Ok(None) => (
            Response::error("object.missing", format!("no object {hash}")),
            None,
        ),
        Err(e) => (Response::error("store", e.to_string()), None),
    }
}

/// Writes `bytes` from `offset` in chunks of a quarter of the message
/// limit, at most 256 KiB (so a broken connection loses at most what is in
/// flight; the asker resumes from what it has). Counts what it wrote.
async fn stream_bytes(
    send: &mut quinn::SendStream,
    hash: &Hash,
    bytes: &[u8],
    offset: u64,
    limits: Limits,
    served: &Served,
) {
    let chunk = (limits.max_message as usize / 4).clamp(1024, 256 * 1024);
    served.streams.fetch_add(1, Ordering::Relaxed);
    let mut at = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    while at < bytes.len() {
        let end = (at + chunk).min(bytes.len());
        #[cfg(any(test, feature = "faults"))]
        if faults::cut(hash, end as u64) {
            // What was sent arrives before the cut, as over a real link.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let _ = send.reset(CLOSE_PROTOCOL.into());
            return;
        }
        let _ = hash;
        if send.write_all(&bytes[at..end]).await.is_err() {
            return;
        }
        served
            .streamed_bytes
            .fetch_add((end - at) as u64, Ordering::Relaxed);
        at = end;
    }
}

/// What a server has streamed since it started.
#[derive(Debug, Default)]
pub struct Served {
    /// `ReadObject` answers begun.
    pub streams: std::sync::atomic::AtomicU64,
    /// Object bytes written on them.
    pub streamed_bytes: std::sync::atomic::AtomicU64,
}

/// Faults tests inject into a peer (feature `faults`; never used by the
/// daemon itself).
#[cfg(any(test, feature = "faults"))]
pub mod faults {
    use std::sync::Mutex;

    use orbital_core::Hash;

    /// A stream of this object is cut once, before the byte at this offset.
    static CUT: Mutex<Option<(Hash, u64)>> = Mutex::new(None);

    /// The next stream of object `hash` any server of this process writes
    /// is cut (reset) before the chunk that passes byte `at`.
    pub fn cut_once(hash: Hash, at: u64) {
        *CUT.lock().unwrap() = Some((hash, at));
    }

    pub(crate) fn cut(hash: &Hash, end: u64) -> bool {
        let mut cut = CUT.lock().unwrap();
        match *cut {
            Some((h, at)) if h == *hash && end > at => {
                *cut = None;
                true
            }
            _ => false,
        }
    }
}

/// How many objects are read from the store at once while answering.
const READ_BATCH: usize = 256;

fn answer(request: Request, objects: &dyn Objects, limits: Limits) -> Response {
    match request {
        Request::Hello(_) => Response::error("hello.again", "one hello per connection"),
        Request::FindMissing(hashes) => {
            let mut missing = Vec::new();
            for batch in hashes.chunks(READ_BATCH) {
                match objects.sizes(batch) {
                    Ok(found) => missing.extend(
                        batch
                            .iter()
                            .zip(found)
                            .filter(|(_, bytes)| bytes.is_none())
                            .map(|(hash, _)| *hash),
                    ),
                    Err(e) => return Response::error("store", e.to_string()),
                }
            }
            Response::Missing(missing)
        }
        Request::GetObjects(hashes) => {
            // Room for the framing and the lists of what did not fit.
            let budget = (limits.max_message as usize).saturating_sub(64 * 1024);
            let (mut sent, mut found_objects, mut later, mut missing, mut large) =
                (0usize, Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let stream_from = STREAM_FROM.min(budget as u64);
            for batch in hashes.chunks(READ_BATCH) {
                let sizes = match objects.sizes(batch) {
                    Ok(sizes) => sizes,
                    Err(e) => return Response::error("store", e.to_string()),
                };
                // What fits is read; large objects are only listed.
                let mut fitting = Vec::new();
                for (hash, size) in batch.iter().copied().zip(sizes) {
                    match size {
                        Some(size) if size >= stream_from => large.push((hash, size)),
                        Some(size) if sent + size as usize <= budget => {
                            sent += size as usize;
                            fitting.push(hash);
                        }
                        Some(_) => later.push(hash),
                        None => missing.push(hash),
                    }
                }
                match objects.objects(&fitting) {
                    Ok(read) => {
                        for (hash, bytes) in fitting.into_iter().zip(read) {
                            match bytes {
                                Some(bytes) => found_objects.push((hash, bytes)),
                                // Gone since it was sized.
                                None => missing.push(hash),
                            }
                        }
                    }
                    Err(e) => return Response::error("store", e.to_string()),
                }
            }
            Response::Objects {
                found: found_objects,
                later,
                missing,
                large,
            }
        }
        Request::FindBuilds {
            warehouse,
            fingerprints,
        } => match objects.builds(&warehouse, &fingerprints) {
            Ok(builds) => Response::Builds(builds),
            Err(e) => Response::error("store", e.to_string()),
        },
        Request::Environments(known) => match objects.environments(&known) {
            Ok(records) => Response::Environments(records),
            Err(e) => Response::error("store", e.to_string()),
        },
        Request::Announce(records) => match objects.adopt(&records) {
            Ok(taken) => Response::Adopted(u32::try_from(taken).unwrap_or(u32::MAX)),
            Err(e) => Response::error("store", e.to_string()),
        },
        Request::ReadObject { .. } | Request::Build(_) | Request::Warehouse(_) => {
            Response::error("message.unexpected", "answered on its own stream")
        }
    }
}

/// The parts of large objects received so far, by hash: what a fetch
/// resumes from after a broken connection.
#[derive(Debug, Default)]
pub struct Partial(std::collections::HashMap<Hash, Received>);

/// What came of one large object, hashed as it came (so checking the
/// whole object costs little once its last byte is in).
#[derive(Debug, Default)]
struct Received {
    bytes: Vec<u8>,
    hasher: blake3::Hasher,
    /// How much of `bytes` the hasher has seen.
    hashed: usize,
}

/// Bytes hashed at once: blake3 hashes many 1 KiB chunks side by side
/// (SIMD) only when given them together, not a network packet at a time.
const HASH_EVERY: usize = 1 << 20;

impl Received {
    fn extend(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() - self.hashed >= HASH_EVERY {
            self.catch_up();
        }
    }

    fn catch_up(&mut self) {
        self.hasher.update(&self.bytes[self.hashed..]);
        self.hashed = self.bytes.len();
    }

    fn hash(&mut self) -> Hash {
        self.catch_up();
        Hash(*self.hasher.finalize().as_bytes())
    }
}

impl Partial {
    /// How many bytes are held.
    pub fn bytes(&self) -> u64 {
        self.0.values().map(|r| r.bytes.len() as u64).sum()
    }
}

/// A connection to one peer, greeted.
pub struct PeerClient {
    connection: quinn::Connection,
    endpoint: quinn::Endpoint,
    /// The peer's certificate SHA-256.
    peer: String,
    limits: Limits,
    /// What the peer said in its hello.
    pub hello: Hello,
}

impl PeerClient {
    /// Connects to the peer at `addr`, refusing it unless its certificate
    /// hashes to `expected`, and exchanges hellos.
    pub async fn connect(
        identity: &Identity,
        addr: SocketAddr,
        expected: &str,
        limits: Limits,
    ) -> Result<Self, PeerError> {
        let mut client = Self::dial(identity, addr, expected, limits).await?;
        let ours = client.hello.clone();
        match client.ask(&Request::Hello(ours)).await? {
            Response::Hello(theirs) => {
                if wire::common_version(theirs.versions, wire::PROTOCOL_VERSIONS).is_none() {
                    return Err(client.broke(
                        "version.mismatch",
                        format!(
                            "the peer speaks protocol versions {}-{}, this one {}-{}",
                            theirs.versions.0,
                            theirs.versions.1,
                            wire::PROTOCOL_VERSIONS.0,
                            wire::PROTOCOL_VERSIONS.1
                        ),
                    ));
                }
                client.hello = theirs;
                Ok(client)
            }
            other => Err(client.unexpected(other)),
        }
    }

    /// A QUIC connection to the peer at `addr` whose certificate hashes to
    /// `expected`; no hello yet (`hello` is ours until one is answered).
    async fn dial(
        identity: &Identity,
        addr: SocketAddr,
        expected: &str,
        limits: Limits,
    ) -> Result<Self, PeerError> {
        let local: SocketAddr = if addr.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0u8; 4], 0))
        };
        let mut endpoint = quinn::Endpoint::client(local).map_err(|source| PeerError::Listen {
            addr: local,
            source,
        })?;
        endpoint.set_default_client_config(tls::client_config(identity, expected)?);
        let unreachable = |e: &dyn std::fmt::Display| PeerError::Connect {
            peer: expected.to_string(),
            message: format!("{addr}: {e}"),
        };
        let connection = endpoint
            .connect(addr, "localhost")
            .map_err(|e| unreachable(&e))?
            .await
            .map_err(|e| unreachable(&e))?;
        Ok(Self {
            connection,
            endpoint,
            peer: expected.to_string(),
            limits,
            hello: our_hello(&identity.fingerprint(), limits),
        })
    }

    /// Which of `hashes` the peer does not have.
    pub async fn find_missing(&self, hashes: &[Hash]) -> Result<Vec<Hash>, PeerError> {
        match self.ask(&Request::FindMissing(hashes.to_vec())).await? {
            Response::Missing(missing) => Ok(missing),
            other => Err(self.unexpected(other)),
        }
    }

    /// The objects `hashes` names that the peer has, each checked against
    /// its hash (one mismatch refuses the whole answer), asking again for
    /// those that did not fit in one message.
    pub async fn fetch(&self, hashes: &[Hash]) -> Result<Vec<(Hash, Vec<u8>)>, PeerError> {
        self.fetch_with(hashes, &mut Partial::default()).await
    }

    /// [`PeerClient::fetch`], streaming large objects into `partial` and
    /// resuming those it already holds part of: after a broken connection,
    /// call it again (on a new connection) with the same `partial`.
    pub async fn fetch_with(
        &self,
        hashes: &[Hash],
        partial: &mut Partial,
    ) -> Result<Vec<(Hash, Vec<u8>)>, PeerError> {
        let mut wanted = hashes.to_vec();
        let mut fetched = Vec::new();
        while !wanted.is_empty() {
            let asked = wanted.len();
            match self.ask(&Request::GetObjects(wanted)).await? {
                Response::Objects {
                    found,
                    later,
                    large,
                    ..
                } => {
                    for (hash, bytes) in &found {
                        self.verify(*hash, Hash::of(bytes))?;
                    }
                    if found.is_empty() && large.is_empty() && later.len() == asked {
                        return Err(
                            self.broke("object.too_large", "an object does not fit in one message")
                        );
                    }
                    fetched.extend(found);
                    fetched.extend(self.read_large(large, partial).await?);
                    wanted = later;
                }
                other => return Err(self.unexpected(other)),
            }
        }
        Ok(fetched)
    }

    /// Streams `large` objects side by side (so one's store read, transfer
    /// and hashing overlap another's), each from what `partial` holds of
    /// it. On an error, what came of each stays in `partial`.
    async fn read_large(
        &self,
        large: Vec<(Hash, u64)>,
        partial: &mut Partial,
    ) -> Result<Vec<(Hash, Vec<u8>)>, PeerError> {
        let mut read = Vec::new();
        for batch in large.chunks(LARGE_AT_ONCE) {
            let reads = batch.iter().map(|&(hash, size)| {
                let mut received = partial.0.remove(&hash).unwrap_or_default();
                async move {
                    let result = self.read_object(&hash, size, &mut received).await;
                    (hash, received, result)
                }
            });
            read.extend(futures::future::join_all(reads.collect::<Vec<_>>()).await);
        }
        let mut fetched = Vec::new();
        let mut failed = None;
        for (hash, mut received, result) in read {
            match result {
                Ok(()) => match self.verify(hash, received.hash()) {
                    Ok(()) => fetched.push((hash, received.bytes)),
                    Err(corrupt) => {
                        failed.get_or_insert(corrupt);
                    }
                },
                Err(e) => {
                    partial.0.insert(hash, received);
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(fetched),
        }
    }

    /// Refuses an object named `hash` whose bytes hash to `actual`.
    fn verify(&self, hash: Hash, actual: Hash) -> Result<(), PeerError> {
        match actual == hash {
            true => Ok(()),
            false => Err(PeerError::Corrupt {
                peer: self.peer.clone(),
                hash,
                actual,
            }),
        }
    }

    /// Streams object `hash` (of `size` bytes, as the peer listed it) into
    /// `bytes`, from as much of it as `bytes` holds. A broken stream leaves
    /// what came in `bytes`.
    async fn read_object(
        &self,
        hash: &Hash,
        size: u64,
        received: &mut Received,
    ) -> Result<(), PeerError> {
        let request = Request::ReadObject {
            hash: *hash,
            offset: received.bytes.len() as u64,
        };
        let (head, mut recv) = self.open(&wire::encode(&request)?).await?;
        match head {
            Response::Stream { size: streamed } if streamed == size => {}
            Response::Stream { size: streamed } => {
                return Err(self.broke(
                    "message.unexpected",
                    format!("object {hash} was listed with {size} bytes, streamed with {streamed}"),
                ));
            }
            Response::Error { code, message } => return Err(self.broke(&code, message)),
            other => return Err(self.unexpected(other)),
        }
        let size =
            usize::try_from(size).map_err(|_| self.broke("object.too_large", "too large"))?;
        let bytes = &mut received.bytes;
        bytes.reserve(size.saturating_sub(bytes.len()));
        while received.bytes.len() < size {
            match recv.read_chunk(size - received.bytes.len(), true).await {
                Ok(Some(chunk)) => received.extend(&chunk.bytes),
                Ok(None) => break,
                Err(e) => {
                    return Err(PeerError::Connect {
                        peer: self.peer.clone(),
                        message: format!("object {hash} cut at byte {}: {e}", received.bytes.len()),
                    });
                }
            }
        }
        match received.bytes.len() == size {
            true => Ok(()),
            false => Err(PeerError::Connect {
                peer: self.peer.clone(),
                message: format!(
                    "object {hash} ended at byte {} of {size}",
                    received.bytes.len()
                ),
            }),
        }
    }

    /// Of `fingerprints`, the builds the peer recorded in `warehouse`.
    pub async fn find_builds(
        &self,
        warehouse: &str,
        fingerprints: &[Hash],
    ) -> Result<Vec<BuildRecord>, PeerError> {
        let request = Request::FindBuilds {
            warehouse: warehouse.to_string(),
            fingerprints: fingerprints.to_vec(),
        };
        match self.ask(&request).await? {
            Response::Builds(builds) => Ok(builds),
            other => Err(self.unexpected(other)),
        }
    }

    /// The peer's environment records newer than `known`.
    pub async fn environments(
        &self,
        known: &[(String, String, EnvVersion)],
    ) -> Result<Vec<EnvRecord>, PeerError> {
        match self.ask(&Request::Environments(known.to_vec())).await? {
            Response::Environments(records) => Ok(records),
            other => Err(self.unexpected(other)),
        }
    }

    /// Has the peer build `task`: the materialization's message and rows.
    /// A build that failed there is `Protocol` with code `task.failed`; a
    /// task it would not take, `task.refused`.
    pub async fn build(&self, task: &BuildTask) -> Result<(String, Option<u64>), PeerError> {
        match self.ask(&Request::Build(Box::new(task.clone()))).await? {
            Response::Built { message, rows } => Ok((message, rows)),
            other => Err(self.unexpected(other)),
        }
    }

    /// Sends a call on the peer's connection to one of its targets; what
    /// it takes there (locks, claims) it holds for this connection.
    pub async fn warehouse(&self, call: WarehouseCall) -> Result<WarehouseAnswer, PeerError> {
        let spoken = wire::common_version(self.hello.versions, wire::PROTOCOL_VERSIONS);
        if spoken < Some(wire::WAREHOUSE_SESSIONS) {
            return Err(self.broke(
                "version.mismatch",
                format!(
                    "the peer speaks protocol versions {}-{}: remote warehouse sessions need {}",
                    self.hello.versions.0,
                    self.hello.versions.1,
                    wire::WAREHOUSE_SESSIONS
                ),
            ));
        }
        match self.ask(&Request::Warehouse(Box::new(call))).await? {
            Response::Warehouse(answer) => Ok(answer),
            other => Err(self.unexpected(other)),
        }
    }

    /// Tells the peer of changed environments; how many it took.
    pub async fn announce(&self, records: &[EnvRecord]) -> Result<u32, PeerError> {
        match self.ask(&Request::Announce(records.to_vec())).await? {
            Response::Adopted(taken) => Ok(taken),
            other => Err(self.unexpected(other)),
        }
    }

    /// Fetches what of `hashes` the store lacks into it; how many came.
    pub async fn fetch_into(
        &self,
        store: &orbital_cas::Store,
        hashes: &[Hash],
    ) -> Result<usize, PeerError> {
        let mut lacking = Vec::new();
        for hash in hashes {
            if store.object(hash)?.is_none() {
                lacking.push(*hash);
            }
        }
        let fetched = self.fetch(&lacking).await?;
        store.write(|w| {
            for (_, bytes) in &fetched {
                w.put_object(bytes)?;
            }
            Ok(())
        })?;
        Ok(fetched.len())
    }

    /// Sends `request` on a stream of its own and reads the answer.
    async fn ask(&self, request: &Request) -> Result<Response, PeerError> {
        match self.exchange(&wire::encode(request)?).await? {
            Response::Error { code, message } => Err(self.broke(&code, message)),
            response => Ok(response),
        }
    }

    /// Writes `frame` on a stream of its own and reads the answer as sent.
    async fn exchange(&self, frame: &[u8]) -> Result<Response, PeerError> {
        Ok(self.open(frame).await?.0)
    }

    /// Writes `frame` on a stream of its own and reads the first message
    /// of the answer; the rest of the stream is the caller's.
    async fn open(&self, frame: &[u8]) -> Result<(Response, quinn::RecvStream), PeerError> {
        let lost = |e: &dyn std::fmt::Display| PeerError::Connect {
            peer: self.peer.clone(),
            message: e.to_string(),
        };
        let (mut send, mut recv) = self.connection.open_bi().await.map_err(|e| lost(&e))?;
        send.write_all(frame).await.map_err(|e| lost(&e))?;
        send.finish().map_err(|e| lost(&e))?;
        let response = wire::read(&mut recv, self.limits.max_message)
            .await
            .map_err(|refused| match self.connection.close_reason() {
                // Closed under us (a server that refused our certificate
                // closes right after the handshake): not a bad message.
                Some(reason) => lost(&reason),
                None if refused.code == wire::CUT => lost(&refused.message),
                None => self.broke(refused.code, refused.message),
            })?;
        Ok((response, recv))
    }

    fn broke(&self, code: &str, message: impl Into<String>) -> PeerError {
        PeerError::Protocol {
            peer: self.peer.clone(),
            code: code.to_string(),
            message: message.into(),
        }
    }

    fn unexpected(&self, response: Response) -> PeerError {
        self.broke(
            "message.unexpected",
            format!("an answer of the wrong kind: {response:?}"),
        )
    }

    pub async fn close(self) {
        self.connection.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }

    /// Sends raw bytes as a request: what a broken peer sends (feature
    /// `faults`).
    #[cfg(any(test, feature = "faults"))]
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<Response, PeerError> {
        self.exchange(bytes).await
    }

    /// A connection that has said no hello yet, for [`PeerClient::send_raw`]
    /// (feature `faults`).
    #[cfg(any(test, feature = "faults"))]
    pub async fn connect_without_hello(
        identity: &Identity,
        addr: SocketAddr,
        expected: &str,
        limits: Limits,
    ) -> Result<Self, PeerError> {
        Self::dial(identity, addr, expected, limits).await
    }

    /// The connection's current round-trip time estimate.
    pub fn rtt(&self) -> std::time::Duration {
        self.connection.rtt()
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        self.connection.close_reason().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        Identity {
            certificate: made.cert.der().clone(),
            key: rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into()),
        }
    }

    fn localhost() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    /// `client` connected to `server`, which presents `identity`.
    async fn connected(
        client: &Identity,
        server: &Server,
        identity: &Identity,
        limits: Limits,
    ) -> PeerClient {
        let addr = server.local_addr().unwrap();
        PeerClient::connect(client, addr, &identity.fingerprint(), limits)
            .await
            .unwrap()
    }

    /// A peer serving a store that holds `objects`.
    fn serving(
        identity: &Identity,
        allowed: &[&Identity],
        objects: &[&[u8]],
        limits: Limits,
    ) -> (Server, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = orbital_cas::Store::open(&dir.path().join("state.redb")).unwrap();
        store
            .write(|w| {
                for bytes in objects {
                    w.put_object(bytes)?;
                }
                Ok(())
            })
            .unwrap();
        let allowed = allowed.iter().map(|i| i.fingerprint()).collect();
        let server =
            Server::start(identity, localhost(), allowed, Arc::new(store), limits).unwrap();
        (server, dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pinned_peer_gets_what_it_lacks_checked_by_hash() {
        let (a, b) = (identity(), identity());
        let (server, _dir) = serving(&a, &[&b], &[b"first", b"second"], Limits::default());
        let client = connected(&b, &server, &a, Limits::default()).await;
        assert_eq!(client.hello.peer, a.fingerprint());
        assert_eq!(client.hello.versions, wire::PROTOCOL_VERSIONS);
        let unknown = Hash::of(b"nobody has this");
        let (first, second) = (Hash::of(b"first"), Hash::of(b"second"));
        assert_eq!(
            client
                .find_missing(&[first, unknown, second])
                .await
                .unwrap(),
            vec![unknown]
        );
        let into = tempfile::tempdir().unwrap();
        let store = orbital_cas::Store::open(&into.path().join("state.redb")).unwrap();
        let came = client
            .fetch_into(&store, &[first, second, unknown])
            .await
            .unwrap();
        assert_eq!(came, 2);
        assert_eq!(store.object(&second).unwrap().unwrap(), b"second");
        // What the store has already is not fetched again.
        assert_eq!(client.fetch_into(&store, &[first]).await.unwrap(), 0);
        client.close().await;
        server.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_larger_than_a_message_come_in_several() {
        let (a, b) = (identity(), identity());
        let big = vec![7u8; 48 * 1024];
        let other = vec![9u8; 48 * 1024];
        let limits = Limits {
            max_message: 64 * 1024 + 60 * 1024,
        };
        let (server, _dir) = serving(&a, &[&b], &[&big, &other], limits);
        let client = connected(&b, &server, &a, limits).await;
        let fetched = client
            .fetch(&[Hash::of(&big), Hash::of(&other)])
            .await
            .unwrap();
        assert_eq!(fetched.len(), 2);
        server.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unpinned_peers_are_refused_both_ways() {
        let (a, b, stranger) = (identity(), identity(), identity());
        let (server, _dir) = serving(&a, &[&b], &[b"x"], Limits::default());
        let addr = server.local_addr().unwrap();
        // The server does not know this client.
        let refused = PeerClient::connect(&stranger, addr, &a.fingerprint(), Limits::default())
            .await
            .err()
            .expect("an unpinned client is refused");
        assert!(matches!(refused, PeerError::Connect { .. }), "{refused}");
        // The client pins another certificate than the server's.
        let wrong = PeerClient::connect(&b, addr, &"0".repeat(64), Limits::default())
            .await
            .err()
            .expect("a server with another certificate is refused")
            .to_string();
        assert!(wrong.contains("not the one pinned"), "{wrong}");
        // The server goes on serving its peers.
        let client = connected(&b, &server, &a, Limits::default()).await;
        assert!(
            client
                .find_missing(&[Hash::of(b"x")])
                .await
                .unwrap()
                .is_empty()
        );
        server.close();
    }

    /// A connected client, and the code of the error `bytes` sent as a
    /// request get; the connection is closed after.
    async fn refused_code(bytes: &[u8]) -> String {
        let (a, b) = (identity(), identity());
        let (server, _dir) = serving(&a, &[&b], &[], Limits::default());
        let client = connected(&b, &server, &a, Limits::default()).await;
        let answer = client.send_raw(bytes).await.unwrap();
        let Response::Error { code, message } = answer else {
            panic!("not refused: {answer:?}");
        };
        assert!(!message.is_empty());
        // The connection closes; a new one is served.
        for _ in 0..250 {
            if !client.is_open() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(!client.is_open(), "the connection stays open");
        let again = connected(&b, &server, &a, Limits::default()).await;
        assert!(again.find_missing(&[]).await.unwrap().is_empty());
        server.close();
        code
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversized_malformed_and_mismatched_messages_are_refused() {
        // A length over the limit: refused before the body is read.
        let mut oversized = (u32::MAX).to_be_bytes().to_vec();
        oversized.extend_from_slice(b"whatever");
        assert_eq!(refused_code(&oversized).await, "message.too_large");
        let mut garbage = 5u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0xff; 5]);
        assert_eq!(refused_code(&garbage).await, "message.malformed");
        assert_eq!(refused_code(&[0, 0]).await, "message.malformed");
        let future = wire::encode(&Request::Hello(Hello {
            versions: (7, 9),
            store_format: wire::STORE_FORMAT,
            max_message: 1024,
            peer: "someone".into(),
        }))
        .unwrap();
        assert_eq!(refused_code(&future).await, "version.mismatch");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_object_streams_and_resumes_after_a_cut_on_a_new_connection() {
        let (a, b) = (identity(), identity());
        // Not all one byte: a resume from the wrong offset would not hash.
        let big: Vec<u8> = (0..3 * STREAM_FROM + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        let hash = Hash::of(&big);
        let (server, _dir) = serving(&a, &[&b], &[&big], Limits::default());
        faults::cut_once(hash, STREAM_FROM + 1);
        let mut partial = Partial::default();
        let first = connected(&b, &server, &a, Limits::default()).await;
        let cut = first.fetch_with(&[hash], &mut partial).await.unwrap_err();
        assert!(matches!(cut, PeerError::Connect { .. }), "{cut}");
        let held = partial.bytes();
        assert!(held > 0 && held < big.len() as u64, "held {held}");
        first.close().await;
        let second = connected(&b, &server, &a, Limits::default()).await;
        let fetched = second.fetch_with(&[hash], &mut partial).await.unwrap();
        assert_eq!(partial.bytes(), 0);
        // Two streams, and no byte sent twice: the second began where the
        // first was cut.
        let served = server.served();
        assert_eq!(served.streams.load(Ordering::Relaxed), 2);
        assert_eq!(
            served.streamed_bytes.load(Ordering::Relaxed),
            big.len() as u64
        );
        assert_eq!(fetched, vec![(hash, big)]);
        server.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn builds_and_environments_are_answered_from_the_store_and_announcements_taken() {
        let (a, b) = (identity(), identity());
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(orbital_cas::Store::open(&dir.path().join("state.redb")).unwrap());
        let relation = orbital_core::dag::RelationName {
            schema: None,
            identifier: "orders__1".into(),
        };
        let build = BuildRecord {
            node: "orders".into(),
            fingerprint: Hash::of(b"orders"),
            relation: relation.clone(),
            kind: "view".into(),
            materialized: "view".into(),
            sql: None,
            upstream: vec![],
            run: 1,
            built_at: String::new(),
        };
        let entry = orbital_cas::EnvEntry {
            fingerprint: build.fingerprint,
            local: build.fingerprint,
            sql: None,
            relation,
        };
        store
            .write(|w| {
                w.record_build("w", &build)?;
                w.set_env("w", "prod", "orders", &entry)?;
                w.set_env_version(
                    "w",
                    "prod",
                    &EnvVersion {
                        version: 2,
                        peer: "a".into(),
                    },
                )
            })
            .unwrap();
        let allowed = BTreeSet::from([b.fingerprint()]);
        let server =
            Server::start(&a, localhost(), allowed, store.clone(), Limits::default()).unwrap();
        let client = connected(&b, &server, &a, Limits::default()).await;
        let unknown = Hash::of(b"never built");
        let found = client
            .find_builds("w", &[unknown, build.fingerprint])
            .await
            .unwrap();
        assert_eq!(found, vec![build.clone()]);
        assert!(
            client
                .find_builds("other", &[build.fingerprint])
                .await
                .unwrap()
                .is_empty()
        );
        // Only what is newer than the asker's versions comes.
        let records = client.environments(&[]).await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].entries, vec![("orders".to_string(), entry)]);
        let current = (
            "w".to_string(),
            "prod".to_string(),
            records[0].version.clone(),
        );
        assert!(client.environments(&[current]).await.unwrap().is_empty());
        // An announced newer record is taken; an older one is not.
        let newer = EnvRecord {
            version: EnvVersion {
                version: 3,
                peer: "b".into(),
            },
            entries: vec![],
            ..records[0].clone()
        };
        assert_eq!(
            client.announce(std::slice::from_ref(&newer)).await.unwrap(),
            1
        );
        assert_eq!(client.announce(&[records[0].clone()]).await.unwrap(), 0);
        assert!(store.environment("w", "prod").unwrap().is_empty());
        assert_eq!(store.env_version("w", "prod").unwrap(), newer.version);
        server.close();
    }

    /// A source that answers with other bytes than asked for.
    struct Lying;

    impl Objects for Lying {
        fn object(&self, _: &Hash) -> Result<Option<Vec<u8>>, PeerError> {
            Ok(Some(b"not what you asked for".to_vec()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_object_that_does_not_match_its_hash_is_refused() {
        let (a, b) = (identity(), identity());
        let allowed = BTreeSet::from([b.fingerprint()]);
        let server =
            Server::start(&a, localhost(), allowed, Arc::new(Lying), Limits::default()).unwrap();
        let client = connected(&b, &server, &a, Limits::default()).await;
        let into = tempfile::tempdir().unwrap();
        let store = orbital_cas::Store::open(&into.path().join("state.redb")).unwrap();
        let wanted = Hash::of(b"the real bytes");
        let refused = client.fetch_into(&store, &[wanted]).await.unwrap_err();
        assert!(
            matches!(refused, PeerError::Corrupt { hash, .. } if hash == wanted),
            "{refused}"
        );
        assert!(
            store.object(&wanted).unwrap().is_none(),
            "nothing was stored"
        );
        server.close();
    }

    /// Answers warehouse calls by echoing their target, and notes which
    /// connections ended.
    #[derive(Default)]
    struct Lending {
        ended: std::sync::Mutex<Vec<u64>>,
    }

    impl Objects for Lending {
        fn object(&self, _: &Hash) -> Result<Option<Vec<u8>>, PeerError> {
            Ok(None)
        }

        fn warehouse(
            &self,
            connection: u64,
            call: WarehouseCall,
        ) -> BoxFuture<'_, WarehouseAnswer> {
            Box::pin(async move {
                WarehouseAnswer::Opened {
                    scheme: format!("{} {connection} {}", call.target, call.run),
                }
            })
        }

        fn disconnected(&self, connection: u64) {
            self.ended.lock().unwrap().push(connection);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn warehouse_calls_are_answered_per_connection_and_its_end_is_told() {
        let (a, b) = (identity(), identity());
        let lending = Arc::new(Lending::default());
        let allowed = [b.fingerprint()].into_iter().collect();
        let server =
            Server::start(&a, localhost(), allowed, lending.clone(), Limits::default()).unwrap();
        let client = connected(&b, &server, &a, Limits::default()).await;
        let call = |run| WarehouseCall {
            target: "prod".into(),
            run,
            op: orbital_core::remote::session::WarehouseOp::Open,
        };
        let WarehouseAnswer::Opened { scheme: first } = client.warehouse(call(7)).await.unwrap()
        else {
            panic!("not an open");
        };
        let WarehouseAnswer::Opened { scheme: again } = client.warehouse(call(8)).await.unwrap()
        else {
            panic!("not an open");
        };
        let connection: u64 = first.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(first, format!("prod {connection} 7"));
        assert_eq!(
            again,
            format!("prod {connection} 8"),
            "one connection, one id"
        );
        client.close().await;
        for _ in 0..100 {
            if !lending.ended.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(*lending.ended.lock().unwrap(), vec![connection]);
        // A store lends no warehouse.
        let (store_server, _dir) = serving(&a, &[&b], &[], Limits::default());
        let mut client = connected(&b, &store_server, &a, Limits::default()).await;
        let answer = client.warehouse(call(1)).await.unwrap();
        assert!(
            matches!(&answer, WarehouseAnswer::Failed(e) if e.message.contains("lends no warehouse")),
            "{answer:?}"
        );
        // A peer that speaks only version 1 is not sent any.
        client.hello.versions = (1, 1);
        let refused = client.warehouse(call(1)).await.unwrap_err().to_string();
        assert!(refused.contains("sessions need 2"), "{refused}");
        server.close();
        store_server.close();
    }
}
