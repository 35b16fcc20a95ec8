//! What the daemon proves itself with and what it asks of clients: a
//! self-signed certificate (rcgen) and a random API token, made on first
//! start in the data folder with mode 0600 and reused afterwards, so a
//! client's pinned certificate hash and token stay valid across restarts.

use std::io::Write;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::DaemonError;

const CERTIFICATE: &str = "cert.pem";
const KEY: &str = "key.pem";
const TOKEN: &str = "token";

/// The daemon's certificate, key and token.
pub struct Identity {
    pub certificate_path: PathBuf,
    pub token_path: PathBuf,
    /// SHA-256 of the certificate (DER), lowercase hex: what clients pin.
    pub fingerprint: String,
    pub(crate) token: String,
    pub(crate) certificate: CertificateDer<'static>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads the identity in `data_dir`, making it first if there is none.
    /// A folder with some of the files but not all is an error, not
    /// repaired: a client may pin the certificate that is missing a key.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, DaemonError> {
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(DaemonError::Identity(format!(
                "the data folder {} is a file, not a folder: pass --data-dir a folder (it is made if missing)",
                data_dir.display()
            )));
        }
        std::fs::create_dir_all(data_dir).map_err(DaemonError::file(data_dir))?;
        let paths = [CERTIFICATE, KEY, TOKEN].map(|name| data_dir.join(name));
        let present = paths.iter().filter(|p| p.exists()).count();
        if present == 0 {
            create(&paths)?;
        } else if present < paths.len() {
            let missing: Vec<String> = paths
                .iter()
                .filter(|p| !p.exists())
                .map(|p| p.display().to_string())
                .collect();
            return Err(DaemonError::Identity(format!(
                "the data folder {} is incomplete: {} missing; restore it or empty the folder to make a new identity (clients must then pin the new certificate)",
                data_dir.display(),
                missing.join(", ")
            )));
        }
        let [certificate_path, key_path, token_path] = paths;
        let certificate = CertificateDer::from_pem_file(&certificate_path)
            .map_err(|e| DaemonError::Identity(format!("{}: {e}", certificate_path.display())))?;
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| DaemonError::Identity(format!("{}: {e}", key_path.display())))?;
        let token = std::fs::read_to_string(&token_path)
            .map_err(DaemonError::file(&token_path))?
            .trim()
            .to_string();
        if token.len() < 32 {
            return Err(DaemonError::Identity(format!(
                "{}: the token is shorter than 32 characters",
                token_path.display()
            )));
        }
        Ok(Self {
            fingerprint: orbital_peer::fingerprint(&certificate),
            certificate_path,
            token_path,
            token,
            certificate,
            key,
        })
    }
}

fn create(paths: &[PathBuf; 3]) -> Result<(), DaemonError> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| DaemonError::Identity(format!("cannot make a certificate: {e}")))?;
    let token = random_token()?;
    // The key and token first: a certificate on disk means all three are.
    write_private(&paths[1], made.signing_key.serialize_pem().as_bytes())?;
    write_private(&paths[2], format!("{token}\n").as_bytes())?;
    write_private(&paths[0], made.cert.pem().as_bytes())
}

fn random_token() -> Result<String, DaemonError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| DaemonError::Identity("the system's random source failed".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `bytes` to `path`, readable by its owner only, whole or not at
/// all (a partial file, renamed into place).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DaemonError> {
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&partial)
        .map_err(DaemonError::file(&partial))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(DaemonError::file(&partial))?;
    std::fs::rename(&partial, path).map_err(DaemonError::file(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        assert_eq!(first.token, again.token);
        assert_eq!(first.fingerprint.len(), 64);
        #[cfg(unix)]
        for name in [CERTIFICATE, KEY, TOKEN] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn an_incomplete_folder_is_refused_not_repaired() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(KEY)).unwrap();
        let error = Identity::load_or_create(dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("key.pem") && error.contains("incomplete"),
            "{error}"
        );
        assert!(!dir.path().join(KEY).exists());
    }

    #[test]
    fn a_file_for_a_data_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data");
        std::fs::write(&file, "").unwrap();
        let error = Identity::load_or_create(&file).err().unwrap().to_string();
        assert!(error.contains("is a file, not a folder"), "{error}");
    }
}
