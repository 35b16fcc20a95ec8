//! End to end: a plugin that traps, one that never returns and one that
//! allocates without bound each fail their own model only.

mod support;

use support::{TestProject, object_kind};

fn component(name: &str) -> String {
    orbital_bundle::test_component(name).display().to_string()
}

/// ok -> child_of_ok; each bad model has a child that must be skipped.
fn project() -> TestProject {
    let project = TestProject::empty();
    project.write(
        "orbital.toml",
        &format!(
            "name = \"limits\"\n[targets.dev]\nurl = \"sqlite://target/limits.db\"\n\
             [plugins]\ncomponents = [{:?}, {:?}, {:?}]\ntimeout-ms = 1000\nmemory-limit-mb = 32\n",
            component("orbital-test-trap"),
            component("orbital-test-spin"),
            component("orbital-test-hog"),
        ),
    );
    project.write("models/ok.sql", "select 1 as id");
    project.write("models/child_of_ok.sql", "select id from ok");
    for kind in ["trap", "spin", "hog"] {
        project.write(
            &format!("models/bad_{kind}.sql"),
            &format!("-- config: materialized = '{kind}'\nselect id from ok"),
        );
        project.write(
            &format!("models/after_{kind}.sql"),
            &format!("select id from bad_{kind}"),
        );
    }
    project
}

#[test]
fn misbehaving_plugins_fail_their_model_only() {
    let project = project();
    let run = project
        .orbital(&["run", "--json", "--threads", "3"])
        .expect_code(1);
    let statuses = run.statuses();
    assert_eq!(statuses["ok"], "success");
    assert_eq!(statuses["child_of_ok"], "success");
    for kind in ["trap", "spin", "hog"] {
        assert_eq!(statuses[&format!("bad_{kind}")], "error", "{kind}");
        assert_eq!(statuses[&format!("after_{kind}")], "skipped", "{kind}");
        assert_eq!(
            run.error_of(&format!("after_{kind}")),
            format!("skipped because upstream `bad_{kind}` failed")
        );
    }
    let trap = run.error_of("bad_trap");
    assert!(
        trap.starts_with("plugin `test-trap` crashed:")
            && trap.contains("test-trap refuses to build bad_trap"),
        "{trap}"
    );
    assert_eq!(
        run.error_of("bad_spin"),
        "plugin `test-spin` ran past its time limit of 1000 ms and was stopped"
    );
    assert_eq!(
        run.error_of("bad_hog"),
        "plugin `test-hog` exceeded its memory limit of 32 MiB and was stopped"
    );

    let db = project.path().join("target/limits.db");
    assert_eq!(object_kind(&db, "child_of_ok"), "view");
    assert_eq!(object_kind(&db, "bad_trap"), "none");
}

#[test]
fn human_output_names_the_model_and_the_plugin() {
    let project = project();
    let run = project
        .orbital(&["run", "--select", "bad_trap+", "ok"])
        .expect_code(1);
    let out = run.stdout();
    assert!(out.contains("ERROR model bad_trap"), "{out}");
    assert!(out.contains("SKIP  model after_trap"), "{out}");
    assert!(
        out.contains("model `bad_trap` (models/bad_trap.sql): plugin `test-trap` crashed:"),
        "{out}"
    );
    assert!(
        out.contains("Done. PASS=1 REUSE=0 WARN=0 ERROR=1 SKIP=1 TOTAL=3"),
        "{out}"
    );
}

#[test]
fn a_strategy_no_plugin_provides_is_refused_before_anything_runs() {
    let project = TestProject::empty();
    project.write(
        "orbital.toml",
        "name = \"x\"\n[targets.dev]\nurl = \"sqlite://target/x.db\"\n",
    );
    project.write("models/a.sql", "select 1 as id");
    project.write(
        "models/b.sql",
        "-- config: materialized = 'incremental_magic'\nselect 1 as id",
    );
    let run = project.orbital(&["run"]).expect_code(2);
    assert!(
        run.stderr().contains("model `b` asks for materialized = 'incremental_magic', which no installed plugin provides (installed: incremental, sharded_table, snapshot, table, view)"),
        "{}",
        run.stderr()
    );
    // Nothing was built: the warehouse file was not even created.
    let database = project.path().join("target/x.db");
    assert!(!database.exists() || object_kind(&database, "a") == "none");
}

#[test]
fn a_component_that_is_not_a_plugin_is_a_load_error() {
    let project = TestProject::empty();
    project.write("not-a-plugin.wasm", "\0asm definitely not a component");
    project.write("orbital.toml", "name = \"x\"\n[targets.dev]\nurl = \"sqlite://x.db\"\n[plugins]\ncomponents = [\"not-a-plugin.wasm\"]\n");
    project.write("models/a.sql", "select 1 as id");
    let run = project.orbital(&["run"]).expect_code(3);
    assert!(
        run.stderr().contains("cannot load plugin") && run.stderr().contains("not-a-plugin.wasm"),
        "{}",
        run.stderr()
    );

    project.write("orbital.toml", "name = \"x\"\n[targets.dev]\nurl = \"sqlite://x.db\"\n[plugins]\ncomponents = [\"missing.wasm\"]\n");
    let run = project.orbital(&["run"]).expect_code(2);
    assert!(
        run.stderr().contains("cannot read plugin component")
            && run.stderr().contains("missing.wasm"),
        "{}",
        run.stderr()
    );
}
