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
        // Some databases (SQLite) check a view's columns only when it is read:
        // read it before committing, so a broken view never replaces a good one.
        let probe = orbital_sdk::sql(format!(
            "SELECT * FROM {} WHERE 1 = 0",
            dialect::render_relation(&task.relation)
        ));
        // Tried first: a new view (nearly every build), or one the adapter's
        // create-view replaces in place (PostgreSQL's CREATE OR REPLACE),
        // which keeps the views that read it working. What stands there is
        // asked only when that fails (the question costs SQLite a scan of
        // its whole catalog); the failed attempt rolled back.
        let mut in_place = dialect::create_view(&task.relation, &task.sql);
        in_place.push(probe.clone());
        let error = match database::run_in_transaction(&in_place) {
            Ok(_) => return Ok(created()),
            Err(error) => error,
        };
        let Some(existing) = database::relation_kind(&task.relation)? else {
            return Err(error);
        };
        let mut statements = dialect::drop_relation(&task.relation, existing);
        statements.extend(dialect::create_view(&task.relation, &task.sql));
        statements.push(probe);
        database::run_in_transaction(&statements)?;
        Ok(created())
    }
}

fn created() -> Outcome {
    Outcome {
        rows_affected: None,
        message: "created view".into(),
    }
}

orbital_sdk::export_materialization_v0_1!(View);
