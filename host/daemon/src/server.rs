//! The QUIC endpoint and its HTTP/3 connections: TLS 1.3 with ALPN `h3`,
//! one task per connection and per request, request bodies read up to a
//! limit, responses written as JSON or as an event stream.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use orbital_engine::{CancellationToken, Engine};

use crate::api::{self, ApiError, Reply};
use crate::error::DaemonError;
use crate::identity::Identity;
use crate::runs::Runs;

/// How the daemon is started.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The project it serves.
    pub project: PathBuf,
    pub listen: SocketAddr,
    /// Where its certificate, key and token live.
    pub data_dir: PathBuf,
    /// The largest request body it reads.
    pub max_body: usize,
    /// The largest request header section it reads.
    pub max_header: u64,
    /// Requests at once on one connection.
    pub max_streams: u32,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// How long running runs may go on after a shutdown signal before they
    /// are cancelled.
    pub grace: Duration,
    /// Where it serves its peers (those of `<data_dir>/peers.toml`), if at all.
    pub peer_listen: Option<SocketAddr>,
}

impl DaemonOptions {
    pub fn new(project: PathBuf, listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            project,
            listen,
            data_dir,
            max_body: 16 << 20,
            max_header: 8 << 10,
            max_streams: 128,
            idle_timeout: Duration::from_secs(60),
            grace: Duration::from_secs(30),
            peer_listen: None,
        }
    }
}

/// Where a started daemon listens, and what clients need to trust it.
#[derive(Debug, Clone)]
pub struct Bound {
    pub addr: SocketAddr,
    /// Where peers reach it (`--peer-listen`).
    pub peer_addr: Option<SocketAddr>,
    pub fingerprint: String,
    pub certificate_path: PathBuf,
    pub token_path: PathBuf,
}

/// What every request handler shares.
pub(crate) struct Daemon {
    pub(crate) engine: Engine,
    pub(crate) peers: Arc<crate::peers::Peers>,
    pub(crate) options: DaemonOptions,
    pub(crate) token: String,
    pub(crate) runs: Runs,
    /// The last project listing that compiled, served while the project
    /// does not.
    pub(crate) last_good: std::sync::Mutex<Option<serde_json::Value>>,
    /// Compiles at once (one per core): each runs on a blocking thread
    /// whose allocator keeps its memory, so 200 at once held 2.6 GB.
    pub(crate) compiles: tokio::sync::Semaphore,
    /// Finished runs' record bodies, ready to send.
    pub(crate) records: crate::body::Records,
    /// The last `/v1/project` body and the project version it lists.
    pub(crate) listing: std::sync::Mutex<Option<(orbital_core::Hash, Arc<crate::body::Body>)>>,
}

/// Serves the API until `shutdown` fires: then it stops accepting
/// connections and runs, lets running runs finish within the grace period
/// and cancels the rest, and closes its connections. `bound` is called
/// once the socket is bound.
pub async fn serve(
    engine: Engine,
    options: DaemonOptions,
    shutdown: CancellationToken,
    bound: impl FnOnce(&Bound),
) -> Result<(), DaemonError> {
    let identity = Identity::load_or_create(&options.data_dir)?;
    let peer_list = crate::peers::load(&options.data_dir)?;
    let endpoint = endpoint(&identity, &options)?;
    let addr = endpoint
        .local_addr()
        .map_err(|source| DaemonError::Listen {
            addr: options.listen,
            source,
        })?;
    let store = engine
        .project_store(&options.project)
        .map_err(|e| DaemonError::Identity(e.to_string()))?;
    let peers = crate::peers::Peers::start(
        peer_list,
        orbital_peer::Identity {
            certificate: identity.certificate.clone(),
            key: identity.key.clone_key(),
        },
        options.peer_listen,
        store,
        crate::peers::Builder {
            engine: engine.clone(),
            project: options.project.clone(),
        },
    )?;
    let peers = Arc::new(peers);
    if peers.any() {
        engine.share_with(identity.fingerprint.clone(), peers.clone());
    }
    let syncing = tokio::spawn(peers.clone().sync_loop(shutdown.clone()));
    bound(&Bound {
        addr,
        peer_addr: peers.local_addr(),
        fingerprint: identity.fingerprint.clone(),
        certificate_path: identity.certificate_path.clone(),
        token_path: identity.token_path.clone(),
    });
    let daemon = Arc::new(Daemon {
        peers,
        engine,
        token: identity.token.clone(),
        runs: Runs::default(),
        last_good: std::sync::Mutex::new(None),
        records: crate::body::Records::default(),
        listing: std::sync::Mutex::new(None),
        compiles: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        ),
        options,
    });
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = shutdown.cancelled() => break,
        };
        let Some(incoming) = incoming else { break };
        let daemon = daemon.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(daemon, incoming, shutdown).await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    daemon.runs.refuse_new();
    daemon.peers.close();
    syncing.abort();
    daemon.runs.finish(daemon.options.grace).await;
    endpoint.close(quinn::VarInt::from_u32(0), b"daemon stopping");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    Ok(())
}

fn endpoint(identity: &Identity, options: &DaemonOptions) -> Result<quinn::Endpoint, DaemonError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| DaemonError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![identity.certificate.clone()], identity.key.clone_key())
        .map_err(|e| DaemonError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| DaemonError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(options.max_streams.into())
        .max_idle_timeout(options.idle_timeout.try_into().ok())
        // Event streams ping well within the idle timeout themselves; this
        // keeps a quiet connection open while the client waits.
        .keep_alive_interval(Some(options.idle_timeout / 3));
    config.transport_config(Arc::new(transport));
    let listen_error = |source| DaemonError::Listen {
        addr: options.listen,
        source,
    };
    let socket = udp_socket(options.listen).map_err(listen_error)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        runtime,
    )
    .map_err(listen_error)
}

/// The buffer size asked of the UDP socket (the system caps it at its
/// `net.core.rmem_max` / `wmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// The UDP socket QUIC runs on, with buffers as large as the system
/// allows: with the default (208 KiB), 200 clients fetching megabytes at
/// once overflow it, and each dropped handshake packet costs its client a
/// retransmission timeout.
fn udp_socket(addr: std::net::SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Smaller buffers only cost drops under load: not a reason to refuse.
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::debug!("cannot enlarge the UDP receive buffer: {e}");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::debug!("cannot enlarge the UDP send buffer: {e}");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

type Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Serves one connection's requests. At shutdown it sends GOAWAY (no new
/// request is taken; those in flight, event streams included, go on).
async fn connection(
    daemon: Arc<Daemon>,
    incoming: quinn::Incoming,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let connection = incoming.await.map_err(|e| e.to_string())?;
    let mut http = h3::server::builder()
        .max_field_section_size(daemon.options.max_header)
        .build::<_, Bytes>(h3_quinn::Connection::new(connection))
        .await
        .map_err(|e| e.to_string())?;
    let mut going_away = false;
    loop {
        let accepted = tokio::select! {
            accepted = http.accept() => accepted,
            () = shutdown.cancelled(), if !going_away => {
                going_away = true;
                http.shutdown(0).await.map_err(|e| e.to_string())?;
                continue;
            }
        };
        match accepted {
            Ok(Some(resolver)) => {
                let daemon = daemon.clone();
                tokio::spawn(async move {
                    match resolver.resolve_request().await {
                        Ok((request, stream)) => respond(&daemon, request, stream).await,
                        // A header section over the limit was answered 431.
                        Err(e) => tracing::debug!("request refused: {e}"),
                    }
                });
            }
            Ok(None) => return Ok(()),
            // h3 reports a clean close as an error.
            Err(e) if e.is_h3_no_error() => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn respond(daemon: &Arc<Daemon>, request: http::Request<()>, mut stream: Stream) {
    let started = std::time::Instant::now();
    let reply = match read_body(&mut stream, daemon.options.max_body).await {
        Ok(body) => api::route(daemon, &request, &body).await,
        Err(error) => Reply::Error(error),
    };
    tracing::debug!(path = %request.uri().path(), elapsed = ?started.elapsed(), "answered");
    let gzip = request
        .headers()
        .get_all(http::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(crate::body::accepts_gzip);
    if let Err(e) = send(daemon, reply, gzip, &mut stream).await {
        tracing::debug!("response not delivered: {e}");
    }
    tracing::debug!(path = %request.uri().path(), elapsed = ?started.elapsed(), "sent");
}

async fn read_body(stream: &mut Stream, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(mut chunk) = stream
        .recv_data()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?
    {
        if body.len() + chunk.remaining() > limit {
            return Err(ApiError::too_large(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            body.extend_from_slice(part);
            let read = part.len();
            chunk.advance(read);
        }
    }
    Ok(body.freeze())
}

/// Sends `reply`; JSON gzipped when the client accepts `gzip`.
async fn send(
    daemon: &Arc<Daemon>,
    reply: Reply,
    gzip: bool,
    stream: &mut Stream,
) -> Result<(), String> {
    const JSON: &str = "application/json";
    let (status, body, kind) = match reply {
        Reply::Json(status, value) => (status, json(&value)?, JSON),
        Reply::Error(error) => (error.status, json(&error.body())?, JSON),
        Reply::Body(body) => (http::StatusCode::OK, body, JSON),
        Reply::Html(page) => (
            http::StatusCode::OK,
            Arc::new(crate::body::Body::new(page.into_bytes())),
            "text/html; charset=utf-8",
        ),
        Reply::Bytes { bytes, head } => return raw(stream, bytes, head).await,
        Reply::Events { run, after } => {
            return crate::runs::stream(daemon, run, after, stream).await;
        }
    };
    let (bytes, gzipped) = body.encoded(gzip);
    let length = bytes.len().to_string();
    let mut headers = vec![
        ("content-type", kind),
        ("content-length", length.as_str()),
        ("vary", "accept-encoding"),
    ];
    if gzipped {
        headers.push(("content-encoding", "gzip"));
    }
    send_head(stream, status, &headers).await?;
    stream
        .send_data(Bytes::copy_from_slice(bytes))
        .await
        .map_err(|e| e.to_string())?;
    stream.finish().await.map_err(|e| e.to_string())
}

fn json(value: &serde_json::Value) -> Result<Arc<crate::body::Body>, String> {
    let json = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    Ok(Arc::new(crate::body::Body::new(json)))
}

/// A stored object's bytes; `head`: the headers only.
async fn raw(stream: &mut Stream, bytes: Vec<u8>, head: bool) -> Result<(), String> {
    let length = bytes.len().to_string();
    send_head(
        stream,
        http::StatusCode::OK,
        &[
            ("content-type", "application/octet-stream"),
            ("content-length", &length),
        ],
    )
    .await?;
    if !head {
        stream
            .send_data(Bytes::from(bytes))
            .await
            .map_err(|e| e.to_string())?;
    }
    stream.finish().await.map_err(|e| e.to_string())
}

/// Sends a response's status and headers.
pub(crate) async fn send_head(
    stream: &mut Stream,
    status: http::StatusCode,
    headers: &[(&str, &str)],
) -> Result<(), String> {
    let mut response = http::Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    let response = response.body(()).map_err(|e| e.to_string())?;
    stream
        .send_response(response)
        .await
        .map_err(|e| e.to_string())
}

pub(crate) type ResponseStream = Stream;
