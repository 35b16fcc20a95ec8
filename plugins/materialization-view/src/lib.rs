//! The `view` materialization: replaces the model's view in one transaction.

use orbital_sdk::{
    Materialization, ModelTask, Outcome, PluginInfo, RelationKind, database, dialect,
};

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
        let existing = database::relation_kind(&task.relation)?;
        if existing == Some(RelationKind::View) {
            // Where the adapter's create-view replaces (PostgreSQL's CREATE OR
            // REPLACE), the views that read this one keep working; where it
            // cannot, this fails, rolls back, and the view is dropped and
            // created instead.
            let mut in_place = dialect::create_view(&task.relation, &task.sql);
            in_place.push(probe.clone());
            if database::run_in_transaction(&in_place).is_ok() {
                return Ok(created());
            }
        }
        let mut statements = match existing {
            Some(kind) => dialect::drop_relation(&task.relation, kind),
            None => Vec::new(),
        };
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

orbital_sdk::export_materialization!(View);
