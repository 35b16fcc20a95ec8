//! Peering: the control plane's QUIC-RPC link to other daemons, so a
//! team's daemons share one content-addressed state with no central
//! database.
//!
//! Owns the wire protocol (`wire`: versioned, one request per
//! bidirectional stream, length-prefixed postcard messages with a size
//! limit, a hello first), peer authentication (`tls`: mutual TLS 1.3, each
//! side pinning the other's certificate by SHA-256), and the exchanges
//! (`node`): which objects a peer lacks, and objects fetched by hash and
//! checked against it on arrival. See `docs/peering.md`.
//!
//! May depend on `orbital-core` (hashes) and `orbital-cas` (the store it
//! serves from and into), quinn and rustls; not on the engine or the
//! daemon, which drive it.

mod error;
mod node;
mod tls;
mod wire;

pub use error::PeerError;
#[cfg(feature = "faults")]
pub use node::faults;
pub use node::{
    BoxFuture, Limits, Objects, Partial, PeerClient, STREAM_FROM, Served, Server, TaskError,
};
pub use tls::{Identity, client_config, fingerprint, pinned_server, server_config};
pub use wire::{Hello, PROTOCOL_VERSIONS, Request, Response, STORE_FORMAT, encode};
