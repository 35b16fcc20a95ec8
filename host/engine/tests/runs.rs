//! The engine as a library, on real SQLite files (and a real PostgreSQL
//! server where `tests/bin/with-postgres` started one): runs at once in one
//! process, queueing, cancellation, interrupted runs and the event stream.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orbital_engine::{
    CancellationToken, Engine, EngineOptions, Event, RunCommand, RunOutcome, RunRequest, RunStatus,
    Selector, Status,
};
use sqlx::{Connection, Row};
use tokio::sync::mpsc::UnboundedReceiver;

fn new_engine() -> Engine {
    Engine::new(EngineOptions::default())
}

fn request(project: &Path, command: RunCommand, env: Option<&str>) -> RunRequest {
    RunRequest {
        project: project.to_path_buf(),
        command,
        selector: Selector::default(),
        threads: None,
        full_refresh: false,
        env: env.map(str::to_string),
        peers: Vec::new(),
        store_failures: false,
    }
}

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A small project on a SQLite file (or `url`): a seed, a view, a table.
fn small_project(url: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let url = url.map_or("sqlite://target/warehouse.db".to_string(), str::to_string);
    write(
        dir.path(),
        "orbital.toml",
        &format!("name = \"small\"\n\n[targets.dev]\nurl = \"{url}\"\n"),
    );
    write(
        dir.path(),
        "seeds/people.csv",
        "id,name\n1,ada\n2,grace\n3,edsger\n",
    );
    write(
        dir.path(),
        "models/named.sql",
        "-- config: materialized = 'view'\nselect id, upper(name) as name from people\n",
    );
    write(
        dir.path(),
        "models/counted.sql",
        "-- config: materialized = 'table'\nselect count(*) as n from named\n",
    );
    dir
}

async fn run(
    engine: &Engine,
    request: RunRequest,
    cancel: CancellationToken,
) -> (RunOutcome, Vec<Event>) {
    let (events, received) = tokio::sync::mpsc::unbounded_channel();
    let outcome = engine
        .run(request, events, cancel)
        .await
        .expect("the run starts");
    (outcome, drain(received))
}

type Running = tokio::task::JoinHandle<Result<RunOutcome, orbital_engine::EngineError>>;

/// Starts `request` on a task of its own and waits until node `node` has
/// started; returns the task, the events still to come and its cancel token.
async fn start_until(
    engine: &Engine,
    request: RunRequest,
    node: &str,
) -> (Running, UnboundedReceiver<Event>, CancellationToken) {
    let cancel = CancellationToken::new();
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let running = tokio::spawn({
        let (engine, cancel) = (engine.clone(), cancel.clone());
        async move { engine.run(request, events, cancel).await }
    });
    while let Some(event) = received.recv().await {
        if matches!(&event, Event::NodeStarted { node: started, .. } if started == node) {
            break;
        }
    }
    (running, received, cancel)
}

/// A whole `build` of `project`, which must succeed.
async fn build(engine: &Engine, project: &Path) -> RunOutcome {
    let request = request(project, RunCommand::Build, None);
    let (outcome, _) = run(engine, request, CancellationToken::new()).await;
    assert_eq!(
        outcome.status,
        RunStatus::Succeeded,
        "{:?}",
        outcome.results
    );
    outcome
}

fn drain(mut received: UnboundedReceiver<Event>) -> Vec<Event> {
    let mut events = Vec::new();
    while let Ok(event) = received.try_recv() {
        events.push(event);
    }
    events
}

async fn sqlite_scalar(file: &Path, sql: &str) -> i64 {
    let url = format!("sqlite://{}", file.display());
    let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut connection)
        .await
        .unwrap();
    row.get::<i64, _>(0)
}

fn warehouse(project: &Path) -> PathBuf {
    project.join("target/warehouse.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_environments_run_at_once_in_one_process() {
    let project = small_project(None);
    let engine = new_engine();
    let build = request(project.path(), RunCommand::Build, None);
    run(&engine, build, CancellationToken::new()).await;
    let (dev, staging) = tokio::join!(
        run(
            &engine,
            request(project.path(), RunCommand::Build, Some("dev")),
            CancellationToken::new()
        ),
        run(
            &engine,
            request(project.path(), RunCommand::Build, Some("staging")),
            CancellationToken::new()
        ),
    );
    for (outcome, _) in [&dev, &staging] {
        assert_eq!(
            outcome.status,
            RunStatus::Succeeded,
            "{:?}",
            outcome.results
        );
    }
    assert_ne!(dev.0.run, staging.0.run);
    engine.close().await;
    for env in ["dev", "staging"] {
        let n = sqlite_scalar(
            &warehouse(project.path()),
            &format!("select n from {env}__counted"),
        )
        .await;
        assert_eq!(n, 3, "environment {env}");
    }
    let runs = engine.runs(project.path(), 10).unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_one_environment_waits_for_the_first() {
    let project = small_project(None);
    // Long enough that the second run asks for the environment while the
    // first still holds it, however busy the machine.
    write(
        project.path(),
        "models/slowish.sql",
        "-- config: materialized = 'table'
         with recursive r(n) as (select 1 union all select n + 1 from r where n < 1000000)
         select count(*) as n from r
",
    );
    let engine = new_engine();
    let full = || {
        let mut request = request(project.path(), RunCommand::Build, None);
        request.full_refresh = true;
        request
    };
    let (running, _, _cancel) = start_until(&engine, full(), "slowish").await;
    let (second, second_events) = run(&engine, full(), CancellationToken::new()).await;
    let first = running.await.unwrap().expect("the run started");
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.results);
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.results);
    assert!(
        second_events
            .iter()
            .any(|e| matches!(e, Event::RunQueued { .. })),
        "the second run waited for the first"
    );
    let records = engine.runs(project.path(), 10).unwrap();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.status == RunStatus::Succeeded));
    engine.close().await;
}

/// A table that takes SQLite many seconds to compute.
const SLOW_SQLITE: &str = "-- config: materialized = 'table'\n\
    with recursive r(n) as (select 1 union all select n + 1 from r where n < 2000000000)\n\
    select count(*) as n from r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_publishes_nothing_and_the_next_run_finishes() {
    let project = small_project(None);
    let engine = new_engine();
    build(&engine, project.path()).await;
    let before = sqlite_scalar(&warehouse(project.path()), "select n from counted").await;
    // The table now reads a slow model: the run is cancelled while it builds.
    write(project.path(), "models/slow.sql", SLOW_SQLITE);
    write(
        project.path(),
        "models/counted.sql",
        "-- config: materialized = 'table'\nselect count(*) + (select n from slow) * 0 + 100 as n from named\n",
    );
    let build = request(project.path(), RunCommand::Build, None);
    // Cancel once the slow model has started.
    let (running, received, cancel) = start_until(&engine, build, "slow").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = std::time::Instant::now();
    cancel.cancel();
    let outcome = running.await.unwrap().expect("the run started");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "the statement was interrupted, not waited out"
    );
    assert_eq!(outcome.status, RunStatus::Cancelled);
    let slow = outcome.results.iter().find(|r| r.name == "slow").unwrap();
    assert_eq!(slow.status, Status::Cancelled, "{slow:?}");
    assert!(outcome.results.iter().all(|r| r.name != "counted"));
    let events = drain(received);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::RunFinished {
            status: RunStatus::Cancelled,
            ..
        }
    )));
    assert!(!events.iter().any(|e| matches!(e, Event::Publishing { .. })));
    let record = engine
        .run_record(project.path(), outcome.run)
        .unwrap()
        .unwrap();
    assert_eq!(record.status, RunStatus::Cancelled);
    // Every environment is as it was.
    engine.close().await;
    let after = sqlite_scalar(&warehouse(project.path()), "select n from counted").await;
    assert_eq!(after, before);
    let views = sqlite_scalar(
        &warehouse(project.path()),
        "select count(*) from sqlite_master where name = 'slow'",
    )
    .await;
    assert_eq!(views, 0, "no environment relation for the cancelled model");
    // The next run finishes.
    write(
        project.path(),
        "models/slow.sql",
        "-- config: materialized = 'table'\nselect 1 as n\n",
    );
    let (next, _) = run(
        &engine,
        request(project.path(), RunCommand::Build, None),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(next.status, RunStatus::Succeeded, "{:?}", next.results);
    engine.close().await;
    assert_eq!(
        sqlite_scalar(&warehouse(project.path()), "select n from counted").await,
        103
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_running_by_a_dead_process_is_interrupted() {
    let project = small_project(None);
    let engine = new_engine();
    build(&engine, project.path()).await;
    engine.close().await;
    // A process that recorded a run and died before finishing it.
    let store_path = project.path().join("target/orbital/state.redb");
    let dead = {
        let store = orbital_cas::Store::open(&store_path).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let holder = orbital_engine::Holder {
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap()
                .trim()
                .to_string(),
            pid,
            started: 0,
        };
        store
            .write(|w| {
                w.add_run(orbital_engine::RunRecord {
                    id: 0,
                    command: "build".into(),
                    target: "dev".into(),
                    environment: "prod".into(),
                    started_at: String::new(),
                    elapsed_ms: 0,
                    status: RunStatus::Running,
                    error: None,
                    holder: Some(holder),
                    nodes: Vec::new(),
                })
            })
            .unwrap()
    };
    // A new engine (as in a new process) opens the store.
    let record = new_engine()
        .run_record(project.path(), dead)
        .unwrap()
        .unwrap();
    assert_eq!(record.status, RunStatus::Interrupted);
    assert!(
        record
            .error
            .unwrap()
            .contains("ended before the run finished")
    );
}

/// The example project, with its macro plugin where its orbital.toml lists it.
fn jaffle_shop() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jaffle_shop");
    copy_dir(&example, dir.path());
    std::fs::copy(
        orbital_bundle::test_component("jaffle-macros"),
        dir.path().join("plugins/jaffle_macros.wasm"),
    )
    .unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().ends_with(".wasm") {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_of_a_build_follow_the_graph() {
    let project = jaffle_shop();
    let engine = new_engine();
    let (outcome, events) = run(
        &engine,
        request(project.path(), RunCommand::Build, None),
        CancellationToken::new(),
    )
    .await;
    engine.close().await;
    assert_eq!(
        outcome.status,
        RunStatus::Succeeded,
        "{:?}",
        outcome.results
    );
    let compiled = engine
        .compile(orbital_engine::CompileRequest {
            project: project.path().to_path_buf(),
            selector: Selector::default(),
            listing: orbital_engine::Listing::All,
        })
        .await
        .unwrap();
    let dag = &compiled.compiled.dag;
    let run_id = outcome.run;
    assert!(matches!(events.first(), Some(Event::RunStarted { run, .. }) if *run == run_id));
    assert!(matches!(
        events.last(),
        Some(Event::RunFinished {
            status: RunStatus::Succeeded,
            ..
        })
    ));
    let position = |wanted: &dyn Fn(&Event) -> bool| events.iter().position(wanted);
    let mut nodes = 0;
    for node in dag.nodes.iter().filter(|n| !n.is_ephemeral()) {
        nodes += 1;
        let name = node.name.as_str();
        let started: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Event::NodeStarted { node, .. } if node == name))
            .map(|(i, _)| i)
            .collect();
        let finished: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Event::NodeFinished { result, .. } if result.name == name))
            .map(|(i, _)| i)
            .collect();
        assert_eq!((started.len(), finished.len()), (1, 1), "node {name}");
        assert!(started[0] < finished[0], "node {name}");
        for &upstream in &node.depends_on {
            let upstream = &dag.nodes[upstream];
            if upstream.is_ephemeral() {
                continue;
            }
            let done = position(&|e: &Event| {
                matches!(e, Event::NodeFinished { result, .. } if result.name == upstream.name)
            })
            .unwrap();
            assert!(
                done < started[0],
                "{name} started before its upstream {} finished",
                upstream.name
            );
        }
    }
    assert_eq!(outcome.results.len(), nodes);
    let recorded = position(&|e: &Event| matches!(e, Event::Recorded { .. })).unwrap();
    let publishing = position(&|e: &Event| matches!(e, Event::Publishing { .. })).unwrap();
    assert!(publishing < recorded);
    // Every event serializes, as the API will send it.
    for event in &events {
        serde_json::to_string(event).unwrap();
    }
}

/// A fresh database on the server `tests/bin/with-postgres` started.
async fn postgres_database(name: &str) -> Option<String> {
    let admin = match std::env::var("ORBITAL_TEST_POSTGRES_URL") {
        Ok(url) => url,
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI runs the PostgreSQL cases: run the tests under tests/bin/with-postgres")
        }
        Err(_) => return None,
    };
    let database = format!("orbital_engine_{name}_{}", std::process::id());
    let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap();
    // One statement per query: a multi-statement query is one transaction,
    // which DROP DATABASE refuses.
    for sql in [
        format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
        format!("CREATE DATABASE {database}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut connection)
            .await
            .unwrap();
    }
    let (server, _) = admin.rsplit_once('/').unwrap();
    Some(format!("{server}/{database}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_cancels_its_statement_on_postgresql() {
    let Some(url) = postgres_database("cancel").await else {
        eprintln!("ORBITAL_TEST_POSTGRES_URL is not set: skipped");
        return;
    };
    let project = small_project(Some(&url));
    write(
        project.path(),
        "models/slow.sql",
        "-- config: materialized = 'table'\nselect 1 as n from (select pg_sleep(60)) as s\n",
    );
    let engine = new_engine();
    let build = request(project.path(), RunCommand::Build, None);
    let (running, _, cancel) = start_until(&engine, build, "slow").await;
    let mut observer = sqlx::PgConnection::connect(&url).await.unwrap();
    let sleeping = "select count(*) from pg_stat_activity \
        where datname = current_database() and state = 'active' and query like '%pg_sleep(60)%' \
        and pid <> pg_backend_pid()";
    // The statement reaches the server.
    let mut seen = false;
    for _ in 0..100 {
        let n: i64 = sqlx::query_scalar(sleeping)
            .fetch_one(&mut observer)
            .await
            .unwrap();
        if n > 0 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the slow statement ran on the server");
    cancel.cancel();
    let outcome = running.await.unwrap().expect("the run started");
    assert_eq!(outcome.status, RunStatus::Cancelled);
    let n: i64 = sqlx::query_scalar(sleeping)
        .fetch_one(&mut observer)
        .await
        .unwrap();
    assert_eq!(n, 0, "the statement is gone from pg_stat_activity");
    let views: i64 = sqlx::query_scalar("select count(*) from pg_class where relname = 'slow'")
        .fetch_one(&mut observer)
        .await
        .unwrap();
    assert_eq!(views, 0, "nothing was published");
    let record = engine
        .run_record(project.path(), outcome.run)
        .unwrap()
        .unwrap();
    assert_eq!(record.status, RunStatus::Cancelled);
    engine.close().await;
    drop(observer);
    drop_database(&url).await;
}

async fn drop_database(url: &str) {
    let admin = std::env::var("ORBITAL_TEST_POSTGRES_URL").unwrap();
    let (_, database) = url.rsplit_once('/').unwrap();
    let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
    )))
    .execute(&mut connection)
    .await
    .unwrap();
}

/// (version, changed_by) of each environment of `project`'s warehouse.
async fn versions(engine: &Engine, project: &Path) -> Vec<(String, u64, Option<String>)> {
    let listed = engine
        .environments(orbital_engine::EnvironmentsRequest {
            project: project.to_path_buf(),
            target: None,
        })
        .await
        .unwrap();
    listed
        .into_iter()
        .map(|e| (e.name, e.version, e.changed_by))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environments_version_counts_the_changes_to_its_pointers_in_the_warehouse() {
    let project = small_project(None);
    let engine = new_engine();
    let cli = Some("cli".to_string());
    build(&engine, project.path()).await;
    assert_eq!(
        versions(&engine, project.path()).await,
        [("prod".to_string(), 1, cli.clone())]
    );
    // A run that moves no pointer counts nothing.
    build(&engine, project.path()).await;
    assert_eq!(versions(&engine, project.path()).await[0].1, 1);
    write(
        project.path(),
        "models/counted.sql",
        "-- config: materialized = 'table'\nselect count(*) + 1 as n from named\n",
    );
    build(&engine, project.path()).await;
    assert_eq!(versions(&engine, project.path()).await[0].1, 2);
    // Each environment has its own count, kept in the warehouse.
    engine
        .promote(orbital_engine::PromoteRequest {
            project: project.path().to_path_buf(),
            selector: Selector::default(),
            from: "prod".into(),
            to: "staging".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        versions(&engine, project.path()).await,
        [
            ("prod".to_string(), 2, cli.clone()),
            ("staging".to_string(), 1, cli)
        ]
    );
    let counted = sqlite_scalar(
        &warehouse(project.path()),
        "SELECT version FROM _orbital_environments WHERE name = 'prod'",
    )
    .await;
    assert_eq!(counted, 2);
}
