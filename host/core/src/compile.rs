//! Compile: parse each model, resolve its table references, and produce
//! canonical SQL.
//!
//! Two phases. Parsing ([`parse_model`]) depends on nothing but the file: it
//! checks the model is one SELECT, formats it from the AST (so whitespace and
//! comments never count) and replaces every table reference with a marker
//! naming what was written. Its result is cached by the file's hash
//! ([`ParseCache`]), so an unchanged project compiles without parsing.
//! Resolution then maps each marker to a model, seed or declared source.
//!
//! A table reference resolves, in order, to a CTE in scope under SQL's
//! rules (left alone, see [`Marker`]), a model or seed (one-part name), or a declared source
//! (`source.table`). Table functions (`FROM f(x)`) are not references.
//! Anything else is an error at the reference's line and column.
//!
//! The canonical SQL keeps the markers; [`CompiledModel::render`] swaps them
//! for relation names at the last moment, because which physical relation a
//! reference reads depends on the environment and the fingerprints.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sqlparser::ast::{
    Ident, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableAlias, TableFactor,
    VisitMut, VisitorMut,
};
use sqlparser::dialect::Dialect;

use crate::catalog::{Catalog, ProjectCatalog};
use crate::config::Target;
use crate::dag::{Dag, Node, NodeId, NodeKind, RelationName};
use crate::data_test::{ColumnTest, Generic, Severity, TestMacros};
use crate::dialect::dialect_for;
use crate::error::{Error, Location, Result};
use crate::hash::{Hash, Hasher};
use crate::macros::{NoMacros, ProjectMacros, SqlMacros};
use crate::project::{Model, ModelConfig, Project};

/// What canonical SQL writes in place of a table reference, before the
/// reference's folded name.
const MARKER: &str = "__orbital_ref__";

/// A model after compilation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledModel {
    /// Canonical SQL: formatted from the AST, references as markers.
    /// Shared with the parse result it came from.
    pub sql: Arc<str>,
    #[serde(with = "crate::project::stored_config")]
    pub config: ModelConfig,
    /// Declared sources this model reads, as `source.table`.
    pub sources: Vec<String>,
    /// What each marker in `sql` stands for.
    pub references: Vec<(String, Referent)>,
    /// The macro plugins that expanded calls in it.
    pub macros: Vec<Hash>,
    /// For a stateful model that calls `if_incremental()` or
    /// `is_incremental()`: the SQL of a build that continues its table
    /// (`sql` is then the full build's). See [`crate::incremental`].
    pub incremental_sql: Option<String>,
}

/// A data test after compilation (see [`crate::data_test`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledTest {
    /// The query returning failing rows, compiled as a model's would be.
    pub query: CompiledModel,
    pub severity: Severity,
    /// The model a generic test checks: in `orbital build`, what is built
    /// from that model waits for the test, and is skipped if it fails.
    pub checks: Option<NodeId>,
}

/// What a table reference resolved to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Referent {
    Node(NodeId),
    Source(RelationName),
    /// `this` in a stateful model: its own current table.
    This,
}

impl CompiledModel {
    /// The SQL with every reference replaced: nodes by `node(id)`, sources by
    /// their declared relation.
    pub fn render(&self, node: impl FnMut(NodeId) -> String) -> String {
        self.render_build(None, node)
    }

    /// The SQL of a full build (`this: None`) or of a build that continues
    /// the table `this` (quoted), with references replaced as in [`Self::render`].
    pub fn render_build(
        &self,
        this: Option<&str>,
        mut node: impl FnMut(NodeId) -> String,
    ) -> String {
        let mut sql = match (this, &self.incremental_sql) {
            (Some(_), Some(incremental)) => incremental.clone(),
            _ => self.sql.to_string(),
        };
        for (key, referent) in &self.references {
            let text = match referent {
                Referent::Node(id) => node(*id),
                Referent::Source(relation) => relation.quoted(),
                // Compilation lets `this` stand only where a build continues the table.
                Referent::This => this.map_or_else(|| marker(key), str::to_string),
            };
            sql = sql.replace(&marker(key), &text);
        }
        sql
    }
}

/// The SQL to run for model or test `id`: each reference replaced by `relation(dep)`,
/// and each ephemeral model it reads (directly or through other ephemeral
/// models) inlined as a CTE named `__orbital_ephemeral__<name>`, defined
/// before its readers. `None` for a seed.
pub fn render_model(
    dag: &Dag,
    id: NodeId,
    relation: impl FnMut(NodeId) -> String,
) -> Option<String> {
    render_build(dag, id, None, relation)
}

/// [`render_model`] for a build that continues the table `this` (quoted),
/// or a full build when `None`.
pub fn render_build(
    dag: &Dag,
    id: NodeId,
    this: Option<&str>,
    mut relation: impl FnMut(NodeId) -> String,
) -> Option<String> {
    let model = dag.nodes[id].query()?;
    let mut name = |dep: NodeId| match dag.nodes[dep].is_ephemeral() {
        true => ephemeral_cte(&dag.nodes[dep].name),
        false => relation(dep),
    };
    // Inherited edges (`Dag::new`) make every ephemeral model this one
    // inlines a direct dependency; `order` puts each before its readers.
    let ctes: Vec<String> = dag
        .order
        .iter()
        .filter(|dep| dag.nodes[id].depends_on.contains(dep) && dag.nodes[**dep].is_ephemeral())
        .filter_map(|&dep| {
            let inlined = dag.nodes[dep].as_model()?.render(&mut name);
            Some(format!(
                "{} AS (\n{inlined}\n)",
                ephemeral_cte(&dag.nodes[dep].name)
            ))
        })
        .collect();
    let sql = model.render_build(this, &mut name);
    if ctes.is_empty() {
        return Some(sql);
    }
    let ctes = ctes.join(",\n");
    // Canonical SQL is sqlparser's formatting, so an existing WITH clause
    // starts the text exactly like this.
    Some(
        match ["WITH RECURSIVE ", "WITH "]
            .iter()
            .find_map(|with| sql.strip_prefix(with).map(|rest| (with, rest)))
        {
            Some((with, rest)) => format!("{with}{ctes},\n{rest}"),
            None => format!("WITH {ctes}\n{sql}"),
        },
    )
}

fn ephemeral_cte(name: &str) -> String {
    Ident::with_quote('"', format!("__orbital_ephemeral__{name}")).to_string()
}

/// The quoted marker canonical SQL holds for the reference `key`.
fn marker(key: &str) -> String {
    Ident::with_quote('"', format!("{MARKER}{key}")).to_string()
}

/// Canonical SQL as a person reads it: markers shown as the names written.
pub fn readable(sql: &str) -> String {
    let opening = format!("\"{MARKER}");
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(&opening) {
        out.push_str(&rest[..at]);
        let tail = &rest[at + opening.len()..];
        let Some(close) = tail.find('"') else {
            out.push_str(&rest[at..]);
            return out;
        };
        out.push_str(&tail[..close]);
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The project-independent result of parsing one model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedModel {
    /// Canonical SQL with markers, macros expanded.
    pub sql: Arc<str>,
    pub references: Vec<Reference>,
    /// The macro plugins that expanded something in it.
    pub macros: Vec<Hash>,
    /// The incremental build's SQL, when the model calls the incremental
    /// functions; `references` then covers both builds.
    pub incremental_sql: Option<String>,
    /// Where the first incremental function call stands, if any.
    pub incremental_call: Option<(u32, u32)>,
    /// Where `this` stands in the full build's SQL, if it does (an error
    /// for a stateful model: on a full build there is no table yet).
    pub this_on_full_build: Option<(u32, u32)>,
    /// The column lists macros were given, by relation: the result holds
    /// only while the catalog still says the same ([`crate::catalog`]).
    pub catalog: Vec<(String, Vec<String>)>,
}

/// A table reference as written, folded like identifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub parts: Vec<String>,
    pub written: String,
    pub line: u32,
    pub column: u32,
}

impl Reference {
    fn key(&self) -> String {
        self.parts.join(".")
    }
}

/// Earlier parse results, by [`parse_key`].
pub trait ParseCache: Sync {
    fn get(&self, key: &Hash) -> Option<ParsedModel>;
}

/// Parses everything.
pub struct NoCache;

impl ParseCache for NoCache {
    fn get(&self, _: &Hash) -> Option<ParsedModel> {
        None
    }
}

/// What a parse result depends on: this version of Orbital (the canonical
/// form may change between versions), the parser dialect and the SQL.
/// `macros` is the macro plugins' identity ([`SqlMacros::identity`]): an
/// expansion depends on them.
pub fn parse_key(dialect: &str, macros: &str, sql: &str) -> Hash {
    Hasher::new("orbital parse cache v4")
        .field(env!("CARGO_PKG_VERSION"))
        .field(dialect)
        .field(macros)
        .field(sql)
        .finish()
}

/// Every node of the project, in a checked acyclic graph.
#[derive(Debug, Clone)]
pub struct CompiledProject {
    pub dag: Dag,
    /// Parse results that were not in the cache, for the caller to store.
    pub fresh_parses: Vec<(Hash, ParsedModel)>,
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
    sources: BTreeMap<(String, String), RelationName>,
    known_names: Vec<&'a str>,
    disabled: &'a [String],
}

impl<'a> Resolver<'a> {
    fn new(project: &'a Project) -> Self {
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
            sources,
            known_names: names.collect(),
            disabled: &project.disabled,
        }
    }

    fn resolve(&self, parts: &[String]) -> Option<Resolved> {
        match parts {
            [name] => self.nodes.get(name).map(|id| Resolved::Node(*id)),
            [source, table] => self
                .sources
                .get(&(source.clone(), table.clone()))
                .map(|relation| Resolved::Source {
                    key: format!("{source}.{table}"),
                    relation: relation.clone(),
                }),
            _ => None,
        }
    }

    fn hint(&self, written: &str) -> String {
        let written = written.to_lowercase();
        if let Some(name) = self.disabled.iter().find(|d| d.to_lowercase() == written) {
            return format!(": model `{name}` is disabled (enabled = false), so nothing builds it");
        }
        crate::error::did_you_mean(&written, self.known_names.iter().copied(), 2, true)
    }
}

/// Compiles every model of `project` for `target`, parsing each one.
pub fn compile(project: &Project, target: &Target) -> Result<CompiledProject> {
    compile_with_cache(project, target, &NoCache)
}

/// Compiles every model, taking parse results from `cache` where it has them.
/// Parsing runs on all cores.
pub fn compile_with_cache(
    project: &Project,
    target: &Target,
    cache: &dyn ParseCache,
) -> Result<CompiledProject> {
    compile_with(project, target, cache, &NoMacros)
}

/// Compiles every model and test, expanding macros and custom generic tests
/// with `macros`.
pub fn compile_with(
    project: &Project,
    target: &Target,
    cache: &dyn ParseCache,
    macros: &dyn ProjectMacros,
) -> Result<CompiledProject> {
    crate::threads::install(|| compile_on_this_pool(project, target, cache, macros))
}

fn compile_on_this_pool(
    project: &Project,
    target: &Target,
    cache: &dyn ParseCache,
    macros: &dyn ProjectMacros,
) -> Result<CompiledProject> {
    let dialect_name = target.parser_dialect();
    let identity = SqlMacros::identity(macros);
    SqlMacros::prepare(macros);
    let catalog = ProjectCatalog::new(project, dialect_name, &identity, cache, macros);
    let resolver = Resolver::new(project);
    let mut nodes: Vec<Node> = Vec::with_capacity(project.seeds.len() + project.models.len());
    nodes.extend(project.seeds.iter().map(|seed| Node {
        name: seed.name.clone(),
        kind: NodeKind::Seed(seed.config.clone()),
        path: seed.path.clone(),
        tags: Vec::new(),
        relation: RelationName {
            schema: target.schema.clone(),
            identifier: seed.name.clone(),
        },
        depends_on: Vec::new(),
    }));
    // Parsing, resolving and building each model's node run on all cores,
    // writing each node straight into its slot: at 100k models, moving the
    // nodes through an intermediate vector cost about 7% of the compile.
    // `written_at`: where each model writes each dependency, by model index,
    // for a cycle's error.
    let written_at: Vec<Dependencies> = Vec::with_capacity(project.models.len());
    let outcomes: Vec<Result<Option<FreshParse>>> = Vec::with_capacity(project.models.len());
    let mut sinks = (nodes, (written_at, outcomes));
    sinks.par_extend(
        (0..project.models.len())
            .into_par_iter()
            .map(|index| compile_model(index, &catalog, &resolver, target)),
    );
    let (mut nodes, (written_at, outcomes)) = sinks;
    let mut errors = Vec::new();
    let mut fresh_parses = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        match outcome {
            Ok(fresh) => fresh_parses.extend(fresh),
            Err(e) => errors.push(e),
        }
    }
    let tests = compile_tests(project, &catalog, macros, &resolver, &nodes);
    for test in tests {
        match test {
            Ok((test, fresh)) => {
                fresh_parses.extend(fresh);
                nodes.push(test);
            }
            Err(e) => errors.push(e),
        }
    }
    Error::collect(errors)?;
    errors = shadowed_sources(&nodes, &resolver);
    errors.extend(duplicate_test_names(&nodes, &resolver));
    Error::collect(errors)?;
    let edge_at = |node: NodeId, dependency: NodeId| {
        let model = node.checked_sub(project.seeds.len())?;
        let (_, (line, column)) = written_at
            .get(model)?
            .iter()
            .find(|(d, _)| *d == dependency)?;
        Some(Location::new(
            &project.models[model].path,
            *line as usize,
            *column as usize,
        ))
    };
    let dag = Dag::new(nodes, edge_at)?;
    Ok(CompiledProject { dag, fresh_parses })
}

/// Parses (or takes from the cache), resolves and builds the node of model
/// `index`; a model that does not compile gets a placeholder node, so ids stay
/// aligned with the resolver's numbering.
fn compile_model(
    index: usize,
    catalog: &ProjectCatalog<'_>,
    resolver: &Resolver<'_>,
    target: &Target,
) -> (Node, (Dependencies, Result<Option<FreshParse>>)) {
    let model = catalog.model(index);
    let compiled = catalog.parse(index).and_then(|(key, parsed, fresh)| {
        let (compiled, deps) = resolve_model(model, &parsed, resolver)?;
        Ok((compiled, deps, fresh.then_some((key, parsed))))
    });
    match compiled {
        Ok((compiled, deps, kept)) => {
            (model_node(model, compiled, &deps, target), (deps, Ok(kept)))
        }
        Err(e) => (Node::placeholder(model), (Vec::new(), Err(e))),
    }
}

/// A compiled model's node, published under its own name in the target schema.
fn model_node(
    model: &Model,
    compiled: CompiledModel,
    deps: &Dependencies,
    target: &Target,
) -> Node {
    Node {
        name: model.name.clone(),
        tags: model.config.tags.clone(),
        kind: NodeKind::Model(compiled),
        path: model.path.clone(),
        relation: RelationName {
            schema: target.schema.clone(),
            identifier: model.name.clone(),
        },
        depends_on: dependency_ids(deps),
    }
}

/// A parse result computed (not taken from the cache) during this compile.
type FreshParse = (Hash, ParsedModel);

/// The generic tests of every compiled model, then the singular tests, as
/// nodes (with any fresh parse result of a singular test).
fn compile_tests(
    project: &Project,
    catalog: &ProjectCatalog<'_>,
    macros: &dyn ProjectMacros,
    resolver: &Resolver<'_>,
    nodes: &[Node],
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
            };
            let node = test_node(singular.name.clone(), &singular.path, test, &deps);
            Ok((node, kept))
        }));
    }
    out
}

/// A generic test's failing-rows query: built in, or from a macro plugin.
fn generic_sql(
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
fn test_query(name: &str, path: &std::path::Path, sql: String) -> Model {
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
    }
}

fn test_node(
    name: String,
    path: &std::path::Path,
    test: CompiledTest,
    deps: &Dependencies,
) -> Node {
    Node {
        name,
        kind: NodeKind::Test(test),
        path: path.to_path_buf(),
        tags: Vec::new(),
        relation: RelationName::default(),
        depends_on: dependency_ids(deps),
    }
}

/// The distinct nodes a model depends on, in id order.
fn dependency_ids(deps: &Dependencies) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = deps.iter().map(|(dep, _)| *dep).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A generic test's SQL is generated, so its errors point at where the test
/// is declared (`at`) rather than at a position in text nobody wrote.
fn generic_test_error(error: Error, name: &str, model: &Node, at: Location) -> Error {
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

/// Test names share the namespace of models and seeds (and so each other).
/// A model or seed published where a declared source table lives (SQLite
/// has one namespace) would replace the source's data: refuse it.
fn shadowed_sources(nodes: &[Node], resolver: &Resolver<'_>) -> Vec<Error> {
    if resolver.sources.is_empty() {
        return Vec::new();
    }
    let lower = |r: &RelationName| (r.schema.clone(), r.identifier.to_lowercase());
    let sources: HashMap<_, _> = resolver
        .sources
        .iter()
        .map(|((source, table), relation)| (lower(relation), format!("{source}.{table}")))
        .collect();
    nodes
        .iter()
        .filter(|node| !node.is_test())
        .filter_map(|node| {
            let source = sources.get(&lower(&node.relation))?;
            Some(Error::InvalidModel {
                location: Location::new(&node.path, 1, 1),
                model: node.name.clone(),
                message: format!(
                    "would be published as `{}`, where the declared source table `{source}` lives: \
                     building it would replace the source's data; rename the {} or give the source its own schema",
                    node.relation.identifier,
                    node.kind_name()
                ),
            })
        })
        .collect()
}

/// Model and seed names are unique already (project loading checks them),
/// and the resolver knows them folded: only tests are looked up.
fn duplicate_test_names(nodes: &[Node], resolver: &Resolver<'_>) -> Vec<Error> {
    let mut tests: HashMap<String, &Node> = HashMap::new();
    let mut errors = Vec::new();
    for node in nodes.iter().filter(|node| node.is_test()) {
        let folded = node.name.to_lowercase();
        let earlier = match resolver.nodes.get(&folded) {
            Some(id) => Some(&nodes[*id]),
            None => tests.get(&folded).copied(),
        };
        match earlier {
            Some(earlier) => errors.push(Error::Duplicate {
                location: Location::new(&node.path, 1, 1),
                name: node.name.clone(),
                first: earlier.path.clone(),
            }),
            None => {
                tests.insert(folded, node);
            }
        }
    }
    errors
}

/// The nodes a model reads, each with the line and column it is written at.
type Dependencies = Vec<(NodeId, (u32, u32))>;

/// Parses one model: checks it is a single SELECT, marks its table
/// references and formats it canonically.
pub fn parse_model(
    model: &Model,
    dialect: &dyn Dialect,
    macros: &dyn SqlMacros,
    catalog: &dyn Catalog,
) -> Result<ParsedModel> {
    let mut statement = parse_single_select(model, dialect)?;
    let expanded = crate::macros::expand(&mut statement, model, dialect, macros, catalog)?;
    let variants = crate::incremental::variants(&statement, model)?;
    let (full, incremental, incremental_call) = match variants {
        Some(v) => (v.full, Some(v.incremental), Some(v.first_call)),
        None => (statement, None, None),
    };
    // Marking walks the expanded tree, so what a macro writes is checked too.
    let writes = |(location, what): crate::read_only::Write| {
        let (line, column) = crate::tokens::position(&model.sql, location);
        Error::Writes {
            location: Location::new(&model.path, line as usize, column as usize),
            node: "model",
            name: model.name.clone(),
            what,
        }
    };
    let (sql, mut references) = mark(full, &model.sql).map_err(writes)?;
    let this_on_full_build = references
        .iter()
        .find(|r| r.parts == [crate::incremental::THIS])
        .map(|r| (r.line, r.column));
    let incremental_sql = match incremental {
        Some(statement) => {
            let (sql, more) = mark(statement, &model.sql).map_err(writes)?;
            references.extend(more);
            Some(sql)
        }
        None => None,
    };
    Ok(ParsedModel {
        sql: sql.into(),
        references,
        macros: expanded.plugins,
        incremental_sql,
        incremental_call,
        this_on_full_build,
        catalog: expanded.catalog,
    })
}

/// Canonical SQL with every table reference replaced by its marker;
/// `sql` is the text the statement was parsed from. Anything in it that
/// writes is an error ([`crate::read_only`]).
fn mark(
    mut statement: Statement,
    sql: &str,
) -> std::result::Result<(String, Vec<Reference>), crate::read_only::Write> {
    let mut marker = Marker {
        sql,
        scopes: vec![Vec::new()],
        cte_bodies: HashMap::new(),
        references: Vec::new(),
        write: None,
    };
    let _ = VisitMut::visit(&mut statement, &mut marker);
    match marker.write {
        Some(write) => Err(write),
        None => Ok((format!("{statement:#}"), marker.references)),
    }
}

fn resolve_model(
    model: &Model,
    parsed: &ParsedModel,
    resolver: &Resolver<'_>,
) -> Result<(CompiledModel, Dependencies)> {
    let mut deps = Vec::new();
    let mut sources = Vec::new();
    let mut references = Vec::new();
    let mut errors = Vec::new();
    let stateful = crate::incremental::is_stateful(&model.config.materialized);
    let at =
        |(line, column): (u32, u32)| Location::new(&model.path, line as usize, column as usize);
    if let Some(call) = parsed.incremental_call.filter(|_| !stateful) {
        return Err(Error::InvalidModel {
            location: at(call),
            model: model.name.clone(),
            message: format!(
                "calls is_incremental() or if_incremental(), which only an incremental model or snapshot may; it is materialized as '{}'",
                model.config.materialized
            ),
        });
    }
    if let Some(this) = parsed.this_on_full_build.filter(|_| stateful) {
        return Err(Error::InvalidModel {
            location: at(this),
            model: model.name.clone(),
            message: "reads `this` (its own table) outside if_incremental(...): on its first build, and with --full-refresh, the table does not exist yet".into(),
        });
    }
    for reference in &parsed.references {
        let position = (reference.line, reference.column);
        if stateful && reference.parts == [crate::incremental::THIS] {
            references.push((reference.key(), Referent::This));
            continue;
        }
        let referent = match resolver.resolve(&reference.parts) {
            Some(Resolved::Node(id)) => {
                deps.push((id, position));
                Referent::Node(id)
            }
            Some(Resolved::Source { key, relation }) => {
                sources.push(key);
                Referent::Source(relation)
            }
            None => {
                errors.push(Error::UnknownRelation {
                    location: at(position),
                    model: model.name.clone(),
                    hint: resolver.hint(&reference.written),
                    name: reference.written.clone(),
                });
                continue;
            }
        };
        references.push((reference.key(), referent));
    }
    Error::collect(errors)?;
    sources.sort();
    sources.dedup();
    references.sort_by(|a, b| a.0.cmp(&b.0));
    references.dedup_by(|a, b| a.0 == b.0);
    let compiled = CompiledModel {
        sql: parsed.sql.clone(),
        config: model.config.clone(),
        sources,
        references,
        macros: parsed.macros.clone(),
        incremental_sql: parsed.incremental_sql.clone(),
    };
    Ok((compiled, deps))
}

fn parse_single_select(model: &Model, dialect: &dyn Dialect) -> Result<Statement> {
    let mut statements = crate::tokens::parse_sql(dialect, &model.sql).map_err(|e| {
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
    let at = |location| {
        let (line, column) = crate::tokens::position(&model.sql, location);
        (line as usize, column as usize)
    };
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
                    let (line, column) = at(sqlparser::ast::Spanned::span(other).start);
                    Err(invalid(
                        line,
                        column,
                        "must be a SELECT statement (models are queries; Orbital writes the DDL)",
                    ))
                }
            }
        }
        _ => {
            // Not every statement has a span: then the first token after the
            // first statement's `;`.
            let span = sqlparser::ast::Spanned::span(&statements[1]);
            let start = match span.start.line {
                0 => second_statement_start(&model.sql, dialect).unwrap_or(span.start),
                _ => span.start,
            };
            let (line, column) = at(start);
            Err(invalid(
                line,
                column,
                "holds more than one statement: a model is one SELECT",
            ))
        }
    }
}

/// Where the token after the first top-level `;` of `sql` starts.
fn second_statement_start(
    sql: &str,
    dialect: &dyn Dialect,
) -> Option<sqlparser::tokenizer::Location> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(dialect, sql).tokenize_with_location().ok()?;
    let after = tokens.iter().position(|t| t.token == Token::SemiColon)?;
    tokens[after + 1..]
        .iter()
        .find(|t| !matches!(t.token, Token::Whitespace(_) | Token::SemiColon))
        .map(|t| t.span.start)
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

fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The reference a marker in canonical SQL stands for (`orders`,
/// `raw.events`), or `None` for any other table name.
pub(crate) fn reference_key(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [part] => part
            .as_ident()
            .and_then(|ident| ident.value.strip_prefix(MARKER))
            .map(str::to_string),
        _ => None,
    }
}

/// Replaces every table reference that is not a CTE in scope with its
/// marker.
///
/// CTE names follow SQL's scoping: a WITH clause's names are visible in its
/// query's body and everything nested in it, not outside the query; the
/// body of a CTE sees the CTEs listed before it (all of them, itself
/// included, under WITH RECURSIVE) and the names visible where the query
/// stands. So in `with stg as (select * from stg)` the inner `stg` is the
/// model, and a CTE inside a subquery hides nothing elsewhere.
struct Marker<'a> {
    /// The model's SQL, which the tree's positions point into.
    sql: &'a str,
    /// The CTE names visible in each query being walked, innermost last.
    scopes: Vec<Vec<String>>,
    /// CTE bodies not yet entered, by address, with the names visible in
    /// them (the visitor walks each body after its WITH clause is seen).
    cte_bodies: HashMap<*const Query, Vec<String>>,
    references: Vec<Reference>,
    /// The first write found, which stops the walk.
    write: Option<crate::read_only::Write>,
}

impl Marker<'_> {
    fn in_scope(&self, name: &str) -> bool {
        self.scopes
            .last()
            .is_some_and(|names| names.iter().any(|n| n == name))
    }
}

impl VisitorMut for Marker<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &mut Statement) -> ControlFlow<()> {
        self.write = crate::read_only::statement_write(statement);
        match self.write {
            Some(_) => ControlFlow::Break(()),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        self.write = crate::read_only::query_write(query);
        if self.write.is_some() {
            return ControlFlow::Break(());
        }
        let address: *const Query = query;
        let outer = self
            .cte_bodies
            .remove(&address)
            .unwrap_or_else(|| self.scopes.last().cloned().unwrap_or_default());
        let Some(with) = &query.with else {
            self.scopes.push(outer);
            return ControlFlow::Continue(());
        };
        let names: Vec<String> = with
            .cte_tables
            .iter()
            .map(|c| fold(&c.alias.name))
            .collect();
        for (i, cte) in with.cte_tables.iter().enumerate() {
            let siblings = if with.recursive {
                &names[..]
            } else {
                &names[..i]
            };
            let mut visible = outer.clone();
            visible.extend_from_slice(siblings);
            self.cte_bodies.insert(&*cte.query, visible);
        }
        let mut body = outer;
        body.extend(names);
        self.scopes.push(body);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

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
            && self.in_scope(&fold(single))
        {
            return ControlFlow::Continue(());
        }
        let (line, column) = crate::tokens::position(self.sql, parts[0].span.start);
        let reference = Reference {
            parts: parts.iter().map(|p| fold(p)).collect(),
            written: name.to_string(),
            line,
            column,
        };
        // Keep qualified column references (`orders.id`) working once the
        // relation is renamed.
        if alias.is_none() {
            let mut written_last = parts[parts.len() - 1].clone();
            written_last.span = sqlparser::tokenizer::Span::empty();
            *alias = Some(TableAlias {
                explicit: true,
                name: written_last,
                columns: Vec::new(),
                at: None,
            });
        }
        *name = ObjectName::from(vec![Ident::with_quote(
            '"',
            format!("{MARKER}{}", reference.key()),
        )]);
        self.references.push(reference);
        ControlFlow::Continue(())
    }
}

impl RelationName {
    /// The relation in ANSI double quotes, schema first where there is one.
    pub fn quoted(&self) -> String {
        let quoted = |s: &str| Ident::with_quote('"', s).to_string();
        match &self.schema {
            Some(schema) => format!("{}.{}", quoted(schema), quoted(&self.identifier)),
            None => quoted(&self.identifier),
        }
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

    /// A generated model whose expression is a 20,000-level tree: the parse
    /// threads' stacks hold it, where a default 2 MiB thread overflows and
    /// aborts the process. (A release build holds 400,000 levels; this test's
    /// debug frames are several times larger.)
    #[test]
    fn a_very_deep_expression_compiles() {
        let terms: Vec<String> = (0..20_000).map(|i| format!("c{i}")).collect();
        let deep = format!("select {} as total from raw_orders", terms.join(" + "));
        let compiled = compile_project(&[("deep", &deep)]).unwrap();
        let (node, deep) = model(&compiled, "deep");
        assert_eq!(node.depends_on.len(), 1);
        assert!(
            deep.sql.contains("c19998 + c19999 AS total"),
            "{}",
            &deep.sql[..200]
        );
    }

    fn model<'a>(compiled: &'a CompiledProject, name: &str) -> (&'a Node, &'a CompiledModel) {
        let node = compiled.dag.nodes.iter().find(|n| n.name == name).unwrap();
        match &node.kind {
            NodeKind::Model(m) => (node, m),
            _ => panic!("{name} is not a model"),
        }
    }

    #[test]
    fn ephemeral_models_become_ctes_of_their_readers_innermost_first() {
        let e = "-- config: materialized = 'ephemeral'\n";
        let compiled = compile_project(&[
            ("inner", &format!("{e}select id from raw_orders")),
            ("outer", &format!("{e}select id from inner where id > 0")),
            ("plain", "select * from outer"),
            ("own_ctes", "with x as (select * from outer) select * from x"),
            ("recursive", "with recursive r(n) as (select 1 union all select n + 1 from r where n < 3) select * from r, inner"),
        ])
        .unwrap();
        let dag = &compiled.dag;
        let id = |name: &str| dag.find(name).unwrap();
        // Compared with whitespace collapsed: the layout is sqlparser's.
        let render = |name: &str| {
            let sql = render_model(dag, id(name), |dep| {
                format!("\"{}_built\"", dag.nodes[dep].name)
            })
            .unwrap();
            sql.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        // Readers also wait for what the inlined SQL reads.
        assert!(
            dag.nodes[id("plain")]
                .depends_on
                .contains(&id("raw_orders"))
        );

        let plain = render("plain");
        assert!(plain.starts_with("WITH \"__orbital_ephemeral__inner\" AS ( SELECT id FROM \"raw_orders_built\" AS raw_orders ), \"__orbital_ephemeral__outer\" AS ( SELECT id FROM \"__orbital_ephemeral__inner\" AS inner WHERE id > 0 )"), "{plain}");
        assert!(
            plain.ends_with(") SELECT * FROM \"__orbital_ephemeral__outer\" AS outer"),
            "{plain}"
        );

        let own = render("own_ctes");
        assert_eq!(own.matches("WITH ").count(), 1, "{own}");
        assert!(
            own.ends_with(
                " ), x AS ( SELECT * FROM \"__orbital_ephemeral__outer\" AS outer ) SELECT * FROM x"
            ),
            "{own}"
        );

        let recursive = render("recursive");
        assert!(
            recursive.starts_with("WITH RECURSIVE \"__orbital_ephemeral__inner\" AS ("),
            "{recursive}"
        );
        // What the ephemeral model reads it would render itself too.
        assert!(render("outer").contains("__orbital_ephemeral__inner"));
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
        let rendered = mart.render(|id| format!("\"{}_physical\"", compiled.dag.nodes[id].name));
        let flat = rendered.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains("FROM \"stg_physical\" AS stg"), "{flat}");
        assert!(flat.contains("JOIN \"events\" e ON"), "{flat}");
        let readable = readable(&mart.sql)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(readable.contains("FROM stg AS stg"), "{readable}");
        assert!(readable.contains("JOIN raw.events e"), "{readable}");
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

    /// CTE names follow SQL's scoping, construct by construct (the same
    /// queries run on both warehouses in tests/trust.rs).
    #[test]
    fn cte_names_are_resolved_by_scope() {
        let cases: [(&str, &[&str]); 9] = [
            (
                "with stg as (select * from stg) select * from stg",
                &["stg"],
            ),
            (
                "select * from (with a as (select 1 as x) select * from a) s join a on true",
                &["a"],
            ),
            (
                "with a as (select 1 as x), b as (select * from a) select * from b",
                &[],
            ),
            (
                "with b as (select * from a), a as (select 1 as x) select * from b",
                &["a"],
            ),
            (
                "with recursive stg as (select 1 as x union all select x + 1 from stg where x < 3) select * from stg",
                &[],
            ),
            (
                "with a as (select 1 as x) select * from (select * from a) s",
                &[],
            ),
            (
                "select (with a as (select 1 as x) select x from a) as y from a",
                &["a"],
            ),
            (
                "with a as (select * from b) select * from a union all (with b as (select 1 as x) select * from b)",
                &["b"],
            ),
            (
                "with a as (with stg as (select 1 as x) select * from stg) select * from a, stg",
                &["stg"],
            ),
        ];
        for (sql, expected) in cases {
            let compiled = compile_project(&[
                ("a", "select 1 as x"),
                ("b", "select 1 as x"),
                ("stg", "select 1 as x"),
                ("q", sql),
            ])
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let deps: Vec<&str> = model(&compiled, "q")
                .0
                .depends_on
                .iter()
                .map(|&d| compiled.dag.nodes[d].name.as_str())
                .collect();
            assert_eq!(deps, expected, "{sql}");
        }
    }

    #[test]
    fn a_second_statement_is_pointed_at() {
        for (sql, at) in [
            ("select 1 as x;\n  drop table t", "models/m.sql:2:3"),
            ("select 1 as x; select 2", "models/m.sql:1:16"),
            (
                "select ';' as x;\n\n-- c\ninsert into t values (1)",
                "models/m.sql:4:1",
            ),
        ] {
            let err = compile_project(&[("m", sql)]).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{at}: model `m` holds more than one statement")),
                "{sql}: {err}"
            );
        }
    }

    #[test]
    fn reading_a_disabled_model_says_it_is_disabled() {
        let err = compile_project(&[
            ("off", "-- config: enabled = false\nselect 1 as x"),
            ("m", "select * from off"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "refers to unknown table `off`: model `off` is disabled (enabled = false)"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_write_anywhere_in_a_model_is_refused_at_its_position() {
        let err = compile_project(&[
            ("raw", "select 1 as id"),
            (
                "m",
                "with d as (\n  delete from raw returning *\n) select * from d",
            ),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "models/m.sql:2:3: model `m` contains a DELETE: a model or test is a query that only reads (Orbital writes the DDL)"
        );
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
    fn a_generic_test_named_like_a_model_or_another_test_is_refused() {
        let err = compile_project(&[
            ("o", "-- config: tests.id = ['not_null']\nselect 1 as id"),
            ("not_null_o_id", "select 1 as x"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "duplicate name `not_null_o_id`: also defined at models/not_null_o_id.sql"
            ),
            "{err}"
        );
        // `a-b` and `a_b` both name the test `not_null_t_a_b`.
        let err = compile_project(&[(
            "t",
            "-- config: tests.\"a-b\" = ['not_null']\n-- config: tests.a_b = ['not_null']\nselect 1 as a_b",
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("duplicate name `not_null_t_a_b`"), "{err}");
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

    #[test]
    fn an_incremental_model_has_a_full_and_an_incremental_build() {
        let compiled = compile_project(&[
            ("raw", "select 1 as id, 10 as ts"),
            (
                "increments",
                "-- config: materialized = 'incremental'\n\
                 select id, ts, is_incremental() as continued from raw\n\
                 where if_incremental(ts > (select max(ts) from this))",
            ),
        ])
        .unwrap();
        let id = compiled.dag.find("increments").unwrap();
        let name = |_: NodeId| "\"raw_table\"".to_string();
        let flat = |sql: String| sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let full = flat(render_build(&compiled.dag, id, None, name).unwrap());
        assert!(full.contains("(1 = 0) AS continued"), "{full}");
        assert!(full.contains("WHERE (1 = 1)"), "{full}");
        assert!(!full.contains("max"), "{full}");
        let incremental =
            flat(render_build(&compiled.dag, id, Some("\"events_v1\""), name).unwrap());
        assert!(
            incremental.contains("(1 = 1) AS continued"),
            "{incremental}"
        );
        assert!(
            incremental.contains("(SELECT max(ts) FROM \"events_v1\" AS this)"),
            "{incremental}"
        );
        // `this` is the model itself, not an upstream.
        assert_eq!(
            compiled.dag.nodes[id].depends_on,
            vec![compiled.dag.find("raw").unwrap()]
        );
    }

    #[test]
    fn incremental_syntax_errors_point_at_the_call() {
        let err = compile_project(&[(
            "t",
            "-- config: materialized = 'table'\nselect 1 as x where if_incremental(x > 0)",
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("t.sql:2:21"), "{err}");
        assert!(
            err.contains("only an incremental model or snapshot may"),
            "{err}"
        );
        let err = compile_project(&[(
            "i",
            "-- config: materialized = 'incremental'\nselect * from this",
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("i.sql:2:15"), "{err}");
        assert!(err.contains("outside if_incremental"), "{err}");
        let err = compile_project(&[(
            "i",
            "-- config: materialized = 'incremental'\nselect 1 as x where if_incremental(1, 2, 3)",
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("with 3 arguments"), "{err}");
    }

    #[test]
    fn a_model_where_a_source_table_lives_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("orbital.toml"),
            "name = \"p\"\n[targets.dev]\nurl = \"sqlite://p.db\"\n[sources.app]\ntables = [\"events\"]\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        std::fs::write(
            dir.path().join("models/events.sql"),
            "select * from app.events",
        )
        .unwrap();
        let project = Project::load(dir.path()).unwrap();
        let target = project.config.target(None).unwrap().1.clone();
        let err = compile(&project, &target).unwrap_err().to_string();
        assert!(
            err.contains("where the declared source table `app.events` lives"),
            "{err}"
        );
    }
}
