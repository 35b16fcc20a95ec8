//! The `view` materialization: replaces the model's view in one transaction.

use orbital_sdk::{Materialization, ModelTask, Outcome, PluginInfo, database, dialect};

struct View;

impl Materialization for View {
    fn info() -> PluginInfo {
        orbital_sdk::plugin_info!("materialization-view", "Builds a model as a view")
    }

    fn strategy() -> String {
        "view".into()
    }

    fn materialize(task: ModelTask) -> Result<Outcome, String> {
        let mut statements = match database::relation_kind(&task.relation)? {
            Some(kind) => dialect::drop_relation(&task.relation, kind),
            None => Vec::new(),
        };
        statements.extend(dialect::create_view(&task.relation, &task.sql));
        // Some databases (SQLite) check a view's columns only when it is read:
        // read it before committing, so a broken view never replaces a good one.
        let probe = format!(
            "SELECT * FROM {} WHERE 1 = 0",
            dialect::render_relation(&task.relation)
        );
        statements.push(orbital_sdk::sql(probe));
        database::run_in_transaction(&statements)?;
        Ok(Outcome {
            rows_affected: None,
            message: "created view".into(),
        })
    }
}

orbital_sdk::export_materialization!(View);
