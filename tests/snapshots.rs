//! End to end: snapshots (SCD type 2) through the binary, the bundled
//! `snapshot` component and a real SQLite file, against a sequence of
//! changes to a source table with the exact history expected after each.

mod support;

use std::path::{Path, PathBuf};

use support::{TestProject, execute, query, scalar};

const TOML: &str = "name = \"snap\"\n\
    [targets.dev]\n\
    url = \"sqlite://target/jaffle_shop.db\"\n\
    [sources.crm]\n\
    tables = [\"raw_customers\"]\n";

fn customers(config: &str) -> (TestProject, PathBuf) {
    let project = TestProject::empty();
    project.write("orbital.toml", TOML);
    project.write("models/customers_history.sql", &model(config));
    let db = project.database();
    execute(
        &db,
        "create table raw_customers (id integer, name text, tier text, updated_at text);
         insert into raw_customers values
           (1, 'ann', 'gold', '2024-01-01 00:00:00'),
           (2, 'bob', 'silver', '2024-01-01 00:00:00');",
    );
    (project, db)
}

fn model(config: &str) -> String {
    format!(
        "-- config: materialized = 'snapshot', unique_key = 'id'{config}\n\
         select id, name, tier, updated_at from crm.raw_customers\n"
    )
}

fn snapshot(project: &TestProject) -> support::Run {
    project.orbital(&["run", "--json"]).expect_code(0)
}

fn history(db: &Path) -> Vec<Vec<String>> {
    query(
        db,
        "select id, name, tier, valid_from, valid_to from customers_history order by id, valid_from",
    )
}

fn r(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

const JAN1: &str = "2024-01-01 00:00:00";
const FEB1: &str = "2024-02-01 00:00:00";
const MAR1: &str = "2024-03-01 00:00:00";

#[test]
fn timestamp_strategy_keeps_every_version_with_its_validity() {
    let (project, db) = customers(
        ", strategy = 'timestamp', updated_at = 'updated_at', hard_deletes = 'invalidate'",
    );
    let first = snapshot(&project);
    assert_eq!(
        first.message_of("customers_history"),
        "created snapshot (2 rows)"
    );
    assert_eq!(
        history(&db),
        [
            r(&["1", "ann", "gold", JAN1, "NULL"]),
            r(&["2", "bob", "silver", JAN1, "NULL"]),
        ]
    );

    // Bob changes tier; carol arrives; ann's row is touched without a
    // later updated_at (the timestamp strategy ignores it).
    execute(
        &db,
        &format!(
            "update raw_customers set tier = 'gold', updated_at = '{FEB1}' where id = 2;
             insert into raw_customers values (3, 'carol', 'bronze', '{FEB1}');
             update raw_customers set name = 'ANN' where id = 1;"
        ),
    );
    let second = snapshot(&project);
    assert_eq!(
        second.message_of("customers_history"),
        "snapshot: 1 changed, 1 new, 0 deleted"
    );
    assert_eq!(
        history(&db),
        [
            r(&["1", "ann", "gold", JAN1, "NULL"]),
            r(&["2", "bob", "silver", JAN1, FEB1]),
            r(&["2", "bob", "gold", FEB1, "NULL"]),
            r(&["3", "carol", "bronze", FEB1, "NULL"]),
        ]
    );

    // Nothing changed: nothing is written.
    assert_eq!(
        snapshot(&project).message_of("customers_history"),
        "snapshot: 0 changed, 0 new, 0 deleted"
    );

    // Carol is deleted at the source: her version closes at the run's
    // start. Then she comes back with a new version.
    execute(&db, "delete from raw_customers where id = 3;");
    let third = snapshot(&project);
    assert_eq!(
        third.message_of("customers_history"),
        "snapshot: 0 changed, 0 new, 1 deleted"
    );
    let closed = scalar(&db, "select valid_to from customers_history where id = 3");
    let run_started = runs_started_at(&project, 0);
    assert_eq!(closed, run_started);
    execute(
        &db,
        &format!("insert into raw_customers values (3, 'carol', 'silver', '{MAR1}');"),
    );
    snapshot(&project);
    assert_eq!(
        query(
            &db,
            "select tier, valid_from, valid_to from customers_history where id = 3 order by valid_from"
        ),
        [
            r(&["bronze", FEB1, &run_started]),
            r(&["silver", MAR1, "NULL"]),
        ]
    );
    // Every key has exactly one current version.
    assert_eq!(
        scalar(
            &db,
            "select count(*) from customers_history where valid_to is null"
        ),
        "3"
    );
}

/// The start of the `nth` most recent run, as the snapshot writes it.
fn runs_started_at(project: &TestProject, nth: usize) -> String {
    let runs = project.orbital(&["runs", "--json"]).expect_code(0).json();
    let started = runs["runs"].as_array().expect("runs")[nth]["started_at"]
        .as_str()
        .expect("started_at")
        .to_string();
    started.trim_end_matches('Z').replacen('T', " ", 1)
}

#[test]
fn check_strategy_compares_listed_columns_or_all() {
    let (project, db) = customers(", strategy = 'check', check_cols = ['tier']");
    snapshot(&project);
    let first_run = runs_started_at(&project, 0);
    // A name change is not a checked column; a tier change is.
    execute(
        &db,
        "update raw_customers set name = 'ANN' where id = 1;
         update raw_customers set tier = null where id = 2;",
    );
    // The second run must start in a later second to tell the versions apart.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = snapshot(&project);
    assert_eq!(
        second.message_of("customers_history"),
        "snapshot: 1 changed, 0 new, 0 deleted"
    );
    let second_run = runs_started_at(&project, 0);
    assert_ne!(first_run, second_run);
    assert_eq!(
        history(&db),
        [
            r(&["1", "ann", "gold", &first_run, "NULL"]),
            r(&["2", "bob", "silver", &first_run, &second_run]),
            r(&["2", "bob", "NULL", &second_run, "NULL"]),
        ]
    );
    // NULL to NULL is no change.
    assert_eq!(
        snapshot(&project).message_of("customers_history"),
        "snapshot: 0 changed, 0 new, 0 deleted"
    );

    let (all, db) = customers(", strategy = 'check', check_cols = 'all'");
    snapshot(&all);
    execute(&db, "update raw_customers set name = 'ANN' where id = 1;");
    assert_eq!(
        snapshot(&all).message_of("customers_history"),
        "snapshot: 1 changed, 0 new, 0 deleted"
    );
}

#[test]
fn a_changed_snapshot_model_carries_its_history_forward() {
    let (project, db) = customers(", strategy = 'timestamp', updated_at = 'updated_at'");
    snapshot(&project);
    execute(
        &db,
        &format!("update raw_customers set tier = 'gold', updated_at = '{FEB1}' where id = 2;"),
    );
    snapshot(&project);
    // The model gains a column: a new fingerprint, the same history.
    project.write(
        "models/customers_history.sql",
        "-- config: materialized = 'snapshot', unique_key = 'id', strategy = 'timestamp', updated_at = 'updated_at'\n\
         select id, name, tier, updated_at, upper(name) as loud from crm.raw_customers\n",
    );
    let third = snapshot(&project);
    assert!(
        third
            .message_of("customers_history")
            .ends_with("snapshot: 0 changed, 0 new, 0 deleted; added loud"),
        "{}",
        third.message_of("customers_history")
    );
    assert_eq!(
        scalar(&db, "select count(*) from customers_history"),
        "3",
        "history kept"
    );
}

#[test]
fn a_snapshot_without_its_config_fails_before_writing_anything() {
    for (config, expected) in [
        ("", "a snapshot needs strategy = 'timestamp'"),
        (
            ", strategy = 'timestamp'",
            "strategy = 'timestamp' needs updated_at = '<column>'",
        ),
        (
            ", strategy = 'check'",
            "strategy = 'check' needs check_cols",
        ),
        (
            ", strategy = 'timestamp', updated_at = 'changed_at'",
            "names column `changed_at`, which the model does not return",
        ),
    ] {
        let (project, db) = customers(config);
        let failed = project.orbital(&["run", "--json"]).expect_code(1);
        let error = failed.error_of("customers_history");
        assert!(error.contains("materialization-snapshot"), "{error}");
        assert!(error.contains(expected), "{config}: {error}");
        assert_eq!(
            scalar(
                &db,
                "select count(*) from sqlite_master where name like '%customers_history%'"
            ),
            "0",
            "{config}"
        );
    }
    let (project, _db) = customers(", strategy = 'check', check_cols = 'all'");
    project.write(
        "models/customers_history.sql",
        "-- config: materialized = 'snapshot', strategy = 'check', check_cols = 'all'\nselect 1 as id",
    );
    let failed = project.orbital(&["run", "--json"]).expect_code(1);
    assert!(
        failed
            .error_of("customers_history")
            .contains("a snapshot needs unique_key"),
        "{}",
        failed.stdout()
    );
}

#[test]
fn duplicate_keys_in_the_snapshot_query_are_refused() {
    let (project, db) = customers(", strategy = 'check', check_cols = 'all'");
    snapshot(&project);
    execute(
        &db,
        "insert into raw_customers values (2, 'bobby', 'gold', '2024-02-01 00:00:00');",
    );
    let failed = project.orbital(&["run", "--json"]).expect_code(1);
    let error = failed.error_of("customers_history");
    assert!(
        error.contains("unique_key (id) = (2); a snapshot needs one row per key"),
        "{error}"
    );
    // The history is as the first run left it.
    assert_eq!(scalar(&db, "select count(*) from customers_history"), "2");
}
