//! Helpers for the end-to-end tests: run the real `orbital` binary on a
//! project in a temporary folder and read the SQLite file it built.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Generates one test per case per backend: `mod sqlite` and `mod
/// postgres`, each with a test per named function taking a
/// [`backends::Backend`] (the PostgreSQL one skipped without a server,
/// outside CI). The calling file imports `Backend`.
#[allow(unused_macros)]
macro_rules! on_each_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $case() { super::$case(super::Backend::Sqlite) })*
        }
        mod postgres {
            $(#[test] fn $case() {
                if let Some(backend) = super::Backend::postgres(stringify!($case)) {
                    super::$case(backend)
                }
            })*
        }
        mod mysql {
            $(#[test] fn $case() {
                if let Some(backend) = super::Backend::mysql(stringify!($case)) {
                    super::$case(backend)
                }
            })*
        }
    };
}

/// The cases of `on_each_backend!` a ClickHouse target can pass (see
/// plugins/adapter-clickhouse/README.md for those left out, and why).
#[allow(unused_macros)]
macro_rules! on_clickhouse {
    ($($case:ident),* $(,)?) => {
        mod clickhouse {
            $(#[test] fn $case() {
                if let Some(backend) = super::Backend::clickhouse(stringify!($case)) {
                    super::$case(backend)
                }
            })*
        }
    };
}

/// The cases of `on_each_backend!` on MariaDB through the mysql-wire
/// example adapter's own connection (plugin API 0.2.0, `wasi:sockets`).
#[allow(unused_macros)]
macro_rules! on_mysql_wire {
    ($($case:ident),* $(,)?) => {
        mod mysql_wire {
            $(#[test] fn $case() {
                if let Some(backend) = super::Backend::mysql_wire(stringify!($case)) {
                    super::$case(backend)
                }
            })*
        }
    };
}

pub mod backends;
pub mod daemon;

use sqlx::{Connection, Row, SqliteConnection, TypeInfo, ValueRef};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// A project in a temporary folder.
pub struct TestProject {
    pub dir: tempfile::TempDir,
}

impl TestProject {
    /// An empty project folder.
    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A copy of `examples/jaffle_shop` without its build output, with its
    /// own macro plugin built where its orbital.toml lists it.
    pub fn jaffle_shop() -> Self {
        let project = Self::empty();
        copy_dir(&workspace().join("examples/jaffle_shop"), project.path());
        std::fs::copy(
            orbital_bundle::test_component("jaffle-macros"),
            project.path().join("plugins/jaffle_macros.wasm"),
        )
        .expect("the example's macro plugin is built with the test components");
        project
    }

    /// The original dbt jaffle_shop project, unmodified, from
    /// `../shared/data/jaffle_shop_dbt`, with the original seed CSVs copied
    /// into its `seeds/` (as its README says to do).
    pub fn jaffle_shop_dbt() -> Self {
        let project = Self::empty();
        let shared = workspace().join("../shared/data");
        copy_dir(&shared.join("jaffle_shop_dbt"), project.path());
        let seeds = project.path().join("seeds");
        std::fs::create_dir_all(&seeds).expect("mkdir seeds");
        for name in ["raw_customers.csv", "raw_orders.csv", "raw_payments.csv"] {
            std::fs::copy(shared.join("jaffle_shop").join(name), seeds.join(name))
                .expect("copy a seed");
        }
        // shared/ may be read-only: the copy is the test's to change.
        for path in files_under(project.path()) {
            let mut permissions = std::fs::metadata(&path).expect("stat").permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            permissions.set_readonly(false);
            std::fs::set_permissions(&path, permissions).expect("chmod");
        }
        project
    }

    /// A project with a view `fast` and a table `slow` that counts `rows`
    /// rows of a recursive CTE (SQLite takes seconds for tens of millions).
    pub fn slow(rows: u64) -> Self {
        let project = Self::empty();
        project.write(
            "orbital.toml",
            "name = \"slow\"\n[targets.dev]\nurl = \"sqlite://target/slow.db\"\n",
        );
        project.write("models/fast.sql", "select 1 as version");
        project.write(
            "models/slow.sql",
            &format!(
                "-- config: materialized = 'table'\n\
                 with recursive c(x) as (select 1 union all select x + 1 from c where x < {rows})\n\
                 select count(*) as n, max(fast.version) as version from c, fast"
            ),
        );
        project
    }

    /// `examples/jaffle_shop` without its data tests, for tests of other
    /// things that edit its models freely.
    pub fn jaffle_shop_without_data_tests() -> Self {
        let project = Self::jaffle_shop();
        for path in files_under(&project.path().join("models")) {
            let text = std::fs::read_to_string(&path).expect("read model");
            let kept: Vec<&str> = text
                .lines()
                .filter(|line| !line.starts_with("-- config: tests."))
                .collect();
            std::fs::write(&path, kept.join("\n") + "\n").expect("write model");
        }
        std::fs::remove_dir_all(project.path().join("tests")).expect("remove tests/");
        project
    }

    /// Adds a component (a path or `blake3:<hash>`) to orbital.toml's
    /// `[plugins] components`, after any the project lists.
    pub fn add_component(&self, reference: &str) -> &Self {
        let path = self.path().join("orbital.toml");
        let config = std::fs::read_to_string(&path).expect("read orbital.toml");
        let entry = format!("{reference:?}");
        let config = match config.find("components = [") {
            Some(at) => {
                let close = at + config[at..].find(']').expect("a closed list");
                format!("{}, {entry}{}", &config[..close], &config[close..])
            }
            None => format!("{config}\n[plugins]\ncomponents = [{entry}]\n"),
        };
        std::fs::write(&path, config).expect("write orbital.toml");
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, relative: &str, text: &str) -> &Self {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        self
    }

    pub fn remove(&self, relative: &str) -> &Self {
        std::fs::remove_file(self.path().join(relative)).expect("remove");
        self
    }

    /// Sets every project file's modification time an hour back and waits
    /// out the snapshot's racy window (the inode change times cannot be
    /// set), so the state snapshot trusts the files' stamps.
    pub fn age(&self) -> &Self {
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for path in files_under(self.path()) {
            set_modified(&path, hour_ago);
        }
        std::thread::sleep(std::time::Duration::from_millis(2100));
        self
    }

    /// Writes `text` over `relative` and puts its modification time back,
    /// as `git checkout` or a careless tool can: only the inode's change
    /// time tells that the file changed.
    pub fn write_keeping_mtime(&self, relative: &str, text: &str) -> &Self {
        let path = self.path().join(relative);
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        std::fs::write(&path, text).expect("write");
        set_modified(&path, modified);
        self
    }

    /// Runs `orbital <args> --project <dir>`.
    pub fn orbital(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_orbital"))
            .args(args)
            .arg("--project")
            .arg(self.path())
            .env_remove("JAFFLE_DB")
            .env("NO_COLOR", "1")
            .output()
            .expect("run orbital");
        Run { output }
    }

    /// The SQLite file the default example target builds into.
    pub fn database(&self) -> PathBuf {
        self.path().join("target/jaffle_shop.db")
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn set_modified(path: &Path, time: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(time))
        .expect("set mtime");
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read example") {
        let entry = entry.expect("entry");
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        if entry.file_name() == "target" {
            continue;
        }
        if source.is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
            copy_dir(&source, &dest);
        } else {
            std::fs::copy(&source, &dest).expect("copy");
        }
    }
}

/// One finished run of the binary.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts the exit code, showing the output when it differs.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code(),
            code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout())
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout(), self.stderr()))
    }

    /// `name -> status` of the seeds and models of a `--json` run.
    pub fn statuses(&self) -> std::collections::BTreeMap<String, String> {
        self.statuses_where(|kind| kind != "test")
    }

    /// `name -> status` of the data tests of a `--json` run.
    pub fn test_statuses(&self) -> std::collections::BTreeMap<String, String> {
        self.statuses_where(|kind| kind == "test")
    }

    fn statuses_where(
        &self,
        kind: impl Fn(&str) -> bool,
    ) -> std::collections::BTreeMap<String, String> {
        self.json()["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter(|r| kind(r["kind"].as_str().unwrap_or("")))
            .map(|r| {
                (
                    r["name"].as_str().unwrap_or("").to_string(),
                    r["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// The `message` of one node in a `--json` run.
    pub fn message_of(&self, name: &str) -> String {
        self.result_of(name)["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn result_of(&self, name: &str) -> serde_json::Value {
        let results = self.json()["results"].as_array().expect("results").clone();
        results
            .into_iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no result for {name}:\n{}", self.stdout()))
    }

    /// The `error` of one node in a `--json` run.
    pub fn error_of(&self, name: &str) -> String {
        self.result_of(name)["error"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// Runs a query on a SQLite file; every cell as text (`NULL` for null,
/// reals with two decimals).
pub fn query(database: &Path, sql: &str) -> Vec<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let url = format!("sqlite://{}", database.display());
        let mut connection = SqliteConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|row| {
                (0..row.columns().len())
                    .map(|i| {
                        let raw = row.try_get_raw(i).expect("cell");
                        if raw.is_null() {
                            return "NULL".to_string();
                        }
                        match raw.type_info().name() {
                            "INTEGER" => row.get::<i64, _>(i).to_string(),
                            "REAL" => format!("{:.2}", row.get::<f64, _>(i)),
                            _ => row.get::<String, _>(i),
                        }
                    })
                    .collect()
            })
            .collect()
    })
}

/// Runs `;`-separated statements on a SQLite file, creating it (and its
/// folder) if missing: how tests change a source's data between runs.
pub fn execute(database: &Path, sql: &str) {
    if let Some(parent) = database.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(database)
            .create_if_missing(true);
        let mut connection = SqliteConnection::connect_with(&options)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", database.display()));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

/// A single value.
pub fn scalar(database: &Path, sql: &str) -> String {
    query(database, sql).remove(0).remove(0)
}

/// `table` or `view` for an object in the SQLite file, or `none`.
pub fn object_kind(database: &Path, name: &str) -> String {
    let rows = query(
        database,
        &format!("select type from sqlite_master where name = '{name}'"),
    );
    rows.first().map_or("none".into(), |r| r[0].clone())
}

/// A Python virtual environment `target/test-venv-NAME` with `packages`
/// from PyPI, made on first use (and made again if a run was cut short
/// before it was ready); its folder.
pub fn python_venv(name: &str, packages: &[&str]) -> PathBuf {
    let venv = workspace().join(format!("target/test-venv-{name}"));
    let ready = venv.join(".ready");
    // Two test processes may ask at once: one makes it, the other waits.
    let lock = std::fs::File::create(workspace().join(format!("target/test-venv-{name}.lock")))
        .expect("venv lock file");
    lock.lock().expect("lock the venv");
    if !ready.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv");
        assert!(made.success(), "cannot make {}", venv.display());
        let installed = Command::new(venv.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet"])
            .args(packages)
            .status()
            .expect("pip");
        assert!(installed.success(), "pip install {packages:?} failed");
        std::fs::write(&ready, "").expect("mark the venv ready");
    }
    venv
}

/// Debian's Chromium, installed with apt when it is missing (as the
/// PostgreSQL server is): the browser the docs site is opened in.
#[allow(dead_code)]
pub fn chromium() -> PathBuf {
    let binary = PathBuf::from("/usr/bin/chromium");
    let lock = std::fs::File::create(workspace().join("target/test-chromium.lock"))
        .expect("chromium lock file");
    lock.lock().expect("lock the chromium install");
    if !binary.exists() {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n");
        let mut install = match root {
            Ok(true) => Command::new("apt-get"),
            _ => {
                let mut sudo = Command::new("sudo");
                sudo.arg("apt-get");
                sudo
            }
        };
        let installed = install
            .args(["install", "-y", "-qq", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("apt-get");
        assert!(installed.success(), "cannot install Debian's chromium");
    }
    binary
}

/// Headless Chromium on `page` (a file) at `fragment`, doing `what`
/// (`--dump-dom`, `--screenshot=...`): its standard output.
fn headless(page: &Path, fragment: &str, what: &[String]) -> String {
    let profile = tempfile::tempdir().expect("a chromium profile folder");
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(what)
        .arg(format!("file://{}#{fragment}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The DOM of `page` (a file) after its scripts ran, from headless Chromium.
#[allow(dead_code)]
pub fn rendered_dom(page: &Path, fragment: &str) -> String {
    headless(page, fragment, &["--dump-dom".to_string()])
}

/// A screenshot of `page` at `fragment`, kept as a test artifact in
/// `target/test-artifacts/<name>.png`; its path.
#[allow(dead_code)]
pub fn screenshot(page: &Path, fragment: &str, name: &str) -> PathBuf {
    let folder = workspace().join("target/test-artifacts");
    std::fs::create_dir_all(&folder).expect("the artifacts folder");
    let shot = folder.join(format!("{name}.png"));
    headless(
        page,
        fragment,
        &[format!("--screenshot={}", shot.display())],
    );
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "no screenshot at {}",
        shot.display()
    );
    shot
}

/// A TCP proxy on 127.0.0.1 to `server` that closes its first `refused`
/// connections at once (a server starting up), then forwards the rest.
#[allow(dead_code)]
pub struct FlakyProxy {
    pub address: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[allow(dead_code)]
impl FlakyProxy {
    pub fn start(server: &str, refused: usize) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a proxy port");
        let address = listener.local_addr().expect("its address").to_string();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = server.to_string();
        // Lives until the test process ends.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if counter.fetch_add(1, Ordering::SeqCst) < refused {
                    continue; // dropped: closed before a byte is sent
                }
                if let Ok(upstream) = std::net::TcpStream::connect(&server) {
                    forward(client, upstream);
                }
            }
        });
        Self { address, accepted }
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Copies bytes both ways until either side closes.
fn forward(client: std::net::TcpStream, upstream: std::net::TcpStream) {
    let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    };
    if let (Ok(client_copy), Ok(upstream_copy)) = (client.try_clone(), upstream.try_clone()) {
        pipe(client, upstream_copy);
        pipe(upstream, client_copy);
    }
}
