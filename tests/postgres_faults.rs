//! End to end: PostgreSQL connection faults through the binary. A wrong
//! password, an unknown database, a server that is down, and a server
//! stopped in the middle of a run.
//!
//! This binary stops and restarts the shared server `tests/bin/with-postgres`
//! started (`ORBITAL_TEST_POSTGRES_CTL`); cargo runs test binaries one after
//! another, so no other test sees it down. Its tests run one at a time
//! through a lock for the same reason.

mod support;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use support::TestProject;
use support::backends::{Backend, psql};

static SERVER: Mutex<()> = Mutex::new(());

fn project(url: &str) -> TestProject {
    let project = TestProject::empty();
    project.write(
        "orbital.toml",
        &format!("name = \"faults\"\n[targets.dev]\nurl = \"{url}\"\nthreads = 1\n"),
    );
    project.write("models/one.sql", "select 1 as n");
    project
}

#[test]
fn bad_connections_are_clear_errors_that_record_nothing() {
    let _server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(Backend::Postgres(db)) = Backend::postgres("faults") else {
        return;
    };
    let wrong_password = db.url.replacen(":orbital@", ":hunter2@", 1);
    let run = project(&wrong_password).orbital(&["run"]).expect_code(3);
    assert!(
        run.stderr().contains("refused the credentials"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("hunter2"), "{}", run.stderr());

    let unknown = format!("{}_missing", db.url);
    let run = project(&unknown).orbital(&["run"]).expect_code(3);
    assert!(run.stderr().contains("does not exist"), "{}", run.stderr());

    let down = project("postgres://orbital:orbital@127.0.0.1:1/postgres");
    let run = down.orbital(&["run"]).expect_code(3);
    assert!(
        run.stderr().contains("cannot reach the PostgreSQL server"),
        "{}",
        run.stderr()
    );
    assert!(
        !down.path().join("target/orbital/state.redb").exists() || {
            let runs = down.orbital(&["runs", "--json"]).expect_code(0).json();
            runs["runs"].as_array().is_none_or(|r| r.is_empty())
        }
    );
}

fn ctl(action: &str) {
    let ctl = std::env::var("ORBITAL_TEST_POSTGRES_CTL")
        .expect("tests/bin/with-postgres sets ORBITAL_TEST_POSTGRES_CTL");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{ctl} {action}"))
        .stdout(Stdio::null())
        .status()
        .expect("run pg_ctl");
    assert!(status.success(), "pg_ctl {action}");
}

#[test]
fn a_server_stopped_mid_run_fails_the_run_and_the_next_one_finishes() {
    let _server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(Backend::Postgres(db)) = Backend::postgres("midrun") else {
        return;
    };
    let project = project(&db.url);
    for i in 1..=4 {
        project.write(
            &format!("models/slow_{i}.sql"),
            &format!(
                "-- config: materialized = 'table'\nselect {i} as n, pg_sleep(0.5) is null as slept"
            ),
        );
    }
    let child = Command::new(env!("CARGO_BIN_EXE_orbital"))
        .args(["run", "--json", "--project"])
        .arg(project.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start orbital");
    std::thread::sleep(Duration::from_millis(900));
    ctl("stop -m fast");
    let output = child.wait_with_output().expect("orbital finishes");
    ctl("start");
    assert_ne!(
        output.status.code(),
        Some(0),
        "the run cannot have succeeded"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("\"error\"") || !stderr.is_empty(),
        "{stdout}\n{stderr}"
    );
    // The store recorded no build the run did not finish publishing.
    let plan = project.orbital(&["plan", "--json"]).expect_code(0).json();
    let to_build = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["action"] == "build")
        .count();
    assert!(to_build >= 2, "{plan}");
    // The next run finishes the work.
    let again = project.orbital(&["run", "--json"]).expect_code(0);
    let statuses = again.statuses();
    assert_eq!(statuses.len(), 5, "{statuses:?}");
    assert!(
        statuses.values().all(|s| s == "success" || s == "reused"),
        "{statuses:?}"
    );
    let sum = psql(
        &db.url,
        "select sum(n) from (select n from slow_1 union all select n from slow_4) as both_ends",
    )
    .unwrap();
    assert_eq!(sum.trim(), "5");
}
