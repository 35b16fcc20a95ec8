//! The daemon: Orbital's control plane behind an HTTP/3 API.
//!
//! It owns the daemon's identity (a self-signed certificate and an API
//! token kept in its data folder), the QUIC endpoint and its HTTP/3
//! connections, routing, authentication and JSON errors, and the runs it
//! started (their events, numbered and kept so a client can follow them).
//! All project work (compile, plan, run, records) is the engine's: this
//! crate may depend on `orbital-engine` and `orbital-core` for their
//! request and result types, and on quinn, h3 and rustls (ring only). The
//! CLI depends on it, never the other way round. [`client`] is the pinned
//! HTTP/3 client the CLI and the tests use.

mod api;
mod body;
pub mod client;
mod error;
mod identity;
mod lending;
mod peers;
mod runs;
mod server;

pub use error::DaemonError;
pub use identity::Identity;
pub use server::{Bound, DaemonOptions, serve};
