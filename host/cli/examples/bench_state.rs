//! Scale benchmarks for content-addressed state (numbers go to
//! docs/benchmarks.md):
//!
//! ```sh
//! cargo build --release && cargo run --release -p orbital --example bench_state
//! ```
//!
//! - cold compile (load + parse + resolve + fingerprint, no parse cache) of
//!   10k and 100k synthetic models, and the peak memory of the 100k one;
//! - warm no-change plan of 10k models (parse cache and recorded state in a
//!   real store, everything `orbital plan` does but connecting);
//! - the whole `orbital run` process on 1k unchanged models on SQLite.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use orbital_cas::{EnvEntry, RelationRecord, Store};
use orbital_core::{Hash, PluginHashes, Project};

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

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn cold_compile(dir: &Path) {
    let project = Project::load(dir).expect("load");
    let target = project.config.target(None).expect("target").1.clone();
    let compiled = orbital_core::compile_with_cache(&project, &target, &orbital_core::NoCache)
        .expect("compile");
    orbital_core::fingerprint::fingerprint(&project, &compiled.dag, &plugins())
        .expect("fingerprint");
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

fn warm_plan(dir: &Path) -> Duration {
    let store = Store::open(&dir.join("target/orbital/state.redb")).expect("store");
    // Fill the parse cache and record an environment equal to the project.
    let project = Project::load(dir).expect("load");
    let target = project.config.target(None).expect("target").1.clone();
    let compiled = orbital_core::compile_with_cache(&project, &target, &orbital_core::NoCache)
        .expect("compile");
    let prints =
        orbital_core::fingerprint::fingerprint(&project, &compiled.dag, &plugins()).expect("fp");
    store
        .write(|w| {
            for (key, parsed) in &compiled.fresh_parses {
                w.put_parsed(key, parsed)?;
            }
            for (id, node) in compiled.dag.nodes.iter().enumerate() {
                let entry = EnvEntry {
                    fingerprint: prints.full[id],
                    local: prints.local[id],
                    sql: None,
                    relation: RelationRecord {
                        schema: None,
                        identifier: node.name.clone(),
                    },
                };
                w.set_env("bench", "prod", &node.name, &entry)?;
            }
            Ok(())
        })
        .expect("record");
    best_of(5, || {
        let project = Project::load(dir).expect("load");
        let target = project.config.target(None).expect("target").1.clone();
        let cache = store.parse_cache().expect("cache");
        let compiled =
            orbital_core::compile_with_cache(&project, &target, &cache).expect("compile");
        assert!(compiled.fresh_parses.is_empty(), "the parse cache missed");
        let prints = orbital_core::fingerprint::fingerprint(&project, &compiled.dag, &plugins())
            .expect("fp");
        let recorded: BTreeMap<_, _> = store
            .environment("bench", "prod")
            .expect("env")
            .into_iter()
            .map(|(name, e)| {
                (
                    name,
                    orbital_core::plan::Recorded {
                        fingerprint: e.fingerprint,
                        local: e.local,
                    },
                )
            })
            .collect();
        let plan = orbital_core::plan::plan(
            &compiled.dag,
            &prints,
            &compiled.dag.order,
            "prod",
            &recorded,
            |_| true,
            false,
        )
        .expect("plan");
        assert!(
            plan.steps
                .iter()
                .all(|s| s.action == orbital_core::plan::Action::Reuse)
        );
    })
}

fn orbital_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("orbital")
}

fn run_unchanged(dir: &Path) -> Duration {
    let orbital = orbital_binary();
    let status = Command::new(&orbital)
        .args(["build", "--json", "--project"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("orbital build");
    assert!(status.success(), "the first build failed");
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

fn main() {
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
        }
        println!(
            "peak memory (100k cold compile, VmHWM): {:.0} MiB",
            peak_mib()
        );
    }
    if wants("plan") {
        let dir = tempfile::tempdir().expect("tempdir");
        write_project(dir.path(), 10_000);
        let time = warm_plan(dir.path());
        println!(
            "warm no-change plan 10000 models: {:.0} ms",
            time.as_secs_f64() * 1000.0
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
