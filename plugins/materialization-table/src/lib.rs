//! The `table` materialization: builds a new table in one statement; replaces
//! an existing one by building under a staging name and swapping it in within
//! one transaction, so a failed build leaves the old table.
//!
//! A new table skips the staging name because one CREATE TABLE AS is atomic
//! already, and because renaming costs SQLite a reparse of the whole schema
//! (with content-addressed names, nearly every build is of a new table).

use orbital_sdk::{Materialization, ModelTask, Outcome, PluginInfo, Relation, database, dialect};

struct Table;

fn staged(target: &Relation) -> Relation {
    Relation {
        identifier: format!("{}__orbital_staged", target.identifier),
        ..target.clone()
    }
}

fn drop_if_exists(relation: &Relation) -> Result<(), String> {
    if let Some(kind) = database::relation_kind(relation)? {
        database::run(&dialect::drop_relation(relation, kind))?;
    }
    Ok(())
}

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
        let existing = database::relation_kind(&task.relation)?;
        if existing.is_none() {
            database::run(&dialect::create_table_as(&task.relation, &task.sql))?;
            return Ok(created(database::row_count(&task.relation)?));
        }
        let staged = staged(&task.relation);
        // A previous run may have died between build and swap.
        drop_if_exists(&staged)?;
        database::run(&dialect::create_table_as(&staged, &task.sql))?;
        let rows = database::row_count(&staged)?;
        let swap = dialect::Swap {
            staged: staged.clone(),
            target: task.relation.clone(),
            existing,
        };
        if let Err(error) = database::run_in_transaction(&dialect::swap_relation(&swap)) {
            drop_if_exists(&staged)?;
            return Err(error);
        }
        Ok(created(rows))
    }
}

fn created(rows: u64) -> Outcome {
    Outcome {
        rows_affected: Some(rows),
        message: format!("created table ({rows} rows)"),
    }
}

orbital_sdk::export_materialization!(Table);
