//! End to end: what makes "reused" trustworthy. The state store is checked
//! against the warehouse; identical models keep their own builds; models
//! and tests only read; CTE names resolve by SQL's scoping; environment
//! relations cannot land on a model's; seeds keep every value; and no
//! input makes the CLI panic. Each case on SQLite, PostgreSQL and MariaDB.

#[macro_use]
mod support;

use support::TestProject;
use support::backends::{Backend, Case};

on_each_backend!(
    the_warehouse_is_checked_not_the_store,
    another_checkout_writing_the_warehouse_is_repaired,
    identical_models_keep_their_own_builds,
    writes_in_models_and_tests_are_refused,
    cte_names_resolve_by_scope,
    environment_relations_cannot_land_on_a_model,
    seeds_keep_every_value,
);

/// The node's JSON result of `orbital <args> --json`.
fn results(case: &Case, args: &[&str]) -> serde_json::Value {
    let mut full = args.to_vec();
    full.push("--json");
    case.orbital(&full).expect_code(0).json()
}

fn node<'a>(results: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    results["results"]
        .as_array()
        .and_then(|r| r.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("no result for {name}: {results}"))
}

fn plan_node<'a>(plan: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    plan["nodes"]
        .as_array()
        .and_then(|r| r.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("no plan entry for {name}: {plan}"))
}

/// The build relation of `model` (there must be exactly one).
fn physical(case: &Case, model: &str) -> String {
    let pattern = format!("orbital__{model}__%");
    let sql = match &case.backend {
        Backend::Sqlite => format!(
            "select name from sqlite_master where type in ('table', 'view') and name like '{pattern}'"
        ),
        Backend::Postgres(_) => format!(
            "select relname from pg_class where relkind in ('r', 'v') and relname like '{pattern}'"
        ),
        Backend::MySql(_) => format!(
            "select table_name from information_schema.tables \
             where table_schema = database() and table_name like '{pattern}'"
        ),
        Backend::ClickHouse(_) => format!(
            "select name from system.tables \
             where database = currentDatabase() and name like '{pattern}'"
        ),
    };
    let rows = case.query(&sql);
    assert_eq!(rows.len(), 1, "builds of {model}: {rows:?}");
    rows[0][0].clone()
}

fn drop_table(case: &Case, name: &str) {
    match case.backend {
        Backend::Sqlite => case.execute(&format!("DROP TABLE \"{name}\"")),
        Backend::Postgres(_) => case.execute(&format!("DROP TABLE \"{name}\" CASCADE")),
        Backend::MySql(_) | Backend::ClickHouse(_) => {
            case.execute(&format!("DROP TABLE \"{name}\""))
        }
    }
}

fn two_models(case: &Case) {
    case.project
        .write(
            "models/a.sql",
            "-- config: materialized = 'table'\nselect 1 as x",
        )
        .write("models/b.sql", "select x + 1 as y from a");
}

/// A build dropped by hand, an environment view dropped by hand, and a view
/// pointed elsewhere: each is found by the next plan and run, repaired,
/// and reported; nothing is taken as reused that the warehouse lacks.
fn the_warehouse_is_checked_not_the_store(backend: Backend) {
    let case = Case::new(backend, "");
    two_models(&case);
    results(&case, &["run"]);

    drop_table(&case, &physical(&case, "a"));
    let plan = case.orbital(&["plan", "--json"]).expect_code(0).json();
    assert_eq!(plan_node(&plan, "a")["action"], "build", "{plan}");
    assert_eq!(plan_node(&plan, "a")["repair"], "missing", "{plan}");
    let text = case.orbital(&["plan"]).expect_code(0).stdout();
    assert!(
        text.contains("will build again: its build is missing from the warehouse"),
        "{text}"
    );
    let run = results(&case, &["run"]);
    assert_eq!(node(&run, "a")["status"], "success", "{run}");
    assert_eq!(node(&run, "a")["repair"], "missing", "{run}");
    assert_eq!(case.query("select y from b"), vec![vec!["2".to_string()]]);

    // The environment's view of `a`, dropped by hand.
    case.execute("DROP VIEW a");
    let run = results(&case, &["run"]);
    assert_eq!(node(&run, "a")["repair"], "repoint", "{run}");
    assert_eq!(case.scalar("select x from a"), "1");

    // ... and pointed at something else.
    case.execute("DROP VIEW a");
    case.execute("CREATE VIEW a AS SELECT 42 AS x");
    let plan = case.orbital(&["plan", "--json"]).expect_code(0).json();
    assert_eq!(plan_node(&plan, "a")["action"], "repoint", "{plan}");
    let text = case.orbital(&["run"]).expect_code(0).stdout();
    assert!(text.contains("REPAIR"), "{text}");
    assert!(text.contains("REPAIRED=1"), "{text}");
    assert_eq!(case.scalar("select x from a"), "1");

    // Repaired, the warehouse agrees with the store again.
    let run = results(&case, &["run"]);
    for name in ["a", "b"] {
        assert_eq!(node(&run, name)["status"], "reused", "{run}");
        assert!(node(&run, name).get("repair").is_none(), "{run}");
    }

    // A partial run checks only what it selects, so it vouches for nothing
    // else: the next whole run still finds `a`'s view gone.
    case.execute("DROP VIEW a");
    results(&case, &["run", "--select", "b"]);
    let run = results(&case, &["run"]);
    assert_eq!(node(&run, "a")["repair"], "repoint", "{run}");

    // A model whose upstream's build is gone and that is selected alone
    // says so instead of failing on a missing table.
    drop_table(&case, &physical(&case, "a"));
    case.project
        .write("models/b.sql", "select x + 2 as y from a");
    let refused = case.orbital(&["run", "--select", "b"]).expect_code(2);
    assert!(
        refused
            .stderr()
            .contains("model `b` reads `a`, whose build the state store records but the warehouse no longer has"),
        "{}",
        refused.stderr()
    );
    results(&case, &["run"]);
    assert_eq!(case.scalar("select y from b"), "3");

    // Promote checks the warehouse too: it refuses to point an environment
    // at a build that is gone.
    results(&case, &["run", "--env", "dev"]);
    drop_table(&case, &physical(&case, "a"));
    let refused = case
        .orbital(&["promote", "dev", "--to", "prod"])
        .expect_code(3);
    assert!(
        refused
            .stderr()
            .contains("environment `dev` points `a` at a build the warehouse no longer has"),
        "{}",
        refused.stderr()
    );
}

/// Two checkouts with their own state stores build one warehouse: each
/// run finds the views the other moved and points them back.
fn another_checkout_writing_the_warehouse_is_repaired(backend: Backend) {
    let case = Case::new(backend, "");
    two_models(&case);
    results(&case, &["run"]);
    let other = TestProject::empty();
    let url = match &case.backend {
        Backend::Sqlite => format!("sqlite://{}", case.project.database().display()),
        Backend::Postgres(db) => db.url.clone(),
        Backend::MySql(db) => db.url.clone(),
        Backend::ClickHouse(db) => db.url.clone(),
    };
    other
        .write(
            "orbital.toml",
            &format!("name = \"case\"\n[targets.dev]\nurl = \"{url}\"\n"),
        )
        .write(
            "models/a.sql",
            "-- config: materialized = 'table'\nselect 7 as x",
        )
        .write("models/b.sql", "select x + 1 as y from a");
    other.orbital(&["run"]).expect_code(0);
    assert_eq!(case.scalar("select y from b"), "8");

    let plan = case.orbital(&["plan", "--json"]).expect_code(0).json();
    assert_eq!(plan_node(&plan, "a")["repair"], "repoint", "{plan}");
    let run = results(&case, &["run"]);
    assert_eq!(node(&run, "a")["repair"], "repoint", "{run}");
    assert_eq!(node(&run, "b")["repair"], "repoint", "{run}");
    assert_eq!(case.scalar("select y from b"), "2");
}

/// Models with the same SQL and config share no relation: full refreshes
/// in a row work, and identical incremental models keep their own rows.
fn identical_models_keep_their_own_builds(backend: Backend) {
    let case = Case::new(backend, "");
    let table = "-- config: materialized = 'table'\nselect id from events";
    let incremental = "-- config: materialized = 'incremental'\n\
                       select id from events where if_incremental(id > (select max(id) from this))";
    case.project
        .write("seeds/events.csv", "id\n1\n2\n3\n")
        .write("models/t1.sql", table)
        .write("models/t2.sql", table)
        .write("models/i1.sql", incremental)
        .write("models/i2.sql", incremental);
    results(&case, &["build"]);
    for _ in 0..2 {
        let refreshed = results(&case, &["build", "--full-refresh"]);
        for name in ["t1", "t2", "i1", "i2"] {
            assert_eq!(node(&refreshed, name)["status"], "success", "{refreshed}");
        }
    }
    for name in ["t1", "t2", "i1", "i2"] {
        assert_eq!(
            case.count_relations(&format!("orbital__{name}__%")),
            1,
            "{name}"
        );
    }
    case.project.write("seeds/events.csv", "id\n1\n2\n3\n4\n");
    results(&case, &["build"]);
    for name in ["i1", "i2"] {
        assert_eq!(
            case.scalar(&format!("select count(*) from {name}")),
            "4",
            "{name} has its own rows"
        );
    }
}

/// A data-modifying CTE or SELECT INTO, anywhere in a model or a test, is
/// a compile error at its position; nothing runs.
fn writes_in_models_and_tests_are_refused(backend: Backend) {
    let case = Case::new(backend, "");
    case.project
        .write("seeds/raw.csv", "id\n1\n2\n")
        .write("models/m.sql", "select id from raw");
    results(&case, &["build"]);
    case.project.write(
        "models/m.sql",
        "select id from raw\nwhere id in (\n  with d as (delete from raw returning id) select id from d\n)",
    );
    let refused = case.orbital(&["build"]).expect_code(2);
    assert!(
        refused
            .stderr()
            .contains("models/m.sql:3:14: model `m` contains a DELETE"),
        "{}",
        refused.stderr()
    );
    case.project.write("models/m.sql", "select id from raw");
    case.project.write(
        "tests/grab.sql",
        "select * into stolen from raw where id < 0",
    );
    let refused = case.orbital(&["build"]).expect_code(2);
    assert!(
        refused.stderr().contains("tests/grab.sql:1:15")
            && refused.stderr().contains("SELECT ... INTO"),
        "{}",
        refused.stderr()
    );
    assert_eq!(case.scalar("select count(*) from raw"), "2");
    assert_eq!(case.kind("stolen"), "none");
}

/// The same constructs as core's unit test, built and queried.
fn cte_names_resolve_by_scope(backend: Backend) {
    let case = Case::new(backend, "");
    case.project
        .write("models/a.sql", "select 'model a' as src")
        .write("models/stg.sql", "select 'model stg' as src")
        .write(
            "models/q1.sql",
            "with stg as (select src || ' via cte' as src from stg) select src from stg",
        )
        .write(
            "models/q2.sql",
            "select s.src from (with a as (select 'cte a' as src) select src from a) s\n\
             union all select src from a",
        )
        .write(
            "models/q3.sql",
            "with recursive a as (select 1 as n union all select n + 1 from a where n < 3)\n\
             select count(*) as c from a",
        );
    results(&case, &["build"]);
    assert_eq!(case.scalar("select src from q1"), "model stg via cte");
    assert_eq!(
        case.query("select src from q2 order by src"),
        vec![vec!["cte a".to_string()], vec!["model a".to_string()]]
    );
    assert_eq!(case.scalar("select c from q3"), "3");
    // q1 depends on stg: an edit there reaches it.
    case.project
        .write("models/stg.sql", "select 'new stg' as src");
    let run = results(&case, &["build"]);
    assert_eq!(node(&run, "q1")["status"], "success", "{run}");
    assert_eq!(case.scalar("select src from q1"), "new stg via cte");
}

/// Without schemas, environment `stg_stripe` would name its view of
/// `payments` `stg_stripe__payments`: refused before anything is written.
fn environment_relations_cannot_land_on_a_model(backend: Backend) {
    let case = Case::new(backend, "");
    case.project
        .write("models/payments.sql", "select 1 as amount")
        .write("models/stg_stripe__payments.sql", "select 99 as amount");
    results(&case, &["build"]);
    let refused = case
        .orbital(&["build", "--env", "stg_stripe"])
        .expect_code(2);
    assert!(
        refused.stderr().contains(
            "`stg_stripe__payments` has the name environment `stg_stripe` gives its view of `payments`"
        ),
        "{}",
        refused.stderr()
    );
    assert_eq!(case.scalar("select amount from stg_stripe__payments"), "99");
    for name in ["a__b", "dev_", "orbital"] {
        let refused = case.orbital(&["build", "--env", name]).expect_code(2);
        assert!(
            refused.stderr().contains("invalid environment name"),
            "{name}: {}",
            refused.stderr()
        );
    }
    // The other way round: a model named like an existing environment's view.
    results(&case, &["build", "--env", "dev"]);
    case.project.write("models/dev__extra.sql", "select 1 as x");
    let refused = case.orbital(&["build"]).expect_code(2);
    assert!(
        refused
            .stderr()
            .contains("has the name environment `dev` gives"),
        "{}",
        refused.stderr()
    );
    // A name like a build's is refused on every target.
    case.project.remove("models/dev__extra.sql");
    case.project
        .write("models/orbital__x__0123456789ab.sql", "select 1 as x");
    let refused = case.orbital(&["build"]).expect_code(2);
    assert!(
        refused.stderr().contains("are Orbital's own"),
        "{}",
        refused.stderr()
    );
}

/// Integers beyond 64 bits stay distinct, an unterminated quote and an
/// impossible date are errors at their line and column, with nothing
/// written.
fn seeds_keep_every_value(backend: Backend) {
    let case = Case::new(backend, "");
    case.project.write(
        "seeds/ids.csv",
        "id,zip\n18446744073709551617,01234\n18446744073709551618,00501\n",
    );
    results(&case, &["seed"]);
    assert_eq!(
        case.query("select id, zip from ids order by id"),
        vec![
            vec!["18446744073709551617".to_string(), "01234".to_string()],
            vec!["18446744073709551618".to_string(), "00501".to_string()],
        ]
    );
    case.project.write(
        "seeds/notes.csv",
        "id,note\n1,fine\n2,\"never closed\n3,lost\n",
    );
    let refused = case.orbital(&["seed"]).expect_code(2);
    assert!(
        refused.stderr().contains(
            "seeds/notes.csv:3:3: malformed CSV in seed `notes`: this quoted field is never closed"
        ),
        "{}",
        refused.stderr()
    );
    case.project.remove("seeds/notes.csv");
    case.project
        .write("seeds/days.csv", "id,day\n1,2024-02-29\n2,2023-02-29\n");
    let config = case.project.path().join("orbital.toml");
    let plain = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{plain}[seeds.days.column-types]\nday = \"date\"\n"),
    )
    .unwrap();
    let refused = case.orbital(&["seed"]).expect_code(2);
    assert!(
        refused.stderr().contains(
            "seeds/days.csv:3:3: malformed CSV in seed `days`: `2023-02-29` in column `day` is not a valid Date"
        ),
        "{}",
        refused.stderr()
    );
    assert_eq!(case.kind("days"), "none");
    // Inferred, a column with a day that does not exist is text, as written.
    case.project
        .write("seeds/when.csv", "day\n2024-02-29\n2023-02-29\n");
    case.project.remove("seeds/days.csv");
    std::fs::write(&config, plain).unwrap();
    results(&case, &["seed"]);
    assert_eq!(
        case.query("select day from \"when\" order by day"),
        vec![
            vec!["2023-02-29".to_string()],
            vec!["2024-02-29".to_string()]
        ]
    );
}

/// An error on a line longer than the renderer can draw is printed without
/// the snippet, never a panic; and a bad first command writes no file.
#[test]
fn errors_on_huge_lines_are_reported_not_panicked() {
    let project = TestProject::empty();
    project.write(
        "orbital.toml",
        "name = \"p\"\n[targets.dev]\nurl = \"sqlite://target/p.db\"\n",
    );
    let long = format!("select {} from nowhere_at_all", "1 + ".repeat(20_000) + "1");
    project.write("models/long.sql", &long);
    let run = project.orbital(&["build"]).expect_code(2);
    let column = long.find("nowhere_at_all").unwrap() + 1;
    assert!(
        run.stderr().contains(&format!(
            "models/long.sql:1:{column}: model `long` refers to unknown table `nowhere_at_all`"
        )),
        "{}",
        &run.stderr()[..run.stderr().len().min(500)]
    );
    assert!(!run.stderr().contains("panicked"));
    assert!(!project.path().join("target/p.db").exists());
}

fn sqlite_project() -> TestProject {
    let project = TestProject::empty();
    project
        .write(
            "orbital.toml",
            "name = \"p\"\n[targets.dev]\nurl = \"sqlite://target/p.db\"\n",
        )
        .write("models/a.sql", "select 1 as x");
    project
}

/// Each bad input: a clear error where there is a place to point at, exit
/// code 2 (3 for the environment), and no warehouse file created.
#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let project = sqlite_project();
    let database = project.path().join("target/p.db");
    let refused = |args: &[&str], code: i32, says: &str| {
        let run = project.orbital(args).expect_code(code);
        assert!(run.stderr().contains(says), "{args:?}: {}", run.stderr());
        assert!(!database.exists(), "{args:?} created the warehouse file");
    };
    refused(
        &["build", "--select", ""],
        2,
        "invalid selector ``: is empty",
    );
    refused(
        &["build", "--select", ","],
        2,
        "is empty or has an empty part",
    );
    refused(
        &["build", "--exclude", "a,"],
        2,
        "is empty or has an empty part",
    );
    refused(
        &["build", "--select", "99999999999999999999999+a"],
        2,
        "is too large",
    );
    refused(
        &["build", "--select", "nope"],
        2,
        "matches no model or seed",
    );
    refused(&["build", "--threads", "100000"], 2, "between 1 and 256");

    project.write(
        "models/b.sql",
        "-- config: materialized = 'Table'\nselect 1 as y",
    );
    refused(
        &["build"],
        2,
        "models/b.sql:1:28: model `b` asks for materialized = 'Table', which no installed plugin provides (installed: incremental, sharded_table, snapshot, table, view); did you mean `table`?",
    );
    project.write(
        "models/b.sql",
        "-- config: materialzed = 'table'\nselect 1 as y",
    );
    refused(
        &["build"],
        2,
        "models/b.sql:1:12: model `b` has config `materialzed`, which materialized = 'view' does not take; did you mean `materialized`?",
    );
    project.remove("models/b.sql");

    // Editor leftovers and byte-order marks are no trouble.
    project.write("models/.hidden.sql", "this is not SQL");
    #[cfg(unix)]
    std::os::unix::fs::symlink("user@host.1:1", project.path().join("models/.#a.sql")).unwrap();
    project.write("models/c.sql", "\u{feff}select 2 as z");
    project.orbital(&["build"]).expect_code(0);
    std::fs::remove_file(&database).unwrap();
    std::fs::remove_dir_all(project.path().join("target")).unwrap();

    for (url, says) in [
        ("sqlite:", "orbital.toml:3:7: `sqlite:` is not a SQLite URL"),
        ("sqlite://", "orbital.toml:3:7: `sqlite://` names no file"),
        (
            "oracle://db/x",
            "orbital.toml:3:1: target `dev`: no installed adapter serves oracle:// URLs (served: clickhouse, mariadb, mysql, postgres, postgresql, sqlite)",
        ),
    ] {
        project.write(
            "orbital.toml",
            &format!("name = \"p\"\n[targets.dev]\nurl = \"{url}\"\n"),
        );
        refused(&["build"], 2, says);
    }
    // A scheme is the same in any case (RFC 3986).
    project.write(
        "orbital.toml",
        "name = \"p\"\n[targets.dev]\nurl = \"SQLite://target/p.db\"\n",
    );
    project.orbital(&["build"]).expect_code(0);
    std::fs::remove_file(&database).unwrap();
    std::fs::remove_dir_all(project.path().join("target")).unwrap();
    project.write(
        "orbital.toml",
        "name = \"p\"\n[targets.\"a/b\"]\nurl = \"sqlite://target/p.db\"\n",
    );
    refused(&["build"], 2, "target name `a/b`");
    // A directory where the file should be: named, exit 3.
    std::fs::create_dir_all(project.path().join("target/dir.db")).unwrap();
    project.write(
        "orbital.toml",
        "name = \"p\"\n[targets.dev]\nurl = \"sqlite://target/dir.db\"\n",
    );
    let run = project.orbital(&["build"]).expect_code(3);
    assert!(
        run.stderr()
            .contains("target/dir.db is a directory, not a SQLite database file"),
        "{}",
        run.stderr()
    );
}

/// Random SQL of nested CTEs (plain and recursive), derived tables,
/// set operations and expression subqueries over the names `m1`..`m3`,
/// which are models and, where a CTE of that name is in scope, the CTE.
struct QueryGen(u64);

const NAMES: [&str; 3] = ["m1", "m2", "m3"];

impl QueryGen {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }

    fn name(&mut self) -> &'static str {
        NAMES[self.next(3) as usize]
    }

    /// A query with one text column `src`, referring to no name in `avoid`.
    fn query(&mut self, depth: u32, avoid: &[&str]) -> String {
        let choice = if depth == 0 { 0 } else { self.next(6) };
        match choice {
            0 => {
                let allowed: Vec<&str> = NAMES.into_iter().filter(|n| !avoid.contains(n)).collect();
                match allowed.as_slice() {
                    [] => "select 'literal' as src".to_string(),
                    names => {
                        let name = names[self.next(names.len() as u64) as usize];
                        format!("select src from {name}")
                    }
                }
            }
            1 => format!("select s.src from ({}) s", self.query(depth - 1, avoid)),
            2 => format!(
                "({}) union all ({})",
                self.query(depth - 1, avoid),
                self.query(depth - 1, avoid)
            ),
            3 => format!(
                "select q.src from ({}) q where exists ({})",
                self.query(depth - 1, avoid),
                self.query(depth - 1, avoid)
            ),
            4 => self.with(depth, avoid, false),
            _ => self.with(depth, avoid, true),
        }
    }

    fn with(&mut self, depth: u32, avoid: &[&str], recursive: bool) -> String {
        let count = 1 + self.next(2) as usize;
        let mut names: Vec<&'static str> = Vec::new();
        while names.len() < count {
            let name = self.name();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let mut ctes = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let body = if recursive {
                // The recursive term is the only place it reads itself,
                // and no sibling after it is read (PostgreSQL's rules).
                let mut avoid: Vec<&str> = avoid.to_vec();
                avoid.extend(&names[i..]);
                format!(
                    "({}) union all select src from {name} where false",
                    self.query(depth - 1, &avoid)
                )
            } else {
                self.query(depth - 1, avoid)
            };
            ctes.push(format!("{name} as ({body})"));
        }
        let keyword = if recursive { "with recursive" } else { "with" };
        format!(
            "{keyword} {} select w.src from ({}) w",
            ctes.join(", "),
            self.query(depth - 1, avoid)
        )
    }
}

/// Property: for random nestings of CTEs, subqueries and model names, the
/// models Orbital finds a query reads are the relations PostgreSQL's own
/// resolution makes its view depend on.
#[test]
fn name_resolution_matches_postgresql() {
    let Some(backend) = Backend::postgres("name_resolution") else {
        return;
    };
    let Backend::Postgres(db) = &backend else {
        unreachable!()
    };
    let url = db.url.clone();
    let case = Case::new(backend, "");
    let mut tables = String::new();
    for name in NAMES {
        case.project.write(
            &format!("models/{name}.sql"),
            &format!("select '{name}' as src"),
        );
        tables.push_str(&format!("CREATE TABLE {name} (src text);"));
    }
    let mut generator = QueryGen(0x9e37_79b9_7f4a_7c15);
    let mut views = String::new();
    let count = 300;
    for i in 0..count {
        let sql = generator.query(3, &[]);
        case.project.write(&format!("models/q{i}.sql"), &sql);
        views.push_str(&format!("CREATE VIEW q{i} AS {sql};\n"));
    }
    support::backends::psql(&url, &format!("{tables}{views}"))
        .unwrap_or_else(|e| panic!("PostgreSQL refused a generated query: {e}"));
    let resolved = support::backends::psql(
        &url,
        "SELECT DISTINCT v.relname, r.relname FROM pg_depend d \
         JOIN pg_rewrite w ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid \
         JOIN pg_class v ON v.oid = w.ev_class \
         JOIN pg_class r ON d.refclassid = 'pg_class'::regclass AND r.oid = d.refobjid \
         WHERE v.relname LIKE 'q%' AND r.oid <> v.oid",
    )
    .unwrap();
    let mut postgres: std::collections::BTreeMap<String, Vec<String>> =
        (0..count).map(|i| (format!("q{i}"), Vec::new())).collect();
    for line in resolved.lines() {
        let (view, table) = line.split_once('|').unwrap();
        postgres.get_mut(view).unwrap().push(table.to_string());
    }
    let listed = case.orbital(&["ls", "--json"]).expect_code(0).json();
    let mut checked = 0;
    for node in listed["nodes"].as_array().unwrap() {
        let name = node["name"].as_str().unwrap();
        let Some(expected) = postgres.get_mut(name) else {
            continue;
        };
        expected.sort();
        let mut found: Vec<String> = node["depends_on"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        found.sort();
        let sql = std::fs::read_to_string(case.project.path().join(format!("models/{name}.sql")))
            .unwrap();
        assert_eq!(&found, expected, "{name}: {sql}");
        checked += 1;
    }
    assert_eq!(checked, count);
}

/// A small file system of its own, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// `None` where this process may not mount (not root); CI runs as root.
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        match mounted {
            true => Some(Self(dir)),
            false if std::env::var_os("CI").is_some() => panic!("CI runs as root and can mount"),
            false => {
                eprintln!("cannot mount a tmpfs here (not root): full-disk test skipped");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// A full disk mid-build: the model's own error and the store's are both
/// reported, the run exits 3, and once space is freed the next run works
/// and leaves no write-ahead log behind.
#[test]
fn a_full_disk_reports_both_errors_and_the_next_run_recovers() {
    let Some(disk) = Tmpfs::mount(6) else {
        return;
    };
    let project = TestProject {
        dir: tempfile::tempdir_in(disk.0.path()).unwrap(),
    };
    project
        .write(
            "orbital.toml",
            "name = \"f\"\n[targets.dev]\nurl = \"sqlite://w.db\"\n",
        )
        .write("models/small.sql", "select 1 as x")
        .write(
            "models/big.sql",
            "-- config: materialized = 'table'\n\
             with recursive n(i) as (select 1 union all select i + 1 from n where i < 400000)\n\
             select i, 'padding padding padding padding' as p from n",
        );
    let filler = project.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1_500_000]).unwrap();
    let run = project.orbital(&["build"]).expect_code(3);
    assert!(
        run.stdout().contains("model `big` (models/big.sql)")
            && run.stdout().contains("database or disk is full"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stderr().contains("No space left on device"),
        "{}",
        run.stderr()
    );
    std::fs::remove_file(&filler).unwrap();
    project.remove("models/big.sql");
    let run = project.orbital(&["build", "--json"]).expect_code(0);
    assert_eq!(run.statuses()["small"], "success");
    assert!(!project.path().join("w.db-wal").exists());
}
