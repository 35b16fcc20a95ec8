//! End to end: content-addressed state. Reuse, rebuilds of exactly what
//! changed, plan, environments, promote, state selectors, gc, runs, and
//! what survives kill -9, a second process, and a damaged store.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{TestProject, query as query_rows, scalar as query_one};

fn statuses(project: &TestProject, args: &[&str]) -> BTreeMap<String, String> {
    let mut full = args.to_vec();
    full.push("--json");
    project.orbital(&full).expect_code(0).statuses()
}

fn all(map: &BTreeMap<String, String>, status: &str) -> bool {
    map.values().all(|s| s == status)
}

#[test]
fn a_second_run_reuses_everything_and_an_edit_rebuilds_only_what_it_reaches() {
    let project = TestProject::jaffle_shop_without_data_tests();
    let first = statuses(&project, &["build"]);
    assert_eq!(first.len(), 8);
    assert!(all(&first, "success"), "{first:?}");

    let second = statuses(&project, &["build"]);
    assert!(all(&second, "reused"), "{second:?}");

    // Whitespace and comments are not changes.
    let path = "models/staging/stg_payments.sql";
    let original = std::fs::read_to_string(project.path().join(path)).unwrap();
    project.write(
        path,
        &format!("-- a note\n\n{}\n\n/* more */", original.replace(' ', "  ")),
    );
    assert!(all(&statuses(&project, &["build"]), "reused"));

    // A real edit: the model and its descendants, nothing else.
    project.write(
        path,
        &original.replace("cents_to_dollars(amount)", "cents_to_dollars(amount) * 2"),
    );
    let edited = statuses(&project, &["build"]);
    let rebuilt: Vec<&str> = edited
        .iter()
        .filter(|(_, s)| *s == "success")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(rebuilt, vec!["customers", "orders", "stg_payments"]);
    assert!(edited.iter().filter(|(_, s)| *s == "reused").count() == 5);
    let db = project.database();
    assert_eq!(query_one(&db, "SELECT SUM(amount) FROM orders"), "416.00");
}

#[test]
fn an_unchanged_project_comes_from_its_snapshot_and_every_edit_is_still_seen() {
    const RESTORED: &str = "restored from the state snapshot";
    let project = TestProject::jaffle_shop_without_data_tests();
    project.age();
    let first = project.orbital(&["build", "--json", "-v"]).expect_code(0);
    assert!(!first.stderr().contains(RESTORED));
    assert!(all(&first.statuses(), "success"));

    let second = project.orbital(&["build", "--json", "-v"]).expect_code(0);
    assert!(second.stderr().contains(RESTORED), "{}", second.stderr());
    assert!(all(&second.statuses(), "reused"));

    // Same size and same modification time: only the inode's change time
    // tells, and it must.
    let path = "models/staging/stg_payments.sql";
    let original = std::fs::read_to_string(project.path().join(path)).unwrap();
    let edited = original.replace("cents_to_dollars(amount)", "cents_to_dollars(AMOUNT)");
    assert_eq!(edited.len(), original.len());
    project.write_keeping_mtime(path, &edited);
    let third = project.orbital(&["build", "--json", "-v"]).expect_code(0);
    assert!(!third.stderr().contains(RESTORED), "{}", third.stderr());
    let rebuilt: Vec<String> = third
        .statuses()
        .into_iter()
        .filter(|(_, s)| s == "success")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(rebuilt, ["customers", "orders", "stg_payments"]);

    // A new file is a change too.
    project.write("models/extra.sql", "select 1 as x");
    let fourth = project.orbital(&["build", "--json", "-v"]).expect_code(0);
    assert!(!fourth.stderr().contains(RESTORED));
    assert_eq!(fourth.statuses()["extra"], "success");
}

#[test]
fn a_warehouse_file_made_again_is_a_new_warehouse_though_its_id_was_remembered() {
    let project = TestProject::jaffle_shop_without_data_tests();
    project.age();
    assert!(all(&statuses(&project, &["build"]), "success"));
    // The second command reads the id from the file and remembers it; the
    // third trusts the memory (and the saved fingerprints) and opens nothing.
    assert!(all(&statuses(&project, &["build"]), "reused"));
    let plan = project.orbital(&["plan", "--json"]).expect_code(0).json();
    let nodes = plan["nodes"].as_array().unwrap();
    assert!(nodes.iter().all(|n| n["action"] == "reuse"), "{plan}");

    for suffix in ["", "-wal", "-shm"] {
        let mut path = project.database().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
    // An empty file is an empty SQLite database: same path, another file.
    std::fs::write(project.database(), b"").unwrap();
    let plan = project.orbital(&["plan", "--json"]).expect_code(0).json();
    let nodes = plan["nodes"].as_array().unwrap();
    assert!(nodes.iter().all(|n| n["action"] == "build"), "{plan}");
    let rebuilt = statuses(&project, &["build"]);
    assert!(all(&rebuilt, "success"), "{rebuilt:?}");
    assert_eq!(
        query_one(&project.database(), "SELECT COUNT(*) FROM orders"),
        "12"
    );
    assert!(all(&statuses(&project, &["build"]), "reused"));
}

#[test]
fn upgrading_a_plugin_rebuilds_the_models_it_builds_and_their_descendants() {
    let project = TestProject::jaffle_shop_without_data_tests();
    statuses(&project, &["build"]);
    // The same `table` plugin with one more custom section: new bytes, new
    // hash, same behaviour, as an upgrade would be.
    let (_, table) = orbital_bundle::FIRST_PARTY
        .iter()
        .find(|(name, _)| *name == "materialization-table")
        .expect("bundled table plugin");
    let mut upgraded = table.to_vec();
    let name = b"orbital-test-upgrade";
    upgraded.extend_from_slice(&[0, (name.len() + 2) as u8, name.len() as u8]);
    upgraded.extend_from_slice(name);
    upgraded.push(1);
    std::fs::create_dir_all(project.path().join("plugins")).unwrap();
    std::fs::write(project.path().join("plugins/table.wasm"), upgraded).unwrap();
    project.add_component("plugins/table.wasm");
    let after = statuses(&project, &["build"]);
    assert_eq!(after["customers"], "success");
    assert_eq!(after["orders"], "success");
    for view in [
        "stg_customers",
        "stg_orders",
        "stg_payments",
        "raw_customers",
        "raw_orders",
        "raw_payments",
    ] {
        assert_eq!(after[view], "reused", "{view}: {after:?}");
    }
}

#[test]
fn plan_shows_changes_with_a_diff_and_what_they_affect() {
    let project = TestProject::jaffle_shop_without_data_tests();
    statuses(&project, &["build"]);
    let path = "models/staging/stg_orders.sql";
    let original = std::fs::read_to_string(project.path().join(path)).unwrap();
    project.write(
        path,
        &original.replace("    status", "    upper(status) as status"),
    );
    project.write("models/extra.sql", "select customer_id from customers");
    let plan = project.orbital(&["plan", "--json"]).expect_code(0).json();
    let nodes: BTreeMap<String, serde_json::Value> = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap().to_string(), n.clone()))
        .collect();
    assert_eq!(nodes["stg_orders"]["change"], "modified");
    assert_eq!(nodes["stg_orders"]["action"], "build");
    let diff = nodes["stg_orders"]["diff"].as_str().unwrap();
    assert!(
        diff.contains("-  status") && diff.contains("+  upper(status) AS status"),
        "{diff}"
    );
    let affects: Vec<&str> = nodes["stg_orders"]["affects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(affects.len(), 3, "{affects:?}");
    assert!(affects.contains(&"extra") && affects.contains(&"customers"));
    assert_eq!(nodes["orders"]["change"], "indirect");
    assert_eq!(nodes["extra"]["change"], "added");
    assert_eq!(nodes["stg_customers"]["action"], "reuse");
    // Planning changes nothing.
    let again = project.orbital(&["plan", "--json"]).expect_code(0).json();
    assert_eq!(plan, again);

    // Removing a model: planned as removed, dropped by a whole-project run.
    project.remove("models/extra.sql");
    statuses(&project, &["build"]);
    project.write("models/extra.sql", "select customer_id from customers");
    statuses(&project, &["build"]);
    project.remove("models/extra.sql");
    let plan = project.orbital(&["plan", "--json"]).expect_code(0).json();
    assert_eq!(plan["removed"], serde_json::json!(["extra"]));
    statuses(&project, &["build"]);
    assert_eq!(super_kind(&project, "extra"), "none");
}

fn super_kind(project: &TestProject, name: &str) -> String {
    support::object_kind(&project.database(), name)
}

#[test]
fn environments_reuse_builds_and_promote_runs_no_sql() {
    let project = TestProject::jaffle_shop_without_data_tests();
    statuses(&project, &["build"]);
    // dev shares every build with prod: nothing runs.
    let dev = statuses(&project, &["build", "--env", "dev"]);
    assert!(all(&dev, "reused"), "{dev:?}");
    let db = project.database();
    assert_eq!(
        query_one(
            &db,
            "SELECT SUM(customer_lifetime_value) FROM dev__customers"
        ),
        "208.00"
    );

    // A change in dev only.
    let path = "models/staging/stg_orders.sql";
    let original = std::fs::read_to_string(project.path().join(path)).unwrap();
    project.write(
        path,
        &original.replace("    status", "    upper(status) as status"),
    );
    let dev = statuses(&project, &["build", "--env", "dev"]);
    assert_eq!(dev["stg_orders"], "success");
    assert_eq!(
        query_rows(&db, "SELECT DISTINCT status FROM dev__orders ORDER BY 1")[0][0],
        "COMPLETED"
    );
    assert_eq!(
        query_rows(&db, "SELECT DISTINCT status FROM orders ORDER BY 1")[0][0],
        "completed"
    );

    // state:modified compares with an environment.
    let modified = statuses(&project, &["build", "--select", "state:modified+"]);
    let names: Vec<&String> = modified.keys().collect();
    assert_eq!(names, vec!["customers", "orders", "stg_orders"]);
    // ...which prod now matches: nothing left modified.
    let none = statuses(&project, &["run", "--select", "state:modified"]);
    assert!(none.is_empty(), "{none:?}");

    // Back to the original in prod, then promote dev: views repointed, no SQL.
    project.write(path, &original);
    statuses(&project, &["build"]);
    assert_eq!(
        query_rows(&db, "SELECT DISTINCT status FROM orders ORDER BY 1")[0][0],
        "completed"
    );
    let promoted = project
        .orbital(&["promote", "dev", "--to", "prod", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(promoted["promoted"], 3);
    assert_eq!(
        query_rows(&db, "SELECT DISTINCT status FROM orders ORDER BY 1")[0][0],
        "COMPLETED"
    );
    let runs = project.orbital(&["runs", "--json"]).expect_code(0).json();
    assert_eq!(runs["runs"][0]["command"], "promote dev");

    // Unknown or empty environments are clear errors.
    let bad = project
        .orbital(&["run", "--env", "Bad-Name"])
        .expect_code(2);
    assert!(
        bad.stderr().contains("invalid environment name `Bad-Name`"),
        "{}",
        bad.stderr()
    );
    let empty = project.orbital(&["promote", "qa"]).expect_code(2);
    assert!(
        empty
            .stderr()
            .contains("environment `qa` of target `dev` has nothing to promote"),
        "{}",
        empty.stderr()
    );
}

#[test]
fn gc_drops_only_what_no_environment_reaches() {
    let project = TestProject::jaffle_shop_without_data_tests();
    statuses(&project, &["build"]);
    let path = "models/staging/stg_orders.sql";
    let original = std::fs::read_to_string(project.path().join(path)).unwrap();
    project.write(
        path,
        &original.replace("    status", "    upper(status) as status"),
    );
    statuses(&project, &["build"]);
    let physical = |project: &TestProject| {
        query_rows(
            &project.database(),
            "SELECT name FROM sqlite_master WHERE name LIKE 'orbital__%' ORDER BY name",
        )
        .len()
    };
    // Old stg_orders, orders and customers are garbage now.
    assert_eq!(physical(&project), 11);
    let dry = project
        .orbital(&["gc", "--dry-run", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(dry["relations"].as_array().unwrap().len(), 3);
    assert_eq!(physical(&project), 11);
    project.orbital(&["gc"]).expect_code(0);
    assert_eq!(physical(&project), 8);
    // Everything still reads.
    assert_eq!(
        query_one(&project.database(), "SELECT COUNT(*) FROM customers"),
        "10"
    );
    assert!(all(&statuses(&project, &["build"]), "reused"));
}

#[test]
fn runs_lists_history_with_fingerprints() {
    let project = TestProject::jaffle_shop_without_data_tests();
    statuses(&project, &["build"]);
    statuses(&project, &["run"]);
    let runs = project.orbital(&["runs", "--json"]).expect_code(0).json();
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["command"], "run");
    assert_eq!(runs[1]["command"], "build");
    let node = &runs[1]["nodes"][0];
    assert_eq!(node["status"], "success");
    assert_eq!(node["fingerprint"].as_str().unwrap().len(), 64);
    let human = project.orbital(&["runs"]).expect_code(0).stdout();
    assert!(human.contains("#2") && human.contains("reused"), "{human}");
}

#[test]
fn a_damaged_store_is_a_clear_error() {
    let project = TestProject::jaffle_shop_without_data_tests();
    project.write("target/orbital/state.redb", &"not a store ".repeat(1000));
    let run = project.orbital(&["build"]).expect_code(3);
    assert!(
        run.stderr().contains("is not an Orbital state store"),
        "{}",
        run.stderr()
    );
    assert!(!project.database().exists());
}

/// Starts `orbital run --threads 1` on a [`TestProject::slow`] and returns once
/// `fast` is built and `slow` is building, with the rest of its output.
fn run_until_slow_builds(
    project: &TestProject,
    stderr: Stdio,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orbital"))
        .args(["run", "--threads", "1", "--project"])
        .arg(project.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("a progress line").unwrap();
        if line.contains("OK    model fast") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    (child, lines)
}

#[test]
fn kill_9_mid_run_leaves_old_relations_and_the_next_run_finishes() {
    let project = TestProject::slow(300);
    statuses(&project, &["run"]);
    let db = project.path().join("target/slow.db");
    assert_eq!(query_one(&db, "SELECT version FROM slow"), "1");

    // Version 2 with a slow build; kill the run while `slow` builds.
    project.write("models/fast.sql", "select 2 as version");
    let slow = std::fs::read_to_string(project.path().join("models/slow.sql")).unwrap();
    project.write("models/slow.sql", &slow.replace("x < 300", "x < 8000000"));
    let (mut child, _lines) = run_until_slow_builds(&project, Stdio::null());

    // A second process on the same environment is refused, not interleaved.
    let second = project.orbital(&["run"]).expect_code(4);
    assert!(
        second.stderr().contains(
            "environment `prod` of target `dev` is in use by another orbital process (pid"
        ),
        "{}",
        second.stderr()
    );

    assert!(
        child.try_wait().unwrap().is_none(),
        "the slow build finished too soon"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Users still see version 1 everywhere; the killed run recorded no
    // build, and the next command finds it `interrupted` (its process is
    // gone), with no node results.
    assert_eq!(query_one(&db, "SELECT version FROM fast"), "1");
    assert_eq!(query_one(&db, "SELECT version FROM slow"), "1");
    let runs = project.orbital(&["runs", "--json"]).expect_code(0).json();
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["status"], "interrupted", "{runs:?}");
    assert_eq!(runs[0]["nodes"].as_array().unwrap().len(), 0);
    assert_eq!(runs[1]["status"], "succeeded");
    let plan = project.orbital(&["plan", "--json"]).expect_code(0).json();
    assert!(
        plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["change"] == "modified" && n["action"] == "build"),
        "{plan}"
    );

    // The next run completes the work.
    let finished = statuses(&project, &["run"]);
    assert!(all(&finished, "success"), "{finished:?}");
    assert_eq!(query_one(&db, "SELECT version FROM slow"), "2");
    assert_eq!(query_one(&db, "SELECT n FROM slow"), "8000000");
}

/// The fixture in tests/fixtures/store-format-1, copied into a project.
fn format_1_project() -> TestProject {
    let fixture = support::workspace().join("tests/fixtures/store-format-1");
    let project = TestProject::empty();
    for file in [
        "orbital.toml",
        "seeds/people.csv",
        "models/names.sql",
        "models/counted.sql",
    ] {
        let text = std::fs::read_to_string(fixture.join(file)).unwrap();
        project.write(file, &text);
    }
    std::fs::create_dir_all(project.path().join("plugins")).unwrap();
    std::fs::copy(
        fixture.join("plugins/materialization_view.wasm"),
        project.path().join("plugins/materialization_view.wasm"),
    )
    .unwrap();
    std::fs::create_dir_all(project.path().join("target/orbital")).unwrap();
    std::fs::copy(
        fixture.join("state.redb"),
        project.path().join("target/orbital/state.redb"),
    )
    .unwrap();
    std::fs::copy(
        fixture.join("warehouse.sqlite"),
        project.path().join("target/warehouse.db"),
    )
    .unwrap();
    project
}

#[test]
fn a_format_1_store_is_migrated_on_open() {
    let project = format_1_project();
    let runs = project.orbital(&["runs", "--json"]).expect_code(0).json();
    let runs = runs["runs"].as_array().unwrap();
    let summary: Vec<(u64, &str, &str, usize)> = runs
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap(),
                r["command"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
                r["nodes"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (3, "run", "failed", 1),
            (2, "run", "succeeded", 2),
            (1, "build", "succeeded", 6),
        ]
    );
    assert_eq!(runs[0]["nodes"][0]["status"], "error");
    assert_eq!(runs[1]["nodes"][0]["status"], "reused");
    assert_eq!(runs[2]["nodes"][0]["status"], "success");
    // The builds and environments it recorded are still used: nothing is
    // built again, in either environment.
    let prod = statuses(&project, &["run"]);
    assert!(all(&prod, "reused"), "{prod:?}");
    let dev = statuses(&project, &["run", "--env", "dev"]);
    assert!(all(&dev, "reused"), "{dev:?}");
    let runs = project.orbital(&["runs", "--json"]).expect_code(0).json();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 5);
}

#[test]
fn ctrl_c_cancels_the_run_cleanly_and_says_so() {
    let project = TestProject::slow(300);
    statuses(&project, &["run"]);
    let db = project.path().join("target/slow.db");
    project.write("models/fast.sql", "select 2 as version");
    let slow = std::fs::read_to_string(project.path().join("models/slow.sql")).unwrap();
    project.write(
        "models/slow.sql",
        &slow.replace("x < 300", "x < 2000000000"),
    );
    let (child, lines) = run_until_slow_builds(&project, Stdio::piped());
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{rest:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Cancelling"), "{stderr}");
    assert!(
        stderr.contains("Cancelled: nothing was published"),
        "{stderr}"
    );
    let stdout = rest.join("\n");
    assert!(stdout.contains("CANCEL model slow"), "{stdout}");
    assert!(stdout.contains("CANCELLED=1"), "{stdout}");
    // Users still see version 1; the run is recorded as cancelled.
    assert_eq!(query_one(&db, "SELECT version FROM fast"), "1");
    assert_eq!(query_one(&db, "SELECT version FROM slow"), "1");
    let runs = project.orbital(&["runs", "--json"]).expect_code(0).json();
    assert_eq!(runs["runs"][0]["status"], "cancelled");
    let id = runs["runs"][0]["id"].as_u64().unwrap().to_string();
    let one = project
        .orbital(&["runs", &id, "--json"])
        .expect_code(0)
        .json();
    assert_eq!(one["runs"][0]["status"], "cancelled");
    assert_eq!(one["runs"].as_array().unwrap().len(), 1);
    let missing = project.orbital(&["runs", "999"]).expect_code(2);
    assert!(
        missing.stderr().contains("no run #999"),
        "{}",
        missing.stderr()
    );
    // The next run finishes.
    project.write("models/slow.sql", &slow);
    let finished = statuses(&project, &["run"]);
    assert!(all(&finished, "success"), "{finished:?}");
    assert_eq!(query_one(&db, "SELECT version FROM slow"), "2");
}
