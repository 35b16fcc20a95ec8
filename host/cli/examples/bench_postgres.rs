//! PostgreSQL benchmarks (numbers go to docs/benchmarks.md):
//!
//! ```sh
//! cargo build --release && tests/bin/with-postgres cargo run --release -p orbital --example bench_postgres
//! ```
//!
//! - Orbital's overhead against psql: `orbital run` of a project's models
//!   (seeds loaded beforehand) against the same compiled SQL, one
//!   `CREATE VIEW|TABLE name AS <sql>` per model, sent through one psql
//!   session; for jaffle_shop and a 200-model synthetic project; each on
//!   fresh databases, best of 3;
//! - seed loading throughput of a 1M-row CSV, on PostgreSQL and SQLite.

#[path = "shared/process.rs"]
mod process;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use process::{orbital_binary, timed_orbital};

fn psql(url: &str, args: &[&str]) -> Duration {
    let started = Instant::now();
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(url)
        .args(args)
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "psql {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

/// A fresh database on the server; its URL.
fn database(server: &str, name: &str) -> String {
    psql(
        server,
        &[
            "-c",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ],
    );
    psql(server, &["-c", &format!("CREATE DATABASE {name}")]);
    let (base, _) = server.rsplit_once('/').expect("a database in the URL");
    format!("{base}/{name}")
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

/// (orbital run, psql replay), best of 3 on fresh databases.
fn overhead(server: &str, project: &Path, label: &str) -> (Duration, Duration) {
    let mut best = (Duration::MAX, Duration::MAX);
    for round in 0..3 {
        let url = database(server, &format!("bench_{label}_orbital_{round}"));
        retarget(project, &url);
        timed_orbital(project, &["seed"]);
        best.0 = best.0.min(timed_orbital(project, &["run"]));

        let url = database(server, &format!("bench_{label}_psql_{round}"));
        retarget(project, &url);
        timed_orbital(project, &["seed"]);
        let script = project.join("target/replay.sql");
        std::fs::write(&script, replay_script(project)).expect("write script");
        best.1 = best
            .1
            .min(psql(&url, &["-f", script.to_str().expect("utf-8 path")]));
    }
    (best.0, best.1)
}

fn seed_throughput(project: &Path, url: &str) -> f64 {
    retarget(project, url);
    let time = timed_orbital(project, &["seed"]);
    1_000_000.0 / time.as_secs_f64()
}

fn main() {
    let server = std::env::var("ORBITAL_TEST_POSTGRES_URL")
        .expect("run under tests/bin/with-postgres (ORBITAL_TEST_POSTGRES_URL)");
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
    let warm = database(&server, "bench_warm");
    retarget(jaffle.path(), &warm);
    timed_orbital(jaffle.path(), &["build"]);

    let (run, replay) = overhead(&server, jaffle.path(), "jaffle");
    report("jaffle_shop (5 models)", run, replay);

    let synthetic = tempfile::tempdir().expect("tempdir");
    for (path, text) in orbital_core::synthetic::project(200, 7) {
        let full = synthetic.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
    let (run, replay) = overhead(&server, synthetic.path(), "synthetic");
    report("synthetic (200 models)", run, replay);

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
    let postgres = seed_throughput(seeds.path(), &database(&server, "bench_seed"));
    let sqlite = seed_throughput(seeds.path(), "sqlite://target/seeds.db");
    println!(
        "seed of 1,000,000 rows x 4 columns: PostgreSQL {postgres:.0} rows/s, SQLite {sqlite:.0} rows/s"
    );
}

fn report(what: &str, run: Duration, replay: Duration) {
    let (run, replay) = (run.as_secs_f64() * 1000.0, replay.as_secs_f64() * 1000.0);
    println!(
        "{what}: orbital run {run:.0} ms, psql replay {replay:.0} ms, overhead {:+.0} ms ({:+.1}%)",
        run - replay,
        (run - replay) / replay * 100.0
    );
}
