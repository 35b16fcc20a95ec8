/// What can go wrong talking to a peer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot reach peer {peer}: {message}")]
    Connect { peer: String, message: String },
    /// The peer broke the protocol, or refused a request: `code` is one of
    /// the codes in docs/peering.md.
    #[error("peer {peer}: {code}: {message}")]
    Protocol {
        peer: String,
        code: String,
        message: String,
    },
    /// An object whose bytes do not hash to its name: the whole answer is
    /// refused.
    #[error("peer {peer} sent object {hash} with bytes that hash to {actual}: refused")]
    Corrupt {
        peer: String,
        hash: orbital_core::Hash,
        actual: orbital_core::Hash,
    },
    #[error("the state store: {0}")]
    Store(#[from] orbital_cas::CasError),
}
