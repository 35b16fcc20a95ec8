//! An HTTP/3 client for the daemon that trusts exactly one certificate:
//! the one whose SHA-256 it was given (a daemon's certificate is
//! self-signed, so no system trust store could vouch for it).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};

use crate::error::DaemonError;

/// A connection to one daemon.
pub struct Client {
    requests: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    endpoint: quinn::Endpoint,
    token: Option<String>,
    authority: String,
}

/// A whole response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Decoded, if it came gzipped.
    pub body: Vec<u8>,
    /// Whether it came gzipped (`content-encoding: gzip`).
    pub gzipped: bool,
}

impl Response {
    pub fn json(&self) -> Result<serde_json::Value, DaemonError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| DaemonError::Connect(format!("the daemon answered with no JSON: {e}")))
    }
}

impl Client {
    /// Connects to the daemon at `addr`, refusing it unless its certificate
    /// hashes to `fingerprint` (SHA-256, hex).
    pub async fn connect(
        addr: SocketAddr,
        fingerprint: &str,
        token: Option<String>,
    ) -> Result<Self, DaemonError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| DaemonError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(orbital_peer::pinned_server(fingerprint))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| DaemonError::Tls(e.to_string()))?;
        let local: SocketAddr = if addr.is_ipv6() {
            "[::]:0"
                .parse()
                .map_err(|_| DaemonError::Connect("bad address".into()))?
        } else {
            "0.0.0.0:0"
                .parse()
                .map_err(|_| DaemonError::Connect("bad address".into()))?
        };
        let mut endpoint =
            quinn::Endpoint::client(local).map_err(|source| DaemonError::Listen {
                addr: local,
                source,
            })?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let connection = endpoint
            .connect(addr, "localhost")
            .map_err(|e| DaemonError::Connect(format!("cannot connect to {addr}: {e}")))?
            .await
            .map_err(|e| DaemonError::Connect(format!("cannot connect to {addr}: {e}")))?;
        let (mut driver, requests) = h3::client::new(h3_quinn::Connection::new(connection))
            .await
            .map_err(|e| DaemonError::Connect(format!("HTTP/3 with {addr}: {e}")))?;
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(Self {
            requests,
            endpoint,
            token,
            authority: addr.to_string(),
        })
    }

    /// Sends a request and reads the whole response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, DaemonError> {
        let body = body.map(|b| b.to_string().into_bytes());
        self.request_with(method, path, body, &[("accept-encoding", "gzip")])
            .await
    }

    /// Sends a request with raw body bytes and extra headers.
    pub async fn request_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Response, DaemonError> {
        let mut stream = self.open(method, path, body, headers).await?;
        let response = stream.recv_response().await.map_err(failed)?;
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await.map_err(failed)? {
            while chunk.has_remaining() {
                let part = chunk.chunk();
                body.extend_from_slice(part);
                let read = part.len();
                chunk.advance(read);
            }
        }
        let gzipped = response
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        if gzipped {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)
                .map_err(|e| DaemonError::Connect(format!("the daemon sent bad gzip: {e}")))?;
            body = plain;
        }
        Ok(Response {
            status: response.status().as_u16(),
            body,
            gzipped,
        })
    }

    /// Follows a server-sent event stream, calling `each` with every
    /// event's (id, name, data) until the stream ends or `each` says stop.
    pub async fn events(
        &mut self,
        path: &str,
        last_event_id: Option<u64>,
        mut each: impl FnMut(u64, &str, &str) -> bool,
    ) -> Result<u16, DaemonError> {
        let id_text = last_event_id.map(|id| id.to_string());
        let headers: Vec<(&str, &str)> = id_text
            .as_deref()
            .map(|id| vec![("last-event-id", id)])
            .unwrap_or_default();
        let mut stream = self.open("GET", path, None, &headers).await?;
        let response = stream.recv_response().await.map_err(failed)?;
        let status = response.status().as_u16();
        let mut pending = String::new();
        while let Some(mut chunk) = stream.recv_data().await.map_err(failed)? {
            while chunk.has_remaining() {
                let part = chunk.chunk();
                pending.push_str(&String::from_utf8_lossy(part));
                let read = part.len();
                chunk.advance(read);
            }
            while let Some(end) = pending.find("\n\n") {
                let block: String = pending.drain(..end + 2).collect();
                let (mut id, mut name, mut data) = (0, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().unwrap_or(0);
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = v.to_string();
                    }
                }
                if !name.is_empty() && !each(id, &name, &data) {
                    return Ok(status);
                }
            }
        }
        Ok(status)
    }

    async fn open(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>, DaemonError> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.authority));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(())
            .map_err(|e| DaemonError::Connect(format!("bad request: {e}")))?;
        let mut stream = self.requests.send_request(request).await.map_err(failed)?;
        if let Some(body) = body {
            stream.send_data(Bytes::from(body)).await.map_err(failed)?;
        }
        stream.finish().await.map_err(failed)?;
        Ok(stream)
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.endpoint.close(quinn::VarInt::from_u32(0), b"done");
        self.endpoint.wait_idle().await;
    }
}

fn failed(error: impl std::fmt::Display) -> DaemonError {
    DaemonError::Connect(format!("the daemon's answer broke off: {error}"))
}
