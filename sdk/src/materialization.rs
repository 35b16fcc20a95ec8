//! The `materialization` world: builds one model.

use crate::__wit::materialization::exports::orbital::plugin::strategy as wit;
#[cfg(feature = "api-0-2")]
use crate::__wit::materialization_v0_2::exports::orbital::plugin0_2_0::strategy as wit_v0_2;
use crate::PluginInfo;

pub use wit::{ModelTask, Outcome};

/// A materialization strategy. Implement it on a unit struct and call
/// [`export_materialization!`](crate::export_materialization).
///
/// # Where a build goes
/// Orbital stores builds by content: `task.relation` is not the model's
/// published name but a relation of its own named after the model's
/// fingerprint (`orbital__<model>__<fingerprint prefix>`), which is new
/// whenever the model's SQL, config, plugins or anything upstream changed.
/// A materialization builds there, and nowhere else; when the whole run has
/// succeeded, Orbital points the environment's view (`<model>`, or its
/// alias and schema) at it. So a build never has to clear what an earlier
/// one left: on a first build `task.relation` does not exist yet, and an
/// unchanged model is reused without calling the plugin at all. A strategy
/// that keeps history gets the relation of the build it continues in
/// `task.previous`.
///
/// # Keeping history
/// A strategy whose [`keeps_history`](Materialization::keeps_history) is
/// true makes tables that carry what a rebuild cannot recreate (an audit
/// log, a snapshot). Orbital then treats its models as it treats
/// `incremental` ones: the model's SQL may read `this` (its own table) and
/// call `if_incremental(...)`; a build that continues gets the previous
/// table in `task.previous` (and `task.sql` is the continuing variant);
/// and when the model's fingerprint changes, the new build starts from the
/// old table instead of from nothing ([`build::continue_table`] copies it
/// forward). `--full-refresh` starts from nothing.
pub trait Materialization {
    /// Who this plugin is.
    fn info() -> PluginInfo;
    /// The name models use in `materialized = '...'`.
    fn strategy() -> String;
    /// Whether builds continue the model's previous table (see above).
    fn keeps_history() -> bool {
        false
    }
    /// Builds `task.model` at `task.relation`. The error is shown to the user
    /// with the model and plugin names.
    fn materialize(task: ModelTask) -> Result<Outcome, String>;
}

/// Reads one key of the task's JSON config, or `None` when it is absent.
pub fn config_value(task: &ModelTask, key: &str) -> Result<Option<serde_json::Value>, String> {
    let config: serde_json::Value = serde_json::from_str(&task.config)
        .map_err(|e| format!("the host sent invalid config JSON: {e}"))?;
    Ok(config.get(key).cloned())
}

/// Reads a string key of the task's config; `None` when absent.
pub fn config_str(task: &ModelTask, key: &str) -> Result<Option<String>, String> {
    match config_value(task, key)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("config `{key}` must be a string, got {other}")),
    }
}

/// Reads a key that is one column name or a list of them (`unique_key`,
/// `check_cols`); empty when absent.
pub fn config_columns(task: &ModelTask, key: &str) -> Result<Vec<String>, String> {
    match config_value(task, key)? {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::String(s)) => Ok(vec![s]),
        Some(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(s) => Ok(s),
                other => Err(format!(
                    "config `{key}` must list column names, got {other}"
                )),
            })
            .collect(),
        Some(other) => Err(format!(
            "config `{key}` must be a column name or a list of them, got {other}"
        )),
    }
}

/// Building blocks most materializations share.
pub mod build {
    use crate::{Relation, dialect};

    use super::database;

    /// `<identifier><suffix>` beside `relation`: where a build stages its work.
    pub fn beside(relation: &Relation, suffix: &str) -> Relation {
        Relation {
            identifier: format!("{}{suffix}", relation.identifier),
            ..relation.clone()
        }
    }

    /// Builds `sql` as the table `target`, atomically: a new table in one
    /// CREATE TABLE AS; an existing relation replaced by a table built
    /// under a staging name and swapped in within one transaction, so a
    /// failed build leaves the old one. Returns the new table's row count.
    ///
    /// The new table is tried first, and what stands at `target` is asked
    /// only when that fails: nearly every build is of a new table, and
    /// asking first costs SQLite a scan of its whole catalog.
    pub fn replace_table(target: &Relation, sql: &str) -> Result<u64, String> {
        let created = database::run(&dialect::create_table_as(target, sql));
        let existing = match created {
            Ok(_) => return database::row_count(target),
            Err(error) => match database::relation_kind(target)? {
                Some(kind) => kind,
                None => return Err(error),
            },
        };
        let existing = Some(existing);
        let staged = beside(target, "__orbital_staged");
        // A previous run may have died between build and swap.
        database::drop_if_exists(&staged)?;
        database::run(&dialect::create_table_as(&staged, sql))?;
        let rows = database::row_count(&staged)?;
        let swap = dialect::Swap {
            staged: staged.clone(),
            target: target.clone(),
            existing,
        };
        if let Err(error) = database::run_in_transaction(&dialect::swap_relation(&swap)) {
            database::drop_if_exists(&staged)?;
            return Err(error);
        }
        Ok(rows)
    }

    /// Whether two relations are the same one.
    pub fn same(a: &Relation, b: &Relation) -> bool {
        a.database == b.database && a.schema == b.schema && a.identifier == b.identifier
    }

    /// For a stateful materialization: makes `target` continue the table
    /// `previous` (the task's `previous`), then runs `add` to add this
    /// build's rows to `target`. When they differ (the model's fingerprint
    /// changed), `previous` is copied to `target` first and left as it was
    /// for whoever still uses it; the copy is dropped if `add` fails.
    /// Returns what `add` returned and whether a copy was made.
    pub fn continue_table<T>(
        previous: &Relation,
        target: &Relation,
        add: impl FnOnce() -> Result<T, String>,
    ) -> Result<(T, bool), String> {
        if database::relation_kind(previous)?.is_none() {
            return Err(format!(
                "its table {} is missing from the warehouse (dropped outside Orbital?); rebuild it with --full-refresh",
                dialect::render_relation(previous)
            ));
        }
        let copied = !same(previous, target);
        if copied {
            // Left by an interrupted run: never recorded, so never read.
            database::drop_if_exists(target)?;
            let copy = format!("SELECT * FROM {}", dialect::render_relation(previous));
            database::run(&dialect::create_table_as(target, &copy))?;
        }
        match add() {
            Ok(added) => Ok((added, copied)),
            Err(error) => {
                if copied {
                    database::drop_if_exists(target)?;
                }
                Err(error)
            }
        }
    }

    /// Indexes `relation` on the columns that find a row (unless it has that
    /// index already), so the row look-ups of merges and snapshots do not
    /// scan the table. The index is `<identifier>__orbital_key`. It only
    /// speeds look-ups up: where the database cannot make it (MySQL indexes
    /// a `TEXT` column only by a prefix; MySQL 8 has no `IF NOT EXISTS`
    /// here), the run log says so and the build goes on.
    pub fn index_key(relation: &Relation, columns: &[String]) -> Result<(), String> {
        if columns.is_empty() {
            return Ok(());
        }
        let list = columns
            .iter()
            .map(|c| dialect::quote_identifier(c))
            .collect::<Vec<_>>()
            .join(", ");
        let name = dialect::quote_identifier(&format!("{}__orbital_key", relation.identifier));
        let made = database::execute(&crate::sql(format!(
            "CREATE INDEX IF NOT EXISTS {name} ON {} ({list})",
            dialect::render_relation(relation)
        )));
        if let Err(error) = made {
            database::log(
                crate::LogLevel::Warn,
                &format!("no key index on {}: {error}", relation.identifier),
            );
        }
        Ok(())
    }

    /// Runs `sql` into a fresh scratch table beside `target` (named with
    /// `suffix`), for a build to read from; the caller drops it.
    pub fn scratch_table(target: &Relation, suffix: &str, sql: &str) -> Result<Relation, String> {
        let scratch = beside(target, suffix);
        database::drop_if_exists(&scratch)?;
        database::run(&dialect::create_table_as(&scratch, sql))?;
        Ok(scratch)
    }
}

/// The adapter's dialect SQL, as seen from a materialization.
pub mod dialect {
    pub use crate::__wit::materialization::orbital::plugin::dialect::*;
}

/// The host's connection to the target database.
pub mod database {
    use crate::__wit::materialization::orbital::plugin::database as wit;
    use crate::__wit::materialization::orbital::plugin::dialect;
    use crate::{Column, LogLevel, Relation, RelationKind, RowSet, Statement, Value};

    pub use wit::DbError;

    fn describe(error: DbError) -> String {
        match error.code {
            Some(code) => format!("{} (code {code})", error.message),
            None => error.message,
        }
    }

    /// Runs one statement; returns rows affected.
    pub fn execute(statement: &Statement) -> Result<u64, String> {
        wit::execute(statement).map_err(describe)
    }

    /// Runs each statement in order, outside a transaction; returns total rows affected.
    pub fn run(statements: &[Statement]) -> Result<u64, String> {
        statements
            .iter()
            .try_fold(0, |total, s| Ok(total + execute(s)?))
    }

    /// Runs the statements in one transaction; returns total rows affected.
    pub fn run_in_transaction(statements: &[Statement]) -> Result<u64, String> {
        Ok(wit::transaction(statements).map_err(describe)?.iter().sum())
    }

    /// Runs the statements in one transaction; returns each one's rows affected.
    pub fn transaction_counts(statements: &[Statement]) -> Result<Vec<u64>, String> {
        wit::transaction(statements).map_err(describe)
    }

    /// Runs a query.
    pub fn query(statement: &Statement) -> Result<RowSet, String> {
        wit::query(statement).map_err(describe)
    }

    /// Writes a line to the run's log.
    pub fn log(level: LogLevel, message: &str) {
        wit::log(level, message)
    }

    /// What stands at `relation` now, if anything.
    pub fn relation_kind(relation: &Relation) -> Result<Option<RelationKind>, String> {
        let rows = query(&dialect::relation_kind_query(relation))?;
        match rows.rows.first().and_then(|row| row.first()) {
            None => Ok(None),
            Some(Value::Text(kind)) if kind == "view" => Ok(Some(RelationKind::View)),
            Some(Value::Text(kind)) if kind == "table" => Ok(Some(RelationKind::Table)),
            Some(other) => Err(format!(
                "the adapter's relation-kind query returned {other:?}, expected 'table' or 'view'"
            )),
        }
    }

    /// Drops whatever stands at `relation`, if anything.
    pub fn drop_if_exists(relation: &Relation) -> Result<(), String> {
        if let Some(kind) = relation_kind(relation)? {
            run(&dialect::drop_relation(relation, kind))?;
        }
        Ok(())
    }

    /// The columns of `relation`, in order, as the adapter's columns query
    /// describes them.
    pub fn columns(relation: &Relation) -> Result<Vec<Column>, String> {
        let rows = query(&dialect::columns_query(relation))?;
        rows.rows
            .iter()
            .map(|row| match row.as_slice() {
                [Value::Text(name), data_type, ..] => Ok(Column {
                    name: name.clone(),
                    data_type: match data_type {
                        Value::Text(t) => t.clone(),
                        _ => String::new(),
                    },
                }),
                other => Err(format!(
                    "the adapter's columns query returned {other:?}, expected (name, data type)"
                )),
            })
            .collect()
    }

    /// The number of rows in `relation`.
    pub fn row_count(relation: &Relation) -> Result<u64, String> {
        let sql = format!(
            "SELECT COUNT(*) FROM {}",
            dialect::render_relation(relation)
        );
        let rows = query(&crate::sql(sql))?;
        match rows.rows.first().and_then(|row| row.first()) {
            Some(Value::Integer(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
            Some(Value::Numeric(n)) | Some(Value::Text(n)) => {
                n.parse().map_err(|_| format!("COUNT(*) returned {n:?}"))
            }
            other => Err(format!("COUNT(*) returned {other:?}")),
        }
    }
}

/// Connects a [`Materialization`] to the generated bindings; used by
/// [`export_materialization!`](crate::export_materialization).
#[doc(hidden)]
pub struct MaterializationExport<M>(std::marker::PhantomData<M>);

#[cfg(feature = "api-0-2")]
impl<M: Materialization> wit_v0_2::Guest for MaterializationExport<M> {
    fn describe() -> wit_v0_2::StrategyInfo {
        wit_v0_2::StrategyInfo {
            plugin: M::info(),
            name: M::strategy(),
            keeps_history: M::keeps_history(),
        }
    }
    fn materialize(task: wit_v0_2::ModelTask) -> Result<wit_v0_2::Outcome, String> {
        let outcome = M::materialize(ModelTask {
            model: task.model,
            relation: task.relation,
            previous: task.previous,
            sql: task.sql,
            config: task.config,
            full_refresh: task.full_refresh,
            run_started_at: task.run_started_at,
        })?;
        Ok(wit_v0_2::Outcome {
            rows_affected: outcome.rows_affected,
            message: outcome.message,
        })
    }
}

impl<M: Materialization> wit::Guest for MaterializationExport<M> {
    fn describe() -> PluginInfo {
        M::info()
    }
    fn strategy_name() -> String {
        M::strategy()
    }
    fn materialize(task: ModelTask) -> Result<Outcome, String> {
        M::materialize(task)
    }
}

/// Exports a [`Materialization`] implementation as this component's
/// `materialization` world (plugin API 0.2.0).
#[cfg(feature = "api-0-2")]
#[macro_export]
macro_rules! export_materialization {
    ($materialization:ty) => {
        type __OrbitalMaterializationExport = $crate::MaterializationExport<$materialization>;
        $crate::__wit::materialization_v0_2::__export_materialization_v0_2_world!(
            __OrbitalMaterializationExport with_types_in $crate::__wit::materialization_v0_2
        );
    };
}

/// Exports a [`Materialization`] as the `materialization` world of plugin
/// API 0.1.0, for hosts older than 0.2.0. Such a component cannot declare
/// that it keeps history ([`Materialization::keeps_history`] is not
/// exported): only the built-in names `incremental` and `snapshot` do.
#[doc(hidden)]
#[macro_export]
macro_rules! export_materialization_v0_1 {
    ($materialization:ty) => {
        type __OrbitalMaterializationExport = $crate::MaterializationExport<$materialization>;
        $crate::__wit::materialization::__export_materialization_world!(
            __OrbitalMaterializationExport with_types_in $crate::__wit::materialization
        );
    };
}
