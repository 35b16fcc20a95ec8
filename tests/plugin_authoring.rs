//! End to end: a third party's path from nothing to a model built by their
//! own materialization: `orbital plugin new`, `build`, `install`, `list`,
//! then a model that uses it. Builds a real crate with cargo for
//! wasm32-wasip2, so it takes a while on a cold target folder.

mod support;

use std::process::Command;

use support::{TestProject, scalar, workspace};

const CARGO_LOCK: &str = "Cargo.lock";

fn orbital(args: &[&str], cwd: &std::path::Path) -> support::Run {
    orbital_at(
        std::path::Path::new(env!("CARGO_BIN_EXE_orbital")),
        args,
        cwd,
    )
}

/// [`orbital`] with the binary at `binary`.
fn orbital_at(binary: &std::path::Path, args: &[&str], cwd: &std::path::Path) -> support::Run {
    let output = Command::new(binary)
        .args(args)
        .current_dir(cwd)
        // The workspace's lock pins every crate the SDK needs, so no index
        // is fetched; a target folder under the workspace's is reused by
        // later runs of this test.
        .env("CARGO_NET_OFFLINE", "true")
        .env(
            "CARGO_TARGET_DIR",
            workspace().join("target/plugin-authoring-test"),
        )
        // Where the SDK this binary carries is unpacked: not the checkout.
        .env("ORBITAL_CACHE_DIR", cache())
        .env("NO_COLOR", "1")
        .output()
        .expect("run orbital");
    support::Run { output }
}

fn cache() -> std::path::PathBuf {
    workspace().join("target/plugin-authoring-cache")
}

/// `orbital plugin new <kind> <name>` in `work` against the SDK the binary
/// carries, then `orbital plugin build`; the build's JSON.
fn scaffold_and_build(work: &std::path::Path, kind: &str, name: &str) -> serde_json::Value {
    orbital(&["plugin", "new", kind, name], work).expect_code(0);
    let manifest = std::fs::read_to_string(work.join(name).join("Cargo.toml")).unwrap();
    let sdk = cache().join("sdk").canonicalize().unwrap();
    assert!(
        manifest.contains(&format!("orbital-sdk = {{ path = \"{}/", sdk.display())),
        "the scaffold depends on the unpacked SDK: {manifest}"
    );
    build_plugin(work, name)
}

/// `orbital plugin build` of the crate `work/name`; the build's JSON.
fn build_plugin(work: &std::path::Path, name: &str) -> serde_json::Value {
    std::fs::copy(
        workspace().join(CARGO_LOCK),
        work.join(name).join(CARGO_LOCK),
    )
    .unwrap();
    orbital(&["--json", "plugin", "build", name], work)
        .expect_code(0)
        .json()
}

#[test]
fn scaffold_build_install_and_use_a_custom_materialization() {
    let work = tempfile::tempdir().unwrap();
    let built = scaffold_and_build(work.path(), "materialization", "audited-table");
    let built = &built["built"];
    assert_eq!(built["kind"], "materialization");
    assert_eq!(built["provides"], "audited_table");
    let wasm = built["source"].as_str().unwrap().to_string();
    assert!(wasm.ends_with("audited_table.wasm"), "{wasm}");

    let project = TestProject::jaffle_shop();
    let installed = project
        .orbital(&["--json", "plugin", "install", &wasm])
        .expect_code(0)
        .json();
    let hash = installed["installed"]["hash"].as_str().unwrap().to_string();
    assert_eq!(hash, built["hash"].as_str().unwrap());
    // Installing lists it in orbital.toml; again, changes nothing.
    assert_eq!(installed["orbital_toml"]["listed"], true);
    assert_eq!(installed["orbital_toml"]["already"], false);
    let again = project
        .orbital(&["plugin", "install", &wasm])
        .expect_code(0);
    assert!(
        again.stdout().contains("orbital.toml lists it already"),
        "{}",
        again.stdout()
    );
    let config = std::fs::read_to_string(project.path().join("orbital.toml")).unwrap();
    assert_eq!(config.matches(&hash).count(), 1, "{config}");
    let bundled = orbital_bundle::FIRST_PARTY.len() + 1;
    project.write(
        "models/marts/order_counts.sql",
        "-- config: materialized = 'audited_table'\nselect customer_id, count(*) as n from stg_orders group by customer_id",
    );

    let listed = project
        .orbital(&["--json", "plugin", "list"])
        .expect_code(0)
        .json();
    let names: Vec<&str> = listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"audited-table"), "{names:?}");
    assert_eq!(
        names.len(),
        bundled + 1,
        "listed once, as loaded: {names:?}"
    );

    let run = project.orbital(&["build", "--json"]).expect_code(0);
    assert_eq!(run.statuses()["order_counts"], "success");
    let results = run.json()["results"].as_array().unwrap().clone();
    let message = results
        .iter()
        .find(|r| r["name"] == "order_counts")
        .and_then(|r| r["message"].as_str())
        .unwrap()
        .to_string();
    assert!(message.starts_with("built by audited-table"), "{message}");
    let db = project.database();
    assert_eq!(
        scalar(&db, "SELECT sum(n) FROM order_counts"),
        scalar(&db, "SELECT count(*) FROM stg_orders")
    );

    // The adapter scaffold builds too.
    let adapter = scaffold_and_build(work.path(), "adapter", "my-dialect");
    assert_eq!(adapter["built"]["kind"], "adapter");
    assert_eq!(adapter["built"]["provides"], "sqlite");

    // So does the macros scaffold, whose test macro then tests a column.
    let macros = scaffold_and_build(work.path(), "macros", "no-negatives");
    assert_eq!(macros["built"]["kind"], "macros");
    assert_eq!(macros["built"]["provides"], "no_negatives");
    let macros_wasm = macros["built"]["source"].as_str().unwrap().to_string();
    project.add_component(&macros_wasm);
    project.write(
        "models/marts/order_counts.sql",
        "-- config: materialized = 'audited_table', tests.n = ['no_negatives']\nselect customer_id, count(*) as n from stg_orders group by customer_id",
    );
    let tested = project
        .orbital(&["test", "--json", "--select", "order_counts"])
        .expect_code(0);
    assert_eq!(
        tested.test_statuses()["no_negatives_order_counts_n"],
        "pass"
    );

    // Uninstalled (a fresh state store): a clear error naming the hash.
    std::fs::remove_dir_all(project.path().join("target")).unwrap();
    let missing = project.orbital(&["build"]).expect_code(2);
    assert!(
        missing.stderr().contains(&hash) && missing.stderr().contains("orbital plugin install"),
        "{}",
        missing.stderr()
    );
}

#[test]
fn bad_plugin_commands_are_clear_errors_that_write_nothing() {
    let work = tempfile::tempdir().unwrap();
    let bad_name = orbital(
        &["plugin", "new", "materialization", "Bad Name"],
        work.path(),
    )
    .expect_code(2);
    assert!(
        bad_name.stderr().contains("is not a plugin name"),
        "{}",
        bad_name.stderr()
    );
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);

    std::fs::create_dir(work.path().join("taken")).unwrap();
    let taken = orbital(&["plugin", "new", "adapter", "taken"], work.path()).expect_code(2);
    assert!(
        taken.stderr().contains("already exists"),
        "{}",
        taken.stderr()
    );

    let no_crate = orbital(&["plugin", "build", "nowhere"], work.path()).expect_code(2);
    assert!(
        no_crate.stderr().contains("holds no Cargo.toml"),
        "{}",
        no_crate.stderr()
    );

    // A component that loads, into a project whose orbital.toml cannot
    // take it: refused before anything is stored.
    let project = TestProject::jaffle_shop();
    let config = std::fs::read_to_string(project.path().join("orbital.toml")).unwrap();
    let component = orbital_bundle::test_component("orbital-test-range-tests");
    let component = component.to_str().unwrap();
    for (broken, why) in [
        (
            format!("name = [\n{config}"),
            "orbital.toml: TOML parse error",
        ),
        (
            config.replacen("components = [", "components = \"x\"\nwere = [", 1),
            "`plugins.components` is not a list",
        ),
    ] {
        project.write("orbital.toml", &broken);
        let refused = project
            .orbital(&["plugin", "install", component])
            .expect_code(2);
        assert!(refused.stderr().contains(why), "{}", refused.stderr());
    }
    project.write("orbital.toml", &config);
    assert_eq!(
        project
            .orbital(&["--json", "plugin", "list"])
            .expect_code(0)
            .json()["plugins"]
            .as_array()
            .unwrap()
            .len(),
        orbital_bundle::FIRST_PARTY.len() + 1,
        "nothing was installed"
    );

    project.write("not_a_plugin.wasm", "definitely not wasm");
    let file = project.path().join("not_a_plugin.wasm");
    let bad = project
        .orbital(&["plugin", "install", file.to_str().unwrap()])
        .expect_code(2);
    assert!(
        bad.stderr().contains("not a valid component"),
        "{}",
        bad.stderr()
    );
    let listed = project
        .orbital(&["--json", "plugin", "list"])
        .expect_code(0)
        .json();
    // The bundled ones and the example's own: nothing was installed.
    assert_eq!(
        listed["plugins"].as_array().unwrap().len(),
        orbital_bundle::FIRST_PARTY.len() + 1
    );
}

/// The README's hand-written plugin, as written there, built from an empty
/// folder outside the checkout with a copy of the binary (so nothing can
/// come from the checkout's SDK); installed twice across an edit, the second
/// build replacing the first in orbital.toml; then used by a model.
#[test]
fn the_readme_example_builds_as_written_and_a_rebuild_replaces_it() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = readme
        .split("## Writing a plugin")
        .nth(1)
        .expect("the README has a Writing a plugin section");
    let code = section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a rust block in it");

    let work = tempfile::tempdir().unwrap();
    let binary = work.path().join("bin/orbital");
    std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_orbital"), &binary).unwrap();
    let run = |args: &[&str], cwd: &std::path::Path| orbital_at(&binary, args, cwd);
    run(
        &["plugin", "new", "materialization", "indexed-table"],
        work.path(),
    )
    .expect_code(0);
    let crate_dir = work.path().join("indexed-table");
    std::fs::write(crate_dir.join("src/lib.rs"), code).unwrap();
    std::fs::copy(workspace().join(CARGO_LOCK), crate_dir.join(CARGO_LOCK)).unwrap();
    let built = run(&["--json", "plugin", "build", "indexed-table"], work.path())
        .expect_code(0)
        .json();
    assert_eq!(built["built"]["provides"], "indexed_table");
    let wasm = crate_dir.join("target/wasm32-wasip2/release/indexed_table.wasm");
    assert!(
        wasm.is_file(),
        "the component is in the crate's own target folder"
    );

    let project = TestProject::jaffle_shop();
    let install = |json: bool| {
        let (project, wasm) = (project.path().to_str().unwrap(), wasm.to_str().unwrap());
        let args = ["--json", "--project", project, "plugin", "install", wasm];
        run(&args[usize::from(!json)..], work.path()).expect_code(0)
    };
    let first = install(true).json();
    let first_hash = first["installed"]["hash"].as_str().unwrap().to_string();

    // An edit, a rebuild: a new component of the same plugin.
    std::fs::write(
        crate_dir.join("src/lib.rs"),
        code.replace("table of {rows} rows", "a table of {rows} rows"),
    )
    .unwrap();
    run(&["plugin", "build", "indexed-table"], work.path()).expect_code(0);
    let second = install(false);
    assert!(
        second
            .stdout()
            .contains(&format!("in place of {first_hash}")),
        "{}",
        second.stdout()
    );
    let config = std::fs::read_to_string(project.path().join("orbital.toml")).unwrap();
    assert!(!config.contains(&first_hash), "{config}");
    assert_eq!(config.matches("blake3:").count(), 1, "{config}");

    project.write(
        "models/marts/customer_orders.sql",
        "-- config: materialized = 'indexed_table', index = ['customer_id']\n\
         select customer_id, count(*) as orders from stg_orders group by customer_id",
    );
    let built = project.orbital(&["build", "--json"]).expect_code(0);
    assert_eq!(built.statuses()["customer_orders"], "success");
    let message = built.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "customer_orders")
        .and_then(|r| r["message"].as_str())
        .unwrap()
        .to_string();
    assert!(
        message.starts_with("a table of ") && message.ends_with(" rows, indexed on customer_id"),
        "{message}"
    );
    let indexes = support::query(
        &project.database(),
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'orbital__customer_orders__%__orbital_key'",
    );
    assert_eq!(indexes.len(), 1, "{indexes:?}");
}
