//! End to end: data tests. Generic tests declared per column in model
//! config, singular tests in `tests/`, `orbital test`, and `orbital build`
//! running each model's tests right after it and skipping what is built
//! from a model whose test fails.

mod support;

use std::collections::BTreeMap;

use support::{TestProject, query};

fn tests_of(run: &support::Run) -> BTreeMap<String, String> {
    run.test_statuses()
}

fn result<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no result for {name}"))
}

#[test]
fn the_example_tests_pass_and_orbital_test_runs_them_alone() {
    let project = TestProject::jaffle_shop();
    let built = project.orbital(&["build", "--json"]).expect_code(0);
    let tests = tests_of(&built);
    assert_eq!(tests.len(), 21, "{tests:?}");
    assert!(tests.values().all(|s| s == "pass"), "{tests:?}");

    let tested = project.orbital(&["test", "--json"]).expect_code(0);
    assert!(tested.statuses().is_empty(), "orbital test builds nothing");
    assert_eq!(tests_of(&tested), tests);
    let json = tested.json();
    let not_null = result(&json, "not_null_orders_order_id");
    assert_eq!(not_null["failures"], 0);

    // Selecting a model selects the tests that read it, relationships too.
    let orders = project
        .orbital(&["test", "--json", "--select", "orders"])
        .expect_code(0);
    let names: Vec<String> = tests_of(&orders).into_keys().collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert!(names.contains(&"relationships_orders_customer_id__customers".to_string()));
    assert!(names.iter().all(|n| n.contains("orders")), "{names:?}");

    let human = project.orbital(&["test"]).expect_code(0).stdout();
    assert!(
        human.contains("PASS  test unique_orders_order_id"),
        "{human}"
    );
    assert!(human.contains("Done. PASS=21 "), "{human}");
}

#[test]
fn failing_tests_fail_the_command_and_warnings_do_not() {
    let project = TestProject::jaffle_shop();
    project.orbital(&["build"]).expect_code(0);
    project.write(
        "tests/no_big_orders.sql",
        "select order_id, amount from orders where amount > 20",
    );
    let failed = project.orbital(&["test", "--json"]).expect_code(1);
    assert_eq!(tests_of(&failed)["no_big_orders"], "fail");
    let json = failed.json();
    let big = result(&json, "no_big_orders");
    let expected = query(
        &project.database(),
        "select count(*) from orders where amount > 20",
    )[0][0]
        .clone();
    assert_eq!(big["failures"].to_string(), expected);
    assert!(big["error"].as_str().unwrap().contains("failing row"));

    project.write(
        "tests/no_big_orders.sql",
        "-- config: severity = 'warn'\nselect order_id, amount from orders where amount > 20",
    );
    let warned = project.orbital(&["test"]).expect_code(0).stdout();
    assert!(warned.contains("WARN  test no_big_orders"), "{warned}");
    assert!(warned.contains("WARN=1"), "{warned}");
}

#[test]
fn build_skips_what_is_built_from_a_model_whose_test_fails() {
    let project = TestProject::jaffle_shop();
    project.orbital(&["build"]).expect_code(0);
    let path = "models/staging/stg_orders.sql";
    let original = std::fs::read_to_string(project.path().join(path)).unwrap();
    project.write(
        path,
        &original.replace("    status", "    upper(status) as status"),
    );
    let run = project.orbital(&["build", "--json"]).expect_code(1);
    let statuses = run.statuses();
    assert_eq!(statuses["stg_orders"], "success");
    assert_eq!(statuses["orders"], "skipped");
    assert_eq!(statuses["customers"], "skipped");
    assert_eq!(statuses["stg_payments"], "reused");
    let tests = tests_of(&run);
    assert_eq!(tests["accepted_values_stg_orders_status"], "fail");
    assert_eq!(tests["unique_stg_orders_order_id"], "pass");
    assert_eq!(tests["unique_orders_order_id"], "skipped");
    let json = run.json();
    assert!(
        result(&json, "orders")["error"]
            .as_str()
            .unwrap()
            .contains("accepted_values_stg_orders_status")
    );
    // Users still see the orders built before the bad change.
    assert_eq!(
        query(
            &project.database(),
            "select distinct status from orders order by 1"
        )[0][0],
        "completed"
    );
}

#[test]
fn state_modified_selects_the_tests_of_what_changed() {
    let project = TestProject::jaffle_shop();
    project.orbital(&["build"]).expect_code(0);
    let nothing = project
        .orbital(&["test", "--json", "--select", "state:modified"])
        .expect_code(0);
    assert!(tests_of(&nothing).is_empty(), "{:?}", tests_of(&nothing));
    let path = "models/staging/stg_customers.sql";
    let original = std::fs::read_to_string(project.path().join(path)).unwrap();
    project.write(
        path,
        &original.replace("    last_name", "    upper(last_name) as last_name"),
    );
    let changed = project
        .orbital(&["build", "--json", "--select", "state:modified"])
        .expect_code(0);
    let names: Vec<String> = tests_of(&changed).into_keys().collect();
    assert_eq!(
        names,
        [
            "not_null_stg_customers_customer_id",
            "unique_stg_customers_customer_id"
        ]
    );
}

#[test]
fn tests_of_unbuilt_models_say_so() {
    let project = TestProject::jaffle_shop();
    let run = project.orbital(&["test", "--json"]).expect_code(1);
    let json = run.json();
    let error = result(&json, "unique_orders_order_id")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("is not built in this environment"),
        "{error}"
    );
}

#[test]
fn bad_test_declarations_are_clear_errors() {
    let cases = [
        (
            "models/marts/orders.sql",
            "-- config: tests.order_id = ['uniqe']\nselect 1 as order_id",
            "unknown test `uniqe`",
        ),
        (
            "models/marts/orders.sql",
            "-- config: tests.status = [{ accepted_values = [] }]\nselect 1 as status",
            "at least one value",
        ),
        (
            "models/marts/orders.sql",
            "-- config: tests.customer_id = [{ relationships = { to = 'customer', field = 'id' } }]\nselect 1 as customer_id",
            "`customer` is not a model or seed; did you mean `customers`?",
        ),
        (
            "tests/not_a_select.sql",
            "delete from orders",
            "test `not_a_select` must be one SELECT returning the rows that fail",
        ),
        (
            "tests/bad_severity.sql",
            "-- config: severity = 'fatal'\nselect 1",
            "severity",
        ),
    ];
    for (path, text, expected) in cases {
        let project = TestProject::jaffle_shop();
        project.write(path, text);
        let run = project.orbital(&["test"]).expect_code(2);
        let stderr = run.stderr();
        assert!(stderr.contains(expected), "{path}: {stderr}");
        let file = path.rsplit('/').next().unwrap();
        assert!(stderr.contains(file), "{path}: {stderr}");
        if path.starts_with("models/") {
            // The declaration's own line and column.
            assert!(stderr.contains(&format!("{file}:1:12")), "{path}: {stderr}");
        }
        assert!(!project.database().exists(), "nothing is written");
    }
}

#[test]
fn a_test_that_reads_a_model_built_from_the_one_it_checks_does_not_hold_it_back() {
    let project = TestProject::empty();
    project.write(
        "orbital.toml",
        "name = \"p\"\n[targets.dev]\nurl = \"sqlite://target/p.db\"\n",
    );
    project.write("seeds/raw.csv", "id\n1\n2\n");
    project.write(
        "models/parent.sql",
        "-- config: tests.id = [{ relationships = { to = 'child', field = 'id' } }]\nselect id from raw",
    );
    project.write("models/child.sql", "select id from parent");
    let run = project.orbital(&["build", "--json"]).expect_code(0);
    assert_eq!(run.statuses().len(), 3);
    assert_eq!(tests_of(&run)["relationships_parent_id__child"], "pass");
}

/// jaffle_shop with the test component that provides `is_positive`,
/// `is_between` and `spins` as generic tests.
fn with_range_tests(extra_config: &str) -> TestProject {
    let project = TestProject::jaffle_shop();
    let component = orbital_bundle::test_component("orbital-test-range-tests");
    project.add_component(&component.display().to_string());
    let config = std::fs::read_to_string(project.path().join("orbital.toml")).unwrap();
    let config = match extra_config.is_empty() {
        true => config,
        // `[plugins]` keys go right after the components list.
        false => config.replacen(
            "components = [",
            &format!("{extra_config}\ncomponents = ["),
            1,
        ),
    };
    project.write("orbital.toml", &config);
    project
}

#[test]
fn a_macro_plugin_provides_generic_tests() {
    let project = with_range_tests("");
    let path = "models/staging/stg_payments.sql";
    let original = std::fs::read_to_string(project.path().join(path)).unwrap();
    let with_tests = |tests: &str| {
        project.write(
            path,
            &format!("-- config: tests.amount = {tests}\n{original}"),
        );
    };
    with_tests("['is_positive', { is_between = { min = 0, max = 100 } }]");
    let built = project.orbital(&["build", "--json"]).expect_code(0);
    let tests = tests_of(&built);
    assert_eq!(tests["is_positive_stg_payments_amount"], "pass");
    assert_eq!(tests["is_between_stg_payments_amount"], "pass");
    let sql = project
        .orbital(&["compile", "is_between_stg_payments_amount"])
        .expect_code(0)
        .stdout();
    assert!(sql.contains("amount < 0 OR amount > 100"), "{sql}");

    // The plugin's arguments decide: a tighter range fails.
    with_tests("[{ is_between = { min = 0, max = 5 } }]");
    let failed = project.orbital(&["test", "--json"]).expect_code(1);
    assert_eq!(tests_of(&failed)["is_between_stg_payments_amount"], "fail");

    // Nothing provides it: the error lists what does.
    with_tests("['is_negative']");
    let unknown = project.orbital(&["test"]).expect_code(2).stderr();
    assert!(
        unknown.contains("unknown test `is_negative`") && unknown.contains("is_positive"),
        "{unknown}"
    );

    // The plugin's own refusal names the macro and the plugin.
    with_tests("[{ is_between = { min = 0 } }]");
    let refused = project.orbital(&["test"]).expect_code(2).stderr();
    assert!(
        refused.contains("macro `is_between` of plugin `test-range-tests`")
            && refused.contains("needs `max`")
            && refused.contains("stg_payments.sql"),
        "{refused}"
    );
}

#[test]
fn a_test_macro_that_never_returns_is_stopped() {
    let project = with_range_tests("timeout-ms = 500\n");
    let path = "models/staging/stg_payments.sql";
    let original = std::fs::read_to_string(project.path().join(path)).unwrap();
    project.write(
        path,
        &format!("-- config: tests.amount = ['spins']\n{original}"),
    );
    let stopped = project.orbital(&["test"]).expect_code(2).stderr();
    assert!(
        stopped.contains("test-range-tests") && stopped.contains("time limit"),
        "{stopped}"
    );
    assert!(!project.database().exists(), "nothing is written");
}

/// Runs the failing-rows checks on a built jaffle_shop `project`:
/// `stored(table)` counts a table's rows in its warehouse.
fn failing_rows_are_shown_and_kept(project: &TestProject, stored: impl Fn(&str) -> String) {
    project.write(
        "tests/every_order_completed.sql",
        "select order_id, status from orders where status <> 'completed' order by order_id",
    );
    let failed = project.orbital(&["test", "--json"]).expect_code(1);
    let json = failed.json();
    let failed_test = result(&json, "every_order_completed");
    let failures = failed_test["failures"].as_u64().unwrap();
    assert!(failures > 0, "{failed_test}");
    let rows = failed_test["failing_rows"]["rows"].as_array().unwrap();
    assert_eq!(rows.len() as u64, failures.min(10));
    assert_eq!(
        failed_test["failing_rows"]["columns"],
        serde_json::json!(["order_id", "status"])
    );
    assert!(rows.iter().all(|r| r[1] != "completed"), "{rows:?}");
    assert!(
        failed_test.get("stored_failures").is_none(),
        "{failed_test}"
    );

    // The text summary shows them under the failure.
    let text = project.orbital(&["test"]).expect_code(1).stdout();
    assert!(text.contains("    order_id | status\n"), "{text}");
    assert!(text.contains("return_pending"), "{text}");

    // --store-failures keeps them all, in the default environment and another.
    let kept = project
        .orbital(&["test", "--store-failures", "--json"])
        .expect_code(1)
        .json();
    let kept = result(&kept, "every_order_completed");
    let table = kept["stored_failures"].as_str().unwrap();
    assert!(table.ends_with("failures__every_order_completed"), "{kept}");
    assert!(
        kept["error"]
            .as_str()
            .unwrap()
            .contains(&format!("kept in {table}")),
        "{kept}"
    );
    assert_eq!(stored(table), failures.to_string());
    project.orbital(&["build", "--env", "dev"]).expect_code(1);
    project
        .orbital(&["test", "--env", "dev", "--store-failures"])
        .expect_code(1);
    let dev_table = table.replace("failures__", "dev__failures__");
    assert_eq!(stored(&dev_table), failures.to_string());
    // Or per test, without the flag.
    project.write(
        "tests/every_order_completed.sql",
        "-- config: store_failures = true\n\
         select order_id, status from orders where status <> 'completed'",
    );
    let configured = project.orbital(&["test", "--json"]).expect_code(1).json();
    let configured = result(&configured, "every_order_completed");
    assert_eq!(configured["stored_failures"], table, "{configured}");
    assert_eq!(stored(table), failures.to_string());
    // A passing test's table is kept, empty.
    project.write(
        "tests/every_order_completed.sql",
        "select order_id from orders where status = 'nonsense'",
    );
    project
        .orbital(&["test", "--store-failures"])
        .expect_code(0);
    assert_eq!(stored(table), "0");
}

#[test]
fn a_failing_test_shows_its_rows_and_can_keep_them_on_sqlite() {
    let project = TestProject::jaffle_shop();
    project.orbital(&["build"]).expect_code(0);
    let database = project.database();
    failing_rows_are_shown_and_kept(&project, |table| {
        query(&database, &format!("select count(*) from {table}"))[0][0].clone()
    });
}

#[test]
fn a_failing_test_shows_its_rows_and_can_keep_them_on_mariadb() {
    let Some((project, database)) = support::backends::jaffle_shop_on_mysql("failing_rows") else {
        return;
    };
    project.orbital(&["build"]).expect_code(0);
    failing_rows_are_shown_and_kept(&project, |table| {
        support::backends::mariadb(&database.url, &format!("select count(*) from {table}"))
            .unwrap()
            .trim()
            .to_string()
    });
}

#[test]
fn a_failing_test_shows_its_rows_and_can_keep_them_on_postgresql() {
    let Some((project, database)) = support::backends::jaffle_shop_on_postgres("failing_rows")
    else {
        return;
    };
    project.orbital(&["build"]).expect_code(0);
    failing_rows_are_shown_and_kept(&project, |table| {
        support::backends::psql(&database.url, &format!("select count(*) from {table}"))
            .unwrap()
            .trim()
            .to_string()
    });
}
