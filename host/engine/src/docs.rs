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
    pub async fn docs(&self, request: DocsRequest) -> Result<DocsDocument, EngineError> {
        let compiled = self
            .compile_whole(&request.project, &request.selector, Listing::Detailed)
            .await?;
        let runs = self.runs_before(&request.project, u64::MAX, RUNS_SEARCHED)?;
        blocking(move || document(&compiled, &runs, &request)).await?
    }
}

/// What the docs site shows of a project (`docs.json`, `GET /v1/docs`).
#[derive(Debug, Clone, Serialize)]
pub struct DocsDocument {
    pub project: String,
    pub generated_at: String,
    pub nodes: Vec<DocsNode>,
}

/// One node of the docs document.
#[derive(Debug, Clone, Serialize)]
pub struct DocsNode {
    pub name: String,
    pub kind: &'static str,
    pub path: String,
    pub relation: String,
    pub materialized: Option<String>,
    pub tags: Vec<String>,
    pub description: Value,
    pub config: Option<orbital_core::project::ModelConfig>,
    pub columns: Vec<DocsColumn>,
    /// Why not every column is known, where that is so.
    pub incomplete: Option<String>,
    pub sql: Option<String>,
    pub fingerprint: Option<String>,
    pub depends_on: Vec<String>,
    pub tests: Vec<String>,
    /// The node a test checks.
    pub checks: Option<String>,
    pub last: Option<LastResult>,
}

/// A column with its description and lineage.
#[derive(Debug, Clone, Serialize)]
pub struct DocsColumn {
    pub name: String,
    pub description: Value,
    pub lineage: Vec<orbital_core::lineage::Edge>,
    pub unknown: Vec<String>,
}

/// A node's newest result among the latest runs.
#[derive(Debug, Clone, Serialize)]
pub struct LastResult {
    pub status: orbital_cas::NodeStatus,
    pub run: u64,
    pub environment: String,
    pub started_at: String,
    pub error: Option<String>,
}

fn document(
    compiled: &Compiled,
    runs: &[RunRecord],
    request: &DocsRequest,
) -> Result<DocsDocument, EngineError> {
    let dag = &compiled.compiled.dag;
    let project = &compiled.project;
    let (_, target) = project.config.target(request.selector.target.as_deref())?;
    let all: Vec<NodeId> = (0..dag.nodes.len()).collect();
    let mut lineages = crate::lineage::timed(project, dag, target.parser_dialect(), &all);
    let mut last: HashMap<&str, LastResult> = HashMap::new();
    for run in runs {
        for node in &run.nodes {
            last.entry(node.name.as_str())
                .or_insert_with(|| LastResult {
                    status: node.status,
                    run: run.id,
                    environment: run.environment.clone(),
                    started_at: run.started_at.clone(),
                    error: node.error.clone(),
                });
        }
    }
    let mut tests_of: HashMap<NodeId, Vec<String>> = HashMap::new();
    for node in &dag.nodes {
        if let Some(checked) = node.as_test().and_then(|t| t.checks) {
            tests_of.entry(checked).or_default().push(node.name.clone());
        }
    }
    let details = compiled.details.as_ref();
    let nodes = dag
        .nodes
        .iter()
        .enumerate()
        .map(|(id, node)| {
            let config = node.as_model().map(|m| &m.config);
            let about = |key: &str| config.and_then(|c| c.extra.get(key));
            let described = |column: &str| {
                about(orbital_core::project::COLUMNS)
                    .and_then(|columns| columns.get(column))
                    .and_then(|about| about.get(orbital_core::project::DESCRIPTION))
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            let lineage = lineages.remove(&id);
            let incomplete = lineage.as_ref().and_then(|l| l.incomplete.clone());
            let columns: Vec<DocsColumn> = match lineage {
                Some(lineage) => lineage
                    .columns
                    .into_iter()
                    .map(|c| DocsColumn {
                        description: described(&c.column),
                        name: c.column,
                        lineage: c.edges,
                        unknown: c.unknown,
                    })
                    .collect(),
                None => details
                    .and_then(|d| d.columns.get(&node.name.to_lowercase()))
                    .into_iter()
                    .flatten()
                    .map(|c| DocsColumn {
                        name: c.clone(),
                        description: Value::Null,
                        lineage: Vec::new(),
                        unknown: Vec::new(),
                    })
                    .collect(),
            };
            DocsNode {
                name: node.name.clone(),
                kind: node.kind_name(),
                path: node.path.display().to_string(),
                relation: node.relation.to_string(),
                materialized: config.map(|c| c.materialized.clone()),
                tags: node.tags.clone(),
                description: about(orbital_core::project::DESCRIPTION)
                    .cloned()
                    .unwrap_or(Value::Null),
                config: config.cloned(),
                columns,
                incomplete,
                sql: crate::compile::user_sql(dag, id),
                fingerprint: details
                    .and_then(|d| d.fingerprints.as_ref())
                    .and_then(|f| f.get(id))
                    .map(|f| f.to_string()),
                depends_on: node
                    .depends_on
                    .iter()
                    .map(|&d| dag.nodes[d].name.clone())
                    .collect(),
                tests: tests_of.remove(&id).unwrap_or_default(),
                checks: node
                    .as_test()
                    .and_then(|t| t.checks)
                    .map(|c| dag.nodes[c].name.clone()),
                last: last.remove(node.name.as_str()),
            }
        })
        .collect();
    Ok(DocsDocument {
        project: project.config.name.clone(),
        generated_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        nodes,
    })
}

/// The docs site: one HTML page with `document` embedded in two parts. An
/// index (what the list, the search and the graph need) is parsed when the
/// page opens; each node's details (compiled SQL, config, fingerprint,
/// column lineage) are one JSON line of a second block, parsed only when
/// the node is shown, so a large project's page draws at once.
pub fn site(document: &DocsDocument) -> String {
    let mut entries: Vec<IndexEntry<'_>> = document
        .nodes
        .iter()
        .enumerate()
        .map(|(at, node)| IndexEntry::of(node, Some(at)))
        .collect();
    let sources = sources_named(&document.nodes);
    entries.extend(sources.iter().map(|name| IndexEntry::source(name)));
    let index = serde_json::to_string(&json!({
        "project": document.project,
        "generated_at": document.generated_at,
        "nodes": entries,
    }))
    .unwrap_or_default();
    let mut details = String::new();
    for (line, node) in document.nodes.iter().enumerate() {
        if line > 0 {
            details.push('\n');
        }
        // serde_json escapes newlines inside strings: one node, one line.
        let detail = Details {
            sql: &node.sql,
            config: &node.config,
            fingerprint: &node.fingerprint,
            columns: &node.columns,
        };
        details.push_str(&serde_json::to_string(&detail).unwrap_or_default());
    }
    let index = script_safe(&index);
    let details = script_safe(&details);
    // Split at the slots rather than replacing them, so that data which
    // happens to spell a slot's marker is never substituted into.
    let (head, rest) = SITE.split_once(INDEX_SLOT).unwrap_or((SITE, ""));
    let (middle, tail) = rest.split_once(DETAILS_SLOT).unwrap_or((rest, ""));
    [head, &index, middle, &details, tail].concat()
}

/// A node as the page's index has it: what the list, the search and the
/// graph need, and `at`, the line of its details.
#[derive(Serialize)]
struct IndexEntry<'a> {
    name: &'a str,
    kind: &'a str,
    path: &'a str,
    materialized: Option<&'a str>,
    tags: &'a [String],
    description: Option<&'a Value>,
    columns: Vec<ColumnEntry<'a>>,
    incomplete: Option<&'a str>,
    depends_on: &'a [String],
    tests: &'a [String],
    checks: Option<&'a str>,
    last: Option<&'a LastResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<usize>,
}

#[derive(Serialize)]
struct ColumnEntry<'a> {
    name: &'a str,
    description: &'a Value,
}

impl<'a> IndexEntry<'a> {
    fn of(node: &'a DocsNode, at: Option<usize>) -> Self {
        IndexEntry {
            name: &node.name,
            kind: node.kind,
            path: &node.path,
            materialized: node.materialized.as_deref(),
            tags: &node.tags,
            description: Some(&node.description),
            columns: node
                .columns
                .iter()
                .map(|c| ColumnEntry {
                    name: &c.name,
                    description: &c.description,
                })
                .collect(),
            incomplete: node.incomplete.as_deref(),
            depends_on: &node.depends_on,
            tests: &node.tests,
            checks: node.checks.as_deref(),
            last: node.last.as_ref(),
            at,
        }
    }

    /// A relation that is read but is no node (a dbt source, a table
    /// outside the project).
    fn source(name: &'a str) -> Self {
        IndexEntry {
            name,
            kind: "source",
            path: "",
            materialized: None,
            tags: &[],
            description: None,
            columns: Vec::new(),
            incomplete: None,
            depends_on: &[],
            tests: &[],
            checks: None,
            last: None,
            at: None,
        }
    }
}

/// A node's details: one line of the page's details block.
#[derive(Serialize)]
struct Details<'a> {
    sql: &'a Option<String>,
    config: &'a Option<orbital_core::project::ModelConfig>,
    fingerprint: &'a Option<String>,
    columns: &'a [DocsColumn],
}

/// JSON `text` safe inside a `<script>` element: a `</script>` in the data
/// would end the element early, and `<!--<script>` would keep the real end
/// tag from ending it. JSON has `<` only inside strings, where `\u003c`
/// means the same.
fn script_safe(text: &str) -> String {
    text.replace('<', "\\u003c")
}

/// Relations the lineage reads that are not nodes: the graph and the
/// lineage view show them too.
fn sources_named(nodes: &[DocsNode]) -> Vec<&str> {
    let known: std::collections::HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let mut sources = std::collections::BTreeSet::new();
    for node in nodes {
        for edge in node.columns.iter().flat_map(|c| &c.lineage) {
            if !known.contains(edge.node.as_str()) {
                sources.insert(edge.node.as_str());
            }
        }
    }
    sources.into_iter().collect()
}

const INDEX_SLOT: &str = "/*ORBITAL_DOCS_INDEX*/null";
const DETAILS_SLOT: &str = "/*ORBITAL_DOCS_DETAILS*/";

const SITE: &str = include_str!("docs_site.html");

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, description: &str, sql: &str) -> DocsNode {
        DocsNode {
            name: name.into(),
            kind: "model",
            path: format!("models/{name}.sql"),
            relation: name.into(),
            materialized: Some("view".into()),
            tags: Vec::new(),
            description: Value::from(description),
            config: None,
            columns: vec![DocsColumn {
                name: "id".into(),
                description: Value::Null,
                lineage: vec![orbital_core::lineage::Edge {
                    node: "outside.table".into(),
                    column: "id".into(),
                    kind: orbital_core::lineage::Kind::Copy,
                }],
                unknown: Vec::new(),
            }],
            incomplete: None,
            sql: Some(sql.into()),
            fingerprint: None,
            depends_on: Vec::new(),
            tests: Vec::new(),
            checks: None,
            last: None,
        }
    }

    #[test]
    fn the_page_splits_index_and_details_and_no_data_escapes_its_script() {
        let document = DocsDocument {
            project: "p".into(),
            generated_at: "now".into(),
            nodes: vec![
                node(
                    "a",
                    "</script><script>alert(1)</script> /*ORBITAL_DOCS_DETAILS*/",
                    "select 1\n  as id",
                ),
                node(
                    "b",
                    "/*ORBITAL_DOCS_INDEX*/null <!--<script>",
                    "select '</script>' as id",
                ),
            ],
        };
        let page = site(&document);
        assert_eq!(page.matches("<script").count(), 3, "index, code, details");
        assert_eq!(page.matches("</script>").count(), 3);
        let index_at = page.find("id=\"orbital-docs-index\"").unwrap();
        let index = &page[index_at..];
        let index = &index[index.find('>').unwrap() + 1..index.find("</script>").unwrap()];
        let index: Value = serde_json::from_str(index).unwrap();
        let names: Vec<&str> = index["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["a", "b", "outside.table"],
            "with the source it reads"
        );
        assert!(
            index["nodes"][0].get("sql").is_none(),
            "details stay out of the index"
        );
        let details_at = page.find("id=\"orbital-docs-details\"").unwrap();
        let details = &page[details_at..];
        let details = &details[details.find('>').unwrap() + 1..details.find("</script>").unwrap()];
        let lines: Vec<Value> = details
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "one line per node");
        assert_eq!(lines[0]["sql"], "select 1\n  as id");
        assert_eq!(lines[1]["sql"], "select '</script>' as id");
        assert_eq!(
            lines[0]["columns"][0]["lineage"][0]["node"],
            "outside.table"
        );
    }
}
