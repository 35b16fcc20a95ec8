//! The adapter conformance suite: what every adapter must do, in the spirit
//! of dbt's dbt-tests-adapter. Each case runs the real `orbital` binary with
//! the bundled components against SQLite, PostgreSQL and MariaDB (a fresh
//! database per case on the servers `tests/bin/with-servers` starts; in CI
//! a missing server is a failure).
//!
//! A new adapter joins by adding its backend to `support::backends` and a
//! module to the `on_each_backend!` list below (one test per case per backend).

#[macro_use]
mod support;

use support::backends::{Backend, Case};

on_each_backend!(
    base,
    ephemeral,
    incremental,
    snapshot,
    data_tests,
    environments,
    failures,
);

// What ClickHouse 18 cannot do is listed, with the reason, in
// plugins/adapter-clickhouse/README.md.
on_clickhouse!(base, data_tests, environments, failures);

// The same suite on MariaDB through an adapter's own connection: the
// mysql-wire example speaks MySQL's protocol over `wasi:sockets`.
on_mysql_wire!(
    base,
    ephemeral,
    incremental,
    snapshot,
    data_tests,
    environments,
    failures,
);

fn r(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

fn statuses(case: &Case, args: &[&str]) -> std::collections::BTreeMap<String, String> {
    let mut full = args.to_vec();
    full.push("--json");
    case.orbital(&full).expect_code(0).statuses()
}

/// Seeds (typed by inference and by config), a view and a table over them.
fn seeded(backend: Backend) -> Case {
    let case = Case::new(
        backend,
        "[seeds.people.column-types]\njoined = \"date\"\nscore = \"numeric\"\n",
    );
    let project = &case.project;
    project.write(
        "seeds/people.csv",
        "id,name,joined,score,active\n1,ana,2024-01-02,10.50,true\n2,bo,2024-02-03,7.25,false\n3,cy,2024-03-04,,true\n",
    );
    project.write(
        "models/active_people.sql",
        "select id, name, joined, score from people where active",
    );
    project.write(
        "models/score_summary.sql",
        "-- config: materialized = 'table'\n\
         select count(*) as people, sum(score) as total, max(joined) as latest from active_people",
    );
    case
}

fn base(backend: Backend) {
    let case = seeded(backend);
    let first = statuses(&case, &["build"]);
    assert_eq!(first.len(), 3, "{first:?}");
    assert!(first.values().all(|s| s == "success"), "{first:?}");
    assert_eq!(case.kind("active_people"), "view");
    assert_eq!(
        case.query("select id, name, joined, score from active_people order by id"),
        [
            r(&["1", "ana", "2024-01-02", "10.50"]),
            r(&["3", "cy", "2024-03-04", "NULL"]),
        ]
    );
    assert_eq!(
        case.query("select people, total, latest from score_summary"),
        [r(&["2", "10.50", "2024-03-04"])]
    );
    // Run twice: nothing runs again.
    let second = statuses(&case, &["build"]);
    assert!(second.values().all(|s| s == "reused"), "{second:?}");
    // An edit rebuilds the model and what reads it.
    case.project.write(
        "models/active_people.sql",
        "select id, name, joined, score from people where active and id > 1",
    );
    let third = statuses(&case, &["build"]);
    assert_eq!(third["people"], "reused");
    assert_eq!(third["active_people"], "success");
    assert_eq!(third["score_summary"], "success");
    assert_eq!(
        case.query("select people, total from score_summary"),
        [r(&["1", "NULL"])]
    );
}

fn ephemeral(backend: Backend) {
    let case = seeded(backend);
    case.project.write(
        "models/active_people.sql",
        "-- config: materialized = 'ephemeral'\nselect id, name, joined, score from people where active",
    );
    let run = statuses(&case, &["build"]);
    assert!(!run.contains_key("active_people"), "{run:?}");
    assert_eq!(case.kind("active_people"), "none");
    assert_eq!(
        case.query("select people, total from score_summary"),
        [r(&["2", "10.50"])]
    );
}

const EVENTS: &str = "[sources.app]\ntables = [\"raw_events\"]\n";

fn events_model(config: &str, columns: &str) -> String {
    format!(
        "-- config: materialized = 'incremental', unique_key = 'id'{config}\n\
         select {columns} from app.raw_events\n\
         where if_incremental(id > (select max(id) from this) or kind = 'fix')"
    )
}

fn incremental(backend: Backend) {
    let case = Case::new(backend, EVENTS);
    case.execute(
        "create table raw_events (id integer, kind text, amount integer);
         insert into raw_events values (1, 'a', 10), (2, 'b', 20)",
    );
    case.project
        .write("models/events.sql", &events_model("", "id, kind, amount"));
    let first = case.orbital(&["run", "--json"]).expect_code(0);
    assert_eq!(first.message_of("events"), "created table (2 rows)");

    // Merge: a corrected row and a new one.
    case.execute(
        "update raw_events set kind = 'fix', amount = 21 where id = 2;
         insert into raw_events values (3, 'c', 30)",
    );
    let merged = case.orbital(&["run", "--json"]).expect_code(0);
    assert_eq!(merged.message_of("events"), "merged 2 rows");
    assert_eq!(
        case.query("select id, kind, amount from events order by id"),
        [
            r(&["1", "a", "10"]),
            r(&["2", "fix", "21"]),
            r(&["3", "c", "30"]),
        ]
    );

    // A new column, appended to the table the model continues.
    case.project.write(
        "models/events.sql",
        &events_model(
            ", on_schema_change = 'append_new_columns'",
            "id, kind, amount, amount * 2 as doubled",
        ),
    );
    case.execute("insert into raw_events values (4, 'd', 40)");
    let widened = case.orbital(&["run", "--json"]).expect_code(0);
    let message = widened.message_of("events");
    assert!(message.starts_with("copied orbital__events__"), "{message}");
    assert!(message.ends_with("added doubled"), "{message}");
    assert_eq!(
        case.query("select id, doubled from events order by id"),
        [
            r(&["1", "NULL"]),
            r(&["2", "42"]),
            r(&["3", "NULL"]),
            r(&["4", "80"]),
        ]
    );

    // delete+insert on the same table.
    case.project.write(
        "models/events.sql",
        &events_model(
            ", incremental_strategy = 'delete+insert', on_schema_change = 'append_new_columns'",
            "id, kind, amount, amount * 2 as doubled",
        ),
    );
    case.execute("update raw_events set kind = 'fix', amount = 11 where id = 1");
    let replaced = case.orbital(&["run", "--json"]).expect_code(0);
    assert!(
        replaced
            .message_of("events")
            .ends_with("delete+inserted 2 rows"),
        "{}",
        replaced.message_of("events")
    );
    assert_eq!(
        case.query("select id, amount, doubled from events where id <= 2 order by id"),
        [r(&["1", "11", "22"]), r(&["2", "21", "42"])]
    );

    // sync_all_columns drops what the model no longer returns.
    case.project.write(
        "models/events.sql",
        &events_model(
            ", on_schema_change = 'sync_all_columns'",
            "id, kind, amount",
        ),
    );
    let synced = case
        .orbital(&["run", "--json", "--select", "events"])
        .expect_code(0);
    assert!(
        synced.message_of("events").ends_with("dropped doubled"),
        "{}",
        synced.message_of("events")
    );
    assert_eq!(
        case.query("select * from events where id = 1"),
        [r(&["1", "fix", "11"])]
    );

    // Append keeps every version it is given.
    case.project.write(
        "models/log.sql",
        "-- config: materialized = 'incremental', incremental_strategy = 'append'\n\
         select id, kind from app.raw_events where if_incremental(kind = 'fix')",
    );
    case.orbital(&["run", "--select", "log"]).expect_code(0);
    case.orbital(&["run", "--select", "log"]).expect_code(0);
    assert_eq!(
        case.scalar("select count(*) from log where kind = 'fix'"),
        "4"
    );

    // A full refresh starts over from the source.
    case.execute("delete from raw_events where id = 3");
    case.orbital(&["run", "--full-refresh", "--select", "events"])
        .expect_code(0);
    assert_eq!(case.scalar("select count(*) from events"), "3");

    // Merge without a key: refused before anything is written.
    case.project.write(
        "models/keyless.sql",
        "-- config: materialized = 'incremental', incremental_strategy = 'merge'\nselect 1 as id",
    );
    let refused = case.orbital(&["run", "--json"]).expect_code(1);
    assert!(
        refused.error_of("keyless").contains("needs a unique_key"),
        "{}",
        refused.stdout()
    );
    assert_eq!(case.count_relations("orbital__keyless%"), 0);
}

fn snapshot(backend: Backend) {
    // A timestamp column where the database has one, and its text as
    // PostgreSQL writes it (no trailing zeros in the fraction).
    let (timestamp, as_text): (_, fn(&str) -> String) = match backend {
        Backend::Postgres(_) => ("timestamp", |c| format!("cast({c} as text)")),
        Backend::MySql(_) => ("datetime(6)", |c| {
            format!("trim(trailing '.' from trim(trailing '0' from cast({c} as char)))")
        }),
        Backend::Sqlite => ("text", |c| format!("cast({c} as text)")),
        Backend::ClickHouse(_) => unreachable!("ClickHouse 18 has no UPDATE for snapshots"),
    };
    let case = Case::new(backend, "[sources.crm]\ntables = [\"raw_customers\"]\n");
    case.execute(&format!(
        "create table raw_customers (id integer, tier text, updated_at {timestamp});
         insert into raw_customers values (1, 'gold', '2024-01-01 00:00:00'), (2, 'silver', '2024-01-01 00:00:00')"
    ));
    case.project.write(
        "models/history.sql",
        "-- config: materialized = 'snapshot', unique_key = 'id', strategy = 'timestamp'\n\
         -- config: updated_at = 'updated_at', hard_deletes = 'invalidate'\n\
         select id, tier, updated_at from crm.raw_customers",
    );
    case.orbital(&["run"]).expect_code(0);
    case.execute(
        "update raw_customers set tier = 'gold', updated_at = '2024-02-01 00:00:00' where id = 2;
         delete from raw_customers where id = 1",
    );
    let second = case.orbital(&["run", "--json"]).expect_code(0);
    assert_eq!(
        second.message_of("history"),
        "snapshot: 1 changed, 0 new, 1 deleted"
    );
    let runs = case.orbital(&["runs", "--json"]).expect_code(0).json();
    let started = runs["runs"][0]["started_at"]
        .as_str()
        .unwrap()
        .trim_end_matches('Z')
        .replacen('T', " ", 1);
    assert_eq!(
        case.query(&format!(
            "select id, tier, {}, {} from history order by id, valid_from",
            as_text("valid_from"),
            as_text("valid_to")
        )),
        [
            r(&["1", "gold", "2024-01-01 00:00:00", &started]),
            r(&["2", "silver", "2024-01-01 00:00:00", "2024-02-01 00:00:00"]),
            r(&["2", "gold", "2024-02-01 00:00:00", "NULL"]),
        ]
    );

    // The check strategy on a listed column, NULLs compared as equal.
    case.project.write(
        "models/tiers.sql",
        "-- config: materialized = 'snapshot', unique_key = 'id', strategy = 'check', check_cols = ['tier']\n\
         select id, tier from crm.raw_customers",
    );
    case.orbital(&["run", "--select", "tiers"]).expect_code(0);
    case.execute("update raw_customers set tier = null where id = 2");
    let changed = case
        .orbital(&["run", "--select", "tiers", "--json"])
        .expect_code(0);
    assert_eq!(
        changed.message_of("tiers"),
        "snapshot: 1 changed, 0 new, 0 deleted"
    );
    let unchanged = case
        .orbital(&["run", "--select", "tiers", "--json"])
        .expect_code(0);
    assert_eq!(
        unchanged.message_of("tiers"),
        "snapshot: 0 changed, 0 new, 0 deleted"
    );
    assert_eq!(
        case.query("select tier from tiers order by valid_from"),
        [r(&["gold"]), r(&["NULL"])]
    );
}

fn data_tests(backend: Backend) {
    let case = seeded(backend);
    case.project.write(
        "models/active_people.sql",
        "-- config: tests.id = ['unique', 'not_null']\n\
         -- config: tests.name = [{ accepted_values = ['ana', 'cy'] }]\n\
         select id, name, joined, score from people where active",
    );
    case.project.write(
        "tests/no_negative_scores.sql",
        "select * from people where score < 0",
    );
    let passing = case.orbital(&["build", "--json"]).expect_code(0);
    let tests = passing.test_statuses();
    assert_eq!(tests.len(), 4, "{tests:?}");
    assert!(tests.values().all(|s| s == "pass"), "{tests:?}");
    case.project.write(
        "tests/no_negative_scores.sql",
        "select * from people where score > 10",
    );
    let failing = case.orbital(&["test", "--json"]).expect_code(1);
    assert_eq!(failing.test_statuses()["no_negative_scores"], "fail");
}

fn environments(backend: Backend) {
    let case = seeded(backend);
    statuses(&case, &["build"]);
    // A new environment reuses every build: no model SQL runs.
    let dev = statuses(&case, &["build", "--env", "dev"]);
    assert!(dev.values().all(|s| s == "reused"), "{dev:?}");
    assert_eq!(case.kind("dev__score_summary"), "view");
    case.project.write(
        "models/score_summary.sql",
        "-- config: materialized = 'table'\nselect count(*) as people from active_people",
    );
    let plan = case
        .orbital(&["plan", "--env", "dev", "--json"])
        .expect_code(0)
        .json();
    let nodes = plan["nodes"].as_array().unwrap();
    let summary = nodes.iter().find(|n| n["name"] == "score_summary").unwrap();
    assert_eq!(summary["change"], "modified");
    assert_eq!(summary["action"], "build");
    statuses(&case, &["run", "--env", "dev"]);
    assert_eq!(case.scalar("select count(*) from dev__score_summary"), "1");
    assert_eq!(
        case.query("select people, total from score_summary"),
        [r(&["2", "10.50"])]
    );
    case.orbital(&["promote", "dev", "--to", "prod"])
        .expect_code(0);
    assert_eq!(case.query("select * from score_summary"), [r(&["2"])]);
    // The old build is referenced by no environment now: gc drops it.
    assert_eq!(case.count_relations("orbital__score_summary__%"), 2);
    case.orbital(&["gc"]).expect_code(0);
    assert_eq!(case.count_relations("orbital__score_summary__%"), 1);
}

fn failures(backend: Backend) {
    let case = seeded(backend);
    statuses(&case, &["build"]);
    // A model the database rejects fails alone; what users see stays.
    case.project.write(
        "models/score_summary.sql",
        "-- config: materialized = 'table'\nselect no_such_column from active_people",
    );
    let failed = case.orbital(&["run", "--json"]).expect_code(1);
    assert_eq!(failed.statuses()["score_summary"], "error");
    assert!(
        failed.error_of("score_summary").contains("no_such_column"),
        "{}",
        failed.stdout()
    );
    assert_eq!(
        case.query("select people, total from score_summary"),
        [r(&["2", "10.50"])]
    );
}

/// On a database with schemas, builds live in the target's schema and
/// another environment's relations in `<schema>__<environment>`, both
/// created as needed.
#[test]
fn postgres_schemas_are_created_for_builds_and_environments() {
    let Some(backend) = Backend::postgres("schemas") else {
        return;
    };
    let case = Case::new(backend, "");
    let config = std::fs::read_to_string(case.project.path().join("orbital.toml")).unwrap();
    case.project.write(
        "orbital.toml",
        &config.replace("[targets.dev]\n", "[targets.dev]\nschema = \"analytics\"\n"),
    );
    case.project.write(
        "models/numbers.sql",
        "-- config: materialized = 'table'\nselect 1 as n",
    );
    case.orbital(&["run"]).expect_code(0);
    case.orbital(&["run", "--env", "dev"]).expect_code(0);
    assert_eq!(case.scalar("select n from analytics.numbers"), "1");
    assert_eq!(case.scalar("select n from analytics__dev.numbers"), "1");
    assert_eq!(
        case.scalar(
            "select count(*) from pg_tables where schemaname = 'analytics' and tablename like 'orbital__numbers__%'"
        ),
        "1"
    );
}

/// On MySQL a schema is a database, made as needed: builds live in the
/// target's, another environment's relations in `<schema>__<environment>`.
#[test]
fn mysql_schemas_are_databases_made_for_builds_and_environments() {
    let Some(backend) = Backend::mysql("schemas") else {
        return;
    };
    let Backend::MySql(db) = &backend else {
        unreachable!("a MySQL backend")
    };
    let schema = format!("{}_a", db.name);
    let server = db.server.clone();
    let case = Case::new(backend, "");
    let config = std::fs::read_to_string(case.project.path().join("orbital.toml")).unwrap();
    case.project.write(
        "orbital.toml",
        &config.replace(
            "[targets.dev]\n",
            &format!("[targets.dev]\nschema = \"{schema}\"\n"),
        ),
    );
    case.project.write(
        "models/numbers.sql",
        "-- config: materialized = 'table'\nselect 1 as n",
    );
    case.orbital(&["run"]).expect_code(0);
    case.orbital(&["run", "--env", "dev"]).expect_code(0);
    let made = [
        case.scalar(&format!("select n from {schema}.numbers")),
        case.scalar(&format!("select n from {schema}__dev.numbers")),
        case.scalar(&format!(
            "select count(*) from information_schema.tables where table_schema = '{schema}' \
             and table_name like 'orbital\\_\\_numbers\\_\\_%'"
        )),
    ];
    for database in [schema.clone(), format!("{schema}__dev")] {
        support::backends::mariadb(&server, &format!("DROP DATABASE {database}")).unwrap();
    }
    assert_eq!(made, ["1", "1", "1"]);
}

/// jaffle_shop on PostgreSQL gives the rows it gives on SQLite.
#[test]
fn jaffle_shop_builds_the_same_on_postgres() {
    if let Some(backend) = Backend::postgres("jaffle") {
        jaffle_shop_builds_the_same(backend);
    }
}

/// jaffle_shop on MariaDB gives the rows it gives on SQLite.
#[test]
fn jaffle_shop_builds_the_same_on_mysql() {
    if let Some(backend) = Backend::mysql("jaffle") {
        jaffle_shop_builds_the_same(backend);
    }
}

fn jaffle_shop_builds_the_same(backend: Backend) {
    let url = match &backend {
        Backend::Postgres(db) => db.url.clone(),
        Backend::MySql(db) => db.url.clone(),
        Backend::ClickHouse(db) => db.url.clone(),
        Backend::Sqlite => unreachable!("compared against SQLite"),
    };
    let sqlite = support::TestProject::jaffle_shop();
    sqlite.orbital(&["build"]).expect_code(0);
    let server = Case {
        project: support::TestProject::jaffle_shop(),
        backend,
    };
    let config = std::fs::read_to_string(server.project.path().join("orbital.toml")).unwrap();
    let config = config.replace("sqlite://${JAFFLE_DB:-target/jaffle_shop.db}", &url);
    server.project.write("orbital.toml", &config);
    let built = server.orbital(&["build", "--json"]).expect_code(0);
    assert!(
        built.test_statuses().values().all(|s| s == "pass"),
        "{:?}",
        built.test_statuses()
    );
    for query in [
        "select * from customers order by customer_id",
        "select * from orders order by order_id",
    ] {
        // A sum of decimals that is 0 is `0` on SQLite and `0.00` on
        // MariaDB: numbers compare as numbers.
        let as_numbers = |rows: Vec<Vec<String>>| -> Vec<Vec<String>> {
            rows.into_iter()
                .map(|row| {
                    row.iter()
                        .map(|c| match c.parse::<f64>() {
                            Ok(number) => format!("{number:.2}"),
                            Err(_) => c.clone(),
                        })
                        .collect()
                })
                .collect()
        };
        let expected = as_numbers(support::query(&sqlite.database(), query));
        let got = as_numbers(server.query(query));
        assert_eq!(got, expected, "{query}");
        assert!(!got.is_empty());
    }
}

/// Two processes (two copies of a project, so two state stores) running
/// against one PostgreSQL database at once: the second waits for the
/// first's run, and both environments come out whole.
#[test]
fn concurrent_runs_on_one_postgres_database_do_not_corrupt_each_other() {
    if let Some(backend) = Backend::postgres("concurrent") {
        concurrent_runs_do_not_corrupt_each_other(backend, "pg_sleep(0.2) is null");
    }
}

/// The same on one MariaDB database.
#[test]
fn concurrent_runs_on_one_mysql_database_do_not_corrupt_each_other() {
    if let Some(backend) = Backend::mysql("concurrent") {
        concurrent_runs_do_not_corrupt_each_other(backend, "sleep(0.2) = 0");
    }
}

fn concurrent_runs_do_not_corrupt_each_other(backend: Backend, slept: &str) {
    let url = match &backend {
        Backend::Postgres(db) => db.url.clone(),
        Backend::MySql(db) => db.url.clone(),
        Backend::ClickHouse(db) => db.url.clone(),
        Backend::Sqlite => unreachable!("a server"),
    };
    let copies: Vec<support::TestProject> = (0..2)
        .map(|_| {
            let project = support::TestProject::empty();
            project.write(
                "orbital.toml",
                &format!("name = \"c\"\n[targets.dev]\nurl = \"{url}\"\n"),
            );
            for i in 1..=3 {
                project.write(
                    &format!("models/m{i}.sql"),
                    &format!(
                        "-- config: materialized = 'table'\nselect {i} as n, {slept} as slept"
                    ),
                );
            }
            project.write("models/total.sql", "select sum(n) as n from (select n from m1 union all select n from m2 union all select n from m3) as all_m");
            project
        })
        .collect();
    let spawn = |project: &support::TestProject, env: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_orbital"))
            .args(["run", "--env", env, "--project"])
            .arg(project.path())
            .output()
            .expect("run orbital")
    };
    let (first, second) = std::thread::scope(|scope| {
        let a = scope.spawn(|| spawn(&copies[0], "prod"));
        let b = scope.spawn(|| spawn(&copies[1], "dev"));
        (a.join().unwrap(), b.join().unwrap())
    });
    for output in [&first, &second] {
        assert!(
            output.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let reader = Case {
        project: support::TestProject::empty(),
        backend,
    };
    let total = |relation: &str| reader.scalar(&format!("select n from {relation}"));
    assert_eq!(total("total"), "6");
    assert_eq!(total("dev__total"), "6");
    // Each store records its own environment, fully.
    for (project, env) in [(&copies[0], "prod"), (&copies[1], "dev")] {
        let plan = project
            .orbital(&["plan", "--env", env, "--json"])
            .expect_code(0)
            .json();
        assert!(
            plan["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["action"] == "reuse"),
            "{plan}"
        );
    }
}

/// The shard servers `tests/bin/with-mariadb` started beside the main one
/// (which knows them by these names): (name, URL).
fn mysql_shards() -> Vec<(String, String)> {
    std::env::var("ORBITAL_TEST_MYSQL_SHARDS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, url)| (name.to_string(), url.to_string()))
        .collect()
}

/// A sharded setup (a front node with the Spider engine and two shard
/// servers): a model materialized as `sharded_table` is built through the
/// front node, its rows land on both shards, and everything built on it
/// reads the same rows as the same project on one server.
#[test]
fn a_sharded_table_gives_the_rows_one_server_gives() {
    let (Some(sharded), Some(single)) = (Backend::mysql("sharded"), Backend::mysql("single"))
    else {
        return;
    };
    let shards = mysql_shards();
    assert_eq!(shards.len(), 2, "tests/bin/with-mariadb starts two shards");
    let people: String = (1..=40)
        .map(|id| format!("{id},p{id},{}\n", id * 3 % 7))
        .collect();
    let project = |backend, config: &str| {
        let case = Case::new(backend, "");
        case.project
            .write("seeds/people.csv", &format!("id,name,score\n{people}"))
            .write(
                "models/sharded_people.sql",
                &format!(
                    "-- config: {config}\n\
                     select id, name, score, score * 2 as doubled from people"
                ),
            )
            .write(
                "models/scores.sql",
                "-- config: materialized = 'table'\n\
                 select score, count(*) as people, sum(doubled) as doubled \
                 from sharded_people group by score",
            );
        case
    };
    let front = project(
        sharded,
        "materialized = 'sharded_table', shard_key = 'id', shards = ['shard1', 'shard2']",
    );
    let one = project(single, "materialized = 'table'");
    let built = front.orbital(&["build", "--json"]).expect_code(0);
    assert_eq!(
        built.message_of("sharded_people"),
        "created sharded table (40 rows on 2 shards)"
    );
    one.orbital(&["build"]).expect_code(0);
    for query in [
        "select * from sharded_people order by id",
        "select * from scores order by score",
    ] {
        assert_eq!(front.query(query), one.query(query), "{query}");
    }
    // The front node's table is a Spider table; the rows are on the shards.
    assert_eq!(
        front.scalar(
            "select engine from information_schema.tables \
             where table_schema = database() and table_name like 'orbital\\_\\_sharded\\_people\\_\\_%'"
        ),
        "SPIDER"
    );
    let Backend::MySql(db) = &front.backend else {
        unreachable!("a MySQL backend")
    };
    let physical = front.scalar(
        "select table_name from information_schema.tables \
         where table_schema = database() and table_name like 'orbital\\_\\_sharded\\_people\\_\\_%'",
    );
    let on_shards: Vec<usize> = shards
        .iter()
        .map(|(_, url)| {
            support::backends::mariadb(url, &format!("select count(*) from {}.{physical}", db.name))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(on_shards.iter().sum::<usize>(), 40, "{on_shards:?}");
    assert!(on_shards.iter().all(|&n| n > 0), "{on_shards:?}");
    // A second build reuses it; a bad config fails the model alone.
    let again = front.orbital(&["build", "--json"]).expect_code(0);
    assert_eq!(again.statuses()["sharded_people"], "reused");
    front.project.write(
        "models/sharded_people.sql",
        "-- config: materialized = 'sharded_table', shard_key = 'nope', shards = ['shard1']\n\
         select id from people",
    );
    let refused = front.orbital(&["run", "--json"]).expect_code(1);
    assert!(
        refused
            .error_of("sharded_people")
            .contains("shard_key `nope` is not a column of the model"),
        "{}",
        refused.stdout()
    );
    for (_, url) in &shards {
        support::backends::mariadb(url, &format!("drop database {}", db.name)).unwrap();
    }
}

/// A MariaDB target that cannot be reached, refuses the credentials or
/// has no such database: a clear error naming the server (never the
/// password), exit code 3, nothing written.
#[test]
fn mysql_connection_faults_are_clear_errors() {
    let Some(Backend::MySql(db)) = Backend::mysql("faults") else {
        return;
    };
    let (address, _) = db
        .server
        .rsplit_once('@')
        .map(|(_, address)| (address.to_string(), ()))
        .expect("a user in the URL");
    connection_faults_are_clear(&[
        (
            format!("mysql://orbital:wrong-secret@{address}/{}", db.name),
            "refused the credentials",
        ),
        (
            format!("mysql://orbital:orbital@{address}/no_such_database"),
            "Unknown database 'no_such_database'",
        ),
        (
            format!("mysql://orbital:wrong-secret@127.0.0.1:1/{}", db.name),
            "cannot reach the MySQL server at mysql://orbital:***@127.0.0.1:1/",
        ),
    ]);
    assert_eq!(
        support::backends::mariadb(
            &db.url,
            "select count(*) from information_schema.tables where table_schema = database()"
        )
        .unwrap()
        .trim(),
        "0"
    );
}

/// The same faults through the mysql-wire example adapter's own
/// connection: the server's words, and the address it could not reach.
#[test]
fn mysql_wire_connection_faults_are_clear_errors() {
    let Some(Backend::MySql(db)) = Backend::mysql("wire_faults") else {
        return;
    };
    let address = db.server.rsplit_once('@').expect("a user in the URL").1;
    connection_faults_are_clear_with(
        &[
            (
                format!("mysql-wire://orbital:wrong-secret@{address}/{}", db.name),
                "refused the session: Access denied for user 'orbital'",
            ),
            (
                format!("mysql-wire://orbital:orbital@{address}/no_such_database"),
                "Unknown database 'no_such_database'",
            ),
            (
                format!("mysql-wire://orbital:wrong-secret@127.0.0.1:1/{}", db.name),
                "cannot reach the MySQL server at 127.0.0.1:1",
            ),
        ],
        &mysql_wire_component(),
    );
}

/// orbital.toml's `[plugins]` table with the mysql-wire example adapter.
fn mysql_wire_component() -> String {
    let component = orbital_bundle::test_component("orbital-example-mysql-wire");
    format!(
        "[plugins]\ncomponents = [{:?}]\n",
        component.display().to_string()
    )
}

/// An environment's run lock through the mysql-wire adapter's own
/// connection is the named lock the host's MySQL driver takes: while a
/// MariaDB session holds it, a run through either waits, saying so, and
/// finishes once it is let go of.
#[test]
fn a_plugin_connection_takes_the_environment_lock_the_built_in_driver_takes() {
    for wire in [false, true] {
        let Some(Backend::MySql(mut db)) = Backend::mysql("wire_lock") else {
            return;
        };
        db.wire = wire;
        let project = one_model_on(&db);
        let held = HeldLock::take(&db, "'environment prod', CHAR(0)");
        let waiting = WaitingRun::start(&project, "another orbital run holds this environment");
        held.release();
        waiting.finishes(&format!("wire {wire}"));
        assert_eq!(
            support::backends::mariadb(&db.url, "select x from a")
                .unwrap()
                .trim(),
            "1"
        );
    }
}

/// A build's claim through the mysql-wire adapter's own connection is the
/// named lock the host's MySQL driver takes for it: while a MariaDB
/// session holds it, the run waits to build that relation, saying so.
#[test]
fn a_plugin_connection_claims_a_build_across_processes() {
    let Some(Backend::MySql(mut db)) = Backend::mysql("wire_claim") else {
        return;
    };
    db.wire = true;
    let project = one_model_on(&db);
    let plan = project.orbital(&["plan", "--json"]).expect_code(0).json();
    let fingerprint = plan["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == "a")
        .and_then(|n| n["fingerprint"].as_str())
        .expect("a's fingerprint")
        .to_string();
    let relation = format!("orbital__a__{}", &fingerprint[..12]);
    let held = HeldLock::take(&db, &format!("'build \"{relation}\"'"));
    let waiting = WaitingRun::start(
        &project,
        &format!("another orbital run is building \"{relation}\""),
    );
    held.release();
    waiting.finishes("claimed build");
    assert_eq!(
        support::backends::mariadb(&db.url, "select x from a")
            .unwrap()
            .trim(),
        "1"
    );
}

/// A project with one table model `a` whose target is `db`.
fn one_model_on(db: &support::backends::MyDatabase) -> support::TestProject {
    let project = support::TestProject::empty();
    project
        .write(
            "orbital.toml",
            &format!(
                "name = \"x\"\n[targets.dev]\nurl = \"{}\"\n{}",
                db.target_url(),
                if db.wire {
                    mysql_wire_component()
                } else {
                    String::new()
                }
            ),
        )
        .write(
            "models/a.sql",
            "-- config: materialized = 'table'\nselect 1 as x",
        );
    project
}

/// A MariaDB session holding Orbital's named lock whose name is the SQL
/// `name` (as the host names it), until released.
struct HeldLock {
    session: std::process::Child,
    input: std::process::ChildStdin,
}

impl HeldLock {
    fn take(db: &support::backends::MyDatabase, name: &str) -> Self {
        use std::io::Write;
        let lock = format!("CONCAT('orbital ', SHA1(CONCAT(DATABASE(), CHAR(0), {name})))");
        let (credentials, address) = db
            .url
            .trim_start_matches("mysql://")
            .split_once('@')
            .expect("credentials in the URL");
        let (user, password) = credentials.split_once(':').expect("a password");
        let (host, port_and_db) = address.split_once(':').expect("a port");
        let (port, database) = port_and_db.split_once('/').expect("a database");
        let mut session = std::process::Command::new("mariadb")
            .args([
                "-h",
                host,
                "-P",
                port,
                "-u",
                user,
                &format!("-p{password}"),
                database,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start a mariadb session");
        let mut input = session.stdin.take().expect("its stdin");
        writeln!(input, "SELECT GET_LOCK({lock}, 10);").unwrap();
        input.flush().unwrap();
        let held = format!("SELECT IS_USED_LOCK({lock}) IS NOT NULL");
        while support::backends::mariadb(&db.url, &held).unwrap().trim() != "1" {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { session, input }
    }

    /// Ends the session: the server lets go of its lock.
    fn release(mut self) {
        drop(self.input);
        self.session.wait().expect("the session ends");
    }
}

/// An `orbital run` that has said it waits.
struct WaitingRun {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
    said: Vec<String>,
}

impl WaitingRun {
    /// Starts `orbital run` in `project` and reads its stderr until a line
    /// says `waiting` (the test fails if it ends first).
    fn start(project: &support::TestProject, waiting: &str) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_orbital"))
            .args(["run", "--project"])
            .arg(project.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start a run");
        let mut lines = std::io::BufReader::new(child.stderr.take().expect("its stderr")).lines();
        let mut said = Vec::new();
        for line in lines.by_ref() {
            let line = line.expect("a line");
            let found = line.contains(waiting) && line.contains("waiting for it");
            said.push(line);
            if found {
                return Self { child, lines, said };
            }
        }
        let _ = child.wait();
        panic!("the run never said it waits ({waiting}): {said:?}");
    }

    /// The run ends, successfully.
    fn finishes(mut self, what: &str) {
        self.said.extend(self.lines.map_while(Result::ok));
        let status = self.child.wait().expect("the run ends");
        assert!(status.success(), "{what}: {:?}", self.said);
    }
}

/// A target moved from the host's MySQL driver to the mysql-wire
/// adapter's own connection keeps its warehouse: the next run (a new
/// adapter is a new fingerprint, so it builds again) counts the
/// environment's version in the table the driver made, and publishes.
#[test]
fn a_plugin_connection_continues_a_database_the_built_in_driver_set_up() {
    let Some(Backend::MySql(db)) = Backend::mysql("wire_moved") else {
        return;
    };
    let project = support::TestProject::empty();
    let config =
        |url: &str, toml: &str| format!("name = \"x\"\n[targets.dev]\nurl = \"{url}\"\n{toml}");
    project
        .write("orbital.toml", &config(&db.url, ""))
        .write("models/a.sql", "select 1 as x")
        .write("models/b.sql", "select x + 1 as y from a");
    project.orbital(&["run"]).expect_code(0);
    let wire_url = db.url.replacen("mysql://", "mysql-wire://", 1);
    project
        .write("orbital.toml", &config(&wire_url, &mysql_wire_component()))
        .write("models/b.sql", "select x + 2 as y from a");
    let moved = project.orbital(&["run"]).expect_code(0);
    assert!(moved.stdout().contains("PASS=2"), "{}", moved.stdout());
    assert_eq!(
        support::backends::mariadb(&db.url, "select y from b")
            .unwrap()
            .trim(),
        "3"
    );
    assert_eq!(
        support::backends::mariadb(&db.url, "select version from _orbital_environments")
            .unwrap()
            .trim(),
        "2"
    );
}

/// A server that closes the first connections before its greeting (one
/// starting up) is tried again: the adapter calls a session it could not
/// open transient, and the host opens another after a pause.
#[test]
fn a_plugin_connection_is_opened_again_when_the_server_refuses_at_first() {
    let Some(Backend::MySql(db)) = Backend::mysql("wire_retry") else {
        return;
    };
    let server = db.server.rsplit_once('@').expect("a user in the URL").1;
    let proxy = support::FlakyProxy::start(server, 2);
    let project = support::TestProject::empty();
    project.write("models/a.sql", "select 1 as x").write(
        "orbital.toml",
        &format!(
            "name = \"x\"\n[targets.dev]\nurl = \"mysql-wire://orbital:orbital@{}/{}\"\n{}",
            proxy.address,
            db.name,
            mysql_wire_component()
        ),
    );
    let run = project.orbital(&["run"]).expect_code(0);
    assert!(
        run.stderr().contains("retrying"),
        "the retries are logged: {}",
        run.stderr()
    );
    assert!(proxy.accepted() >= 3, "{} connections", proxy.accepted());
}

/// Runs a one-model project on each target URL: exit code 3, the error
/// says what it should, and never the password `wrong-secret`.
fn connection_faults_are_clear(cases: &[(String, &str)]) -> support::TestProject {
    connection_faults_are_clear_with(cases, "")
}

/// As [`connection_faults_are_clear`], with `toml` added to orbital.toml.
fn connection_faults_are_clear_with(cases: &[(String, &str)], toml: &str) -> support::TestProject {
    let project = support::TestProject::empty();
    project.write("models/a.sql", "select 1 as x");
    for (url, says) in cases {
        project.write(
            "orbital.toml",
            &format!("name = \"x\"\n[targets.dev]\nurl = \"{url}\"\n{toml}"),
        );
        let run = project.orbital(&["run"]).expect_code(3);
        assert!(run.stderr().contains(says), "{url}: {}", run.stderr());
        assert!(!run.stderr().contains("wrong-secret"), "{}", run.stderr());
    }
    project
}

/// `sharded_table` on a target that is not MariaDB with Spider fails the
/// model alone, saying what it needs.
#[test]
fn a_sharded_table_elsewhere_says_what_it_needs() {
    let case = Case::new(Backend::Sqlite, "");
    case.project
        .write("models/plain.sql", "select 1 as id")
        .write(
            "models/sharded.sql",
            "-- config: materialized = 'sharded_table', shard_key = 'id', shards = ['shard1']\n\
         select id from plain",
        );
    let run = case.orbital(&["run", "--json"]).expect_code(1);
    assert_eq!(run.statuses()["plain"], "success");
    assert!(
        run.error_of("sharded")
            .contains("sharded_table needs a MariaDB target whose server has the Spider engine"),
        "{}",
        run.stdout()
    );
}

/// ClickHouse's `host:port`, from the test server's URL.
fn clickhouse_address(db: &support::backends::ChDatabase) -> String {
    let (_, rest) = db.server.rsplit_once('@').expect("a user in the URL");
    rest.to_string()
}

/// A local HTTP server that answers every request with 200 and counts the
/// connections it accepted.
fn counting_http_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut request = [0; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        }
    });
    (address, accepted)
}

/// An adapter with its own connection is granted its target's host and
/// port only: a plugin that reaches for another host gets a clear error
/// naming what it tried and what is granted, the model that made it try
/// fails alone, and the other host never sees a connection. Reaching the
/// granted host works.
#[test]
fn a_plugin_connection_reaches_only_its_targets_host() {
    let Some(backend @ Backend::ClickHouse(_)) = Backend::clickhouse("grants") else {
        return;
    };
    let Backend::ClickHouse(db) = &backend else {
        unreachable!()
    };
    let granted = clickhouse_address(db);
    let (elsewhere, accepted) = counting_http_server();
    let case = Case::new(backend, "");
    let wanderer = orbital_bundle::test_component("orbital-test-wanderer");
    case.project.add_component(&wanderer.display().to_string());
    case.project.write("models/fine.sql", "select 1 as x");
    case.project.write(
        "models/wanders.sql",
        &format!("select 'orbital-reach:http://{elsewhere}/' as y"),
    );
    case.project.write(
        "models/stays.sql",
        &format!("select 'orbital-reach:http://{granted}/?query=SELECT%201' as z"),
    );
    let run = case.orbital(&["--json", "run"]).expect_code(1);
    let statuses = run.statuses();
    assert_eq!(statuses["fine"], "success", "{statuses:?}");
    assert_eq!(statuses["stays"], "success", "{statuses:?}");
    assert_eq!(statuses["wanders"], "error", "{statuses:?}");
    let error = run.error_of("wanders");
    assert!(
        error.contains(&format!(
            "it tried to reach http://{elsewhere}, which target `dev` does not grant (granted: {granted})"
        )),
        "{error}"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(case.kind("fine"), "view");
    assert_eq!(case.kind("wanders"), "none");
}

/// `incremental_strategy = 'append'` continues its table on ClickHouse,
/// reading `this` through the adapter's own connection.
#[test]
fn an_incremental_model_appends_on_clickhouse() {
    let Some(backend) = Backend::clickhouse("append") else {
        return;
    };
    let case = Case::new(backend, EVENTS);
    case.execute(
        "create table raw_events (id Int64, kind String) ENGINE = MergeTree ORDER BY tuple();
         insert into raw_events values (1, 'a'), (2, 'b')",
    );
    case.project.write(
        "models/events.sql",
        "-- config: materialized = 'incremental', incremental_strategy = 'append'\n\
         select id, kind from app.raw_events\n\
         where if_incremental(id > (select max(id) from this))",
    );
    let first = case.orbital(&["--json", "run"]).expect_code(0);
    assert_eq!(first.statuses()["events"], "success");
    case.execute("insert into raw_events values (3, 'c')");
    let second = case.orbital(&["--json", "run"]).expect_code(0);
    assert_eq!(second.statuses()["events"], "success");
    assert_eq!(
        case.query("select id, kind from events order by id"),
        [r(&["1", "a"]), r(&["2", "b"]), r(&["3", "c"])]
    );
}

/// A ClickHouse target that cannot be reached or refuses the credentials:
/// a clear error naming the adapter (never the password), exit code 3.
#[test]
fn clickhouse_connection_faults_are_clear_errors() {
    let Some(Backend::ClickHouse(db)) = Backend::clickhouse("faults") else {
        return;
    };
    let address = clickhouse_address(&db);
    let credentials = db
        .server
        .trim_start_matches("clickhouse://")
        .split_once('@')
        .map(|(c, _)| c.to_string())
        .expect("credentials in the URL");
    let project = connection_faults_are_clear(&[
        (
            format!("clickhouse://orbital:wrong-secret@{address}/{}", db.name),
            "adapter `adapter-clickhouse`: Wrong password for user orbital",
        ),
        (
            format!("clickhouse://{credentials}@{address}/no_such_database"),
            "Database no_such_database doesn't exist",
        ),
        (
            format!("clickhouse://orbital:wrong-secret@127.0.0.1:1/{}", db.name),
            "ClickHouse's HTTP interface did not answer",
        ),
    ]);
    assert_eq!(
        support::backends::clickhouse(
            &db.url,
            "select count() from system.tables where database = currentDatabase()"
        )
        .unwrap()
        .trim(),
        "0"
    );
    project.write(
        "orbital.toml",
        "name = \"x\"\n[targets.dev]\nurl = \"clickhouse2://h/db\"\n",
    );
    let refused = project.orbital(&["run"]).expect_code(2);
    assert!(
        refused
            .stderr()
            .contains("no installed adapter serves clickhouse2:// URLs")
            && refused.stderr().contains("did you mean `clickhouse`"),
        "{}",
        refused.stderr()
    );
}
