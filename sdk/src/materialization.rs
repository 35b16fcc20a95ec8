//! The `materialization` world: builds one model.

use crate::__wit::materialization::exports::orbital::plugin::strategy as wit;
use crate::PluginInfo;

pub use wit::{ModelTask, Outcome};

/// A materialization strategy. Implement it on a unit struct and call
/// [`export_materialization!`](crate::export_materialization).
pub trait Materialization {
    /// Who this plugin is.
    fn info() -> PluginInfo;
    /// The name models use in `materialized = '...'`.
    fn strategy() -> String;
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

/// The adapter's dialect SQL, as seen from a materialization.
pub mod dialect {
    pub use crate::__wit::materialization::orbital::plugin::dialect::*;
}

/// The host's connection to the target database.
pub mod database {
    use crate::__wit::materialization::orbital::plugin::database as wit;
    use crate::__wit::materialization::orbital::plugin::dialect;
    use crate::{LogLevel, Relation, RelationKind, RowSet, Statement, Value};

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

/// Exports a [`Materialization`] implementation as this component's `materialization` world.
#[macro_export]
macro_rules! export_materialization {
    ($materialization:ty) => {
        type __OrbitalMaterializationExport = $crate::MaterializationExport<$materialization>;
        $crate::__wit::materialization::__export_materialization_world!(
            __OrbitalMaterializationExport with_types_in $crate::__wit::materialization
        );
    };
}
