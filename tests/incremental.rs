//! End to end: incremental models through the binary, the bundled
//! `incremental` component and a real SQLite file. A source table the test
//! changes between runs stands in for data arriving.

mod support;

use std::path::PathBuf;

use support::{TestProject, execute, query, scalar};

const TOML: &str = "name = \"inc\"\n\
    [targets.dev]\n\
    url = \"sqlite://target/jaffle_shop.db\"\n\
    [sources.app]\n\
    tables = [\"raw_events\"]\n";

/// A project whose `events` model reads `app.raw_events` with `config`.
fn project(config: &str, columns: &str) -> (TestProject, PathBuf) {
    let project = TestProject::empty();
    project.write("orbital.toml", TOML);
    project.write("models/events.sql", &model(config, columns));
    project.write(
        "models/per_kind.sql",
        "-- config: materialized = 'table'\nselect kind, count(*) as n from events group by kind",
    );
    let db = project.database();
    execute(
        &db,
        "create table raw_events (id integer, kind text, ts text);
         insert into raw_events values (1, 'a', '2024-01-01'), (2, 'b', '2024-01-02');",
    );
    (project, db)
}

fn model(config: &str, columns: &str) -> String {
    format!(
        "-- config: materialized = 'incremental'{config}\n\
         select {columns} from app.raw_events\n\
         where if_incremental(ts > (select max(ts) from this))\n"
    )
}

fn rows(db: &std::path::Path, relation: &str) -> Vec<Vec<String>> {
    query(db, &format!("select * from {relation} order by id"))
}

fn run(project: &TestProject, args: &[&str]) -> support::Run {
    let mut full = args.to_vec();
    full.push("--json");
    project.orbital(&full).expect_code(0)
}

fn r(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

#[test]
fn merge_updates_matching_rows_inserts_the_rest_and_refreshes_what_reads_it() {
    let (project, db) = project(", unique_key = 'id'", "id, kind, ts");
    let first = run(&project, &["run"]);
    assert_eq!(first.message_of("events"), "created table (2 rows)");

    // Row 2 changes (a later ts), row 3 arrives, row 1 leaves the source:
    // an incremental table keeps what it had.
    execute(
        &db,
        "update raw_events set kind = 'c', ts = '2024-01-05' where id = 2;
         insert into raw_events values (3, 'a', '2024-01-03');
         delete from raw_events where id = 1;",
    );
    let plan = project.orbital(&["plan"]).expect_code(0).stdout();
    assert!(
        plan.contains("events (unchanged; will continue its table with the increment)"),
        "{plan}"
    );
    assert!(
        plan.contains(
            "per_kind (unchanged; will rebuild in place: it reads a table this run continues)"
        ),
        "{plan}"
    );
    let second = run(&project, &["run"]);
    assert_eq!(second.message_of("events"), "merged 2 rows");
    assert_eq!(second.statuses()["per_kind"], "success");
    assert_eq!(
        rows(&db, "events"),
        vec![
            r(&["1", "a", "2024-01-01"]),
            r(&["2", "c", "2024-01-05"]),
            r(&["3", "a", "2024-01-03"]),
        ]
    );
    assert_eq!(
        query(&db, "select kind, n from per_kind order by kind"),
        vec![r(&["a", "2"]), r(&["c", "1"])]
    );
    // Nothing new: the increment is empty and the table is as it was.
    let third = run(&project, &["run"]);
    assert_eq!(third.message_of("events"), "merged 0 rows");
    assert_eq!(scalar(&db, "select count(*) from events"), "3");

    // --full-refresh rebuilds from the source as it is now.
    let refreshed = run(&project, &["run", "--full-refresh", "--select", "events"]);
    assert_eq!(refreshed.message_of("events"), "created table (2 rows)");
    assert_eq!(
        rows(&db, "events"),
        vec![r(&["2", "c", "2024-01-05"]), r(&["3", "a", "2024-01-03"])]
    );
}

#[test]
fn append_and_delete_insert_strategies() {
    let (append, db) = project("", "id, kind, ts");
    run(&append, &["run"]);
    execute(
        &db,
        "update raw_events set ts = '2024-01-09' where id = 2; insert into raw_events values (3, 'a', '2024-01-03');",
    );
    assert_eq!(
        run(&append, &["run"]).message_of("events"),
        "appended 2 rows"
    );
    // Append keeps both versions of row 2.
    assert_eq!(scalar(&db, "select count(*) from events where id = 2"), "2");

    let (replace, db) = project(
        ", incremental_strategy = 'delete+insert', unique_key = ['id']",
        "id, kind, ts",
    );
    run(&replace, &["run"]);
    execute(
        &db,
        "update raw_events set kind = 'z', ts = '2024-01-09' where id = 2; insert into raw_events values (3, 'a', '2024-01-03');",
    );
    assert_eq!(
        run(&replace, &["run"]).message_of("events"),
        "delete+inserted 2 rows"
    );
    assert_eq!(
        rows(&db, "events"),
        vec![
            r(&["1", "a", "2024-01-01"]),
            r(&["2", "z", "2024-01-09"]),
            r(&["3", "a", "2024-01-03"]),
        ]
    );
}

/// Builds with `config` and `before` columns, then changes the model to
/// `after` columns with one new source row; returns the second run.
fn schema_change(config: &str, after: &str) -> (TestProject, PathBuf, support::Run) {
    let (project, db) = project(config, "id, kind, ts");
    run(&project, &["run"]);
    execute(&db, "insert into raw_events values (3, 'c', '2024-01-03');");
    project.write("models/events.sql", &model(config, after));
    let second = project.orbital(&["run", "--json"]);
    (project, db, second)
}

fn physical_columns(db: &std::path::Path, model: &str) -> Vec<String> {
    let table = scalar(
        db,
        &format!(
            "select name from sqlite_master where type = 'table' and name like 'orbital__{model}__%' order by rowid desc limit 1"
        ),
    );
    query(
        db,
        &format!("select name from pragma_table_info('{table}')"),
    )
    .into_iter()
    .map(|row| row[0].clone())
    .collect()
}

#[test]
fn on_schema_change_ignore_append_sync_and_fail() {
    let new_columns = "id, kind, upper(kind) as loud";
    let (_p, db, ignored) = schema_change(", unique_key = 'id'", new_columns);
    assert_eq!(ignored.code(), 0, "{}", ignored.stdout());
    assert_eq!(physical_columns(&db, "events"), ["id", "kind", "ts"]);
    // `ts` is gone from the model: the new row has none.
    assert_eq!(
        query(&db, "select id, kind, ts from events where id = 3"),
        [r(&["3", "c", "NULL"])]
    );

    let appended = ", unique_key = 'id', on_schema_change = 'append_new_columns'";
    let (_p, db, second) = schema_change(appended, "id, kind, ts, upper(kind) as loud");
    assert_eq!(second.code(), 0, "{}", second.stdout());
    assert!(
        second
            .message_of("events")
            .ends_with("merged 1 row; added loud")
    );
    assert_eq!(
        query(&db, "select id, loud from events order by id"),
        [r(&["1", "NULL"]), r(&["2", "NULL"]), r(&["3", "C"])]
    );

    let synced = ", unique_key = 'id', on_schema_change = 'sync_all_columns'";
    let (_p, db, second) = schema_change(synced, new_columns);
    assert_eq!(second.code(), 0, "{}", second.stdout());
    assert_eq!(physical_columns(&db, "events"), ["id", "kind", "loud"]);

    let failing = ", unique_key = 'id', on_schema_change = 'fail'";
    let (project, db, second) = schema_change(failing, new_columns);
    assert_eq!(second.code(), 1);
    let error = second.error_of("events");
    assert!(error.contains("materialization-incremental"), "{error}");
    assert!(
        error.contains("new: loud; gone: ts") && error.contains("on_schema_change = 'fail'"),
        "{error}"
    );
    // The environment still shows the old table with its old rows.
    assert_eq!(scalar(&db, "select count(*) from events"), "2");
    assert_eq!(
        query(&db, "select name from pragma_table_info('events')").len(),
        3
    );
    // The failed copy was dropped: only the first build's table remains.
    assert_eq!(
        scalar(
            &db,
            "select count(*) from sqlite_master where type = 'table' and name like 'orbital__events__%'"
        ),
        "1"
    );
    drop(project);
}

#[test]
fn a_changed_model_continues_its_table_forward_and_other_environments_keep_theirs() {
    let (project, db) = project(", unique_key = 'id'", "id, kind, ts");
    run(&project, &["run"]);
    // The source forgets row 1; the table remembers it.
    execute(
        &db,
        "delete from raw_events where id = 1; insert into raw_events values (3, 'c', '2024-01-03');",
    );
    project.write(
        "models/events.sql",
        &model(
            ", unique_key = 'id', on_schema_change = 'append_new_columns'",
            "id, kind, ts, upper(kind) as loud",
        ),
    );
    // A new environment continues the default environment's table.
    let plan = project
        .orbital(&["plan", "--env", "dev"])
        .expect_code(0)
        .stdout();
    assert!(plan.contains("will continue: copy table"), "{plan}");
    let dev = run(&project, &["run", "--env", "dev"]);
    assert!(
        dev.message_of("events")
            .starts_with("copied orbital__events__"),
        "{}",
        dev.message_of("events")
    );
    assert_eq!(
        query(&db, "select id, loud from dev__events order by id"),
        [r(&["1", "NULL"]), r(&["2", "NULL"]), r(&["3", "C"])]
    );
    // prod still reads its own table, untouched.
    assert_eq!(
        rows(&db, "events"),
        [r(&["1", "a", "2024-01-01"]), r(&["2", "b", "2024-01-02"])]
    );
    // Promoting makes prod read dev's continued table: history intact.
    project
        .orbital(&["promote", "dev", "--to", "prod"])
        .expect_code(0);
    assert_eq!(scalar(&db, "select count(*) from events"), "3");
    // The old table is now unreferenced: only an explicit gc drops it.
    let gc = project
        .orbital(&["gc", "--dry-run"])
        .expect_code(0)
        .stdout();
    assert!(gc.contains("table of `events`"), "{gc}");
}

#[test]
fn merge_without_unique_key_fails_before_writing_anything() {
    let (project, db) = project(", incremental_strategy = 'merge'", "id, kind, ts");
    let failed = project.orbital(&["run", "--json"]).expect_code(1);
    let error = failed.error_of("events");
    assert!(error.contains("materialization-incremental"), "{error}");
    assert!(
        error.contains("incremental_strategy = 'merge' needs a unique_key"),
        "{error}"
    );
    assert_eq!(
        scalar(
            &db,
            "select count(*) from sqlite_master where name like '%orbital__events%' or name = 'per_kind'"
        ),
        "0"
    );
}

#[test]
fn this_outside_if_incremental_is_a_compile_error_at_its_position() {
    let (project, _db) = project("", "id, kind, ts");
    project.write(
        "models/events.sql",
        "-- config: materialized = 'incremental'\nselect * from app.raw_events\nwhere ts > (select max(ts) from this)\n",
    );
    let failed = project.orbital(&["run"]).expect_code(2);
    let stderr = failed.stderr();
    assert!(stderr.contains("events.sql:3:33"), "{stderr}");
    assert!(stderr.contains("outside if_incremental"), "{stderr}");
}
