//! The `table` materialization: builds the table under a staging name, then
//! swaps it in within one transaction, so a failed build leaves the old table.

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
        let staged = staged(&task.relation);
        // A previous run may have died between build and swap.
        drop_if_exists(&staged)?;
        database::run(&dialect::create_table_as(&staged, &task.sql))?;
        let rows = database::row_count(&staged)?;
        let swap = dialect::Swap {
            staged: staged.clone(),
            target: task.relation.clone(),
            existing: database::relation_kind(&task.relation)?,
        };
        if let Err(error) = database::run_in_transaction(&dialect::swap_relation(&swap)) {
            drop_if_exists(&staged)?;
            return Err(error);
        }
        Ok(Outcome {
            rows_affected: Some(rows),
            message: format!("created table ({rows} rows)"),
        })
    }
}

orbital_sdk::export_materialization!(Table);
