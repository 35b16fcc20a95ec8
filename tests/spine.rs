//! End to end: the built `orbital` binary builds jaffle_shop into a real
//! SQLite file through the real WASM plugins.

mod support;

use support::{TestProject, object_kind, query, scalar};

#[test]
fn build_makes_the_example_warehouse_with_exact_values() {
    let project = TestProject::jaffle_shop();
    let run = project.orbital(&["build", "--json"]).expect_code(0);
    let json = run.json();
    assert!(json["elapsed_ms"].is_u64());
    let statuses = run.statuses();
    assert_eq!(statuses.len(), 8, "{statuses:?}");
    assert!(statuses.values().all(|s| s == "success"), "{statuses:?}");
    for result in json["results"].as_array().unwrap() {
        assert!(
            result["duration_ms"].is_u64() && result["error"].is_null(),
            "{result}"
        );
    }

    let db = project.database();
    // Users query plain names (views onto the builds); each build is named
    // by its fingerprint and has the model's materialization.
    for name in ["stg_orders", "customers", "raw_orders"] {
        assert_eq!(object_kind(&db, name), "view", "{name}");
    }
    let physical = |name: &str| {
        scalar(
            &db,
            &format!("select type from sqlite_master where name glob 'orbital__{name}__*'"),
        )
    };
    assert_eq!(physical("stg_orders"), "view");
    assert_eq!(physical("customers"), "table");
    assert_eq!(physical("raw_orders"), "table");

    assert_eq!(
        query(
            &db,
            "select count(*), count(first_order), sum(customer_lifetime_value) from customers"
        ),
        [["10", "8", "208.00"]]
    );
    assert_eq!(
        query(
            &db,
            "select first_name, first_order, most_recent_order, number_of_orders, customer_lifetime_value from customers where customer_id = 1"
        ),
        [["Ada", "2024-01-02", "2024-02-01", "3", "48.00"]]
    );
    assert_eq!(
        query(
            &db,
            "select number_of_orders, customer_lifetime_value from customers where customer_id = 9"
        ),
        [["NULL", "NULL"]]
    );
    assert_eq!(
        query(
            &db,
            "select count(*), sum(amount), sum(credit_card_amount), sum(coupon_amount), sum(bank_transfer_amount), sum(gift_card_amount) from orders"
        ),
        [["12", "208.00", "107.00", "13.00", "70.00", "18.00"]]
    );
    assert_eq!(
        query(
            &db,
            "select status, credit_card_amount, coupon_amount, amount from orders where order_id = 3"
        ),
        [["completed", "25.00", "1.00", "26.00"]]
    );
    // Seed types: the override makes order_date a DATE column; amounts are integers.
    assert_eq!(
        query(
            &db,
            "select type from pragma_table_info('raw_orders') where name = 'order_date'"
        ),
        [["DATE"]]
    );
    assert_eq!(
        query(
            &db,
            "select type from pragma_table_info('raw_payments') where name = 'amount'"
        ),
        [["INTEGER"]]
    );
    // Nothing staged is left behind.
    assert_eq!(
        scalar(
            &db,
            "select count(*) from sqlite_master where name like '%orbital_staged%'"
        ),
        "0"
    );
}

#[test]
fn the_original_jaffle_shop_seeds_give_the_known_results() {
    let shared = support::workspace().join("../shared/data/jaffle_shop");
    if !shared.is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have ../shared/data/jaffle_shop beside the checkout"
        );
        eprintln!("skipped: {} is absent", shared.display());
        return;
    }
    let project = TestProject::jaffle_shop();
    for seed in ["raw_customers", "raw_orders", "raw_payments"] {
        std::fs::copy(
            shared.join(format!("{seed}.csv")),
            project.path().join(format!("seeds/{seed}.csv")),
        )
        .unwrap();
    }
    let built = project.orbital(&["build", "--json"]).expect_code(0);
    // The original project's data tests, on the original data.
    let tests = built.test_statuses();
    assert_eq!(tests.len(), 21, "{tests:?}");
    assert!(tests.values().all(|s| s == "pass"), "{tests:?}");
    let db = project.database();
    assert_eq!(
        query(
            &db,
            "select count(*), count(first_order), sum(customer_lifetime_value) from customers"
        ),
        [["100", "62", "1672.00"]]
    );
    assert_eq!(
        query(
            &db,
            "select number_of_orders, first_order, most_recent_order, customer_lifetime_value from customers where customer_id = 1"
        ),
        [["2", "2018-01-01", "2018-02-10", "33.00"]]
    );
    assert_eq!(
        query(
            &db,
            "select count(*), sum(amount), sum(credit_card_amount), sum(coupon_amount), sum(bank_transfer_amount), sum(gift_card_amount) from orders"
        ),
        [["99", "1672.00", "871.00", "185.00", "411.00", "205.00"]]
    );
}

#[test]
fn human_output_is_a_dbt_style_summary() {
    let project = TestProject::jaffle_shop();
    let run = project.orbital(&["build", "--threads", "2"]).expect_code(0);
    let out = run.stdout();
    assert!(
        out.contains("Running 3 seeds, 5 models and 21 tests on 2 threads"),
        "{out}"
    );
    assert!(out.contains("OK    seed raw_orders"), "{out}");
    assert!(out.contains("[created table (12 rows) in "), "{out}");
    assert!(
        out.contains("Done. PASS=29 REUSE=0 WARN=0 ERROR=0 SKIP=0 TOTAL=29"),
        "{out}"
    );
}

#[test]
fn a_changed_seed_reaches_what_is_rebuilt_after_it() {
    let project = TestProject::jaffle_shop();
    project.orbital(&["build"]).expect_code(0);
    project.orbital(&["run", "--json"]).expect_code(0);
    project.write(
        "seeds/raw_customers.csv",
        "id,first_name,last_name\n1,Ada,L.\n2,Grace,H.\n",
    );
    let run = project
        .orbital(&["seed", "--select", "raw_customers", "--json"])
        .expect_code(0);
    assert_eq!(run.statuses().len(), 1);
    // stg_customers was not rebuilt, so customers alone still reads the
    // build of stg_customers over the old seed.
    project
        .orbital(&["run", "--select", "customers"])
        .expect_code(0);
    assert_eq!(
        scalar(&project.database(), "select count(*) from customers"),
        "10"
    );
    project
        .orbital(&["run", "--select", "stg_customers+"])
        .expect_code(0);
    assert_eq!(
        scalar(&project.database(), "select count(*) from customers"),
        "2"
    );
}

#[test]
fn selectors_pick_what_runs() {
    let project = TestProject::jaffle_shop();
    let run = project
        .orbital(&["build", "--select", "+orders", "--json"])
        .expect_code(0);
    let names: Vec<String> = run.statuses().into_keys().collect();
    assert_eq!(
        names,
        [
            "orders",
            "raw_orders",
            "raw_payments",
            "stg_orders",
            "stg_payments"
        ]
    );

    let run = project
        .orbital(&[
            "run",
            "--select",
            "tag:staging",
            "--exclude",
            "stg_customers",
            "--json",
        ])
        .expect_code(0);
    assert_eq!(
        run.statuses().into_keys().collect::<Vec<_>>(),
        ["stg_orders", "stg_payments"]
    );

    let run = project
        .orbital(&[
            "run",
            "-s",
            "path:models/marts",
            "tag:finance,orders",
            "--json",
        ])
        .expect_code(2);
    // customers reads stg_customers, which was never built: refused before anything runs.
    assert!(
        run.stdout().contains(
            "model `customers` reads `stg_customers`, which environment `prod` has never built"
        ),
        "{}",
        run.stdout()
    );
}

#[test]
fn a_failed_model_skips_its_descendants_and_nothing_else() {
    let project = TestProject::jaffle_shop();
    project.orbital(&["build"]).expect_code(0);
    let before = scalar(&project.database(), "select sum(amount) from orders");
    // stg_payments now reads a column that does not exist: SQLite rejects the view.
    project.write(
        "models/staging/stg_payments.sql",
        "select id as payment_id, order_id, no_such_column as amount from raw_payments",
    );
    let run = project.orbital(&["build", "--json"]).expect_code(1);
    let statuses = run.statuses();
    assert_eq!(statuses["stg_payments"], "error");
    assert!(
        run.error_of("stg_payments")
            .contains("no such column: no_such_column"),
        "{}",
        run.error_of("stg_payments")
    );
    assert_eq!(statuses["orders"], "skipped");
    assert_eq!(statuses["customers"], "skipped");
    assert_eq!(
        run.error_of("orders"),
        "skipped because upstream `stg_payments` failed"
    );
    for unrelated in [
        "raw_customers",
        "raw_orders",
        "raw_payments",
        "stg_customers",
        "stg_orders",
    ] {
        assert_eq!(statuses[unrelated], "reused", "{unrelated}");
    }
    // The old tables are untouched.
    assert_eq!(
        scalar(&project.database(), "select sum(amount) from orders"),
        before
    );
}

#[test]
fn a_failed_table_build_leaves_the_old_table() {
    let project = TestProject::jaffle_shop();
    project.orbital(&["build"]).expect_code(0);
    // Fails at run time, after the staged table is created: division by a text is fine
    // in SQLite, so use a function that does not exist.
    project.write(
        "models/marts/orders.sql",
        "select order_id, no_such_function(order_id) as x from stg_orders",
    );
    let run = project
        .orbital(&["run", "--select", "orders", "--json"])
        .expect_code(1);
    let error = run.error_of("orders");
    assert!(
        error.contains("plugin `materialization-table` reported:")
            && error.contains("no_such_function"),
        "{error}"
    );
    let db = project.database();
    assert_eq!(
        query(&db, "select count(*), sum(amount) from orders"),
        [["12", "208.00"]]
    );
    assert_eq!(
        scalar(
            &db,
            "select count(*) from sqlite_master where name like '%orbital_staged%'"
        ),
        "0"
    );
}

#[test]
fn compile_writes_sql_and_prints_one_model() {
    let project = TestProject::jaffle_shop();
    let run = project.orbital(&["compile", "stg_orders"]).expect_code(0);
    let sql = run.stdout();
    assert!(sql.contains("FROM\n  \"raw_orders\""), "{sql}");
    let written = std::fs::read_to_string(
        project
            .path()
            .join("target/compiled/models/marts/customers.sql"),
    )
    .unwrap();
    assert!(written.contains("\"stg_customers\""), "{written}");
    assert!(
        !project.database().exists(),
        "compile must not touch the database"
    );

    let json = project
        .orbital(&["compile", "--json", "--select", "orders"])
        .expect_code(0)
        .json();
    let models = json["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(
        models[0]["depends_on"],
        serde_json::json!(["stg_orders", "stg_payments"])
    );
}

#[test]
fn compile_rewrites_only_the_files_that_changed() {
    let project = TestProject::jaffle_shop();
    project.orbital(&["compile"]).expect_code(0);
    let compiled = project.path().join("target/compiled/models");
    let customers = compiled.join("marts/customers.sql");
    let orders = compiled.join("marts/orders.sql");
    let modified = |path: &std::path::Path| std::fs::metadata(path).unwrap().modified().unwrap();
    let (customers_before, orders_before) = (modified(&customers), modified(&orders));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let text = std::fs::read_to_string(project.path().join("models/marts/orders.sql")).unwrap();
    project.write(
        "models/marts/orders.sql",
        &text.replace("select", "select 42 as answer,"),
    );
    project.orbital(&["compile"]).expect_code(0);
    assert_eq!(
        modified(&customers),
        customers_before,
        "unchanged: not rewritten"
    );
    assert_ne!(modified(&orders), orders_before, "changed: rewritten");
    assert!(
        std::fs::read_to_string(&orders)
            .unwrap()
            .contains("42 AS answer")
    );
    // A file deleted by hand comes back; one edited by hand is left alone
    // until its model changes (the folder is orbital's output).
    std::fs::remove_file(&customers).unwrap();
    project.orbital(&["compile"]).expect_code(0);
    assert!(customers.is_file());
    // The folder holds what was selected, nothing else.
    project.orbital(&["compile", "-s", "orders"]).expect_code(0);
    assert!(orders.is_file());
    assert!(!customers.exists());
    // A folder made without a manifest is replaced whole.
    std::fs::remove_file(project.path().join("target/compiled/.orbital-compiled")).unwrap();
    project.write("target/compiled/stray.sql", "select 1");
    project.orbital(&["compile"]).expect_code(0);
    assert!(!project.path().join("target/compiled/stray.sql").exists());
    assert!(customers.is_file());
}

/// A project known by its files' stamps compiles again without writing
/// anything, until a source file, the selection or the output changes.
#[test]
fn an_unchanged_project_compiles_again_without_writing() {
    let project = TestProject::jaffle_shop();
    project.age();
    project.orbital(&["compile"]).expect_code(0);
    let manifest = project.path().join("target/compiled/.orbital-compiled");
    let customers = project
        .path()
        .join("target/compiled/models/marts/customers.sql");
    let modified = |path: &std::path::Path| std::fs::metadata(path).unwrap().modified().unwrap();
    let written = modified(&manifest);
    assert!(
        std::fs::read_to_string(&manifest).unwrap().starts_with('#'),
        "the manifest names the compile that wrote it"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = project.orbital(&["compile"]).expect_code(0).stdout();
    assert!(again.starts_with("Compiled 5 models into"), "{again}");
    assert_eq!(modified(&manifest), written, "nothing written");

    // Output deleted by hand: written again.
    std::fs::remove_file(&customers).unwrap();
    project.orbital(&["compile"]).expect_code(0);
    assert!(customers.is_file());
    // Another selection: another output.
    project.orbital(&["compile", "-s", "orders"]).expect_code(0);
    assert!(!customers.exists());
    project.orbital(&["compile"]).expect_code(0);
    assert!(customers.is_file());
    // A source file changed: its file rewritten.
    let orders = project.path().join("models/marts/orders.sql");
    let text = std::fs::read_to_string(&orders).unwrap();
    project.write(
        "models/marts/orders.sql",
        &text.replace("select", "select 42 as answer,"),
    );
    project.orbital(&["compile"]).expect_code(0);
    assert!(
        std::fs::read_to_string(
            project
                .path()
                .join("target/compiled/models/marts/orders.sql")
        )
        .unwrap()
        .contains("42 AS answer")
    );
}

#[test]
fn ls_lists_nodes_with_their_config() {
    let project = TestProject::jaffle_shop();
    let json = project
        .orbital(&["ls", "--json", "--select", "tag:marts"])
        .expect_code(0)
        .json();
    let names: Vec<&str> = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["customers", "orders"]);
    assert_eq!(json["nodes"][1]["materialized"], "table");
    assert_eq!(
        json["nodes"][1]["tags"],
        serde_json::json!(["marts", "finance"])
    );
    let text = project.orbital(&["ls"]).expect_code(0).stdout();
    assert!(text.contains("seed   raw_orders"), "{text}");
}

#[test]
fn targets_come_from_the_environment_and_the_command_line() {
    let project = TestProject::jaffle_shop();
    let other = project.path().join("elsewhere.db");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_orbital"))
        .args(["seed", "--project"])
        .arg(project.path())
        .env("JAFFLE_DB", &other)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(scalar(&other, "select count(*) from raw_customers"), "10");
    assert!(!project.database().exists());

    let config = std::fs::read_to_string(project.path().join("orbital.toml")).unwrap();
    project.write(
        "orbital.toml",
        &format!("{config}\n[targets.ci]\nurl = \"sqlite://ci.db\"\nthreads = 1\n"),
    );
    project.orbital(&["seed", "--target", "ci"]).expect_code(0);
    assert_eq!(
        scalar(
            &project.path().join("ci.db"),
            "select count(*) from raw_orders"
        ),
        "12"
    );
}

#[test]
fn an_in_memory_target_builds_everything_on_one_connection() {
    let project = TestProject::jaffle_shop();
    let config = std::fs::read_to_string(project.path().join("orbital.toml")).unwrap();
    project.write(
        "orbital.toml",
        &format!("{config}\n[targets.scratch]\nurl = \"sqlite://:memory:\"\n"),
    );
    let run = project
        .orbital(&["build", "--target", "scratch", "--json"])
        .expect_code(0);
    assert_eq!(run.statuses().len(), 8);
}

#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;

    let project = TestProject::empty();
    project.write(
        "orbital.toml",
        "name = \"p\"\n[targets.dev]\nurl = \"sqlite://target/p.db\"\n",
    );
    // More listing than a pipe buffers, so `ls` is still writing when the
    // reader goes away, as with `orbital ls | head`.
    for i in 0..3000 {
        project.write(&format!("models/model_{i:05}.sql"), "select 1 as x");
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_orbital"))
        .args(["ls", "--project"])
        .arg(project.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(first.contains("model_00000"), "{first}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    const SIGPIPE: i32 = 13;
    assert_eq!(output.status.signal(), Some(SIGPIPE));
}
