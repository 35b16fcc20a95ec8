//! Server benchmarks, PostgreSQL and (where `tests/bin/with-mariadb` runs
//! one) MariaDB (numbers go to docs/benchmarks.md):
//!
//! ```sh
//! cargo build --release && tests/bin/with-servers cargo run --release -p orbital --example bench_postgres
//! ```
//!
//! - Orbital's overhead against the database's own client: `orbital run`
//!   of a project's models (seeds loaded beforehand) against the same
//!   compiled SQL, one `CREATE VIEW|TABLE name AS <sql>` per model, sent
//!   through one `psql` (or `mariadb`) session; for jaffle_shop and (on
//!   PostgreSQL) a 200-model synthetic project; each on fresh databases,
//!   best of 3;
//! - seed loading throughput of a 1M-row CSV, on PostgreSQL, MariaDB and
//!   SQLite.

#[path = "shared/process.rs"]
mod process;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use process::{orbital_binary, timed_orbital};

/// A database server and its own command-line client.
#[derive(Clone, Copy)]
enum Server {
    Postgres,
    MariaDb,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Postgres => "psql",
            Server::MariaDb => "mariadb",
        }
    }

    /// Runs the client on `url` with SQL `text` (or, with `file`, the
    /// script at that path); how long the whole client process took.
    fn client(self, url: &str, text: &str, file: bool) -> Duration {
        let mut command = match self {
            Server::Postgres => {
                let mut command = Command::new("psql");
                command
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
                    .arg(url)
                    .arg(if file { "-f" } else { "-c" })
                    .arg(text);
                command
            }
            Server::MariaDb => {
                let (user, password, host, port, database) = mysql_parts(url);
                let mut command = Command::new("mariadb");
                command
                    .args(["--no-defaults", "--protocol=tcp", "-h", &host, "-P", &port])
                    .arg(format!("-u{user}"))
                    .arg(format!("-p{password}"))
                    // As Orbital's sessions run: its SQL quotes names with `"`.
                    .arg("--init-command=SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES,PIPES_AS_CONCAT')");
                if !database.is_empty() {
                    command.args(["-D", &database]);
                }
                if file {
                    command.stdin(std::fs::File::open(text).expect("open the script"));
                } else {
                    command.args(["-e", text]);
                }
                command
            }
        };
        let started = Instant::now();
        let output = command.output().expect("run the client");
        assert!(
            output.status.success(),
            "{} {text:.200}: {}",
            self.name(),
            String::from_utf8_lossy(&output.stderr)
        );
        started.elapsed()
    }

    /// A fresh database on the server; its URL.
    fn database(self, server: &str, name: &str) -> String {
        let drop = match self {
            Server::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            Server::MariaDb => format!("DROP DATABASE IF EXISTS {name}"),
        };
        self.client(server, &drop, false);
        self.client(server, &format!("CREATE DATABASE {name}"), false);
        match self {
            Server::Postgres => {
                let (base, _) = server.rsplit_once('/').expect("a database in the URL");
                format!("{base}/{name}")
            }
            Server::MariaDb => format!("{}/{name}", server.trim_end_matches('/')),
        }
    }
}

/// (user, password, host, port, database) of `mysql://u:p@host:port[/db]`.
fn mysql_parts(url: &str) -> (String, String, String, String, String) {
    let rest = url.strip_prefix("mysql://").expect("a mysql:// URL");
    let (credentials, rest) = rest.split_once('@').expect("a user");
    let (user, password) = credentials.split_once(':').expect("a password");
    let (address, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = address.split_once(':').expect("a port");
    let parts = [user, password, host, port, database].map(str::to_string);
    let [user, password, host, port, database] = parts;
    (user, password, host, port, database)
}

/// Points the project's only target at `url`.
fn retarget(project: &Path, url: &str) {
    let path = project.join("orbital.toml");
    let config = std::fs::read_to_string(&path).expect("read orbital.toml");
    let start = config.find("url = \"").expect("a target url") + 7;
    let end = start + config[start..].find('"').expect("a closed url");
    let config = format!("{}{url}{}", &config[..start], &config[end..]);
    std::fs::write(&path, config).expect("write orbital.toml");
    let _ = std::fs::remove_dir_all(project.join("target"));
}

/// The models' compiled SQL as one psql script, in build order.
fn replay_script(project: &Path) -> String {
    timed_orbital(project, &["compile"]);
    let listed = Command::new(orbital_binary())
        .args(["ls", "--json", "--project"])
        .arg(project)
        .output()
        .expect("orbital ls");
    let nodes: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("ls json");
    let mut script = String::new();
    for node in nodes["nodes"].as_array().expect("nodes") {
        if node["kind"] != "model" {
            continue;
        }
        let path = node["path"].as_str().expect("path");
        let sql = std::fs::read_to_string(project.join("target/compiled").join(path))
            .expect("compiled SQL");
        let kind = match node["materialized"].as_str() {
            Some("view") => "VIEW",
            _ => "TABLE",
        };
        let name = node["name"].as_str().expect("name");
        script.push_str(&format!(
            "CREATE {kind} \"{name}\" AS\n{};\n",
            sql.trim_end()
        ));
    }
    script
}

/// (orbital run, client replay), best of 3 on fresh databases.
fn overhead(kind: Server, server: &str, project: &Path, label: &str) -> (Duration, Duration) {
    let mut best = (Duration::MAX, Duration::MAX);
    for round in 0..3 {
        let url = kind.database(server, &format!("bench_{label}_orbital_{round}"));
        retarget(project, &url);
        timed_orbital(project, &["seed"]);
        best.0 = best.0.min(timed_orbital(project, &["run"]));

        let url = kind.database(server, &format!("bench_{label}_client_{round}"));
        retarget(project, &url);
        timed_orbital(project, &["seed"]);
        let script = project.join("target/replay.sql");
        std::fs::write(&script, replay_script(project)).expect("write script");
        best.1 = best
            .1
            .min(kind.client(&url, script.to_str().expect("utf-8 path"), true));
    }
    (best.0, best.1)
}

fn seed_throughput(project: &Path, url: &str) -> f64 {
    retarget(project, url);
    let time = timed_orbital(project, &["seed"]);
    1_000_000.0 / time.as_secs_f64()
}

fn main() {
    let mut servers = vec![(
        Server::Postgres,
        std::env::var("ORBITAL_TEST_POSTGRES_URL")
            .expect("run under tests/bin/with-servers (ORBITAL_TEST_POSTGRES_URL)"),
    )];
    if let Ok(url) = std::env::var("ORBITAL_TEST_MYSQL_URL") {
        servers.push((Server::MariaDb, url));
    }
    if std::env::var("BENCH_SERVERS").as_deref() == Ok("mariadb") {
        servers.retain(|(kind, _)| matches!(kind, Server::MariaDb));
    }
    for (kind, server) in &servers {
        overheads(*kind, server);
    }
    let (kind, server) = &servers[0];
    seeds(*kind, server);
}

/// Orbital against the server's client, on jaffle_shop and 200 models.
fn overheads(kind: Server, server: &str) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Warm the compiled-component cache so no run pays for it.
    let jaffle = tempfile::tempdir().expect("tempdir");
    let status = Command::new("cp")
        .arg("-r")
        .arg(workspace.join("examples/jaffle_shop/."))
        .arg(jaffle.path())
        .status()
        .expect("copy the example");
    assert!(status.success());
    let plugin = workspace.join("target/wasm-guests/wasm32-wasip2/wasm-guest/jaffle_macros.wasm");
    std::fs::copy(&plugin, jaffle.path().join("plugins/jaffle_macros.wasm"))
        .expect("the example's plugin is built with the workspace");
    let warm = kind.database(server, "bench_warm");
    retarget(jaffle.path(), &warm);
    timed_orbital(jaffle.path(), &["build"]);

    let (run, replay) = overhead(kind, server, jaffle.path(), "jaffle");
    report(kind, "jaffle_shop (5 models)", run, replay);
    // The synthetic models name a column `key`, which MySQL reserves.
    if matches!(kind, Server::MariaDb) {
        return;
    }

    let synthetic = tempfile::tempdir().expect("tempdir");
    for (path, text) in orbital_core::synthetic::project(200, 7) {
        let full = synthetic.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
    let (run, replay) = overhead(kind, server, synthetic.path(), "synthetic");
    report(kind, "synthetic (200 models)", run, replay);
}

/// Seed throughput on `server` and on SQLite.
fn seeds(kind: Server, server: &str) {
    let seeds = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        seeds.path().join("orbital.toml"),
        "name = \"seeds\"\n[targets.dev]\nurl = \"sqlite://target/seeds.db\"\n",
    )
    .expect("write orbital.toml");
    let mut csv = String::from("id,name,amount,day\n");
    for i in 0..1_000_000u32 {
        csv.push_str(&format!(
            "{i},name {i},{}.{:02},2024-01-{:02}\n",
            i % 1000,
            i % 100,
            1 + i % 28
        ));
    }
    std::fs::create_dir_all(seeds.path().join("seeds")).expect("mkdir");
    std::fs::write(seeds.path().join("seeds/big.csv"), csv).expect("write csv");
    let server_rows = seed_throughput(seeds.path(), &kind.database(server, "bench_seed"));
    let sqlite = seed_throughput(seeds.path(), "sqlite://target/seeds.db");
    println!(
        "seed of 1,000,000 rows x 4 columns: {} {server_rows:.0} rows/s, SQLite {sqlite:.0} rows/s",
        kind.name()
    );
}

fn report(kind: Server, what: &str, run: Duration, replay: Duration) {
    let (run, replay) = (run.as_secs_f64() * 1000.0, replay.as_secs_f64() * 1000.0);
    println!(
        "{what}: orbital run {run:.0} ms, {} replay {replay:.0} ms, overhead {:+.0} ms ({:+.1}%)",
        kind.name(),
        run - replay,
        (run - replay) / replay * 100.0
    );
}
