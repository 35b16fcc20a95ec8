//! Column lineage of a project (`orbital lineage`): one column traced up to
//! the seeds and sources it derives from, or down to every column derived
//! from it, from each model's SQL ([`orbital_core::lineage`]).

use std::path::PathBuf;

use orbital_core::lineage::{Tree, downstream, lineage, upstream};
use serde::{Deserialize, Serialize};

use crate::request::{Compiled, Listing, Selector};
use crate::{Engine, EngineError, blocking};

/// Which column to trace, and which way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LineageRequest {
    pub project: PathBuf,
    /// The target (its SQL dialect) and a dbt project's vars.
    pub selector: Selector,
    /// `model.column` (or `seed.column`).
    pub column: String,
    /// Trace what derives from the column instead of what it derives from.
    pub downstream: bool,
}

impl Engine {
    /// The lineage tree of `request.column`.
    pub async fn lineage(&self, request: LineageRequest) -> Result<Tree, EngineError> {
        let compiled = self
            .compile_whole(&request.project, &request.selector, Listing::All)
            .await?;
        blocking(move || trace(&compiled, &request)).await?
    }
}

/// [`lineage`] of `wanted`, its time in the debug log (`ORBITAL_LOG=debug`).
pub(crate) fn timed(
    project: &orbital_core::Project,
    dag: &orbital_core::Dag,
    dialect: &str,
    wanted: &[orbital_core::NodeId],
) -> std::collections::HashMap<orbital_core::NodeId, orbital_core::lineage::ModelLineage> {
    let started = std::time::Instant::now();
    let lineages = lineage(project, dag, dialect, wanted);
    tracing::debug!(models = lineages.len(), elapsed = ?started.elapsed(), "column lineage");
    lineages
}

fn trace(compiled: &Compiled, request: &LineageRequest) -> Result<Tree, EngineError> {
    let (node, column) = request.column.rsplit_once('.').ok_or_else(|| {
        EngineError::Usage(format!(
            "`{}`: name a column as MODEL.COLUMN, e.g. orders.amount",
            request.column
        ))
    })?;
    let dag = &compiled.compiled.dag;
    let id = crate::compile::model_or_seed(dag, node)?;
    let config = &compiled.project.config;
    let (_, target) = config.target(request.selector.target.as_deref())?;
    let wanted: Vec<usize> = match request.downstream {
        true => (0..dag.nodes.len()).collect(),
        false => vec![id],
    };
    let lineages = timed(&compiled.project, dag, target.parser_dialect(), &wanted);
    let name = &dag.nodes[id].name;
    let columns: Option<Vec<String>> = match lineages.get(&id) {
        Some(model) if model.incomplete.is_none() => {
            Some(model.columns.iter().map(|c| c.column.clone()).collect())
        }
        Some(_) => None,
        None => compiled
            .project
            .seeds
            .iter()
            .find(|s| &s.name == name)
            .and_then(|seed| orbital_core::catalog::seed_header(&compiled.project, seed).ok()),
    };
    if let Some(columns) = &columns
        && !columns.iter().any(|c| c.eq_ignore_ascii_case(column))
    {
        let hint = orbital_core::did_you_mean(column, columns.iter().map(String::as_str), 3, true);
        return Err(EngineError::Usage(format!(
            "`{name}` has no column `{column}`{hint} (it has: {})",
            columns.join(", ")
        )));
    }
    Ok(match request.downstream {
        true => downstream(dag, &lineages, id, column),
        false => upstream(dag, &lineages, id, column),
    })
}
