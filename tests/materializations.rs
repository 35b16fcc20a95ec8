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

/// A project whose `audit` model is an append-only log (the example
/// plugin `audit_log`, API 0.2.0, which keeps history) of the seed
/// `accounts`, logging a row only when its balance is not the one the log
/// already holds for it; `balances` is a bundled (API 0.1.0) view over it.
fn audit_project(accounts: &str) -> TestProject {
    let project = TestProject::empty();
    project.write(
        "orbital.toml",
        "name = \"audit\"\n[targets.dev]\nurl = \"sqlite://target/jaffle_shop.db\"\n",
    );
    let component = orbital_bundle::test_component("orbital-example-audit-log");
    project.add_component(&component.display().to_string());
    project.write("seeds/accounts.csv", accounts);
    project.write(
        "models/audit.sql",
        "-- config: materialized = 'audit_log'\n\
         select a.id, a.balance from accounts a\n\
         where if_incremental(not exists (\n\
             select 1 from this l where l.id = a.id and l.balance = a.balance))\n",
    );
    project.write(
        "models/balances.sql",
        "select id, count(*) as entries from audit group by id",
    );
    project
}

#[test]
fn a_plugin_that_keeps_history_continues_its_table_and_copies_it_forward() {
    let project = audit_project("id,balance\n1,100\n2,50\n");
    let log = |project: &TestProject| {
        query(
            &project.database(),
            "select id, balance from audit order by audited_at, id",
        )
    };
    let row = |id: &str, balance: &str| vec![id.to_string(), balance.to_string()];

    // One 0.2.0 component beside the bundled 0.1.0 ones, in one run.
    let listed = project.orbital(&["plugin", "list"]).expect_code(0).stdout();
    let line_of = |name: &str| {
        listed
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} in {listed}"))
            .to_string()
    };
    assert!(
        line_of("example-audit-log").contains("api 0.2.0 provides audit_log (keeps history)"),
        "{listed}"
    );
    assert!(
        line_of("materialization-view").contains("api 0.1.0 provides view "),
        "{listed}"
    );
    let first = project.orbital(&["--json", "build"]).expect_code(0);
    assert_eq!(first.message_of("audit"), "log started (2 rows)");
    assert_eq!(first.statuses()["balances"], "success");
    assert_eq!(log(&project), [row("1", "100"), row("2", "50")]);

    // Nothing changed: the log is continued, and nothing is new in it.
    let plan = project.orbital(&["plan"]).expect_code(0).stdout();
    assert!(
        plan.contains("audit (unchanged; will continue its table"),
        "{plan}"
    );
    let second = project.orbital(&["--json", "run"]).expect_code(0);
    assert_eq!(second.message_of("audit"), "appended 0 rows");

    // An edit upstream: a new fingerprint, whose table starts from a copy
    // of the log, and the changed and new accounts appended to it.
    project.write("seeds/accounts.csv", "id,balance\n1,100\n2,75\n3,10\n");
    let third = project.orbital(&["--json", "build"]).expect_code(0);
    assert_eq!(
        third.message_of("audit"),
        "appended 2 rows, the log copied forward"
    );
    assert_eq!(
        log(&project),
        [
            row("1", "100"),
            row("2", "50"),
            row("2", "75"),
            row("3", "10")
        ]
    );
    assert_eq!(
        query(
            &project.database(),
            "select id, entries from balances order by id"
        ),
        [row("1", "1"), row("2", "2"), row("3", "1")]
    );
    // The earlier build's table is left as it was.
    let tables = query(
        &project.database(),
        "select name from sqlite_master where type = 'table' and name like 'orbital__audit__%'",
    );
    assert_eq!(tables.len(), 2, "{tables:?}");

    // A full refresh starts a new log.
    let refreshed = project
        .orbital(&["--json", "run", "--full-refresh"])
        .expect_code(0);
    assert_eq!(refreshed.message_of("audit"), "log started (3 rows)");
    assert_eq!(log(&project).len(), 3);
}

#[test]
fn only_a_strategy_that_keeps_history_may_read_this() {
    let project = audit_project("id,balance\n1,100\n");
    project.write(
        "models/audit.sql",
        "-- config: materialized = 'table'\n\
         select id from accounts where if_incremental(id > (select max(id) from this))\n",
    );
    let refused = project.orbital(&["build"]).expect_code(2).stderr();
    assert!(
        refused.contains("models/audit.sql:2:")
            && refused.contains("only a model whose materialization keeps history")
            && refused.contains("'table'"),
        "{refused}"
    );
}
