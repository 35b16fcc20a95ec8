//! The daemon's errors: starting it (its files, its socket, TLS) and the
//! client's. What a request gets wrong is an `api::ApiError` instead.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The data folder's certificate, key or token cannot be used.
    #[error("{0}")]
    Identity(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    /// The client could not reach the daemon or trust it.
    #[error("{0}")]
    Connect(String),
}

impl DaemonError {
    pub(crate) fn file(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| DaemonError::File { path, source }
    }
}
