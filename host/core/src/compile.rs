//! Compile: parse each model, resolve its table references, and produce
//! canonical SQL in which every reference names the physical relation.
//!
//! A table reference resolves, in order, to a CTE of the same statement
//! (left alone), a model or seed (one-part name), or a declared source
//! (`source.table`). Table functions (`FROM f(x)`) are not references.
//! Anything else is an error at the reference's line and column.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::Path;

use sqlparser::ast::{
    Ident, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableAlias, TableFactor, Visit,
    VisitMut, Visitor, VisitorMut,
};
use sqlparser::dialect::{Dialect, GenericDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use crate::config::Target;
use crate::dag::{Dag, Node, NodeId, NodeKind, RelationName};
use crate::error::{Error, Location, Result};
use crate::project::{Model, ModelConfig, Project};

/// A model after compilation.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledModel {
    /// Canonical SQL: formatted from the AST, references rewritten.
    pub sql: String,
    pub config: ModelConfig,
    /// Declared sources this model reads, as `source.table`.
    pub sources: Vec<String>,
}

/// Every node of the project, in a checked acyclic graph.
#[derive(Debug, Clone)]
pub struct CompiledProject {
    pub dag: Dag,
}

/// The parser dialect for a dialect name (`sqlite`, `postgres`, `generic`).
pub fn dialect_for(name: &str) -> Box<dyn Dialect> {
    match name {
        "sqlite" => Box::new(SQLiteDialect {}),
        "postgres" => Box::new(PostgreSqlDialect {}),
        _ => Box::new(GenericDialect {}),
    }
}

/// What a name in SQL can resolve to.
#[derive(Clone)]
enum Resolved {
    Node(NodeId),
    Source { key: String, relation: RelationName },
}

struct Resolver<'a> {
    /// Folded name -> node id; ids number seeds first, then models.
    nodes: HashMap<String, NodeId>,
    relations: Vec<RelationName>,
    sources: BTreeMap<(String, String), RelationName>,
    known_names: Vec<&'a str>,
}

impl<'a> Resolver<'a> {
    fn new(project: &'a Project, target: &Target) -> Self {
        let relation = |identifier: &str| RelationName {
            schema: target.schema.clone(),
            identifier: identifier.to_string(),
        };
        let names = project
            .seeds
            .iter()
            .map(|s| s.name.as_str())
            .chain(project.models.iter().map(|m| m.name.as_str()));
        let nodes = names
            .clone()
            .enumerate()
            .map(|(id, name)| (name.to_lowercase(), id))
            .collect();
        let relations = names.clone().map(relation).collect();
        let mut sources = BTreeMap::new();
        for (source, config) in &project.config.sources {
            for table in &config.tables {
                let relation = RelationName {
                    schema: config.schema.clone(),
                    identifier: table.clone(),
                };
                sources.insert((source.to_lowercase(), table.to_lowercase()), relation);
            }
        }
        Self {
            nodes,
            relations,
            sources,
            known_names: names.collect(),
        }
    }

    fn resolve(&self, parts: &[&Ident]) -> Option<Resolved> {
        match parts {
            [name] => self.nodes.get(&fold(name)).map(|id| Resolved::Node(*id)),
            [source, table] => self
                .sources
                .get(&(fold(source), fold(table)))
                .map(|relation| Resolved::Source {
                    key: format!("{}.{}", source.value, table.value),
                    relation: relation.clone(),
                }),
            _ => None,
        }
    }

    fn relation(&self, resolved: &Resolved) -> RelationName {
        match resolved {
            Resolved::Node(id) => self.relations[*id].clone(),
            Resolved::Source { relation, .. } => relation.clone(),
        }
    }

    fn hint(&self, written: &str) -> String {
        let written = written.to_lowercase();
        self.known_names
            .iter()
            .map(|name| (strsim::levenshtein(&written, &name.to_lowercase()), name))
            .filter(|(distance, _)| *distance <= 2)
            .min()
            .map(|(_, name)| format!("; did you mean `{name}`?"))
            .unwrap_or_default()
    }
}

/// Compiles every model of `project` for `target`.
pub fn compile(project: &Project, target: &Target) -> Result<CompiledProject> {
    let dialect = dialect_for(target.parser_dialect());
    let resolver = Resolver::new(project, target);
    let mut nodes: Vec<Node> = project
        .seeds
        .iter()
        .map(|seed| Node {
            name: seed.name.clone(),
            kind: NodeKind::Seed(seed.config.clone()),
            path: seed.path.clone(),
            tags: Vec::new(),
            relation: RelationName {
                schema: target.schema.clone(),
                identifier: seed.name.clone(),
            },
            depends_on: Vec::new(),
        })
        .collect();
    let mut edges: BTreeMap<(NodeId, NodeId), Location> = BTreeMap::new();
    let mut errors = Vec::new();
    for model in &project.models {
        let id = nodes.len();
        match compile_model(model, dialect.as_ref(), &resolver) {
            Ok((compiled, deps)) => {
                let mut depends_on: Vec<NodeId> = deps.iter().map(|(dep, _)| *dep).collect();
                depends_on.sort_unstable();
                depends_on.dedup();
                for (dep, location) in deps {
                    edges.entry((id, dep)).or_insert(location);
                }
                nodes.push(Node {
                    name: model.name.clone(),
                    tags: model.config.tags.clone(),
                    kind: NodeKind::Model(compiled),
                    path: model.path.clone(),
                    relation: RelationName {
                        schema: target.schema.clone(),
                        identifier: model.name.clone(),
                    },
                    depends_on,
                });
            }
            Err(e) => {
                errors.push(e);
                // Keep ids aligned with the resolver's numbering.
                nodes.push(Node::placeholder(model));
            }
        }
    }
    Error::collect(errors)?;
    let dag = Dag::new(nodes, &edges)?;
    Ok(CompiledProject { dag })
}

type Dependencies = Vec<(NodeId, Location)>;

fn compile_model(
    model: &Model,
    dialect: &dyn Dialect,
    resolver: &Resolver<'_>,
) -> Result<(CompiledModel, Dependencies)> {
    let mut statement = parse_single_select(model, dialect)?;
    let ctes = cte_names(&statement);
    let mut rewriter = Rewriter {
        path: &model.path,
        model: &model.name,
        resolver,
        ctes,
        deps: Vec::new(),
        sources: Vec::new(),
        errors: Vec::new(),
    };
    let _ = VisitMut::visit(&mut statement, &mut rewriter);
    Error::collect(std::mem::take(&mut rewriter.errors))?;
    let mut sources = rewriter.sources;
    sources.sort();
    sources.dedup();
    let compiled = CompiledModel {
        sql: format!("{statement:#}"),
        config: model.config.clone(),
        sources,
    };
    Ok((compiled, rewriter.deps))
}

fn parse_single_select(model: &Model, dialect: &dyn Dialect) -> Result<Statement> {
    let mut statements = Parser::parse_sql(dialect, &model.sql).map_err(|e| {
        let message = e.to_string();
        let (message, line, column) = match split_position(&message) {
            // sqlparser gives no position for a premature end: point at the end.
            (message, 0, 0) => {
                let (line, column) = crate::error::line_col(&model.sql, model.sql.trim_end().len());
                (message, line, column)
            }
            found => found,
        };
        Error::Syntax {
            location: Location::new(&model.path, line, column),
            model: model.name.clone(),
            message: message.trim_start_matches("sql parser error: ").to_string(),
        }
    })?;
    let invalid = |line: usize, column: usize, message: &str| Error::InvalidModel {
        location: Location::new(&model.path, line, column),
        model: model.name.clone(),
        message: message.to_string(),
    };
    match statements.len() {
        0 => Err(invalid(1, 1, "is empty: a model is one SELECT statement")),
        1 => {
            let statement = statements.remove(0);
            match &statement {
                Statement::Query(_) => Ok(statement),
                other => {
                    let start = sqlparser::ast::Spanned::span(other).start;
                    Err(invalid(
                        start.line.max(1) as usize,
                        start.column.max(1) as usize,
                        "must be a SELECT statement (models are queries; Orbital writes the DDL)",
                    ))
                }
            }
        }
        _ => {
            let start = sqlparser::ast::Spanned::span(&statements[1]).start;
            Err(invalid(
                start.line.max(1) as usize,
                start.column.max(1) as usize,
                "holds more than one statement: a model is one SELECT",
            ))
        }
    }
}

/// Splits sqlparser's " at Line: L, Column: C" suffix off a message; (0, 0) when absent.
fn split_position(message: &str) -> (&str, usize, usize) {
    if let Some(at) = message.rfind(" at Line: ") {
        let tail = &message[at + " at Line: ".len()..];
        if let Some((line, column)) = tail.split_once(", Column: ") {
            let column = column.trim_end_matches(|c: char| !c.is_ascii_digit());
            if let (Ok(line), Ok(column)) = (line.parse(), column.parse()) {
                return (&message[..at], line, column);
            }
        }
    }
    (message, 0, 0)
}

/// Every CTE name defined anywhere in the statement, folded like identifiers.
fn cte_names(statement: &Statement) -> HashSet<String> {
    struct Ctes(HashSet<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                for cte in &with.cte_tables {
                    self.0.insert(fold(&cte.alias.name));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(HashSet::new());
    let _ = statement.visit(&mut ctes);
    ctes.0
}

fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

struct Rewriter<'a> {
    path: &'a Path,
    model: &'a str,
    resolver: &'a Resolver<'a>,
    ctes: HashSet<String>,
    deps: Dependencies,
    sources: Vec<String>,
    errors: Vec<Error>,
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let parts: Option<Vec<&Ident>> = name.0.iter().map(ObjectNamePart::as_ident).collect();
        let Some(parts) = parts else {
            return ControlFlow::Continue(());
        };
        if let [single] = parts.as_slice()
            && self.ctes.contains(&fold(single))
        {
            return ControlFlow::Continue(());
        }
        let start = parts[0].span.start;
        let location = Location::new(
            self.path,
            start.line.max(1) as usize,
            start.column.max(1) as usize,
        );
        let Some(resolved) = self.resolver.resolve(&parts) else {
            let written = name.to_string();
            self.errors.push(Error::UnknownRelation {
                location,
                model: self.model.to_string(),
                hint: self.resolver.hint(&written),
                name: written,
            });
            return ControlFlow::Continue(());
        };
        let written_last = parts[parts.len() - 1].clone();
        let relation = self.resolver.relation(&resolved);
        match resolved {
            Resolved::Node(id) => self.deps.push((id, location)),
            Resolved::Source { key, .. } => self.sources.push(key),
        }
        // Keep qualified column references (`orders.id`) working when the
        // physical name differs from the written one.
        if alias.is_none() && (parts.len() > 1 || written_last.value != relation.identifier) {
            *alias = Some(TableAlias {
                explicit: true,
                name: Ident::new(written_last.value),
                columns: Vec::new(),
                at: None,
            });
        }
        *name = relation.to_object_name();
        ControlFlow::Continue(())
    }
}

impl RelationName {
    fn to_object_name(&self) -> ObjectName {
        let quoted = |s: &str| Ident::with_quote('"', s);
        let mut parts = Vec::new();
        if let Some(schema) = &self.schema {
            parts.push(quoted(schema));
        }
        parts.push(quoted(&self.identifier));
        ObjectName::from(parts)
    }
}

/// Whether a parsed statement is a plain query (used by tests and macros).
pub fn is_query(statement: &Statement) -> bool {
    matches!(statement, Statement::Query(q) if !matches!(*q.body, SetExpr::Insert(_) | SetExpr::Update(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::Project;

    fn project(models: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("orbital.toml"),
            "name = \"p\"\n[targets.dev]\nurl = \"sqlite://p.db\"\n[sources.raw]\ntables = [\"events\"]\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        std::fs::create_dir_all(dir.path().join("seeds")).unwrap();
        std::fs::write(dir.path().join("seeds/raw_orders.csv"), "id\n1\n").unwrap();
        for (name, sql) in models {
            std::fs::write(dir.path().join(format!("models/{name}.sql")), sql).unwrap();
        }
        let project = Project::load(dir.path()).unwrap();
        (dir, project)
    }

    fn compile_project(models: &[(&str, &str)]) -> Result<CompiledProject> {
        let (_dir, project) = project(models);
        let target = project.config.target(None).unwrap().1.clone();
        compile(&project, &target)
    }

    fn model<'a>(compiled: &'a CompiledProject, name: &str) -> (&'a Node, &'a CompiledModel) {
        let node = compiled.dag.nodes.iter().find(|n| n.name == name).unwrap();
        match &node.kind {
            NodeKind::Model(m) => (node, m),
            NodeKind::Seed(_) => panic!("{name} is a seed"),
        }
    }

    #[test]
    fn resolves_models_seeds_and_sources_but_not_ctes() {
        let compiled = compile_project(&[
            ("stg", "select id from raw_orders"),
            ("mart", "with stg_x as (select * from stg) select * from stg_x join raw.events e on true, generate_series(1, 3)"),
        ])
        .unwrap();
        let (node, mart) = model(&compiled, "mart");
        let deps: Vec<&str> = node
            .depends_on
            .iter()
            .map(|d| compiled.dag.nodes[*d].name.as_str())
            .collect();
        assert_eq!(deps, vec!["stg"]);
        assert_eq!(mart.sources, vec!["raw.events"]);
        let flat = mart.sql.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains("FROM \"stg\""), "{flat}");
        assert!(flat.contains("JOIN \"events\" e ON"), "{flat}");
        let (stg_node, _) = model(&compiled, "stg");
        assert_eq!(
            compiled.dag.nodes[stg_node.depends_on[0]].name,
            "raw_orders"
        );
    }

    #[test]
    fn a_cte_shadows_a_model_of_the_same_name() {
        let compiled = compile_project(&[
            ("a", "select 1 as x"),
            ("b", "with a as (select 2 as x) select * from a"),
        ])
        .unwrap();
        assert!(model(&compiled, "b").0.depends_on.is_empty());
    }

    #[test]
    fn whitespace_and_comments_do_not_change_compiled_sql() {
        let one = compile_project(&[("a", "select 1 as x")]).unwrap();
        let two =
            compile_project(&[("a", "-- a comment\nSELECT   1\n  AS x  /* more */")]).unwrap();
        assert_eq!(model(&one, "a").1.sql, model(&two, "a").1.sql);
    }

    #[test]
    fn unknown_table_points_at_the_reference() {
        let err = compile_project(&[("a", "select *\nfrom raw_ordrs")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "models/a.sql:2:6: model `a` refers to unknown table `raw_ordrs`; did you mean `raw_orders`?"
        );
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = compile_project(&[("a", "select a\n  b c from x")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "models/a.sql:2:5: SQL syntax error in model `a`: Expected: end of statement, found: c"
        );
        let err = compile_project(&[("a", "select *\nfrom raw_orders where\n")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("models/a.sql:2:22: SQL syntax error"),
            "{err}"
        );
    }

    #[test]
    fn a_model_must_be_one_select() {
        let err = compile_project(&[("a", "select 1; select 2")]).unwrap_err();
        assert!(err.to_string().contains("more than one statement"), "{err}");
        let err = compile_project(&[("a", "delete from raw_orders")]).unwrap_err();
        assert!(err.to_string().contains("must be a SELECT"), "{err}");
    }

    #[test]
    fn cycles_are_named() {
        let err = compile_project(&[
            ("a", "select * from c"),
            ("b", "select * from a"),
            ("c", "select * from b"),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("dependency cycle: a -> c -> b -> a"),
            "{text}"
        );
        assert!(text.starts_with("models/a.sql:1:15"), "{text}");
    }

    #[test]
    fn several_errors_are_all_reported() {
        let err = compile_project(&[
            ("a", "select * from nope"),
            ("b", "select * from"),
            ("c", "select 1"),
        ])
        .unwrap_err();
        assert_eq!(err.flatten().len(), 2);
    }
}
