//! Test compilation: singular tests and the generic tests models declare
//! (`tests.<column> = [...]`), each a query for the failing rows.

use super::parse::parse_model;
use super::resolve::{Resolver, resolve_model};
use super::types::*;
use super::{Dependencies, FreshParse, dependency_ids};
use crate::catalog::ProjectCatalog;
use crate::dag::{Node, NodeKind, RelationName};
use crate::data_test::{ColumnTest, Generic, TestMacros};
use crate::dialect::dialect_for;
use crate::error::{Error, Location, Result};
use crate::macros::ProjectMacros;
use crate::project::{Model, ModelConfig, Project};

/// The generic tests of every compiled model, then the singular tests, as
/// nodes (with any fresh parse result of a singular test).
pub(super) fn compile_tests(
    project: &Project,
    catalog: &ProjectCatalog<'_>,
    macros: &dyn ProjectMacros,
    resolver: &Resolver<'_>,
    nodes: &[std::sync::Arc<Node>],
) -> Vec<Result<(Node, Option<FreshParse>)>> {
    let dialect = dialect_for(catalog.dialect);
    let mut out = Vec::new();
    for (id, node) in nodes.iter().enumerate() {
        let Some(model) = node.as_model() else {
            continue;
        };
        let source = id
            .checked_sub(project.seeds.len())
            .and_then(|i| project.models.get(i))
            .map_or("", |m| m.sql.as_str());
        for column_test in &model.config.tests {
            let name = column_test.name(&node.name);
            let (line, column) = crate::data_test::declared_at(source, &column_test.column);
            let at = Location::new(&node.path, line, column);
            let sql = match generic_sql(column_test, &node.name, macros) {
                Ok(sql) => sql,
                Err(message) => {
                    out.push(Err(Error::Config {
                        location: at,
                        message: format!("test `{name}` on model `{}`: {message}", node.name),
                    }));
                    continue;
                }
            };
            let query = test_query(&name, &node.path, sql);
            let compiled = parse_model(&query, dialect, macros, catalog)
                .and_then(|parsed| resolve_model(&query, &parsed, resolver))
                .map_err(|e| generic_test_error(e, &name, node, at));
            out.push(compiled.map(|(query, deps)| {
                let test = CompiledTest {
                    query,
                    severity: column_test.severity,
                    checks: Some(id),
                    store_failures: column_test.store_failures,
                };
                (test_node(name, &node.path, test, &deps), None)
            }));
        }
    }
    for singular in &project.tests {
        let query = test_query(&singular.name, &singular.path, singular.sql.clone());
        let key = parse_key(catalog.dialect, catalog.identity, &query.sql);
        let parsed = match catalog.cached(&key) {
            Some(parsed) => Ok((parsed, false)),
            None => parse_model(&query, dialect, macros, catalog)
                .map(|p| (p, true))
                .map_err(|e| match e {
                    Error::Writes {
                        location,
                        name,
                        what,
                        ..
                    } => Error::Writes {
                        location,
                        node: "test",
                        name,
                        what,
                    },
                    Error::InvalidModel {
                        location, model, ..
                    } => Error::Config {
                        location,
                        message: format!(
                            "test `{model}` must be one SELECT returning the rows that fail"
                        ),
                    },
                    other => other,
                }),
        };
        out.push(parsed.and_then(|(parsed, fresh)| {
            let (compiled, deps) = resolve_model(&query, &parsed, resolver)?;
            let kept = fresh.then_some((key, parsed));
            let test = CompiledTest {
                query: compiled,
                severity: singular.severity,
                checks: None,
                store_failures: singular.store_failures,
            };
            let node = test_node(singular.name.clone(), &singular.path, test, &deps);
            Ok((node, kept))
        }));
    }
    out
}

/// A generic test's failing-rows query: built in, or from a macro plugin.
pub(super) fn generic_sql(
    test: &ColumnTest,
    model: &str,
    macros: &dyn TestMacros,
) -> std::result::Result<String, String> {
    if let Some(sql) = test.sql(model) {
        return Ok(sql);
    }
    let Generic::Custom { name, args } = &test.test else {
        return Err("internal error: a built-in test without SQL".into());
    };
    macros
        .expand(name, model, &test.column, args)
        .unwrap_or_else(|| Err(crate::data_test::unknown_test(name, macros)))
}

/// A test's query as a model, so it parses and resolves like one.
pub(super) fn test_query(name: &str, path: &std::path::Path, sql: String) -> Model {
    Model {
        name: name.to_string(),
        path: path.to_path_buf(),
        sql,
        config: ModelConfig {
            materialized: "test".into(),
            tags: Vec::new(),
            enabled: true,
            tests: Vec::new(),
            extra: serde_json::Map::new(),
        },
        incremental_text: None,
    }
}

pub(super) fn test_node(
    name: String,
    path: &std::path::Path,
    test: CompiledTest,
    deps: &Dependencies,
) -> Node {
    Node {
        name,
        kind: NodeKind::Test(std::sync::Arc::new(test)),
        path: path.to_path_buf(),
        tags: Vec::new(),
        relation: RelationName::default(),
        depends_on: dependency_ids(deps),
    }
}

/// A generic test's SQL is generated, so its errors point at where the test
/// is declared (`at`) rather than at a position in text nobody wrote.
pub(super) fn generic_test_error(error: Error, name: &str, model: &Node, at: Location) -> Error {
    let message = match error {
        Error::UnknownRelation {
            name: table, hint, ..
        } => {
            format!("`{table}` is not a model or seed{hint}")
        }
        other => other.to_string(),
    };
    Error::Config {
        location: at,
        message: format!("test `{name}` on model `{}`: {message}", model.name),
    }
}
