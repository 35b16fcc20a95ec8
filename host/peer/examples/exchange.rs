//! The object exchange between two peers on loopback, against raw quinn
//! stream throughput measured in the same run (numbers go to
//! docs/benchmarks.md):
//!
//! ```sh
//! cargo build --release -p orbital
//! cargo run --release -p orbital-peer --example exchange -- target/release/orbital
//! ```
//!
//! One side is a real `orbital daemon --peer-listen` process whose state
//! store holds 10,000 small objects (300-700 bytes, like canonical SQL)
//! and four 25 MB objects; the other is this process, asking with the
//! client code a daemon asks its peers with (`PeerClient::fetch`: batches,
//! streams, every object checked against its blake3 hash). Each round
//! connects anew and fetches everything; three rounds, alternating with a
//! raw quinn transfer of 100 MB on one stream between two endpoints of
//! this process (same TLS and transport settings, no framing, no store, no
//! hashing). Reported: the best and the median round of each.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orbital_core::Hash;
use orbital_peer::{Identity, Limits, PeerClient};

const SMALL: usize = 10_000;
const LARGE: usize = 4;
const LARGE_BYTES: usize = 25 << 20;
const ROUNDS: usize = 3;

fn identity() -> Identity {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    Identity {
        certificate: made.cert.der().clone(),
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into()),
    }
}

/// Deterministic bytes (xorshift), so nothing compresses or repeats.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The project the daemon serves, with the objects in its store.
fn project(dir: &std::path::Path) -> (Vec<Hash>, Vec<Hash>) {
    std::fs::create_dir_all(dir.join("models")).expect("mkdir");
    std::fs::write(
        dir.join("orbital.toml"),
        "name = \"exchange\"\n[targets.dev]\nurl = \"sqlite://target/exchange.db\"\n",
    )
    .expect("orbital.toml");
    std::fs::write(dir.join("models/one.sql"), "select 1 as one").expect("model");
    let store =
        orbital_cas::Store::open(&dir.join("target/orbital/state.redb")).expect("open the store");
    store
        .write(|w| {
            let mut small = Vec::new();
            for i in 0..SMALL {
                small.push(w.put_object(&bytes(i as u64, 300 + i % 400))?);
            }
            let mut large = Vec::new();
            for i in 0..LARGE {
                large.push(w.put_object(&bytes(1_000_000 + i as u64, LARGE_BYTES))?);
            }
            Ok((small, large))
        })
        .expect("write the objects")
}

/// Starts the daemon; its peer address and certificate SHA-256.
fn daemon(
    orbital: &str,
    project: &std::path::Path,
    data: &std::path::Path,
    client: &Identity,
) -> (std::process::Child, SocketAddr, String) {
    let peer_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    std::fs::write(
        data.join("peers.toml"),
        format!(
            "[[peer]]\nname = \"bench\"\naddress = \"127.0.0.1:1\"\nsha256 = \"{}\"\n",
            client.fingerprint()
        ),
    )
    .expect("peers.toml");
    let peer_addr: SocketAddr = format!("127.0.0.1:{peer_port}").parse().expect("address");
    let mut child = Command::new(orbital)
        .args([
            "daemon",
            "--listen",
            "127.0.0.1:0",
            "--json",
            "--peer-listen",
        ])
        .arg(peer_addr.to_string())
        .arg("--data-dir")
        .arg(data)
        .arg("--project")
        .arg(project)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the daemon's first line");
    let bound: serde_json::Value = serde_json::from_str(&line).expect("json");
    let fingerprint = bound["certificate_sha256"]
        .as_str()
        .expect("sha")
        .to_string();
    (child, peer_addr, fingerprint)
}

/// Fetches `hashes` on a new connection; the time it took.
async fn fetch(client: &Identity, addr: SocketAddr, daemon: &str, hashes: &[Hash]) -> Duration {
    let started = Instant::now();
    let peer = PeerClient::connect(client, addr, daemon, Limits::default())
        .await
        .expect("connect");
    let fetched = peer.fetch(hashes).await.expect("fetch");
    let elapsed = started.elapsed();
    assert_eq!(fetched.len(), hashes.len());
    peer.close().await;
    elapsed
}

/// 100 MB on one stream between two endpoints of this process, with the
/// peers' TLS settings; the time from connecting to the last byte.
async fn raw_quinn() -> Duration {
    let (server_id, client_id) = (identity(), identity());
    let allowed = BTreeSet::from([client_id.fingerprint()]);
    let config = orbital_peer::server_config(&server_id, allowed).expect("server config");
    let server = quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("addr"))
        .expect("server endpoint");
    let addr = server.local_addr().expect("addr");
    let total = LARGE * LARGE_BYTES;
    let sending = tokio::spawn(async move {
        let connection = server
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("connection");
        let (mut send, _recv) = connection.accept_bi().await.expect("stream");
        let chunk = bytes(7, 256 * 1024);
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(total - sent);
            send.write_all(&chunk[..n]).await.expect("write");
            sent += n;
        }
        send.finish().expect("finish");
        let _ = send.stopped().await;
    });
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    client.set_default_client_config(
        orbital_peer::client_config(&client_id, &server_id.fingerprint()).expect("client config"),
    );
    let started = Instant::now();
    let connection = client
        .connect(addr, "localhost")
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, mut recv) = connection.open_bi().await.expect("stream");
    send.write_all(b"go").await.expect("write");
    let mut received = 0;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.expect("read") {
        received += chunk.bytes.len();
    }
    let elapsed = started.elapsed();
    assert_eq!(received, total);
    let _ = sending.await;
    elapsed
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::main]
async fn main() {
    let orbital = std::env::args()
        .nth(1)
        .expect("usage: exchange ORBITAL_BINARY");
    let dir = tempfile::tempdir().expect("tempdir");
    let (project_dir, data) = (dir.path().join("project"), dir.path().join("data"));
    std::fs::create_dir_all(&data).expect("mkdir");
    let (small, large) = project(&project_dir);
    let client = identity();
    let (mut child, addr, fingerprint) = daemon(&orbital, &project_dir, &data, &client);
    let (mut small_times, mut large_times, mut raw_times) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        small_times.push(fetch(&client, addr, &fingerprint, &small).await);
        large_times.push(fetch(&client, addr, &fingerprint, &large).await);
        raw_times.push(raw_quinn().await);
    }
    let _ = child.kill();
    let _ = child.wait();
    let megabytes = (LARGE * LARGE_BYTES) as f64 / 1e6;
    let small_bytes: usize = (0..SMALL).map(|i| 300 + i % 400).sum();
    println!("| transfer | best | median | rate (best) |");
    println!("|---|---|---|---|");
    let row = |name: &str, times: &[Duration], rate: &dyn Fn(Duration) -> String| {
        let best = times.iter().min().copied().unwrap_or_default();
        println!(
            "| {name} | {:.0} ms | {:.0} ms | {} |",
            best.as_secs_f64() * 1000.0,
            median(times.to_vec()).as_secs_f64() * 1000.0,
            rate(best)
        );
    };
    row(
        &format!(
            "{SMALL} small objects ({:.1} MB) from the daemon",
            small_bytes as f64 / 1e6
        ),
        &small_times,
        &|d| format!("{:.0} objects/s", SMALL as f64 / d.as_secs_f64()),
    );
    row(
        &format!("{LARGE} x 25 MB objects from the daemon"),
        &large_times,
        &|d| format!("{:.0} MB/s", megabytes / d.as_secs_f64()),
    );
    row("raw quinn, 100 MB on one stream", &raw_times, &|d| {
        format!("{:.0} MB/s", megabytes / d.as_secs_f64())
    });
}
