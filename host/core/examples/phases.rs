//! Times the phases of a cold compile of a synthetic project.
//! `cargo run --release -p orbital-core --example phases -- 10000`
use std::time::Instant;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in orbital_core::synthetic::project(n, 42) {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
    for _ in 0..3 {
        let t = Instant::now();
        let project = orbital_core::Project::load(dir.path()).expect("load");
        let load = t.elapsed();
        let target = project.config.target(None).expect("target").1.clone();
        let t = Instant::now();
        let compiled = orbital_core::compile(&project, &target).expect("compile");
        println!(
            "load {load:?} compile {:?} nodes {}",
            t.elapsed(),
            compiled.dag.nodes.len()
        );
    }
}
