//! The `snapshot` materialization: type-2 slowly changing dimensions. Each
//! build compares the model's rows (one per `unique_key`) with the current
//! versions in the table, closes the versions that changed, and inserts new
//! versions, so the table keeps every version a row has had, each with the
//! period it was current: `valid_from` and `valid_to` (NULL while current).
//!
//! Config:
//! - `unique_key` (required): the column or columns that identify a row.
//! - `strategy = 'timestamp'` with `updated_at = '<column>'`: a row changed
//!   when its `updated_at` is later than the current version's; versions
//!   are valid from their `updated_at`.
//! - `strategy = 'check'` with `check_cols = 'all'` or a list of columns: a
//!   row changed when any of them differs (NULLs compare equal); versions
//!   are valid from the run's start.
//! - `hard_deletes = 'invalidate'`: a current version whose key the model
//!   no longer returns is closed at the run's start (default `ignore`).
//!
//! New columns in the model are added to the table; columns it no longer
//! has stay, NULL in later versions. The comparison and all writes run in one
//! transaction, so a failed build leaves the history as it was.

use orbital_sdk::{
    Column, LogicalType, Materialization, ModelTask, Outcome, PluginInfo, Relation, Statement,
    Value, build, config_columns, config_str, database, dialect,
};

const VALID_FROM: &str = "valid_from";
const VALID_TO: &str = "valid_to";

struct Snapshot;

enum Strategy {
    /// The column whose later value means a new version.
    Timestamp(String),
    /// The compared columns; empty means all.
    Check(Vec<String>),
}

struct Settings {
    unique_key: Vec<String>,
    strategy: Strategy,
    invalidate_hard_deletes: bool,
}

/// Reads and checks the config before anything touches the database.
fn settings(task: &ModelTask) -> Result<Settings, String> {
    let unique_key = config_columns(task, "unique_key")?;
    if unique_key.is_empty() {
        return Err(
            "a snapshot needs unique_key = '<column>': the column or columns that identify a row"
                .into(),
        );
    }
    let strategy = match config_str(task, "strategy")?.as_deref() {
        Some("timestamp") => match config_str(task, "updated_at")? {
            Some(column) => Strategy::Timestamp(column),
            None => {
                return Err(
                    "strategy = 'timestamp' needs updated_at = '<column>': the column that says when a row last changed"
                        .into(),
                );
            }
        },
        Some("check") => match orbital_sdk::config_value(task, "check_cols")? {
            Some(serde_json::Value::String(all)) if all == "all" => Strategy::Check(Vec::new()),
            Some(_) => Strategy::Check(config_columns(task, "check_cols")?),
            None => {
                return Err(
                    "strategy = 'check' needs check_cols = 'all' or a list of the columns to compare"
                        .into(),
                );
            }
        },
        Some(other) => {
            return Err(format!(
                "strategy = '{other}' is not one of 'timestamp', 'check'"
            ));
        }
        None => {
            return Err("a snapshot needs strategy = 'timestamp' (with updated_at = '<column>') or strategy = 'check' (with check_cols)".into());
        }
    };
    let invalidate_hard_deletes = match config_str(task, "hard_deletes")?.as_deref() {
        None | Some("ignore") => false,
        Some("invalidate") => true,
        Some(other) => {
            return Err(format!(
                "hard_deletes = '{other}' is not one of 'ignore', 'invalidate'"
            ));
        }
    };
    Ok(Settings {
        unique_key,
        strategy,
        invalidate_hard_deletes,
    })
}

impl Materialization for Snapshot {
    fn info() -> PluginInfo {
        orbital_sdk::plugin_info!(
            "materialization-snapshot",
            "Keeps every version of each row with its validity period (SCD type 2)"
        )
    }

    fn strategy() -> String {
        "snapshot".into()
    }

    fn materialize(task: ModelTask) -> Result<Outcome, String> {
        let settings = settings(&task)?;
        let target = &task.relation;
        let source = build::scratch_table(target, "__orbital_source", &task.sql)?;
        let now = now_table(target, &task.run_started_at);
        let built = now.and_then(|now| {
            let result = snapshot(&task, &settings, &source, &now);
            database::drop_if_exists(&now)?;
            result
        });
        database::drop_if_exists(&source)?;
        built
    }
}

fn snapshot(
    task: &ModelTask,
    settings: &Settings,
    source: &Relation,
    now: &Relation,
) -> Result<Outcome, String> {
    let columns = database::columns(source)?;
    check_columns(&columns, settings)?;
    check_unique(source, &settings.unique_key)?;
    let run = Run {
        settings,
        source,
        now,
        columns: &columns,
    };
    match (&task.previous, task.full_refresh) {
        (Some(previous), false) => {
            build::continue_table(previous, &task.relation, || run.update(&task.relation))
                .map(|(outcome, _)| outcome)
        }
        _ => run.first(&task.relation),
    }
}

/// A one-row table holding the run's start: a typed timestamp every
/// statement can read, bound as a parameter (the dialect has no literal).
fn now_table(target: &Relation, run_started_at: &str) -> Result<Relation, String> {
    let now = build::beside(target, "__orbital_now");
    database::drop_if_exists(&now)?;
    let column = Column {
        name: "ts".into(),
        data_type: dialect::column_type(LogicalType::Timestamp),
    };
    database::run(&dialect::create_table(&now, &[column]))?;
    // `2018-01-01T10:00:00Z` -> `2018-01-01 10:00:00`, as the value type wants.
    let timestamp = run_started_at.trim_end_matches('Z').replacen('T', " ", 1);
    database::execute(&Statement {
        sql: dialect::insert_values(&now, &["ts".into()], 1),
        params: vec![Value::Timestamp(timestamp)],
    })?;
    Ok(now)
}

fn check_columns(columns: &[Column], settings: &Settings) -> Result<(), String> {
    let has = |name: &str| columns.iter().any(|c| c.name.eq_ignore_ascii_case(name));
    for reserved in [VALID_FROM, VALID_TO] {
        if has(reserved) {
            return Err(format!(
                "the model returns a column named `{reserved}`, which the snapshot adds itself; rename it"
            ));
        }
    }
    let mut wanted: Vec<&String> = settings.unique_key.iter().collect();
    match &settings.strategy {
        Strategy::Timestamp(column) => wanted.push(column),
        Strategy::Check(listed) => wanted.extend(listed),
    }
    for column in wanted {
        if !has(column) {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            return Err(format!(
                "the config names column `{column}`, which the model does not return (it returns {})",
                names.join(", ")
            ));
        }
    }
    Ok(())
}

/// A snapshot compares one row per key: duplicates would close a version
/// twice or insert two current versions.
fn check_unique(source: &Relation, unique_key: &[String]) -> Result<(), String> {
    let keys = list(unique_key, "");
    let duplicates = database::query(&orbital_sdk::sql(format!(
        "SELECT {keys} FROM {} GROUP BY {keys} HAVING COUNT(*) > 1",
        dialect::render_relation(source)
    )))?;
    match duplicates.rows.first() {
        None => Ok(()),
        Some(row) => Err(format!(
            "the model returns {} rows for unique_key ({}) = ({}); a snapshot needs one row per key",
            if duplicates.rows.len() == 1 {
                "several"
            } else {
                "duplicate"
            },
            unique_key.join(", "),
            row.iter().map(show).collect::<Vec<_>>().join(", ")
        )),
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Integer(n) => n.to_string(),
        Value::Real(x) => x.to_string(),
        Value::Text(s) | Value::Numeric(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// `a, b` quoted, each prefixed with `alias.` when one is given.
fn list(columns: &[String], alias: &str) -> String {
    columns
        .iter()
        .map(|c| format!("{alias}{}", dialect::quote_identifier(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One build's inputs.
struct Run<'a> {
    settings: &'a Settings,
    source: &'a Relation,
    now: &'a Relation,
    columns: &'a [Column],
}

impl Run<'_> {
    fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// When a version read from the source (aliased `s`) starts.
    fn valid_from(&self) -> String {
        match &self.settings.strategy {
            Strategy::Timestamp(column) => format!("s.{}", dialect::quote_identifier(column)),
            Strategy::Check(_) => self.now_value(),
        }
    }

    fn now_value(&self) -> String {
        format!("(SELECT ts FROM {})", dialect::render_relation(self.now))
    }

    fn validity_type(&self) -> String {
        match &self.settings.strategy {
            Strategy::Timestamp(column) => self
                .columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(column))
                .map(|c| c.data_type.clone())
                .unwrap_or_default(),
            Strategy::Check(_) => dialect::column_type(LogicalType::Timestamp),
        }
    }

    /// Statements inserting a current version of each source row that has
    /// none in `target` (all of them on a first build).
    fn insert_current(&self, target: &Relation) -> Vec<Statement> {
        let names = self.names();
        let mut columns = names.clone();
        columns.extend([VALID_FROM.to_string(), VALID_TO.to_string()]);
        let select = format!(
            "SELECT {}, {}, NULL FROM {} AS s WHERE NOT EXISTS (\
             SELECT 1 FROM {} AS t WHERE {} AND t.{} IS NULL)",
            list(&names, "s."),
            self.valid_from(),
            dialect::render_relation(self.source),
            dialect::render_relation(target),
            self.key_match(),
            dialect::quote_identifier(VALID_TO),
        );
        dialect::insert_select(target, &columns, &select)
    }

    fn key_match(&self) -> String {
        self.settings
            .unique_key
            .iter()
            .map(|k| {
                let k = dialect::quote_identifier(k);
                format!("t.{k} = s.{k}")
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// Whether source row `s` differs from version `t`.
    fn changed(&self) -> String {
        match &self.settings.strategy {
            Strategy::Timestamp(column) => {
                let c = dialect::quote_identifier(column);
                format!("s.{c} > t.{c}")
            }
            Strategy::Check(listed) => {
                let compared: Vec<String> = if listed.is_empty() {
                    self.names()
                        .into_iter()
                        .filter(|n| {
                            !self
                                .settings
                                .unique_key
                                .iter()
                                .any(|k| k.eq_ignore_ascii_case(n))
                        })
                        .collect()
                } else {
                    listed.clone()
                };
                if compared.is_empty() {
                    return "1 = 0".into();
                }
                compared
                    .iter()
                    // `IS DISTINCT FROM`, written so MySQL and MariaDB,
                    // which lack it, read it too.
                    .map(|c| {
                        let c = dialect::quote_identifier(c);
                        format!("(s.{c} <> t.{c} OR (s.{c} IS NULL) <> (t.{c} IS NULL))")
                    })
                    .collect::<Vec<_>>()
                    .join(" OR ")
            }
        }
    }

    /// The first build: every source row, current from now on.
    fn first(&self, target: &Relation) -> Result<Outcome, String> {
        let existing = database::relation_kind(target)?;
        let staged = match existing {
            Some(_) => build::beside(target, "__orbital_staged"),
            None => target.clone(),
        };
        // A staged table left by an interrupted run.
        database::drop_if_exists(&staged)?;
        let mut columns = self.columns.to_vec();
        for name in [VALID_FROM, VALID_TO] {
            columns.push(Column {
                name: name.into(),
                data_type: self.validity_type(),
            });
        }
        let mut statements = dialect::create_table(&staged, &columns);
        statements.extend(self.insert_current(&staged));
        // The insert is the last statement before any swap.
        let insert_at = statements.len().saturating_sub(1);
        if let Some(existing) = existing {
            statements.extend(dialect::swap_relation(&dialect::Swap {
                staged: staged.clone(),
                target: target.clone(),
                existing: Some(existing),
            }));
        }
        let counts = database::transaction_counts(&statements)?;
        let rows = counts.get(insert_at).copied().unwrap_or(0);
        build::index_key(target, &self.key_columns())?;
        Ok(Outcome {
            rows_affected: Some(rows),
            message: format!("created snapshot ({rows} rows)"),
        })
    }

    /// The key and `valid_to`: how every statement finds a key's current version.
    fn key_columns(&self) -> Vec<String> {
        let mut columns = self.settings.unique_key.clone();
        columns.push(VALID_TO.into());
        columns
    }

    /// A later build: close what changed (or vanished), insert new versions.
    fn update(&self, target: &Relation) -> Result<Outcome, String> {
        // A copied table has no index yet; an existing one keeps its own.
        build::index_key(target, &self.key_columns())?;
        let existing = database::columns(target)?;
        let mut statements = Vec::new();
        let mut added = Vec::new();
        for column in self.columns {
            if !existing
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&column.name))
            {
                statements.extend(dialect::add_column(target, column));
                added.push(column.name.clone());
            }
        }
        let table = dialect::render_relation(target);
        let source = dialect::render_relation(self.source);
        let valid_to = dialect::quote_identifier(VALID_TO);
        let closing = match &self.settings.strategy {
            Strategy::Timestamp(column) => format!(
                "(SELECT s.{} FROM {source} AS s WHERE {})",
                dialect::quote_identifier(column),
                self.key_match()
            ),
            Strategy::Check(_) => self.now_value(),
        };
        statements.push(orbital_sdk::sql(format!(
            "UPDATE {table} AS t SET {valid_to} = {closing} WHERE t.{valid_to} IS NULL AND EXISTS (\
             SELECT 1 FROM {source} AS s WHERE {} AND ({}))",
            self.key_match(),
            self.changed()
        )));
        let closed_changed = statements.len() - 1;
        if self.settings.invalidate_hard_deletes {
            statements.push(orbital_sdk::sql(format!(
                "UPDATE {table} AS t SET {valid_to} = {} WHERE t.{valid_to} IS NULL AND NOT EXISTS (\
                 SELECT 1 FROM {source} AS s WHERE {})",
                self.now_value(),
                self.key_match()
            )));
        }
        let closed_deleted = statements.len() - 1;
        statements.extend(self.insert_current(target));
        let counts = database::transaction_counts(&statements)?;
        let inserted = counts.last().copied().unwrap_or(0);
        let changed = counts.get(closed_changed).copied().unwrap_or(0);
        let deleted = if self.settings.invalidate_hard_deletes {
            counts.get(closed_deleted).copied().unwrap_or(0)
        } else {
            0
        };
        let mut message = format!(
            "snapshot: {changed} changed, {} new, {deleted} deleted",
            inserted - changed.min(inserted)
        );
        if !added.is_empty() {
            message.push_str(&format!("; added {}", added.join(", ")));
        }
        Ok(Outcome {
            rows_affected: Some(inserted + deleted),
            message,
        })
    }
}

orbital_sdk::export_materialization_v0_1!(Snapshot);
