//! Loading one seed: read and type the CSV, then in one transaction create a
//! staged table, insert the rows in batches and swap it into place, all with
//! the adapter's dialect SQL. A bad file or failed insert leaves the old table.

use orbital_core::Node;
use orbital_core::dag::NodeKind;
use orbital_core::seed::{Cell, LogicalType as CoreType, SeedTable};
use orbital_plugin_host::types::{
    Column, LogicalType, Relation, RelationKind, Statement, Swap, Value,
};

use crate::database::Warehouse;
use crate::plugins::LoadedPlugins;

/// Upper bound on parameters in one statement (SQLite allows 32766,
/// PostgreSQL 65535).
const MAX_PARAMS: usize = 30_000;
const MAX_BATCH_ROWS: usize = 500;

pub(crate) async fn load(
    plugins: &LoadedPlugins,
    database: &Warehouse,
    node: &Node,
    target: Relation,
) -> Result<(String, Option<u64>), String> {
    let NodeKind::Seed(config) = &node.kind else {
        return Err("not a seed".into());
    };
    let (name, path, config) = (node.name.clone(), node.path.clone(), config.clone());
    let root = plugins.project_root.clone();
    let table = tokio::task::spawn_blocking(move || {
        orbital_core::seed::read(&name, &root.join(&path), &path, &config)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let statements = statements(plugins, database, &table, &target)
        .await
        .map_err(|e| e.to_string())?;
    database
        .transaction(statements)
        .await
        .map_err(|e| e.message)?;
    let rows = table.rows.len() as u64;
    Ok((format!("loaded seed ({rows} rows)"), Some(rows)))
}

async fn statements(
    plugins: &LoadedPlugins,
    database: &Warehouse,
    table: &SeedTable,
    target: &Relation,
) -> Result<Vec<Statement>, orbital_plugin_host::PluginError> {
    let mut dialect = plugins.host.adapter_session(&plugins.adapter).await?;
    let staged = Relation {
        identifier: format!("{}__orbital_staged", target.identifier),
        ..target.clone()
    };
    let mut columns = Vec::with_capacity(table.columns.len());
    for (name, ty) in &table.columns {
        let logical = logical(*ty);
        let data_type = dialect
            .call(async |d, s| d.call_column_type(s, logical).await)
            .await?;
        columns.push(Column {
            name: name.clone(),
            data_type,
        });
    }
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();

    let mut statements = dialect
        .call(async |d, s| d.call_drop_relation(s, &staged, RelationKind::Table).await)
        .await?;
    statements.extend(
        dialect
            .call(async |d, s| d.call_create_table(s, &staged, &columns).await)
            .await?,
    );
    let batch = (MAX_PARAMS / names.len().max(1)).clamp(1, MAX_BATCH_ROWS);
    let mut insert_sql: Option<(usize, String)> = None;
    for chunk in table.rows.chunks(batch) {
        let sql = match &insert_sql {
            Some((rows, sql)) if *rows == chunk.len() => sql.clone(),
            _ => {
                let count = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
                let sql = dialect
                    .call(async |d, s| d.call_insert_values(s, &staged, &names, count).await)
                    .await?;
                insert_sql = Some((chunk.len(), sql.clone()));
                sql
            }
        };
        let params = chunk
            .iter()
            .flat_map(|row| {
                row.iter()
                    .zip(&table.columns)
                    .map(|(cell, (_, ty))| value(cell, *ty))
            })
            .collect();
        statements.push(Statement { sql, params });
    }
    let existing = existing_kind(database, &mut dialect, target).await?;
    let swap = Swap {
        staged,
        target: target.clone(),
        existing,
    };
    statements.extend(
        dialect
            .call(async |d, s| d.call_swap_relation(s, &swap).await)
            .await?,
    );
    Ok(statements)
}

async fn existing_kind(
    database: &Warehouse,
    dialect: &mut orbital_plugin_host::AdapterSession,
    relation: &Relation,
) -> Result<Option<RelationKind>, orbital_plugin_host::PluginError> {
    let query = dialect
        .call(async |d, s| d.call_relation_kind_query(s, relation).await)
        .await?;
    let rows =
        database
            .query(query)
            .await
            .map_err(|e| orbital_plugin_host::PluginError::Failed {
                plugin: dialect.plugin().to_string(),
                message: format!("its relation-kind query failed: {}", e.message),
            })?;
    Ok(match rows.rows.first().and_then(|row| row.first()) {
        Some(Value::Text(kind)) if kind == "view" => Some(RelationKind::View),
        Some(Value::Text(kind)) if kind == "table" => Some(RelationKind::Table),
        _ => None,
    })
}

fn logical(ty: CoreType) -> LogicalType {
    match ty {
        CoreType::Integer => LogicalType::Integer,
        CoreType::Real => LogicalType::Real,
        CoreType::Numeric => LogicalType::Numeric,
        CoreType::Boolean => LogicalType::Boolean,
        CoreType::Text => LogicalType::Text,
        CoreType::Date => LogicalType::Date,
        CoreType::Timestamp => LogicalType::Timestamp,
        CoreType::Timestamptz => LogicalType::Timestamptz,
        CoreType::Json => LogicalType::Json,
        CoreType::Uuid => LogicalType::Uuid,
    }
}

fn value(cell: &Cell, ty: CoreType) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Boolean(b) => Value::Boolean(*b),
        Cell::Integer(i) => Value::Integer(*i),
        Cell::Real(r) => Value::Real(*r),
        Cell::Text(text) => {
            let text = text.clone();
            match ty {
                CoreType::Date => Value::Date(text),
                CoreType::Timestamp => Value::Timestamp(text),
                CoreType::Timestamptz => Value::Timestamptz(text),
                CoreType::Numeric => Value::Numeric(text),
                CoreType::Json => Value::Json(text),
                CoreType::Uuid => Value::Uuid(text),
                _ => Value::Text(text),
            }
        }
    }
}
