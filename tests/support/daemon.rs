//! A real `orbital daemon` process for end-to-end tests, and what tests
//! do with it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use orbital_daemon::client::Client;
use serde_json::Value;

use super::TestProject;

/// A daemon process, stopped with SIGTERM when dropped.
pub struct Daemon {
    pub child: Child,
    pub addr: std::net::SocketAddr,
    pub fingerprint: String,
    pub token: String,
    pub data_dir: tempfile::TempDir,
    /// The `orbital daemon` flags it was started with.
    flags: Vec<String>,
}

impl Daemon {
    pub fn start(project: &TestProject) -> Self {
        Self::start_in(project, tempfile::tempdir().unwrap(), &[])
    }

    /// With extra `orbital daemon` flags.
    pub fn start_with(project: &TestProject, flags: &[&str]) -> Self {
        Self::start_in(project, tempfile::tempdir().unwrap(), flags)
    }

    /// SIGKILL, then a new daemon on the same project and identity.
    pub fn kill_and_restart(mut self, project: &TestProject) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        Self::start_in(project, data_dir, &[])
    }

    pub fn start_in(project: &TestProject, data_dir: tempfile::TempDir, flags: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orbital"))
            .args(["daemon", "--listen", "127.0.0.1:0", "--json"])
            .args(flags)
            .args(["--max-body", "65536", "--data-dir"])
            .arg(data_dir.path())
            .arg("--project")
            .arg(project.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the daemon");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let bound: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let token = std::fs::read_to_string(bound["token_file"].as_str().unwrap()).unwrap();
        Self {
            child,
            addr: bound["listening"].as_str().unwrap().parse().unwrap(),
            fingerprint: bound["certificate_sha256"].as_str().unwrap().to_string(),
            token: token.trim().to_string(),
            data_dir,
            flags: flags.iter().map(|f| f.to_string()).collect(),
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr, &self.fingerprint, Some(self.token.clone()))
            .await
            .expect("connect")
    }

    /// SIGTERM, then a new daemon on the same project and identity with
    /// `flags`.
    pub fn restart_with(mut self, project: &TestProject, flags: &[&str]) -> Self {
        stop(&self.child);
        let _ = self.child.wait();
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        Self::start_in(project, data_dir, flags)
    }

    /// SIGTERM; the exit code. [`Daemon::resume`] starts it again.
    pub fn pause(&mut self) -> i32 {
        stop(&self.child);
        self.child.wait().unwrap().code().unwrap_or(-1)
    }

    /// A paused daemon started again: same project, identity and flags.
    pub fn resume(mut self, project: &TestProject) -> Self {
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        Self::start_in(project, data_dir, &flags)
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> i32 {
        stop(&self.child);
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn stop(child: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Follows run `run`'s events to the end; returns (name, data) of each.
pub async fn follow(client: &mut Client, run: u64) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    client
        .events(&format!("/v1/runs/{run}/events"), None, |_, name, data| {
            events.push((name.to_string(), serde_json::from_str(data).unwrap()));
            true
        })
        .await
        .unwrap();
    events
}

pub async fn start_run(client: &mut Client, body: Value) -> u64 {
    let started = client
        .request("POST", "/v1/runs", Some(&body))
        .await
        .unwrap();
    assert_eq!(
        started.status,
        202,
        "{}",
        String::from_utf8_lossy(&started.body)
    );
    started.json().unwrap()["run"].as_u64().unwrap()
}

pub fn pg_scalar(url: &str, sql: &str) -> String {
    super::backends::psql(url, sql).unwrap().trim().to_string()
}

/// An empty project whose target is a fresh PostgreSQL database for test
/// `name` (dropped with the returned guard; `None` where no test server
/// runs).
pub fn postgres_project(name: &str) -> Option<(TestProject, super::backends::PgDatabase)> {
    let Some(super::backends::Backend::Postgres(database)) =
        super::backends::Backend::postgres(name)
    else {
        return None;
    };
    let project = TestProject::empty();
    project.write(
        "orbital.toml",
        &format!(
            "name = \"{name}\"\n[targets.dev]\nurl = \"{}\"\n",
            database.url
        ),
    );
    Some((project, database))
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn peer_entry(name: &str, port: u16, sha256: &str) -> String {
    format!("[[peer]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\nsha256 = \"{sha256}\"\n")
}

/// The `node_finished` data of `node` among `events`.
pub fn finished<'a>(events: &'a [(String, Value)], node: &str) -> &'a Value {
    events
        .iter()
        .find(|(name, data)| name == "node_finished" && data["result"]["name"] == node)
        .map(|(_, data)| &data["result"])
        .unwrap_or_else(|| panic!("no node_finished for {node}: {events:?}"))
}
