//! `orbital show`: rows of a model or of an inline query, in an
//! environment, through the real binary, on SQLite, PostgreSQL and MariaDB.

mod support;

use support::TestProject;

/// Checks `show` on a built jaffle_shop `project`.
fn shows_rows(project: &TestProject) {
    let json = project
        .orbital(&["show", "orders", "--limit", "3", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(json["columns"][0], "order_id");
    assert_eq!(json["rows"].as_array().unwrap().len(), 3);

    let statuses = project
        .orbital(&[
            "show",
            "--inline",
            "select status, count(*) as n from orders group by status order by status",
            "--json",
        ])
        .expect_code(0)
        .json();
    assert_eq!(statuses["columns"], serde_json::json!(["status", "n"]));
    let first = &statuses["rows"][0];
    assert_eq!(first[0], "completed");

    let text = project
        .orbital(&["show", "customers", "--limit", "2"])
        .expect_code(0)
        .stdout();
    assert!(text.starts_with("customer_id | first_name"), "{text}");
    assert!(text.ends_with("(2 rows)\n"), "{text}");

    // Another environment reads its own relations: none yet.
    let missing = project
        .orbital(&["show", "orders", "--env", "dev"])
        .expect_code(2);
    assert!(
        missing
            .stderr()
            .contains("`orders` is not built in environment `dev`"),
        "{}",
        missing.stderr()
    );
    project.orbital(&["build", "--env", "dev"]).expect_code(0);
    let dev = project
        .orbital(&[
            "show",
            "--env",
            "dev",
            "--inline",
            "select count(*) as n from orders",
            "--json",
        ])
        .expect_code(0)
        .json();
    assert_eq!(dev["rows"][0][0], "12");

    for (args, says) in [
        (vec!["show", "ordrs"], "did you mean `orders`?"),
        (
            vec!["show", "--inline", "select * from nope"],
            "unknown table `nope`",
        ),
        (vec!["show", "orders", "--limit", "0"], "--limit 0"),
        (vec!["show"], "name a model"),
    ] {
        let failed = project.orbital(&args).expect_code(2);
        assert!(
            failed.stderr().contains(says),
            "{args:?}: {}",
            failed.stderr()
        );
    }
}

#[test]
fn show_reads_models_and_inline_queries_on_sqlite() {
    let project = TestProject::jaffle_shop();
    project.orbital(&["build"]).expect_code(0);
    shows_rows(&project);
    // SQLite keeps booleans as integers and dates as text.
    shows_every_type(
        &project,
        "select 7 as an_integer, 2.5 as a_real, 'text ' || 'value' as a_text, \
         '2024-01-02' as a_date, 1 = 1 as a_boolean, null as a_null",
        &["7", "2.5", "text value", "2024-01-02", "1", "NULL"],
    );
}

#[test]
fn show_reads_models_and_inline_queries_on_postgresql() {
    let Some((project, _database)) = support::backends::jaffle_shop_on_postgres("show") else {
        return;
    };
    project.orbital(&["build"]).expect_code(0);
    shows_rows(&project);
    shows_every_type(
        &project,
        "select 7 as an_integer, cast(2.5 as double precision) as a_real, \
         cast(12.5 as numeric(10, 2)) as a_numeric, 'text value' as a_text, \
         cast('2024-01-02' as date) as a_date, \
         cast('2024-01-02 03:04:05' as timestamp) as a_timestamp, true as a_boolean, \
         cast(null as integer) as a_null",
        &[
            "7",
            "2.5",
            "12.50",
            "text value",
            "2024-01-02",
            "2024-01-02 03:04:05",
            "true",
            "NULL",
        ],
    );
}

#[test]
fn show_reads_models_and_inline_queries_on_mariadb() {
    let Some((project, _database)) = support::backends::jaffle_shop_on_mysql("show") else {
        return;
    };
    project.orbital(&["build"]).expect_code(0);
    shows_rows(&project);
    // MariaDB keeps booleans as TINYINT(1), read back as booleans.
    shows_every_type(
        &project,
        "select 7 as an_integer, cast(2.5 as double) as a_real, \
         cast(12.5 as decimal(10, 2)) as a_numeric, 'text value' as a_text, \
         cast('2024-01-02' as date) as a_date, \
         cast('2024-01-02 03:04:05' as datetime) as a_timestamp, \
         cast(null as signed) as a_null",
        &[
            "7",
            "2.5",
            "12.50",
            "text value",
            "2024-01-02",
            "2024-01-02 03:04:05",
            "NULL",
        ],
    );
}

/// `show` of a model of one row of each type (`sql`) prints `cells`, and
/// of a model of no rows prints its columns and no row.
fn shows_every_type(project: &TestProject, sql: &str, cells: &[&str]) {
    project.write("models/typed.sql", sql);
    project.write(
        "models/nothing.sql",
        "select order_id, status from orders where 1 = 0",
    );
    project
        .orbital(&["build", "--select", "typed", "nothing"])
        .expect_code(0);
    let typed = project
        .orbital(&["show", "typed", "--json"])
        .expect_code(0)
        .json();
    let shown: Vec<String> = typed["rows"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|cell| cell.as_str().map_or("NULL".to_string(), str::to_string))
        .collect();
    assert_eq!(shown, cells, "{typed}");
    let text = project.orbital(&["show", "typed"]).expect_code(0).stdout();
    assert!(
        text.contains("NULL") && text.ends_with("(1 row)\n"),
        "{text}"
    );

    let nothing = project
        .orbital(&["show", "nothing", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(
        nothing["columns"],
        serde_json::json!(["order_id", "status"])
    );
    assert_eq!(nothing["rows"], serde_json::json!([]));
    let text = project
        .orbital(&["show", "nothing"])
        .expect_code(0)
        .stdout();
    assert!(
        text.starts_with("order_id | status\n") && text.ends_with("(0 rows)\n"),
        "{text}"
    );
}
