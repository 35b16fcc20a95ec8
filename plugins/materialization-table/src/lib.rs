//! The `table` materialization: builds a new table in one statement; replaces
//! an existing one by building under a staging name and swapping it in within
//! one transaction, so a failed build leaves the old table.
//!
//! A new table skips the staging name because one CREATE TABLE AS is atomic
//! already, and because renaming costs SQLite a reparse of the whole schema
//! (with content-addressed names, nearly every build is of a new table).

use orbital_sdk::{Materialization, ModelTask, Outcome, PluginInfo, build};

struct Table;

impl Materialization for Table {
    fn info() -> PluginInfo {
        orbital_sdk::plugin_info!(
            "materialization-table",
            "Builds a model as a table, swapped in atomically"
        )
    }

    fn strategy() -> String {
        "table".into()
    }

    fn materialize(task: ModelTask) -> Result<Outcome, String> {
        let rows = build::replace_table(&task.relation, &task.sql)?;
        Ok(Outcome {
            rows_affected: Some(rows),
            message: format!("created table ({rows} rows)"),
        })
    }
}

orbital_sdk::export_materialization_v0_1!(Table);
