//! A peer's two roles: [`Server`] answers other daemons' requests from its
//! store; [`PeerClient`] asks one peer, checking everything it receives.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use orbital_core::Hash;

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

/// Where a server finds objects by hash: the state store, or (in tests) a
/// source that lies.
pub trait Objects: Send + Sync + 'static {
    fn object(&self, hash: &Hash) -> Result<Option<Vec<u8>>, PeerError>;
}

/// A store serves its objects and its installed plugin components, both
/// named by the blake3 hash of their bytes.
impl Objects for orbital_cas::Store {
    fn object(&self, hash: &Hash) -> Result<Option<Vec<u8>>, PeerError> {
        match orbital_cas::Store::object(self, hash)? {
            Some(bytes) => Ok(Some(bytes)),
            None => Ok(self.plugin(hash)?),
        }
    }
}

/// Answers peers on one QUIC endpoint.
pub struct Server {
    endpoint: quinn::Endpoint,
    fingerprint: String,
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
        tokio::spawn({
            let (endpoint, fingerprint) = (endpoint.clone(), fingerprint.clone());
            async move {
                while let Some(incoming) = endpoint.accept().await {
                    let (objects, fingerprint) = (objects.clone(), fingerprint.clone());
                    tokio::spawn(async move {
                        match incoming.await {
                            Ok(connection) => {
                                serve(connection, objects.as_ref(), &fingerprint, limits).await;
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
        })
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
    objects: &dyn Objects,
    fingerprint: &str,
    limits: Limits,
) {
    let mut greeted = false;
    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
        let request: Result<Request, _> = wire::read(&mut recv, limits.max_message).await;
        let (response, fatal) = match request {
            Err(refused) => (Response::error(refused.code, refused.message), true),
            Ok(Request::Hello(hello)) => greet(&hello, fingerprint, limits, &mut greeted),
            Ok(_) if !greeted => (
                Response::error("hello.missing", "the first request must be a hello"),
                true,
            ),
            Ok(request) => (answer(request, objects, limits), false),
        };
        if let Ok(frame) = wire::encode(&response) {
            let _ = send.write_all(&frame).await;
            let _ = send.finish();
        }
        if fatal {
            // Let the answer go out before the connection closes.
            let _ = send.stopped().await;
            connection.close(CLOSE_PROTOCOL.into(), b"protocol error");
            return;
        }
    }
}

fn greet(hello: &Hello, fingerprint: &str, limits: Limits, greeted: &mut bool) -> (Response, bool) {
    if wire::common_version(hello.versions, wire::PROTOCOL_VERSIONS).is_none() {
        let (low, high) = wire::PROTOCOL_VERSIONS;
        let message = format!(
            "this peer speaks protocol versions {low}-{high}, the asker {}-{}",
            hello.versions.0, hello.versions.1
        );
        return (Response::error("version.mismatch", message), true);
    }
    *greeted = true;
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

fn answer(request: Request, objects: &dyn Objects, limits: Limits) -> Response {
    let found = |hash: &Hash| objects.object(hash);
    match request {
        Request::Hello(_) => Response::error("hello.again", "one hello per connection"),
        Request::FindMissing(hashes) => {
            let mut missing = Vec::new();
            for hash in hashes {
                match found(&hash) {
                    Ok(Some(_)) => {}
                    Ok(None) => missing.push(hash),
                    Err(e) => return Response::error("store", e.to_string()),
                }
            }
            Response::Missing(missing)
        }
        Request::GetObjects(hashes) => {
            // Room for the framing and the lists of what did not fit.
            let budget = (limits.max_message as usize).saturating_sub(64 * 1024);
            let (mut sent, mut found_objects, mut later, mut missing) =
                (0usize, Vec::new(), Vec::new(), Vec::new());
            for hash in hashes {
                match found(&hash) {
                    Ok(Some(bytes)) if sent + bytes.len() <= budget => {
                        sent += bytes.len();
                        found_objects.push((hash, bytes));
                    }
                    Ok(Some(_)) => later.push(hash),
                    Ok(None) => missing.push(hash),
                    Err(e) => return Response::error("store", e.to_string()),
                }
            }
            Response::Objects {
                found: found_objects,
                later,
                missing,
            }
        }
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
        let mut client = Self {
            connection,
            endpoint,
            peer: expected.to_string(),
            limits,
            hello: our_hello(&identity.fingerprint(), limits),
        };
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
        let mut wanted = hashes.to_vec();
        let mut fetched = Vec::new();
        while !wanted.is_empty() {
            let asked = wanted.len();
            match self.ask(&Request::GetObjects(wanted)).await? {
                Response::Objects { found, later, .. } => {
                    for (hash, bytes) in &found {
                        let actual = Hash::of(bytes);
                        if actual != *hash {
                            return Err(PeerError::Corrupt {
                                peer: self.peer.clone(),
                                hash: *hash,
                                actual,
                            });
                        }
                    }
                    if found.is_empty() && later.len() == asked {
                        return Err(
                            self.broke("object.too_large", "an object does not fit in one message")
                        );
                    }
                    fetched.extend(found);
                    wanted = later;
                }
                other => return Err(self.unexpected(other)),
            }
        }
        Ok(fetched)
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
        let lost = |e: &dyn std::fmt::Display| PeerError::Connect {
            peer: self.peer.clone(),
            message: e.to_string(),
        };
        let (mut send, mut recv) = self.connection.open_bi().await.map_err(|e| lost(&e))?;
        send.write_all(frame).await.map_err(|e| lost(&e))?;
        send.finish().map_err(|e| lost(&e))?;
        wire::read(&mut recv, self.limits.max_message)
            .await
            .map_err(|refused| match self.connection.close_reason() {
                // Closed under us (a server that refused our certificate
                // closes right after the handshake): not a bad message.
                Some(reason) => lost(&reason),
                None => self.broke(refused.code, refused.message),
            })
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

    /// Sends raw bytes as a request (tests of what a broken peer sends).
    #[cfg(test)]
    async fn send_raw(&self, bytes: &[u8]) -> Result<Response, PeerError> {
        self.exchange(bytes).await
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
}
