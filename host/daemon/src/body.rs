//! Response bodies: JSON, gzipped for clients that accept it, and the
//! bodies of finished runs' records kept ready (a 10k-node run's record is
//! 2 MB of JSON that never changes once the run has ended).

use std::collections::BTreeMap;
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

/// Bodies at least this large are compressed in pieces on several cores.
const COMPRESS_IN_PIECES_FROM: usize = 256 << 10;

/// Gzip of `json` at the fastest level (JSON this repetitive shrinks 4-20
/// times anyway): one gzip member, which every client reads. A large body
/// is cut into pieces deflated at once on all cores, as pigz does: each
/// but the last ends on a byte boundary without ending the stream, so the
/// pieces concatenate into one deflate stream. Pieces of 128 kB or more
/// lose almost nothing by not seeing the one before (a 1.7 MB plan of 10k
/// nodes: 437 kB either way, 5.3-5.7 ms on two cores instead of 6.7-7.1).
fn compress(json: &[u8]) -> Vec<u8> {
    in_pieces(json).unwrap_or_else(|| {
        // A piece that failed to deflate: the whole, as one stream.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = std::io::Write::write_all(&mut encoder, json);
        encoder.finish().unwrap_or_default()
    })
}

fn in_pieces(json: &[u8]) -> Option<Vec<u8>> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let pieces = match json.len() < COMPRESS_IN_PIECES_FROM {
        true => 1,
        false => cores.clamp(1, 8),
    };
    let size = json.len().div_ceil(pieces).max(1);
    let starts: Vec<usize> = (0..json.len()).step_by(size).collect();
    let count = starts.len();
    let deflated: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let rest: Vec<_> = (starts.iter().enumerate().skip(1))
            .map(|(i, &start)| {
                scope.spawn(move || deflate_piece(json, start, size, i + 1 == count))
            })
            .collect();
        let first = deflate_piece(json, 0, size, count <= 1);
        let rest = (rest.into_iter()).map(|piece| {
            piece
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        });
        std::iter::once(first).chain(rest).collect::<Option<_>>()
    })?;
    let mut crc = flate2::Crc::new();
    crc.update(json);
    let mut gzip = Vec::with_capacity(18 + deflated.iter().map(Vec::len).sum::<usize>());
    // The header: deflate, no name or time, unknown OS (RFC 1952).
    gzip.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    deflated
        .iter()
        .for_each(|piece| gzip.extend_from_slice(piece));
    gzip.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the length modulo 2^32.
    gzip.extend_from_slice(&(json.len() as u32).to_le_bytes());
    Some(gzip)
}

/// Raw deflate of `json[start..start + size]`: `last` ends the stream,
/// else the piece ends byte-aligned. `None` if deflating failed.
fn deflate_piece(json: &[u8], start: usize, size: usize, last: bool) -> Option<Vec<u8>> {
    let piece = &json[start..(start + size).min(json.len())];
    let mut deflate = flate2::Compress::new(flate2::Compression::fast(), false);
    let flush = match last {
        true => flate2::FlushCompress::Finish,
        false => flate2::FlushCompress::Sync,
    };
    let mut out = Vec::with_capacity(piece.len() / 2 + 1024);
    loop {
        let read = deflate.total_in() as usize;
        let status = deflate.compress_vec(&piece[read..], &mut out, flush);
        let done = deflate.total_in() as usize == piece.len() && out.len() < out.capacity();
        match status {
            Ok(flate2::Status::StreamEnd) => break,
            Ok(_) if done && !last => break,
            Ok(_) => out.reserve(out.capacity().max(1024)),
            Err(_) => return None,
        }
    }
    Some(out)
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
    use std::io::{Read, Write};

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
    fn a_body_compressed_in_pieces_is_one_gzip_member() {
        // Varied enough that pieces differ, repetitive enough that matches
        // reach back across the pieces' boundaries.
        let nodes: Vec<String> = (0..40_000)
            .map(|i| {
                format!(
                    "{{\"name\":\"model_{i:06}\",\"fingerprint\":\"{:x}\"}}",
                    i * 7919
                )
            })
            .collect();
        let json = serde_json::to_vec(&nodes).unwrap();
        assert!(json.len() > 2 * COMPRESS_IN_PIECES_FROM);
        for size in [
            json.len(),
            COMPRESS_IN_PIECES_FROM,
            COMPRESS_IN_PIECES_FROM + 1,
            10,
        ] {
            let json = &json[..size];
            let gzip = compress(json);
            // A reader of one member only (flate2's `GzDecoder`) gets it all.
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(gzip.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, json, "{size} bytes");
            if size > COMPRESS_IN_PIECES_FROM {
                assert!(gzip.len() * 3 < json.len(), "{} of {size}", gzip.len());
            }
        }
    }

    #[test]
    #[ignore = "a timing, for docs/benchmarks.md: ORBITAL_GZIP_SAMPLE=file"]
    fn compress_timing() {
        let json = std::fs::read(std::env::var("ORBITAL_GZIP_SAMPLE").unwrap()).unwrap();
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let pieces = compress(&json).len();
            let took = started.elapsed();
            let started = std::time::Instant::now();
            let mut one = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            one.write_all(&json).unwrap();
            let one = one.finish().unwrap().len();
            let whole = started.elapsed();
            println!(
                "{}: in pieces {took:?} ({pieces}), whole {whole:?} ({one})",
                json.len()
            );
        }
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
