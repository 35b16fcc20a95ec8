//! The wire protocol: one request per bidirectional stream, each message a
//! 4-byte big-endian length and that many bytes of postcard. A length over
//! the receiver's limit is refused before anything of the body is read.

use orbital_cas::{BuildRecord, EnvRecord, EnvVersion};
use orbital_core::Hash;
use orbital_core::remote::BuildTask;
use orbital_core::remote::session::{WarehouseAnswer, WarehouseCall};
use serde::{Deserialize, Serialize};

use crate::error::PeerError;

/// The protocol versions this build speaks.
pub const PROTOCOL_VERSIONS: (u32, u32) = (1, 2);

/// The first version with remote warehouse sessions (`Warehouse`).
pub const WAREHOUSE_SESSIONS: u32 = 2;

/// The state store's format, as peers compare it in their hellos.
pub const STORE_FORMAT: u32 = orbital_cas::FORMAT;

/// What each side says first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The lowest and highest protocol versions the sender speaks.
    pub versions: (u32, u32),
    pub store_format: u32,
    /// The largest message the sender accepts, in bytes.
    pub max_message: u32,
    /// The SHA-256 of the sender's certificate.
    pub peer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    Hello(Hello),
    /// Which of these the answering peer does not have.
    FindMissing(Vec<Hash>),
    /// These objects' bytes (as many as fit in one message; large ones
    /// are only listed, to be read with `ReadObject`).
    GetObjects(Vec<Hash>),
    /// One object's bytes from `offset` on, streamed: the answer is a
    /// `Stream` message, then the raw bytes until the stream ends.
    ReadObject {
        hash: Hash,
        offset: u64,
    },
    /// Of these fingerprints, the builds recorded in `warehouse`.
    FindBuilds {
        warehouse: String,
        fingerprints: Vec<Hash>,
    },
    /// The environments the answerer has newer than these versions (or
    /// that are not listed): `(warehouse, environment, version)`.
    Environments(Vec<(String, String, EnvVersion)>),
    /// Environment records the asker changed: the answerer takes those
    /// newer than its own.
    Announce(Vec<EnvRecord>),
    /// Build this model with your own connection (a remote task).
    Build(Box<BuildTask>),
    /// A statement, lock or claim on your connection to one of your
    /// targets, held for this connection (protocol 2).
    Warehouse(Box<WarehouseCall>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Hello(Hello),
    Missing(Vec<Hash>),
    /// Objects found, and those asked for that did not fit (ask again).
    Objects {
        found: Vec<(Hash, Vec<u8>)>,
        later: Vec<Hash>,
        missing: Vec<Hash>,
        /// Objects too large for a message, and their sizes: read each
        /// with `ReadObject`.
        large: Vec<(Hash, u64)>,
    },
    /// The head of a streamed object: its whole size. The bytes from the
    /// asked offset follow, raw.
    Stream {
        size: u64,
    },
    Builds(Vec<BuildRecord>),
    Environments(Vec<EnvRecord>),
    /// How many announced records were taken.
    Adopted(u32),
    /// The task was built: the materialization's message and rows.
    Built {
        message: String,
        rows: Option<u64>,
    },
    Warehouse(WarehouseAnswer),
    /// The request was refused: a code of docs/peering.md and why.
    Error {
        code: String,
        message: String,
    },
}

impl Response {
    pub(crate) fn error(code: &str, message: impl Into<String>) -> Self {
        Response::Error {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// A message that could not be read: its code and why.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// One message as sent: its length, then its postcard bytes.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, PeerError> {
    let body = postcard::to_stdvec(message).map_err(|e| PeerError::Tls(e.to_string()))?;
    let length =
        u32::try_from(body.len()).map_err(|_| PeerError::Tls("message too large".into()))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// The code of a stream the other side reset: a broken link, not a bad
/// message.
pub(crate) const CUT: &str = "stream.reset";

fn cut_or_malformed(e: &quinn::ReadExactError) -> &'static str {
    match e {
        quinn::ReadExactError::ReadError(quinn::ReadError::Reset(_)) => CUT,
        _ => "message.malformed",
    }
}

/// Reads one message of at most `limit` bytes from `stream`.
pub(crate) async fn read<T: for<'de> Deserialize<'de>>(
    stream: &mut quinn::RecvStream,
    limit: u32,
) -> Result<T, Refused> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await.map_err(|e| Refused {
        code: cut_or_malformed(&e),
        message: format!("no message length: {e}"),
    })?;
    let length = u32::from_be_bytes(length);
    if length > limit {
        return Err(Refused {
            code: "message.too_large",
            message: format!("a message of {length} bytes is over the limit of {limit}"),
        });
    }
    let mut body = vec![0u8; length as usize];
    stream.read_exact(&mut body).await.map_err(|e| Refused {
        code: cut_or_malformed(&e),
        message: format!("a message cut short: {e}"),
    })?;
    postcard::from_bytes(&body).map_err(|e| Refused {
        code: "message.malformed",
        message: format!("not a message of this protocol: {e}"),
    })
}

/// Whether two version ranges share a version; the highest shared one.
pub(crate) fn common_version(a: (u32, u32), b: (u32, u32)) -> Option<u32> {
    let (low, high) = (a.0.max(b.0), a.1.min(b.1));
    (low <= high).then_some(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_meet_at_the_highest_both_speak() {
        assert_eq!(common_version((1, 3), (2, 5)), Some(3));
        assert_eq!(common_version((1, 1), (1, 1)), Some(1));
        assert_eq!(common_version((1, 1), (2, 3)), None);
    }

    #[test]
    fn a_frame_is_its_length_then_its_body() {
        let frame = encode(&Request::FindMissing(vec![Hash::of(b"x")])).unwrap();
        let length = u32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(length as usize, frame.len() - 4);
        let back: Request = postcard::from_bytes(&frame[4..]).unwrap();
        assert_eq!(back, Request::FindMissing(vec![Hash::of(b"x")]));
    }
}
