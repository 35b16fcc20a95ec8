//! The `incremental` materialization: the first build (and `--full-refresh`)
//! builds the whole table; every later build adds only the model's
//! increment to the table it continues.
//!
//! Config:
//! - `incremental_strategy`: `append` (insert the increment), `merge`
//!   (update rows whose `unique_key` matches, insert the rest) or
//!   `delete+insert` (delete matching rows, insert the increment). Default:
//!   `merge` with a `unique_key`, else `append`.
//! - `unique_key`: a column or a list of columns.
//! - `on_schema_change`: what to do when the model's columns differ from the
//!   table's: `ignore` (insert the shared columns; the default), `append_new_columns`,
//!   `sync_all_columns` (add new columns, drop gone ones) or `fail`.
//!
//! The increment is staged in a scratch table, then the schema change and
//! the strategy's statements run in one transaction: a failed build leaves
//! the table as it was. When the host asks to continue another build's
//! table (the model's fingerprint changed), that table is copied to the new
//! relation first and left untouched for the environments that use it.

use orbital_sdk::{
    Column, Materialization, ModelTask, Outcome, PluginInfo, Relation, Statement, build,
    config_columns, config_str, database, dialect,
};

struct Incremental;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Strategy {
    Append,
    Merge,
    DeleteInsert,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum OnSchemaChange {
    Ignore,
    AppendNewColumns,
    SyncAllColumns,
    Fail,
}

struct Settings {
    strategy: Strategy,
    unique_key: Vec<String>,
    on_schema_change: OnSchemaChange,
}

/// Reads and checks the config before anything touches the database.
fn settings(task: &ModelTask) -> Result<Settings, String> {
    let unique_key = config_columns(task, "unique_key")?;
    let strategy = match config_str(task, "incremental_strategy")?.as_deref() {
        None if unique_key.is_empty() => Strategy::Append,
        None | Some("merge") => Strategy::Merge,
        Some("append") => Strategy::Append,
        Some("delete+insert") => Strategy::DeleteInsert,
        Some(other) => {
            return Err(format!(
                "incremental_strategy = '{other}' is not one of 'append', 'merge', 'delete+insert'"
            ));
        }
    };
    if strategy != Strategy::Append && unique_key.is_empty() {
        let name = if strategy == Strategy::Merge {
            "merge"
        } else {
            "delete+insert"
        };
        return Err(format!(
            "incremental_strategy = '{name}' needs a unique_key: the column or columns that identify a row, e.g. unique_key = 'order_id'"
        ));
    }
    let on_schema_change = match config_str(task, "on_schema_change")?.as_deref() {
        None | Some("ignore") => OnSchemaChange::Ignore,
        Some("append_new_columns") => OnSchemaChange::AppendNewColumns,
        Some("sync_all_columns") => OnSchemaChange::SyncAllColumns,
        Some("fail") => OnSchemaChange::Fail,
        Some(other) => {
            return Err(format!(
                "on_schema_change = '{other}' is not one of 'ignore', 'append_new_columns', 'sync_all_columns', 'fail'"
            ));
        }
    };
    Ok(Settings {
        strategy,
        unique_key,
        on_schema_change,
    })
}

impl Materialization for Incremental {
    fn info() -> PluginInfo {
        orbital_sdk::plugin_info!(
            "materialization-incremental",
            "Builds a table once, then adds each run's increment (append, merge, delete+insert)"
        )
    }

    fn strategy() -> String {
        "incremental".into()
    }

    fn materialize(task: ModelTask) -> Result<Outcome, String> {
        let settings = settings(&task)?;
        match (&task.previous, task.full_refresh) {
            (Some(previous), false) => continue_table(&task, previous, &settings),
            _ => {
                let rows = build::replace_table(&task.relation, &task.sql)?;
                build::index_key(&task.relation, &settings.unique_key)?;
                Ok(Outcome {
                    rows_affected: Some(rows),
                    message: format!("created table ({rows} rows)"),
                })
            }
        }
    }
}

/// Adds the increment to `previous`'s rows at the task's relation.
fn continue_table(
    task: &ModelTask,
    previous: &Relation,
    settings: &Settings,
) -> Result<Outcome, String> {
    let (mut outcome, copied) =
        build::continue_table(previous, &task.relation, || add_increment(task, settings))?;
    if copied {
        outcome.message = format!(
            "copied {} forward, {}",
            previous.identifier, outcome.message
        );
    }
    Ok(outcome)
}

fn add_increment(task: &ModelTask, settings: &Settings) -> Result<Outcome, String> {
    let target = &task.relation;
    // A copied table has no index yet; an existing one keeps its own.
    build::index_key(target, &settings.unique_key)?;
    let increment = build::scratch_table(target, "__orbital_increment", &task.sql)?;
    let applied = apply(target, &increment, settings);
    database::drop_if_exists(&increment)?;
    applied
}

/// The schema change and the strategy's statements, in one transaction.
fn apply(target: &Relation, increment: &Relation, settings: &Settings) -> Result<Outcome, String> {
    let new = database::columns(increment)?;
    let old = database::columns(target)?;
    let added: Vec<&Column> = new.iter().filter(|c| !has(&old, &c.name)).collect();
    let gone: Vec<&Column> = old.iter().filter(|c| !has(&new, &c.name)).collect();
    let mut statements = Vec::new();
    let mut notes = Vec::new();
    match settings.on_schema_change {
        _ if added.is_empty() && gone.is_empty() => {}
        OnSchemaChange::Fail => {
            return Err(format!(
                "the model's columns no longer match its table ({}) and on_schema_change = 'fail'; \
                 set on_schema_change to 'append_new_columns' or 'sync_all_columns', or rebuild with --full-refresh",
                describe_change(&added, &gone)
            ));
        }
        OnSchemaChange::Ignore => {}
        OnSchemaChange::AppendNewColumns | OnSchemaChange::SyncAllColumns => {
            for column in &added {
                statements.extend(dialect::add_column(target, column));
            }
            if !added.is_empty() {
                notes.push(format!("added {}", names(&added)));
            }
            if settings.on_schema_change == OnSchemaChange::SyncAllColumns && !gone.is_empty() {
                for column in &gone {
                    statements.extend(dialect::drop_column(target, &column.name));
                }
                notes.push(format!("dropped {}", names(&gone)));
            }
        }
    }
    let widened = matches!(
        settings.on_schema_change,
        OnSchemaChange::AppendNewColumns | OnSchemaChange::SyncAllColumns
    );
    // Columns both sides have, plus the new ones once they are added.
    let columns: Vec<String> = new
        .iter()
        .filter(|c| widened || has(&old, &c.name))
        .map(|c| c.name.clone())
        .collect();
    for key in &settings.unique_key {
        if !columns.iter().any(|c| c.eq_ignore_ascii_case(key)) {
            return Err(format!(
                "unique_key column `{key}` is not among the model's columns ({})",
                columns.join(", ")
            ));
        }
    }
    statements.extend(strategy_statements(target, increment, &columns, settings));
    let rows = database::row_count(increment)?;
    database::run_in_transaction(&statements)?;
    let verb = match settings.strategy {
        Strategy::Append => "appended",
        Strategy::Merge => "merged",
        Strategy::DeleteInsert => "delete+inserted",
    };
    let plural = if rows == 1 { "row" } else { "rows" };
    let mut message = format!("{verb} {rows} {plural}");
    if !notes.is_empty() {
        message = format!("{message}; {}", notes.join(", "));
    }
    Ok(Outcome {
        rows_affected: Some(rows),
        message,
    })
}

fn strategy_statements(
    target: &Relation,
    increment: &Relation,
    columns: &[String],
    settings: &Settings,
) -> Vec<Statement> {
    match settings.strategy {
        Strategy::Append => {
            let list = columns
                .iter()
                .map(|c| dialect::quote_identifier(c))
                .collect::<Vec<_>>()
                .join(", ");
            let select = format!("SELECT {list} FROM {}", dialect::render_relation(increment));
            dialect::insert_select(target, columns, &select)
        }
        Strategy::Merge => dialect::merge(target, increment, &settings.unique_key, columns),
        Strategy::DeleteInsert => {
            dialect::delete_insert(target, increment, &settings.unique_key, columns)
        }
    }
}

fn has(columns: &[Column], name: &str) -> bool {
    columns.iter().any(|c| c.name.eq_ignore_ascii_case(name))
}

fn names(columns: &[&Column]) -> String {
    columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_change(added: &[&Column], gone: &[&Column]) -> String {
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("new: {}", names(added)));
    }
    if !gone.is_empty() {
        parts.push(format!("gone: {}", names(gone)));
    }
    parts.join("; ")
}

orbital_sdk::export_materialization_v0_1!(Incremental);
