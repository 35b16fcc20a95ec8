//! An example of a materialization that keeps history (plugin API 0.2.0):
//! `materialized = 'audit_log'` makes an append-only log. Each build adds
//! the query's rows to the model's table, stamped with the run's start in
//! `audited_at`; nothing is ever updated or deleted.
//!
//! Because [`Materialization::keeps_history`] is true, Orbital treats these
//! models as it treats `incremental` ones: the SQL may read `this` (the log
//! so far) inside `if_incremental(...)`, so a model can log only what
//! changed; and when the model's fingerprint changes (its SQL, or anything
//! upstream), the log is copied forward into the new build instead of
//! starting again. `--full-refresh` starts a new log.
//!
//! ```sql
//! -- config: materialized = 'audit_log'
//! select a.id, a.balance from accounts a
//! where if_incremental(not exists (
//!     select 1 from this l where l.id = a.id and l.balance = a.balance))
//! ```

use orbital_sdk::{Materialization, ModelTask, Outcome, PluginInfo, build, database, dialect};

struct AuditLog;

/// The column each appended row is stamped with.
const STAMP: &str = "audited_at";

impl Materialization for AuditLog {
    fn info() -> PluginInfo {
        orbital_sdk::plugin_info!(
            "example-audit-log",
            "An append-only audit log: each build adds the query's rows, stamped with the run's start"
        )
    }

    fn strategy() -> String {
        "audit_log".into()
    }

    fn keeps_history() -> bool {
        true
    }

    fn materialize(task: ModelTask) -> Result<Outcome, String> {
        let stamped = format!(
            "SELECT q.*, '{}' AS {} FROM ({}) q",
            task.run_started_at.replace('\'', "''"),
            dialect::quote_identifier(STAMP),
            task.sql
        );
        let Some(previous) = &task.previous else {
            let rows = build::replace_table(&task.relation, &stamped)?;
            return Ok(Outcome {
                rows_affected: Some(rows),
                message: format!("log started ({rows} rows)"),
            });
        };
        let (rows, copied) = build::continue_table(previous, &task.relation, || {
            let columns: Vec<String> = database::columns(&task.relation)?
                .into_iter()
                .map(|c| c.name)
                .collect();
            database::run(&dialect::insert_select(&task.relation, &columns, &stamped))
        })?;
        let forward = if copied {
            ", the log copied forward"
        } else {
            ""
        };
        Ok(Outcome {
            rows_affected: Some(rows),
            message: format!("appended {rows} rows{forward}"),
        })
    }
}

orbital_sdk::export_materialization!(AuditLog);
