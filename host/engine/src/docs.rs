//! `orbital docs`: what the docs site shows of a project, as one JSON
//! document, and the site itself: one self-contained HTML page (its script
//! and styles inline, the document embedded) that opens from disk with no
//! server and no network.

use std::collections::HashMap;
use std::path::PathBuf;

use orbital_cas::RunRecord;
use orbital_core::NodeId;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::request::{Compiled, Listing, Selector};
use crate::{Engine, EngineError, blocking};

/// Which project, on which target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DocsRequest {
    pub project: PathBuf,
    /// The target (its SQL dialect) and a dbt project's vars.
    pub selector: Selector,
}

/// How many of the latest runs are searched for each node's last result.
const RUNS_SEARCHED: usize = 50;

impl Engine {
    /// The docs document of `request.project`: every node with its
    /// description, columns (with descriptions and lineage), tests and
    /// their last results, compiled SQL, config, fingerprint and last
    /// build; and the edges.
    pub async fn docs(&self, request: DocsRequest) -> Result<Value, EngineError> {
        let compiled = self
            .compile_whole(&request.project, &request.selector, Listing::Detailed)
            .await?;
        let runs = self.runs_before(&request.project, u64::MAX, RUNS_SEARCHED)?;
        blocking(move || document(&compiled, &runs, &request)).await?
    }
}

fn document(
    compiled: &Compiled,
    runs: &[RunRecord],
    request: &DocsRequest,
) -> Result<Value, EngineError> {
    let dag = &compiled.compiled.dag;
    let project = &compiled.project;
    let (_, target) = project.config.target(request.selector.target.as_deref())?;
    let all: Vec<NodeId> = (0..dag.nodes.len()).collect();
    let lineages = orbital_core::lineage::lineage(project, dag, target.parser_dialect(), &all);
    // Each node's newest result among the latest runs.
    let mut last: HashMap<&str, Value> = HashMap::new();
    for run in runs {
        for node in &run.nodes {
            last.entry(node.name.as_str()).or_insert_with(|| {
                json!({
                    "status": node.status,
                    "run": run.id,
                    "environment": run.environment,
                    "started_at": run.started_at,
                    "error": node.error,
                })
            });
        }
    }
    let mut tests_of: HashMap<NodeId, Vec<&str>> = HashMap::new();
    for node in &dag.nodes {
        if let Some(checked) = node.as_test().and_then(|t| t.checks) {
            tests_of.entry(checked).or_default().push(&node.name);
        }
    }
    let details = compiled.details.as_ref();
    let nodes: Vec<Value> = dag
        .nodes
        .iter()
        .enumerate()
        .map(|(id, node)| {
            let config = node.as_model().map(|m| &m.config);
            let described = |column: &str| {
                config
                    .and_then(|c| c.extra.get(orbital_core::project::COLUMNS))
                    .and_then(|columns| columns.get(column))
                    .and_then(|about| about.get(orbital_core::project::DESCRIPTION))
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            let columns: Vec<Value> = match lineages.get(&id) {
                Some(lineage) => lineage
                    .columns
                    .iter()
                    .map(|c| {
                        json!({
                            "name": c.column,
                            "description": described(&c.column),
                            "lineage": c.edges,
                            "unknown": c.unknown,
                        })
                    })
                    .collect(),
                None => details
                    .and_then(|d| d.columns.get(&node.name.to_lowercase()))
                    .into_iter()
                    .flatten()
                    .map(|c| json!({ "name": c, "description": Value::Null, "lineage": [], "unknown": [] }))
                    .collect(),
            };
            json!({
                "name": node.name,
                "kind": node.kind_name(),
                "path": node.path.display().to_string(),
                "relation": node.relation.to_string(),
                "materialized": config.map(|c| c.materialized.clone()),
                "tags": node.tags,
                "description": config
                    .and_then(|c| c.extra.get(orbital_core::project::DESCRIPTION))
                    .cloned()
                    .unwrap_or(Value::Null),
                "config": config,
                "columns": columns,
                "incomplete": lineages.get(&id).and_then(|l| l.incomplete.clone()),
                "sql": crate::compile::user_sql(dag, id),
                "fingerprint": details
                    .and_then(|d| d.fingerprints.as_ref())
                    .and_then(|f| f.get(id))
                    .map(|f| f.to_string()),
                "depends_on": node.depends_on.iter().map(|&d| &dag.nodes[d].name).collect::<Vec<_>>(),
                "tests": tests_of.get(&id).cloned().unwrap_or_default(),
                "checks": node.as_test().and_then(|t| t.checks).map(|c| &dag.nodes[c].name),
                "last": last.get(node.name.as_str()),
            })
        })
        .collect();
    Ok(json!({
        "project": project.config.name,
        "generated_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "nodes": nodes,
    }))
}

/// The docs site: one HTML page with `document` embedded.
pub fn site(document: &Value) -> String {
    // `</script>` inside the data would end the script element early.
    let data = document.to_string().replace("</", "<\\/");
    SITE.replace("/*ORBITAL_DOCS_DATA*/null", &data)
}

const SITE: &str = include_str!("docs_site.html");
