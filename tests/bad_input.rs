//! End to end: every kind of bad input is a clear error naming the file (and
//! line:column where there is one), exit code 2, and nothing written.

mod support;

use support::TestProject;

const TOML: &str = "name = \"bad\"\n[targets.dev]\nurl = \"sqlite://target/bad.db\"\n";

fn project(files: &[(&str, &str)]) -> TestProject {
    let project = TestProject::empty();
    project.write("orbital.toml", TOML);
    project.write("seeds/raw.csv", "id,name\n1,a\n2,b\n");
    project.write("models/good.sql", "select id from raw");
    for (path, text) in files {
        project.write(path, text);
    }
    project
}

/// Runs `build`, expects exit 2 and `expected` in stderr, and no database.
fn expect_refused(project: &TestProject, expected: &str) -> String {
    let run = project.orbital(&["build"]).expect_code(2);
    let stderr = run.stderr();
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
    assert!(
        !project.path().join("target/bad.db").exists(),
        "nothing may be written"
    );
    stderr
}

#[test]
fn sql_syntax_error() {
    let project = project(&[("models/broken.sql", "select id,\n  name nme oops\nfrom raw")]);
    let stderr = expect_refused(
        &project,
        "models/broken.sql:2:12: SQL syntax error in model `broken`",
    );
    // The source line is shown under the message.
    assert!(stderr.contains("name nme oops"), "{stderr}");
}

#[test]
fn a_column_named_twice() {
    let project = project(&[(
        "models/twice.sql",
        "select r.id, g.id\nfrom raw as r join good as g on r.id = g.id",
    )]);
    expect_refused(
        &project,
        "models/twice.sql:1:16: model `twice` returns column `id` twice (first at line 1, column 10)",
    );
}

#[test]
fn unknown_table() {
    let project = project(&[("models/m.sql", "select *\nfrom good\njoin raww on true")]);
    expect_refused(
        &project,
        "models/m.sql:3:6: model `m` refers to unknown table `raww`; did you mean `raw`?",
    );
}

#[test]
fn cycle() {
    let project = project(&[
        ("models/a.sql", "select * from b"),
        ("models/b.sql", "select * from c"),
        ("models/c.sql", "select * from a"),
    ]);
    expect_refused(
        &project,
        "models/a.sql:1:15: dependency cycle: a -> b -> c -> a",
    );
}

#[test]
fn duplicate_model_name() {
    let project = project(&[("models/x/good.sql", "select 2 as id")]);
    expect_refused(
        &project,
        "models/x/good.sql:1:1: duplicate name `good`: also defined at models/good.sql",
    );
}

#[test]
fn missing_project_file() {
    let project = TestProject::empty();
    let run = project.orbital(&["build"]).expect_code(2);
    assert!(
        run.stderr().contains("no orbital.toml in "),
        "{}",
        run.stderr()
    );
}

#[test]
fn malformed_project_file() {
    let project = project(&[("orbital.toml", "name = \"bad\"\n[targets.dev\nurl = 3\n")]);
    expect_refused(&project, "orbital.toml:2:13:");
    let project = project_with_toml(
        "name = \"bad\"\n[targets.dev]\nurl = \"sqlite://x.db\"\nthreads = \"many\"\n",
    );
    expect_refused(
        &project,
        "orbital.toml:4:11: invalid type: string \"many\", expected usize",
    );
}

fn project_with_toml(toml: &str) -> TestProject {
    let project = project(&[]);
    project.write("orbital.toml", toml);
    project
}

#[test]
fn malformed_csv() {
    let project = project(&[("seeds/raw.csv", "id,name\n1,a\n2\n")]);
    expect_refused(
        &project,
        "seeds/raw.csv:3:1: malformed CSV in seed `raw`: this row has 1 fields; the header has 2",
    );
}

#[test]
fn unknown_target() {
    let project = project(&[]);
    let run = project
        .orbital(&["build", "--target", "prod"])
        .expect_code(2);
    assert!(
        run.stderr()
            .contains("unknown target `prod`; orbital.toml defines: dev"),
        "{}",
        run.stderr()
    );
}

#[test]
fn unknown_selector() {
    let project = project(&[]);
    let run = project
        .orbital(&["build", "--select", "goood"])
        .expect_code(2);
    assert!(
        run.stderr()
            .contains("invalid selector `goood`: matches no model or seed; did you mean `good`?"),
        "{}",
        run.stderr()
    );
    let run = project
        .orbital(&["run", "--select", "colour:red"])
        .expect_code(2);
    assert!(
        run.stderr().contains("unknown method `colour`"),
        "{}",
        run.stderr()
    );
}

#[test]
fn errors_as_json_carry_positions() {
    let project = project(&[("models/m.sql", "select * from nowhere")]);
    let run = project.orbital(&["build", "--json"]).expect_code(2);
    let json = run.json();
    assert_eq!(json["error"]["file"], "models/m.sql");
    assert_eq!(
        (
            json["error"]["line"].as_u64(),
            json["error"]["column"].as_u64()
        ),
        (Some(1), Some(15))
    );
}

#[test]
fn every_error_in_the_project_is_reported_at_once() {
    let project = project(&[
        ("models/a.sql", "select * from nowhere"),
        ("models/b.sql", "select from from"),
    ]);
    let stderr = expect_refused(&project, "models/a.sql:1:15");
    assert!(stderr.contains("models/b.sql:1:"), "{stderr}");
}

/// A statement the database refuses at run time: the error names the model,
/// the plugin and the statement, and the model's relation is not published.
#[test]
fn a_database_error_shows_the_statement() {
    let project = TestProject::jaffle_shop();
    project.write(
        "models/bad_json.sql",
        "-- config: materialized = 'table'\nselect json_extract('not json', '$') as j\n",
    );
    let run = project
        .orbital(&["build", "--json", "--select", "bad_json"])
        .expect_code(1);
    let error = run.error_of("bad_json");
    assert!(error.contains("materialization-table"), "{error}");
    assert!(error.contains("malformed JSON"), "{error}");
    assert!(
        error.contains("; in the statement: CREATE TABLE \"orbital__bad_json__")
            && error.contains("SELECT json_extract('not json', '$') AS j"),
        "{error}"
    );
    assert_eq!(
        support::scalar(
            &project.database(),
            "SELECT count(*) FROM sqlite_master WHERE name = 'bad_json'"
        ),
        "0"
    );
}
