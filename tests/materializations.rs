//! End to end: materializations the host and the first-party plugins
//! provide beyond view and table. Ephemeral models: inlined as CTEs into
//! their readers, never built, covered by their readers' fingerprints.

mod support;

use std::collections::BTreeMap;

use support::{TestProject, object_kind, query, scalar};

const EPHEMERAL: &str = "-- config: materialized = 'ephemeral'\n";

fn statuses(project: &TestProject, args: &[&str]) -> BTreeMap<String, String> {
    let mut full = args.to_vec();
    full.push("--json");
    project.orbital(&full).expect_code(0).statuses()
}

fn rebuilt(statuses: &BTreeMap<String, String>) -> Vec<&str> {
    statuses
        .iter()
        .filter(|(_, s)| *s == "success")
        .map(|(n, _)| n.as_str())
        .collect()
}

/// `stg_payments` made ephemeral.
fn ephemeral_payments() -> (TestProject, String) {
    let project = TestProject::jaffle_shop_without_data_tests();
    let path = "models/staging/stg_payments.sql";
    let original = std::fs::read_to_string(project.path().join(path)).unwrap();
    project.write(path, &format!("{EPHEMERAL}{original}"));
    (project, original)
}

#[test]
fn an_ephemeral_model_is_inlined_into_its_readers_and_never_built() {
    let plain = TestProject::jaffle_shop_without_data_tests();
    statuses(&plain, &["build"]);
    let expected = query(&plain.database(), "SELECT * FROM orders ORDER BY order_id");

    let (project, original) = ephemeral_payments();
    let first = statuses(&project, &["build"]);
    assert!(!first.contains_key("stg_payments"), "{first:?}");
    assert_eq!(first.len(), 7);
    assert!(first.values().all(|s| s == "success"), "{first:?}");
    let db = project.database();
    assert_eq!(object_kind(&db, "stg_payments"), "none");
    assert_eq!(
        query(&db, "SELECT * FROM orders ORDER BY order_id"),
        expected
    );
    let physical = scalar(
        &db,
        "SELECT count(*) FROM sqlite_master WHERE name LIKE 'orbital__stg_payments__%'",
    );
    assert_eq!(physical, "0");

    // Its SQL is part of its readers' fingerprints.
    assert!(
        statuses(&project, &["build"])
            .values()
            .all(|s| s == "reused")
    );
    let edited = original.replace("cents_to_dollars(amount)", "cents_to_dollars(amount) * 2");
    project.write(
        "models/staging/stg_payments.sql",
        &format!("{EPHEMERAL}{edited}"),
    );
    let plan = project.orbital(&["plan", "--json"]).expect_code(0).json();
    let planned: Vec<&str> = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["action"] == "build")
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(planned, ["customers", "orders"]);
    assert_eq!(
        rebuilt(&statuses(&project, &["build"])),
        ["customers", "orders"]
    );
    let doubled = scalar(&db, "SELECT SUM(amount) FROM orders");
    let single = scalar(&plain.database(), "SELECT SUM(amount) FROM orders");
    assert_ne!(doubled, single);

    // Made a view again it is built; made ephemeral once more, its
    // environment view goes.
    project.write("models/staging/stg_payments.sql", &original);
    assert!(statuses(&project, &["build"]).contains_key("stg_payments"));
    assert_eq!(object_kind(&db, "stg_payments"), "view");
    project.write(
        "models/staging/stg_payments.sql",
        &format!("{EPHEMERAL}{original}"),
    );
    statuses(&project, &["build"]);
    assert_eq!(object_kind(&db, "stg_payments"), "none");
    assert_eq!(
        query(&db, "SELECT * FROM orders ORDER BY order_id"),
        expected
    );
}

#[test]
fn ephemeral_chains_and_a_reader_with_its_own_ctes() {
    let (project, _) = ephemeral_payments();
    project.write(
        "models/staging/large_payments.sql",
        &format!("{EPHEMERAL}select * from stg_payments where amount >= 20"),
    );
    project.write(
        "models/marts/large_payment_count.sql",
        "with by_method as (\n  select payment_method, count(*) as n\n  from large_payments\n  group by payment_method\n)\nselect sum(n) as n from by_method",
    );
    let built = statuses(&project, &["build", "--select", "+large_payment_count"]);
    assert_eq!(
        built.keys().map(String::as_str).collect::<Vec<_>>(),
        ["large_payment_count", "raw_payments"]
    );
    let db = project.database();
    let direct = scalar(
        &db,
        "SELECT count(*) FROM raw_payments WHERE amount / 100.0 >= 20",
    );
    assert_eq!(scalar(&db, "SELECT n FROM large_payment_count"), direct);

    // The compiled SQL shows the inlined CTEs, innermost first.
    let compiled = project
        .orbital(&["compile", "large_payment_count"])
        .expect_code(0)
        .stdout();
    let inner = compiled.find("__orbital_ephemeral__stg_payments").unwrap();
    let outer = compiled
        .find("__orbital_ephemeral__large_payments")
        .unwrap();
    assert!(inner < outer, "{compiled}");
}
