//! Publishing: pointing an environment's relations at physical relations.
//!
//! Each environment relation is a view onto the physical relation of the
//! fingerprint the environment records. A run (or a promote) replaces all
//! the views it changes in one database transaction, so users see the old
//! environment or the new one, never a mix; physical relations are never
//! touched here.

use orbital_core::dag::RelationName;
use orbital_plugin_host::types::{RelationKind, Statement, Value};

use crate::Catalog;

use crate::error::RunnerError;
use crate::execute::wit_relation;
use crate::plugins::LoadedPlugins;

/// One change to an environment.
#[derive(Debug, Clone)]
pub enum Publish {
    /// Make `relation` a view onto `physical`.
    Point {
        relation: RelationName,
        physical: RelationName,
    },
    /// Drop `relation` (the node left the environment).
    Remove { relation: RelationName },
}

impl Publish {
    /// The environment relation the change is to.
    fn relation(&self) -> &RelationName {
        match self {
            Publish::Point { relation, .. } | Publish::Remove { relation } => relation,
        }
    }
}

/// Applies `changes` in one transaction.
pub async fn publish(plugins: &LoadedPlugins, changes: &[Publish]) -> Result<(), RunnerError> {
    if changes.is_empty() {
        return Ok(());
    }
    // A relation one node leaves and another now takes (a renamed `alias`)
    // is only replaced.
    let taken: std::collections::HashSet<&RelationName> = changes
        .iter()
        .filter_map(|change| match change {
            Publish::Point { relation, .. } => Some(relation),
            Publish::Remove { .. } => None,
        })
        .collect();
    let changes: Vec<&Publish> = changes
        .iter()
        .filter(|change| {
            matches!(change, Publish::Point { .. }) || !taken.contains(change.relation())
        })
        .collect();
    let mut dialect = plugins.host.adapter_session(&plugins.adapter).await?;
    // An environment's first view may be the first relation in its schema.
    let schemas: std::collections::BTreeSet<&String> = changes
        .iter()
        .filter_map(|change| match change {
            Publish::Point { relation, .. } => relation.schema.as_ref(),
            Publish::Remove { .. } => None,
        })
        .collect();
    // What stands where the views go, in one catalog read: asking the
    // adapter's relation-kind query per view costs SQLite a scan of its
    // whole catalog each time, quadratic in the project.
    let mut wanted: Vec<Option<String>> = changes
        .iter()
        .map(|change| change.relation().schema.clone())
        .collect();
    wanted.sort();
    wanted.dedup();
    let catalog = match plugins.database.lists_catalog() {
        true => plugins
            .database
            .catalog(&wanted)
            .await
            .map_err(|e| RunnerError::Publish(e.message))?,
        false => kinds_at(plugins, &mut dialect, &changes).await?,
    };
    let mut statements = schema_statements(&mut dialect, schemas).await?;
    for change in changes {
        let relation = wit_relation(change.relation());
        if let Some(kind) = catalog.kind(change.relation()) {
            statements.extend(
                dialect
                    .call(async |d, s| d.call_drop_relation(s, &relation, kind).await)
                    .await?,
            );
        }
        if let Publish::Point { physical, .. } = change {
            let select = format!("SELECT * FROM {}", physical.quoted());
            statements.extend(
                dialect
                    .call(async |d, s| d.call_create_view(s, &relation, &select).await)
                    .await?,
            );
        }
    }
    in_one_transaction(plugins, statements).await
}

/// What stands at each change's name, asked of the adapter one name at a
/// time: for a target that cannot list its catalog.
async fn kinds_at(
    plugins: &LoadedPlugins,
    dialect: &mut orbital_plugin_host::AdapterSession,
    changes: &[&Publish],
) -> Result<Catalog, RunnerError> {
    let mut catalog = Catalog::default();
    for change in changes {
        let relation = wit_relation(change.relation());
        let query = dialect
            .call(async |d, s| d.call_relation_kind_query(s, &relation).await)
            .await?;
        let rows = plugins
            .database
            .query(query)
            .await
            .map_err(|e| RunnerError::Publish(e.message))?;
        let kind = match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Text(kind)) if kind == "view" => Some(RelationKind::View),
            Some(Value::Text(kind)) if kind == "table" => Some(RelationKind::Table),
            _ => None,
        };
        if let Some(kind) = kind {
            catalog.insert_kind(change.relation().clone(), kind);
        }
    }
    Ok(catalog)
}

/// Creates `schemas` where they do not exist (before building into them).
pub async fn ensure_schemas(
    plugins: &LoadedPlugins,
    schemas: &[String],
) -> Result<(), RunnerError> {
    let mut dialect = plugins.host.adapter_session(&plugins.adapter).await?;
    let statements = schema_statements(&mut dialect, schemas).await?;
    if statements.is_empty() {
        return Ok(());
    }
    // Two runs (on other environments) may create a schema at once, and
    // PostgreSQL's `IF NOT EXISTS` then fails one of them: the second try
    // finds the schema made.
    match in_one_transaction(plugins, statements.clone()).await {
        Err(_) => in_one_transaction(plugins, statements).await,
        done => done,
    }
}

/// The adapter's statements creating each of `schemas` if it is missing.
async fn schema_statements(
    dialect: &mut orbital_plugin_host::AdapterSession,
    schemas: impl IntoIterator<Item = &String>,
) -> Result<Vec<Statement>, RunnerError> {
    let mut statements = Vec::new();
    for schema in schemas {
        statements.extend(
            dialect
                .call(async |d, s| d.call_create_schema(s, None, schema).await)
                .await?,
        );
    }
    Ok(statements)
}

async fn in_one_transaction(
    plugins: &LoadedPlugins,
    statements: Vec<Statement>,
) -> Result<(), RunnerError> {
    plugins
        .database
        .transaction(statements)
        .await
        .map_err(|e| RunnerError::Publish(e.message))?;
    Ok(())
}

/// Drops physical relations (for `gc`) in one transaction; one already
/// gone is skipped. The same drop-if-present as removing a node from an
/// environment.
pub async fn drop_physical(
    plugins: &LoadedPlugins,
    relations: &[RelationName],
) -> Result<(), RunnerError> {
    let removals: Vec<Publish> = relations
        .iter()
        .map(|relation| Publish::Remove {
            relation: relation.clone(),
        })
        .collect();
    publish(plugins, &removals).await
}
