//! `orbital show`: rows of a model or of an inline query, in an
//! environment, through the real binary, on SQLite and PostgreSQL.

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
}

#[test]
fn show_reads_models_and_inline_queries_on_postgresql() {
    let Some((project, _database)) = support::backends::jaffle_shop_on_postgres("show") else {
        return;
    };
    project.orbital(&["build"]).expect_code(0);
    shows_rows(&project);
}
