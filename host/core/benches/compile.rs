//! Compile (load + parse + resolve + DAG) of the example and of generated projects.
//!
//! `cargo bench -p orbital-core --bench compile`

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use orbital_core::{Project, compile, synthetic};

fn load_and_compile(dir: &Path) -> usize {
    let project = Project::load(dir).expect("load");
    let target = project.config.target(None).expect("target").1.clone();
    compile(&project, &target, Default::default())
        .expect("compile")
        .dag
        .nodes
        .len()
}

fn write(dir: &Path, models: usize) {
    for (path, text) in synthetic::project(models, 42) {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
}

fn benches(c: &mut Criterion) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jaffle_shop");
    c.bench_function("compile/jaffle_shop", |b| {
        b.iter(|| load_and_compile(&example))
    });

    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for models in [1_000, 10_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), models);
        group.bench_function(format!("synthetic_{models}"), |b| {
            b.iter(|| load_and_compile(dir.path()))
        });
    }
    group.finish();
}

criterion_group!(compile_benches, benches);
criterion_main!(compile_benches);
