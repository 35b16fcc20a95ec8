//! Mutual TLS 1.3 between peers, with no CA: each side presents its
//! self-signed certificate, and accepts the other's only if its SHA-256
//! is one it pins (the client: the peer it dialled; the server: any peer
//! listed in its config). Anything else fails the handshake, so nothing an
//! unknown peer sends is ever read.

use std::collections::BTreeSet;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::error::PeerError;

/// The ALPN protocol peers speak.
pub(crate) const ALPN: &[u8] = b"orbital-peer";

/// A daemon's certificate and key: what it proves itself with.
pub struct Identity {
    pub certificate: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// The SHA-256 peers pin this identity by.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.certificate)
    }

    /// A new self-signed identity for `localhost` (feature `faults`: the
    /// daemon makes and keeps its own).
    #[cfg(feature = "faults")]
    pub fn generate() -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("rcgen makes a self-signed certificate");
        Self {
            certificate: made.cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into()),
        }
    }
}

/// A certificate's SHA-256, lowercase hex.
pub fn fingerprint(certificate: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, certificate);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: impl std::fmt::Display) -> PeerError {
    PeerError::Tls(e.to_string())
}

/// The server side: requires a client certificate in `allowed`.
pub fn server_config(
    identity: &Identity,
    allowed: BTreeSet<String>,
) -> Result<quinn::ServerConfig, PeerError> {
    let provider = provider();
    let verifier = Arc::new(Pinned {
        allowed,
        provider: provider.clone(),
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.certificate.clone()], identity.key.clone_key())
        .map_err(tls_error)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(tls_error)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// Both sides ping every second and give a connection up after 5 s of
/// silence: a peer that died mid-task is noticed in seconds (its task is
/// built elsewhere), not after quinn's default 30 s.
fn transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(1)));
    transport
        .max_idle_timeout(quinn::IdleTimeout::try_from(std::time::Duration::from_secs(5)).ok());
    Arc::new(transport)
}

/// A server certificate verifier that accepts only the certificate whose
/// SHA-256 is `expected` (the daemon's HTTP/3 client uses it too).
pub fn pinned_server(expected: &str) -> Arc<dyn ServerCertVerifier> {
    Arc::new(Pinned {
        allowed: BTreeSet::from([expected.to_ascii_lowercase()]),
        provider: provider(),
    })
}

/// The client side: presents `identity`, accepts only `expected`.
pub fn client_config(
    identity: &Identity,
    expected: &str,
) -> Result<quinn::ClientConfig, PeerError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(pinned_server(expected))
        .with_client_auth_cert(vec![identity.certificate.clone()], identity.key.clone_key())
        .map_err(tls_error)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(tls_error)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// Accepts a certificate whose SHA-256 is in `allowed`; signatures are
/// still checked against it.
#[derive(Debug)]
struct Pinned {
    allowed: BTreeSet<String>,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn check(&self, certificate: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let seen = fingerprint(certificate);
        if self.allowed.contains(&seen) {
            Ok(())
        } else {
            tracing::warn!(certificate = %seen, "refused a certificate that is not pinned");
            Err(rustls::Error::General(format!(
                "the certificate presented has SHA-256 {seen}, which is not the one pinned"
            )))
        }
    }

    fn verify13(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signed: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signed,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn no_tls12() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is not offered".into())
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}
