//! The warehouses the adapter conformance suite runs on: a SQLite file in
//! the test's project, a fresh database on the PostgreSQL server
//! `tests/bin/with-postgres` starts (`ORBITAL_TEST_POSTGRES_URL`), and one
//! on the MariaDB server `tests/bin/with-mariadb` starts
//! (`ORBITAL_TEST_MYSQL_URL`), and one on the ClickHouse server
//! `tests/bin/with-clickhouse` starts (`ORBITAL_TEST_CLICKHOUSE_URL`).
//!
//! Results are read independently of Orbital (sqlx for SQLite, `psql` for
//! PostgreSQL, the `mariadb` client for MariaDB, `curl` to ClickHouse's
//! HTTP interface) and normalized so the same
//! rows compare equal on each: numbers as numbers (`48.00` and `48.0` are
//! `48.00`), NULL as `NULL`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::TestProject;

/// Which kind of warehouse a case runs on.
pub enum Backend {
    Sqlite,
    Postgres(PgDatabase),
    MySql(MyDatabase),
    ClickHouse(ChDatabase),
}

/// A database created for one test on the shared ClickHouse server,
/// dropped after.
pub struct ChDatabase {
    pub server: String,
    pub name: String,
    pub url: String,
}

impl Drop for ChDatabase {
    fn drop(&mut self) {
        let _ = clickhouse(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {}", self.name),
        );
    }
}

/// The ClickHouse server's URL (no database); in CI a missing server
/// fails the test instead of skipping it.
pub fn clickhouse_url() -> Option<String> {
    match std::env::var("ORBITAL_TEST_CLICKHOUSE_URL") {
        Ok(url) => Some(url.trim_end_matches('/').to_string()),
        Err(_) if std::env::var_os("CI").is_some() => panic!(
            "CI runs the conformance suite on ClickHouse: run the tests under tests/bin/with-servers"
        ),
        Err(_) => {
            eprintln!("ORBITAL_TEST_CLICKHOUSE_URL is not set: ClickHouse case skipped");
            None
        }
    }
}

/// Runs one statement on the server or database `url` names
/// (`clickhouse://user:password@host:port[/database]`) through ClickHouse's
/// HTTP interface; its rows as TabSeparated text, NULL as `\N`.
pub fn clickhouse(url: &str, sql: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("clickhouse://")
        .expect("a clickhouse:// URL");
    let (credentials, rest) = rest.split_once('@').expect("credentials in the URL");
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let (host, database) = rest.split_once('/').unwrap_or((rest, "default"));
    let endpoint = format!(
        "http://{host}/?user={user}&password={password}&database={database}&join_default_strictness=ALL"
    );
    let output = Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "-X",
            "POST",
            &endpoint,
            "--data-binary",
            sql,
        ])
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    match output.status.success() {
        true => Ok(text),
        false => Err(format!("{text}{}", String::from_utf8_lossy(&output.stderr))),
    }
}

/// A database created for one test on the shared MariaDB server, dropped
/// after.
pub struct MyDatabase {
    pub server: String,
    pub name: String,
    pub url: String,
    /// The target reaches it through the mysql-wire example adapter's own
    /// connection (`mysql-wire://`) instead of the host's driver.
    pub wire: bool,
}

impl MyDatabase {
    /// The URL a project's target gives.
    pub fn target_url(&self) -> String {
        if self.wire {
            self.url.replacen("mysql://", "mysql-wire://", 1)
        } else {
            self.url.clone()
        }
    }
}

impl Drop for MyDatabase {
    fn drop(&mut self) {
        let _ = mariadb(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {}", self.name),
        );
    }
}

/// The MariaDB server's URL (no database); in CI a missing server fails
/// the test instead of skipping it.
pub fn mysql_url() -> Option<String> {
    match std::env::var("ORBITAL_TEST_MYSQL_URL") {
        Ok(url) => Some(url.trim_end_matches('/').to_string()),
        Err(_) if std::env::var_os("CI").is_some() => panic!(
            "CI runs the conformance suite on MariaDB: run the tests under tests/bin/with-servers"
        ),
        Err(_) => {
            eprintln!("ORBITAL_TEST_MYSQL_URL is not set: MariaDB case skipped");
            None
        }
    }
}

/// Runs SQL with the `mariadb` client on the server or database `url`
/// names (`mysql://user:password@host:port[/database]`); its output rows,
/// `|`-separated, NULL as `NULL`.
pub fn mariadb(url: &str, sql: &str) -> Result<String, String> {
    let rest = url.strip_prefix("mysql://").ok_or("not a mysql:// URL")?;
    let (credentials, rest) = rest.split_once('@').ok_or("no user in the URL")?;
    let (user, password) = credentials
        .split_once(':')
        .ok_or("no password in the URL")?;
    let (address, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = address.split_once(':').ok_or("no port in the URL")?;
    let mut command = Command::new("mariadb");
    command
        .args([
            "--no-defaults",
            "--protocol=tcp",
            "-N",
            "-B",
            "-h",
            host,
            "-P",
            port,
        ])
        .arg(format!("-u{user}"))
        .arg(format!("-p{password}"))
        // As Orbital's sessions run.
        .arg("--init-command=SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES,PIPES_AS_CONCAT')");
    if !database.is_empty() {
        command.args(["-D", database]);
    }
    let output = command
        .arg("-e")
        .arg(sql)
        .output()
        .map_err(|e| format!("cannot run mariadb: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout).replace('\t', "|"))
}

/// A database created for one test on the shared server, dropped after.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// The server's URL; in CI a missing server fails the test instead of
/// skipping it.
pub fn postgres_url() -> Option<String> {
    match std::env::var("ORBITAL_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => panic!(
            "CI runs the conformance suite on PostgreSQL: run the tests under tests/bin/with-postgres"
        ),
        Err(_) => {
            eprintln!("ORBITAL_TEST_POSTGRES_URL is not set: PostgreSQL case skipped");
            None
        }
    }
}

impl Backend {
    /// A fresh PostgreSQL database for test `test`, or `None` without a server.
    pub fn postgres(test: &str) -> Option<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let admin_url = postgres_url()?;
        let name = format!(
            "orbital_{test}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        psql(&admin_url, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        let (server, _) = admin_url.rsplit_once('/').expect("a database in the URL");
        let url = format!("{server}/{name}");
        Some(Self::Postgres(PgDatabase {
            admin_url,
            name,
            url,
        }))
    }

    /// A fresh MariaDB database for test `test`, or `None` without a server.
    pub fn mysql(test: &str) -> Option<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let server = mysql_url()?;
        // MySQL names are at most 64 characters.
        let name = format!(
            "orbital_{}_{}_{}",
            &test[..test.len().min(32)],
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        mariadb(&server, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        let url = format!("{server}/{name}");
        Some(Self::MySql(MyDatabase {
            server,
            name,
            url,
            wire: false,
        }))
    }

    /// A fresh MariaDB database for test `test` that the target reaches
    /// through the mysql-wire example adapter, or `None` without a server.
    pub fn mysql_wire(test: &str) -> Option<Self> {
        let Some(Self::MySql(mut database)) = Self::mysql(test) else {
            return None;
        };
        database.wire = true;
        Some(Self::MySql(database))
    }

    /// A fresh ClickHouse database for test `test`, or `None` without a server.
    pub fn clickhouse(test: &str) -> Option<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let server = clickhouse_url()?;
        let name = format!(
            "orbital_{test}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        clickhouse(&server, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        let url = format!("{server}/{name}");
        Some(Self::ClickHouse(ChDatabase { server, name, url }))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
            Backend::MySql(_) => "mysql",
            Backend::ClickHouse(_) => "clickhouse",
        }
    }
}

/// Runs SQL with psql; its output rows, `|`-separated, NULL as `NULL`.
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let output = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-F",
            "|",
            "-P",
            "null=NULL",
        ])
        .arg(url)
        .arg("-c")
        .arg(sql)
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One test's project on one backend.
pub struct Case {
    pub project: TestProject,
    pub backend: Backend,
}

impl Case {
    /// A project named `case` whose dev target is `backend`, with `toml`
    /// appended to its orbital.toml.
    pub fn new(backend: Backend, toml: &str) -> Self {
        let project = TestProject::empty();
        let url = match &backend {
            Backend::Sqlite => "sqlite://target/jaffle_shop.db".to_string(),
            Backend::Postgres(db) => db.url.clone(),
            Backend::MySql(db) => db.target_url(),
            Backend::ClickHouse(db) => db.url.clone(),
        };
        project.write(
            "orbital.toml",
            &format!("name = \"case\"\n[targets.dev]\nurl = \"{url}\"\n{toml}"),
        );
        if let Backend::MySql(MyDatabase { wire: true, .. }) = &backend {
            let component = orbital_bundle::test_component("orbital-example-mysql-wire");
            project.add_component(&component.display().to_string());
        }
        Self { project, backend }
    }

    /// The SQLite file, for SQLite cases.
    fn sqlite_file(&self) -> PathBuf {
        self.project.database()
    }

    /// Runs statements (`;`-separated) on the warehouse.
    pub fn execute(&self, sql: &str) {
        match &self.backend {
            Backend::Sqlite => super::execute(&self.sqlite_file(), sql),
            Backend::Postgres(db) => {
                psql(&db.url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Backend::MySql(db) => {
                mariadb(&db.url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            // One statement per request.
            Backend::ClickHouse(db) => {
                for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
                    clickhouse(&db.url, statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
                }
            }
        }
    }

    /// Rows of a query, every cell normalized.
    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        let rows = match &self.backend {
            Backend::Sqlite => super::query(&self.sqlite_file(), sql),
            Backend::Postgres(db) => psql(&db.url, sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .lines()
                .map(|line| line.split('|').map(str::to_string).collect())
                .collect(),
            Backend::MySql(db) => mariadb(&db.url, sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .lines()
                .map(|line| line.split('|').map(str::to_string).collect())
                .collect(),
            Backend::ClickHouse(db) => clickhouse(&db.url, sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .lines()
                .map(|line| {
                    line.split('\t')
                        .map(|cell| match cell {
                            "\\N" => "NULL".to_string(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .collect(),
        };
        rows.into_iter()
            .map(|row| row.iter().map(|cell| normalize(cell)).collect())
            .collect()
    }

    /// One value.
    pub fn scalar(&self, sql: &str) -> String {
        self.query(sql).remove(0).remove(0)
    }

    /// `table`, `view` or `none` for a relation in the default schema.
    pub fn kind(&self, name: &str) -> String {
        match &self.backend {
            Backend::Sqlite => super::object_kind(&self.sqlite_file(), name),
            Backend::Postgres(db) => {
                let sql = format!(
                    "SELECT CASE relkind WHEN 'v' THEN 'view' ELSE 'table' END FROM pg_class \
                     WHERE relname = '{name}' AND relnamespace = 'public'::regnamespace \
                     AND relkind IN ('r', 'v')"
                );
                let kind = psql(&db.url, &sql).unwrap_or_else(|e| panic!("{e}"));
                match kind.trim() {
                    "" => "none".into(),
                    other => other.into(),
                }
            }
            Backend::MySql(db) => {
                let sql = format!(
                    "SELECT CASE table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END \
                     FROM information_schema.tables \
                     WHERE table_schema = DATABASE() AND table_name = '{name}'"
                );
                let kind = mariadb(&db.url, &sql).unwrap_or_else(|e| panic!("{e}"));
                match kind.trim() {
                    "" => "none".into(),
                    other => other.into(),
                }
            }
            Backend::ClickHouse(db) => {
                let sql = format!(
                    "SELECT if(engine = 'View', 'view', 'table') FROM system.tables \
                     WHERE database = currentDatabase() AND name = '{name}'"
                );
                let kind = clickhouse(&db.url, &sql).unwrap_or_else(|e| panic!("{e}"));
                match kind.trim() {
                    "" => "none".into(),
                    other => other.into(),
                }
            }
        }
    }

    /// How many relations (tables and views, not indexes) are named like `pattern`.
    pub fn count_relations(&self, pattern: &str) -> usize {
        let sql = match &self.backend {
            Backend::Sqlite => format!(
                "select count(*) from sqlite_master where type in ('table', 'view') and name like '{pattern}'"
            ),
            Backend::Postgres(_) => format!(
                "select count(*) from pg_class where relkind in ('r', 'v') and relname like '{pattern}'"
            ),
            Backend::MySql(_) => format!(
                "select count(*) from information_schema.tables \
                 where table_schema = database() and table_name like '{pattern}'"
            ),
            Backend::ClickHouse(_) => format!(
                "select count(*) from system.tables \
                 where database = currentDatabase() and name like '{pattern}'"
            ),
        };
        self.scalar(&sql).parse().expect("a count")
    }

    pub fn orbital(&self, args: &[&str]) -> super::Run {
        self.project.orbital(args)
    }
}

/// A number as a number (two decimals unless whole and written whole), else
/// the text.
pub fn normalize(cell: &str) -> String {
    let numeric = !cell.is_empty()
        && cell
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+'))
        && cell.chars().any(|c| c.is_ascii_digit())
        && !cell.contains("--")
        && cell.matches('-').count() <= 1;
    match cell.parse::<f64>() {
        Ok(value) if numeric && cell.contains('.') => format!("{value:.2}"),
        _ => cell.to_string(),
    }
}

/// The jaffle_shop example with its target on a fresh PostgreSQL database
/// for test `test` (`None` without a server).
#[allow(dead_code)]
pub fn jaffle_shop_on_postgres(test: &str) -> Option<(TestProject, PgDatabase)> {
    let Some(Backend::Postgres(database)) = Backend::postgres(test) else {
        return None;
    };
    let project = jaffle_shop_at(&database.url);
    Some((project, database))
}

/// The jaffle_shop example with its target on a fresh MariaDB database for
/// test `test` (`None` without a server).
#[allow(dead_code)]
pub fn jaffle_shop_on_mysql(test: &str) -> Option<(TestProject, MyDatabase)> {
    let Some(Backend::MySql(database)) = Backend::mysql(test) else {
        return None;
    };
    let project = jaffle_shop_at(&database.url);
    Some((project, database))
}

/// The jaffle_shop example with its target's URL `url`.
fn jaffle_shop_at(url: &str) -> TestProject {
    let project = TestProject::jaffle_shop();
    let config = std::fs::read_to_string(project.path().join("orbital.toml")).unwrap();
    let url_line = config
        .lines()
        .find(|l| l.trim_start().starts_with("url"))
        .expect("the example's target URL")
        .to_string();
    project.write(
        "orbital.toml",
        &config.replace(&url_line, &format!("url = \"{url}\"")),
    );
    project
}
