//! End to end: macros in model SQL, expanded by macro plugins on the AST
//! before references resolve: the first-party `std` plugin in expression,
//! select-item and table position, and the errors of macros that go wrong.

mod support;

use support::{TestProject, query, scalar};

fn project_with(models: &[(&str, &str)]) -> TestProject {
    let project = TestProject::empty();
    let component = orbital_bundle::test_component("orbital-test-range-tests");
    project.write(
        "orbital.toml",
        &format!(
            "name = \"m\"\n[targets.dev]\nurl = \"sqlite://target/m.db\"\n\
             [plugins]\ncomponents = [{:?}]\ntimeout-ms = 500\n",
            component.display().to_string()
        ),
    );
    project.write("seeds/raw.csv", "id,kind,amount\n1,a,10\n2,b,20\n3,a,5\n");
    for (name, sql) in models {
        project.write(&format!("models/{name}.sql"), sql);
    }
    project
}

#[test]
fn std_macros_expand_in_every_position() {
    let project = project_with(&[
        (
            "keyed",
            "select std.surrogate_key(id, kind) as key, std.surrogate_key(std.surrogate_key(id), null) as nested from raw",
        ),
        (
            "pivoted",
            "select std.pivot(kind, amount, 'a', 'b'), count(*) as n from raw",
        ),
        (
            "series",
            "select generated_number from std.generate_series(4)",
        ),
        ("both", "select * from std.union_relations(raw, keyed_raw)"),
        ("keyed_raw", "select id, kind, amount from raw"),
    ]);
    let run = project.orbital(&["build", "--json"]).expect_code(0);
    assert!(
        run.statuses().values().all(|s| s == "success"),
        "{:?}",
        run.statuses()
    );
    let db = project.path().join("target/m.db");
    assert_eq!(
        query(&db, "select key, nested from keyed order by key"),
        [
            ["1-a", "1-_null_"],
            ["2-b", "2-_null_"],
            ["3-a", "3-_null_"]
        ]
    );
    assert_eq!(
        query(&db, "select a_amount, b_amount, n from pivoted"),
        [["15", "20", "3"]]
    );
    assert_eq!(
        scalar(&db, "select group_concat(generated_number) from series"),
        "1,2,3,4"
    );
    assert_eq!(
        query(
            &db,
            "select _source_relation, count(*) from both group by 1 order by 1"
        ),
        [["keyed_raw", "3"], ["raw", "3"]]
    );

    // The relations a macro's SQL reads are dependencies like any other.
    let listed = project
        .orbital(&["ls", "--json", "--select", "+both"])
        .expect_code(0)
        .json();
    let names: Vec<&str> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"keyed_raw") && names.contains(&"raw"),
        "{names:?}"
    );

    // Expanded SQL is what `compile` shows, and an unchanged rebuild reuses it.
    let sql = project
        .orbital(&["compile", "pivoted"])
        .expect_code(0)
        .stdout();
    assert!(
        sql.contains("sum(CASE WHEN kind = 'a' THEN amount ELSE 0 END) AS a_amount"),
        "{sql}"
    );
    let again = project.orbital(&["build", "--json"]).expect_code(0);
    assert!(again.statuses().values().all(|s| s == "reused"));
}

#[test]
fn star_reads_columns_from_the_catalog_and_follows_upstream_changes() {
    let project = project_with(&[
        (
            "wide",
            "select id, kind, amount, amount * 2 as doubled from raw",
        ),
        (
            "narrow",
            "select std.star(wide, 'doubled', relation_alias => 'w'), 1 as one from wide as w",
        ),
        ("extra", "select id, 'x' as note from raw"),
        (
            "calendar",
            "select date_month from std.date_spine('month', '2024-01-31', '2024-04-01')",
        ),
        ("unioned", "select * from std.union_relations(extra, wide)"),
    ]);
    project.orbital(&["build", "--json"]).expect_code(0);
    let db = project.path().join("target/m.db");
    let columns = |relation: &str| -> Vec<String> {
        query(
            &db,
            &format!("select name from pragma_table_info('{relation}')"),
        )
        .into_iter()
        .map(|row| row[0].clone())
        .collect()
    };
    assert_eq!(columns("narrow"), ["id", "kind", "amount", "one"]);
    // union_relations matches columns by name, NULL where one lacks it.
    assert_eq!(
        columns("unioned"),
        [
            "_source_relation",
            "id",
            "note",
            "kind",
            "amount",
            "doubled"
        ]
    );
    assert_eq!(
        scalar(&db, "select count(*) from unioned where note is null"),
        "3"
    );
    assert_eq!(
        scalar(&db, "select group_concat(date_month) from calendar"),
        "2024-01-31,2024-02-29,2024-03-31"
    );
    // `wide` gains a column: `narrow`, unchanged on disk, is expanded again
    // (its cached parse was made with the old columns).
    project.write(
        "models/wide.sql",
        "select id, kind, amount, amount * 2 as doubled, kind || '!' as loud from raw",
    );
    let run = project.orbital(&["build", "--json"]).expect_code(0);
    assert_eq!(run.statuses()["narrow"], "success");
    assert_eq!(columns("narrow"), ["id", "kind", "amount", "loud", "one"]);

    let error = refused("select std.star(raw, 'nope') from raw");
    assert!(
        error.contains("`raw` has no column `nope` to leave out (it has id, kind, amount)"),
        "{error}"
    );
}

/// Runs `orbital build` on one model and returns stderr (exit code 2).
fn refused(sql: &str) -> String {
    let project = project_with(&[("bad", sql)]);
    let stderr = project.orbital(&["build"]).expect_code(2).stderr();
    assert!(
        !project.path().join("target/m.db").exists(),
        "nothing is written"
    );
    stderr
}

#[test]
fn macros_that_go_wrong_are_clear_errors_at_the_call_site() {
    let wrong_args = refused("select *\nfrom std.generate_series('many')");
    assert!(
        wrong_args.contains("models/bad.sql:2:6")
            && wrong_args.contains("macro `std.generate_series` of plugin `macros-std`")
            && wrong_args.contains("positive whole number"),
        "{wrong_args}"
    );

    let too_few = refused("select std.pivot(kind) from raw");
    assert!(
        too_few.contains(
            "macro `std.pivot` of plugin `macros-std` needs at least 3 argument(s), got 1"
        ),
        "{too_few}"
    );

    let misspelled = refused("select std.surogate_key(id) as k from raw");
    assert!(
        misspelled.contains("unknown macro `std.surogate_key`; did you mean `std.surrogate_key`?"),
        "{misspelled}"
    );
    let no_such_table = refused("select * from std.series(3)");
    assert!(
        no_such_table.contains("unknown macro `std.series`"),
        "{no_such_table}"
    );

    let unparseable = refused("select broken() as x from raw");
    assert!(
        unparseable.contains("macro `broken`")
            && unparseable.contains("not one expression")
            && unparseable.contains("models/bad.sql:1:8"),
        "{unparseable}"
    );

    let looping = refused("select spins(id) as x from raw");
    assert!(
        looping.contains("test-range-tests") && looping.contains("time limit"),
        "{looping}"
    );
}
