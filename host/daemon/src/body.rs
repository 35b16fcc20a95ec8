//! Response bodies: JSON, gzipped for clients that accept it, and the
//! bodies of finished runs' records kept ready (a 10k-node run's record is
//! 2 MB of JSON that never changes once the run has ended).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Bodies smaller than this go as they are: compressing them saves less
/// than it costs.
const COMPRESS_FROM: usize = 1024;

/// Finished runs whose record bodies are kept.
const KEEP_RECORDS: usize = 32;

/// A JSON body, and its gzip form once a client asked for it.
pub(crate) struct Body {
    json: Vec<u8>,
    gzip: OnceLock<Vec<u8>>,
}

impl Body {
    pub(crate) fn new(json: Vec<u8>) -> Self {
        Self {
            json,
            gzip: OnceLock::new(),
        }
    }

    /// The bytes to send, and whether they are gzipped: only for a client
    /// that accepts gzip, and a body worth compressing.
    pub(crate) fn encoded(&self, gzip: bool) -> (&[u8], bool) {
        if !gzip || self.json.len() < COMPRESS_FROM {
            return (&self.json, false);
        }
        (self.gzip.get_or_init(|| compress(&self.json)), true)
    }
}

fn compress(json: &[u8]) -> Vec<u8> {
    // The fastest level: JSON this repetitive shrinks 10-20 times anyway.
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(json.len() / 8),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(json);
    encoder.finish().unwrap_or_default()
}

/// Whether an `Accept-Encoding` header value accepts gzip (RFC 9110: a
/// coding listed without `q=0`, or `*`).
pub(crate) fn accepts_gzip(header: &str) -> bool {
    header.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("").to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        (coding == "gzip" || coding == "*") && !refused
    })
}

/// The bodies of finished runs' records, the newest [`KEEP_RECORDS`].
#[derive(Default)]
pub(crate) struct Records {
    /// By run id: the first is the oldest.
    kept: Mutex<BTreeMap<u64, Arc<Body>>>,
}

impl Records {
    pub(crate) fn get(&self, run: u64) -> Option<Arc<Body>> {
        self.kept.lock().ok()?.get(&run).cloned()
    }

    pub(crate) fn keep(&self, run: u64, body: Arc<Body>) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        kept.insert(run, body);
        while kept.len() > KEEP_RECORDS {
            kept.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_is_sent_only_to_who_accepts_it() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("br, GZIP;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("br, deflate"));
        assert!(!accepts_gzip(""));
    }

    #[test]
    fn a_large_body_gzips_and_comes_back_whole() {
        let json = serde_json::to_vec(&vec!["a node and its result"; 500]).unwrap();
        let body = Body::new(json.clone());
        assert_eq!(body.encoded(false), (json.as_slice(), false));
        let (sent, gzipped) = body.encoded(true);
        assert!(gzipped && sent.len() * 10 < json.len(), "{}", sent.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(sent)
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, json);
        // Small bodies go as they are.
        assert!(!Body::new(b"{}".to_vec()).encoded(true).1);
    }

    #[test]
    fn only_the_newest_finished_records_are_kept() {
        let records = Records::default();
        for run in 1..=(KEEP_RECORDS as u64 + 5) {
            records.keep(run, Arc::new(Body::new(Vec::new())));
        }
        assert!(records.get(5).is_none());
        assert!(records.get(6).is_some());
        assert!(records.get(KEEP_RECORDS as u64 + 5).is_some());
    }
}
