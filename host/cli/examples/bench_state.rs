//! Scale benchmarks for content-addressed state (numbers go to
//! docs/benchmarks.md):
//!
//! ```sh
//! cargo build --release && cargo run --release -p orbital --example bench_state
//! ```
//!
//! - cold compile (load + parse + resolve + fingerprint, no parse cache) of
//!   10k and 100k synthetic models, and the peak memory of the 100k one;
//! - the whole `orbital plan` process on 10k unchanged, built models;
//! - the whole `orbital run` process on 1k unchanged models on SQLite;
//! - `orbital ls` (whole process: load and compile with no caches, no
//!   output files) of 10k models with and without two `std` macro calls in
//!   each: the cost of macro expansion;
//! - an incremental model adding 10k new rows to a 1M-row table against a
//!   table model rebuilding all of it (whole `orbital run` processes).
//!
//! `-- write N DIR` only writes the synthetic project of N models, for
//! comparing whole processes of two builds (`docs/bench_runs.py`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use orbital_core::{Hash, PluginHashes, Project};

#[path = "shared/process.rs"]
mod process;

use process::{orbital_binary, timed_orbital};

// The same allocator as the binary, so in-process numbers match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn write_project(dir: &Path, models: usize) {
    for (path, text) in orbital_core::synthetic::project(models, 42) {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
}

fn plugins() -> PluginHashes {
    PluginHashes {
        adapter: Hash::of(b"adapter"),
        strategies: [
            ("view".to_string(), Hash::of(b"view")),
            ("table".to_string(), Hash::of(b"table")),
        ]
        .into(),
    }
}

/// The fastest of `runs` calls of `f`; what `f` returns is dropped after
/// the clock stops.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    fastest(runs, || {
        let started = Instant::now();
        let out = f();
        let elapsed = started.elapsed();
        drop(out);
        elapsed
    })
}

/// The shortest of `runs` durations, each timed by `timed` itself.
fn fastest(runs: usize, mut timed: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| timed()).min().unwrap_or_default()
}

/// Load, parse, resolve and fingerprint; the results are returned, so that
/// freeing them (teardown, timed apart) is not counted.
fn cold_compile(dir: &Path) -> impl Sized {
    let project = Project::load(dir).expect("load");
    let target = project.config.target(None).expect("target").1.clone();
    let compiled = orbital_core::compile(&project, &target, Default::default()).expect("compile");
    let fingerprints = orbital_core::fingerprint::fingerprint(&project, &compiled.dag, &plugins())
        .expect("fingerprint");
    (project, compiled, fingerprints)
}

/// How long freeing a cold compile's results takes.
fn teardown(dir: &Path) -> Duration {
    fastest(3, || {
        let results = cold_compile(dir);
        let started = Instant::now();
        drop(results);
        started.elapsed()
    })
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The whole `orbital plan` process on an unchanged, already built project.
fn warm_plan(dir: &Path) -> Duration {
    let orbital = orbital_binary();
    let first = build(&orbital, dir);
    println!(
        "first build, 10000 table models on SQLite: {:.1} s",
        first.as_secs_f64()
    );
    // Only the process is timed; reading its 1.7 MB of JSON back (about
    // 10 ms here) is the benchmark's check, not Orbital's work.
    fastest(5, || {
        let started = Instant::now();
        let output = Command::new(&orbital)
            .args(["plan", "--json", "--project"])
            .arg(dir)
            .output()
            .expect("orbital plan");
        let elapsed = started.elapsed();
        assert!(output.status.success(), "orbital plan failed");
        let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("plan json");
        let nodes = plan["nodes"].as_array().expect("nodes");
        assert!(
            nodes.iter().all(|n| n["action"] == "reuse"),
            "a change was planned"
        );
        elapsed
    })
}

/// Ages the project's files (as a checkout's are: the snapshot does not
/// trust files changed in the last two seconds) and builds it once.
fn build(orbital: &Path, dir: &Path) -> Duration {
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    age(dir, hour_ago);
    std::thread::sleep(orbital_core::snapshot::RACY_WINDOW + Duration::from_millis(100));
    let started = Instant::now();
    let status = Command::new(orbital)
        .args(["build", "--json", "--project"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("orbital build");
    assert!(status.success(), "the first build failed");
    started.elapsed()
}

fn age(dir: &Path, time: SystemTime) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            age(&path, time);
        } else {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(time))
                .expect("set mtime");
        }
    }
}

fn run_unchanged(dir: &Path) -> Duration {
    let orbital = orbital_binary();
    build(&orbital, dir);
    best_of(5, || {
        let output = Command::new(&orbital)
            .args(["run", "--json", "--project"])
            .arg(dir)
            .output()
            .expect("orbital run");
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(!text.contains("\"success\""), "something was rebuilt");
    })
}

/// Best of 3 whole `orbital ls` processes of `dir`: `ls` compiles without
/// caches and writes no files (`compile` writes 10k, which on a shared
/// disk swamps what this measures).
fn compile_process(dir: &Path) -> Duration {
    let orbital = orbital_binary();
    best_of(3, || {
        let status = Command::new(&orbital)
            .args(["ls", "--json", "--project"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("orbital ls");
        assert!(status.success(), "orbital ls failed");
    })
}

/// The 10k synthetic project, then the same with two macro calls per model.
fn macro_compile() -> (Duration, Duration) {
    let plain = tempfile::tempdir().expect("tempdir");
    write_project(plain.path(), 10_000);
    let with_macros = tempfile::tempdir().expect("tempdir");
    for (path, text) in orbital_core::synthetic::project(10_000, 42) {
        let is_model = path.starts_with("models");
        let text = text.replace(
            "select id, key, amount, created_at from summary",
            "select id, key, amount, created_at, std.surrogate_key(id, key) as sk, \
             std.surrogate_key(key, amount) as sk2 from summary",
        );
        assert!(
            !is_model || text.contains("std.surrogate_key"),
            "no macro call in {path:?}"
        );
        let full = with_macros.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
    (
        compile_process(plain.path()),
        compile_process(with_macros.path()),
    )
}

/// Runs SQL on the project's SQLite file, creating it.
fn sqlite(dir: &Path, sql: &str) {
    use sqlx::Connection;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("bench.db"))
            .create_if_missing(true);
        let mut connection = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("open bench.db");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut connection)
            .await
            .expect("sql");
    });
}

/// 1M source rows built two ways, then 10k more: the incremental model's
/// run against the table's full rebuild.
fn incremental_vs_table() -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("orbital.toml"),
        "name = \"bench\"\n[targets.dev]\nurl = \"sqlite://bench.db\"\n\
         [sources.app]\ntables = [\"raw_events\"]\n",
    )
    .expect("write orbital.toml");
    let select = "select id, id % 97 as account, id * 0.5 as amount from app.raw_events";
    std::fs::create_dir_all(dir.path().join("models")).expect("mkdir");
    std::fs::write(
        dir.path().join("models/events_incremental.sql"),
        format!(
            "-- config: materialized = 'incremental', unique_key = 'id'\n{select}\n\
             where if_incremental(id > (select max(id) from this))"
        ),
    )
    .expect("write model");
    std::fs::write(
        dir.path().join("models/events_table.sql"),
        format!("-- config: materialized = 'table'\n{select}"),
    )
    .expect("write model");
    let rows = |from: u64, to: u64| {
        format!(
            "with recursive n(i) as (select {from} union all select i + 1 from n where i < {to}) \
             insert into raw_events select i from n;"
        )
    };
    sqlite(
        dir.path(),
        &format!(
            "create table raw_events (id integer primary key);{}",
            rows(1, 1_000_000)
        ),
    );
    timed_orbital(dir.path(), &["run"]);
    sqlite(dir.path(), &rows(1_000_001, 1_010_000));
    let incremental = timed_orbital(dir.path(), &["run", "--select", "events_incremental"]);
    let table = timed_orbital(
        dir.path(),
        &["run", "--select", "events_table", "--full-refresh"],
    );
    (incremental, table)
}

fn main() {
    // `write N DIR`: only write the synthetic project of N models to DIR,
    // for whole-process comparisons of two builds (docs/benchmarks.md).
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, models, dir] = args.as_slice()
        && mode == "write"
    {
        write_project(Path::new(dir), models.parse().expect("a model count"));
        return;
    }
    let only: Option<String> = std::env::args().nth(1);
    let wants = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if wants("compile") {
        for models in [10_000, 100_000] {
            let dir = tempfile::tempdir().expect("tempdir");
            write_project(dir.path(), models);
            let time = best_of(3, || cold_compile(dir.path()));
            println!(
                "cold compile {models} models: {:.0} ms",
                time.as_secs_f64() * 1000.0
            );
            println!(
                "  freeing its results afterwards: {:.0} ms",
                teardown(dir.path()).as_secs_f64() * 1000.0
            );
        }
        println!(
            "peak memory (100k cold compile, VmHWM): {:.0} MiB",
            peak_mib()
        );
    }
    if wants("plan") {
        let dir = tempfile::tempdir().expect("tempdir");
        write_project(dir.path(), 10_000);
        // Tables: SQLite expands a view's whole stack of views each time it
        // reads one, which a 10k-deep synthetic graph makes impractical to build.
        std::fs::write(
            dir.path().join("orbital.toml"),
            "name = \"synthetic\"\n[targets.dev]\nurl = \"sqlite://target/synthetic.db\"\n\
             [models]\nmaterialized = \"table\"\n",
        )
        .expect("write orbital.toml");
        let time = warm_plan(dir.path());
        println!(
            "warm no-change plan 10000 models: {:.0} ms",
            time.as_secs_f64() * 1000.0
        );
    }
    if wants("incremental") {
        let (incremental, table) = incremental_vs_table();
        println!(
            "10k new rows on 1M: incremental merge run {:.0} ms, table rebuild run {:.0} ms",
            incremental.as_secs_f64() * 1000.0,
            table.as_secs_f64() * 1000.0
        );
    }
    if wants("macros") {
        let (plain, macros) = macro_compile();
        let (plain_ms, macros_ms) = (plain.as_secs_f64() * 1000.0, macros.as_secs_f64() * 1000.0);
        println!(
            "orbital ls (compile, no caches), 10000 models: {plain_ms:.0} ms; with 2 macro calls each: {macros_ms:.0} ms \
             ({:.2}x, {:.1} us per call)",
            macros_ms / plain_ms,
            (macros_ms - plain_ms) * 1000.0 / 20_000.0
        );
    }
    if wants("run") {
        let dir = tempfile::tempdir().expect("tempdir");
        write_project(dir.path(), 1_000);
        let time = run_unchanged(dir.path());
        println!(
            "orbital run, 1000 unchanged models (whole process): {:.0} ms",
            time.as_secs_f64() * 1000.0
        );
    }
}
