//! Times the phases of a cold compile of a synthetic project.
//! `cargo run --release -p orbital-core --example phases -- 10000 [DIR]`
//! With DIR, the project is written there once and reused by later runs, so
//! a profiler sees only the compile.
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = std::env::args()
        .nth(2)
        .map_or_else(|| temp.path().to_path_buf(), std::path::PathBuf::from);
    if !dir.join("orbital.toml").exists() {
        for (path, text) in orbital_core::synthetic::project(n, 42) {
            let full = dir.join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(full, text).expect("write");
        }
    }
    for _ in 0..3 {
        let t = Instant::now();
        let project = orbital_core::Project::load(&dir).expect("load");
        let load = t.elapsed();
        let target = project.config.target(None).expect("target").1.clone();
        let t = Instant::now();
        let compiled =
            orbital_core::compile(&project, &target, Default::default()).expect("compile");
        println!(
            "load {load:?} compile {:?} nodes {}",
            t.elapsed(),
            compiled.dag.nodes.len()
        );
        // What a daemon does after one model file changed: compile that
        // model again and take the others from the last compile.
        let t = Instant::now();
        let options = orbital_core::CompileOptions {
            previous: Some(orbital_core::Previous {
                dag: &compiled.dag,
                changed: &[0],
            }),
            ..Default::default()
        };
        let again = orbital_core::compile(&project, &target, options).expect("compile again");
        let recompile = t.elapsed();
        fingerprint_phases(&project, &again.dag);
        let t = Instant::now();
        let nodes: Vec<orbital_core::Node> =
            again.dag.nodes.iter().map(|n| (**n).clone()).collect();
        let copy = t.elapsed();
        let t = Instant::now();
        let dag = orbital_core::Dag::new(nodes, |_, _| None).expect("graph");
        println!(
            "  one model again {recompile:?} (of which copying the nodes {copy:?}, the graph {:?}), nodes {}",
            t.elapsed(),
            dag.nodes.len()
        );
    }
}

/// Fingerprinting the whole project, and again after an edit of the model
/// most of the project reads (every fingerprint downstream changes).
fn fingerprint_phases(project: &orbital_core::Project, dag: &orbital_core::Dag) {
    use orbital_core::Hash;
    use orbital_core::fingerprint::{PluginHashes, combine_one, fingerprint, fingerprint_since};
    let plugins = PluginHashes {
        adapter: Hash::of(b"adapter"),
        strategies: ["view", "table", "ephemeral", "incremental", "snapshot"]
            .iter()
            .map(|s| (s.to_string(), Hash::of(s.as_bytes())))
            .collect(),
    };
    let t = Instant::now();
    let prints = fingerprint(project, dag, &plugins).expect("fingerprint");
    let whole = t.elapsed();
    let mut readers = vec![0usize; dag.nodes.len()];
    for &id in dag.order.iter().rev() {
        for &dep in &dag.nodes[id].depends_on {
            readers[dep] += 1 + readers[id];
        }
    }
    let root = (0..dag.nodes.len())
        .max_by_key(|&id| readers[id])
        .expect("a node");
    // The fingerprints as they were before the root's edit.
    let mut earlier = prints.clone();
    earlier.local[root] = Hash::of(b"before the edit");
    for &id in &dag.order {
        earlier.full[id] = combine_one(dag, id, earlier.local[id], |dep| earlier.full[dep]);
    }
    let mut since = None;
    let t = Instant::now();
    for _ in 0..100 {
        since = Some(fingerprint_since(project, dag, &plugins, &earlier, &[root]).expect("since"));
    }
    let best = t.elapsed() / 100;
    let since = since.expect("hashed");
    let changed = (since.full.iter().zip(&earlier.full))
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(since, prints);
    println!(
        "  fingerprint whole {whole:?}; after a root edit {best:?}, mean of 100 ({changed} changed)"
    );
}
