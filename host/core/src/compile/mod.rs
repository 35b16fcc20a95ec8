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
//!
//! The modules: [`types`] (what is produced and cached), [`parse`],
//! [`resolve`], [`render`], [`data_tests`], and [`tokens`] (the fast-path
//! tokenizer). [`compile`] is the one entry point.

mod data_tests;
mod parse;
mod render;
mod resolve;
#[cfg(test)]
mod tests;
pub mod tokens;
mod types;

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use crate::catalog::ProjectCatalog;
use crate::config::Target;
use crate::dag::{Dag, Node, NodeId, NodeKind, RelationName};
use crate::error::{Error, Location, Result};
use crate::hash::Hash;
use crate::macros::{NoMacros, ProjectMacros, SqlMacros};
use crate::project::{Model, Project};

pub(crate) use parse::reference_key;
pub use parse::{is_query, parse_model};
pub use render::{readable, render_build, render_model};
pub use types::{
    CompiledModel, CompiledTest, NoCache, ParseCache, ParsedModel, Reference, Referent, parse_key,
};

use data_tests::compile_tests;
use resolve::{Resolver, resolve_model};

/// Every node of the project, in a checked acyclic graph.
#[derive(Debug, Clone)]
pub struct CompiledProject {
    /// Shared: a daemon keeps it between requests, and a run hands it to
    /// its tasks.
    pub dag: std::sync::Arc<Dag>,
    /// Parse results that were not in the cache, for the caller to store.
    pub fresh_parses: Vec<(Hash, ParsedModel)>,
}

/// What a compile takes besides the project: earlier parse results, the
/// macro plugins, which materializations keep history, and the previous
/// compile of the same project. The default parses everything, expands no
/// plugin macros, knows only the built-in stateful names and starts afresh.
#[derive(Clone, Copy)]
pub struct CompileOptions<'a> {
    pub cache: &'a dyn ParseCache,
    pub macros: &'a dyn ProjectMacros,
    pub strategies: &'a dyn crate::incremental::Strategies,
    pub previous: Option<Previous<'a>>,
}

impl Default for CompileOptions<'_> {
    fn default() -> Self {
        Self {
            cache: &NoCache,
            macros: &NoMacros,
            strategies: &crate::incremental::BuiltIn,
            previous: None,
        }
    }
}

/// The last compile of the same project (same config, target and macro
/// plugins, the same files), for a compile after only some model files
/// changed, as in a daemon after an edit: every other model's node is taken
/// from it instead of being looked up, resolved and built again.
#[derive(Clone, Copy)]
pub struct Previous<'a> {
    pub dag: &'a Dag,
    /// Indices into `project.models` of the models whose files changed,
    /// in ascending order.
    pub changed: &'a [usize],
}

impl Previous<'_> {
    /// Whether the previous graph's seeds and models are this project's,
    /// in the same order: node ids then mean the same.
    fn lines_up(&self, project: &Project) -> bool {
        let seeds = project.seeds.iter().map(|s| s.name.as_str());
        let models = project.models.iter().map(|m| m.name.as_str());
        let expected = project.seeds.len() + project.models.len();
        self.dag.nodes.len() >= expected
            && seeds
                .chain(models)
                .zip(&self.dag.nodes)
                .all(|(name, node)| node.name == name)
    }

    /// Whether model `index`'s node can be taken from the previous compile:
    /// nothing it was made from can have changed (its file did not, and no
    /// macro expanded in it: an expansion may read other models' columns).
    fn reusable(&self, index: usize, seeds: usize) -> bool {
        self.changed.binary_search(&index).is_err()
            && (self.dag.nodes.get(seeds + index))
                .and_then(|node| node.as_model())
                .is_some_and(|m| m.macros.is_empty())
    }

    /// Whether `nodes`, where `reused` ones are the previous compile's,
    /// make the previous graph's shape: every other node is where it was,
    /// reads what it read, and is inlined (ephemeral) as it was. Then no
    /// edge, inherited upstream or order changed.
    fn same_shape(&self, nodes: &[Arc<Node>], reused: &[bool]) -> bool {
        nodes.len() == self.dag.nodes.len()
            && (nodes.iter().zip(&self.dag.nodes).enumerate())
                .filter(|(id, _)| !reused.get(*id).copied().unwrap_or(false))
                .all(|(_, (new, old))| {
                    new.name == old.name
                        && new.is_test() == old.is_test()
                        && new.is_ephemeral() == old.is_ephemeral()
                        && new.depends_on == written_dependencies(old)
                })
    }
}

/// The nodes a node's SQL reads, in id order: its `depends_on` before a
/// [`Dag`] adds what it inherits through ephemeral models.
fn written_dependencies(node: &Node) -> Vec<NodeId> {
    let Some(query) = node.query() else {
        return Vec::new();
    };
    let mut ids: Vec<NodeId> = (query.references.iter())
        .filter_map(|(_, referent)| match referent {
            Referent::Node(id) => Some(*id),
            Referent::Source(_) | Referent::This => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Compiles every model and test of `project` for `target`: parses what
/// `options.cache` does not have (on all cores), expands macros and custom
/// generic tests with `options.macros`, resolves and checks the graph.
pub fn compile(
    project: &Project,
    target: &Target,
    options: CompileOptions<'_>,
) -> Result<CompiledProject> {
    crate::threads::install(|| {
        let previous = options.previous.filter(|p| p.lines_up(project));
        match compile_on_this_pool(
            project,
            target,
            CompileOptions {
                previous,
                ..options
            },
        ) {
            // Errors are reported as a whole compile finds them (a cycle's
            // location comes from what each model wrote).
            Err(_) if previous.is_some() => compile_on_this_pool(
                project,
                target,
                CompileOptions {
                    previous: None,
                    ..options
                },
            ),
            compiled => compiled,
        }
    })
}

fn compile_on_this_pool(
    project: &Project,
    target: &Target,
    options: CompileOptions<'_>,
) -> Result<CompiledProject> {
    let CompileOptions {
        cache,
        macros,
        strategies,
        previous,
    } = options;
    let dialect_name = target.parser_dialect();
    let identity = SqlMacros::identity(macros);
    SqlMacros::prepare(macros);
    let catalog = ProjectCatalog::new(project, dialect_name, &identity, cache, macros);
    let resolver = Resolver::new(project, strategies);
    let mut nodes: Vec<Arc<Node>> = Vec::with_capacity(project.seeds.len() + project.models.len());
    nodes.extend(project.seeds.iter().map(|seed| {
        Arc::new(Node {
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
    }));
    // Parsing, resolving and building each model's node run on all cores,
    // writing each node straight into its slot: at 100k models, moving the
    // nodes through an intermediate vector cost about 7% of the compile.
    // `written_at`: where each model writes each dependency, by model index,
    // for a cycle's error.
    let written_at: Vec<Dependencies> = Vec::with_capacity(project.models.len());
    let seeds = project.seeds.len();
    // Which nodes are taken from the previous compile (by node id): those
    // keep the edges the graph gave them (upstreams inherited through
    // ephemeral models).
    let reused: Vec<bool> = (0..seeds)
        .map(|_| false)
        .chain((0..project.models.len()).map(|m| previous.is_some_and(|p| p.reusable(m, seeds))))
        .collect();
    let outcomes: Vec<Result<Option<FreshParse>>> = Vec::with_capacity(project.models.len());
    let mut sinks = (nodes, (written_at, outcomes));
    sinks.par_extend(
        (0..project.models.len())
            .into_par_iter()
            .map(|index| match previous {
                Some(previous) if reused[seeds + index] => (
                    previous.dag.nodes[seeds + index].clone(),
                    (Vec::new(), Ok(None)),
                ),
                _ => {
                    let (node, rest) = compile_model(index, &catalog, &resolver, target);
                    (Arc::new(node), rest)
                }
            }),
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
                nodes.push(Arc::new(test));
            }
            Err(e) => errors.push(e),
        }
    }
    Error::collect(errors)?;
    errors = shadowed_sources(&nodes, &resolver);
    errors.extend(published_names(project, &nodes, target));
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
    let dag = match previous {
        Some(previous) if previous.same_shape(&nodes, &reused) => {
            previous.dag.with_shape_of(nodes, &reused)
        }
        _ => {
            for (node, _) in nodes.iter_mut().zip(&reused).filter(|(_, r)| **r) {
                let written = written_dependencies(node);
                Arc::make_mut(node).depends_on = written;
            }
            Dag::of_shared(nodes, edge_at)?
        }
    };
    Ok(CompiledProject {
        dag: std::sync::Arc::new(dag),
        fresh_parses,
    })
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
            let literal = catalog.project.config.dbt.is_some();
            (
                model_node(model, compiled, &deps, target, literal),
                (deps, Ok(kept)),
            )
        }
        Err(e) => (Node::placeholder(model), (Vec::new(), Err(e))),
    }
}

/// A query written on the command line (`orbital show --inline`), compiled
/// against `project` as a model would be: what it reads resolved to the
/// project's nodes and sources, by the ids `compile` gives them.
/// Macros are not expanded in it.
pub fn inline_query(project: &Project, target: &Target, sql: &str) -> Result<CompiledModel> {
    let model = Model {
        name: "inline".into(),
        path: "<inline>".into(),
        sql: sql.to_string(),
        config: crate::project::ModelConfig {
            materialized: "view".into(),
            tags: Vec::new(),
            enabled: true,
            tests: Vec::new(),
            extra: serde_json::Map::new(),
        },
        incremental_text: None,
    };
    let dialect = crate::dialect::dialect_for(target.parser_dialect());
    let parsed = parse_model(&model, dialect, &NoMacros, &crate::catalog::NoCatalog)?;
    let resolver = Resolver::new(project, &crate::incremental::BuiltIn);
    let (compiled, _) = resolve_model(&model, &parsed, &resolver)?;
    Ok(compiled)
}

/// Where model `model` is published on `target`: its `alias`, else its
/// name, in the target's schema, or with a `schema` config in
/// `<target schema>_<schema>` (as dbt names custom schemas). A dbt
/// project's `schema` is already the whole name (its `generate_schema_name`
/// made it): `literal`. A custom schema on a target without schemas is
/// refused by [`published_names`].
fn published(model: &Model, target: &Target, literal: bool) -> RelationName {
    let identifier = model.config.alias().unwrap_or(&model.name).to_string();
    let schema = match (&target.schema, model.config.schema()) {
        (_, Some(full)) if literal => Some(full.to_string()),
        (Some(base), Some(custom)) => Some(format!("{base}_{custom}")),
        (base, _) => base.clone(),
    };
    RelationName { schema, identifier }
}

/// Refuses models whose `schema` or `alias` config cannot be honoured: a
/// custom schema on a target without schemas, and two nodes published as
/// one relation.
fn published_names(project: &Project, nodes: &[Arc<Node>], target: &Target) -> Vec<Error> {
    let custom =
        |m: &&std::sync::Arc<Model>| m.config.schema().is_some() || m.config.alias().is_some();
    if !project.models.iter().any(|m| custom(&m)) {
        return Vec::new();
    }
    let mut errors = Vec::new();
    if target.schema.is_none() {
        for model in project
            .models
            .iter()
            .filter(|m| m.config.schema().is_some())
        {
            errors.push(Error::InvalidModel {
                location: Location::new(&model.path, 1, 1),
                model: model.name.clone(),
                message: format!(
                    "has schema = '{}', but this target's database has no schemas (SQLite): remove it, or run on a target with schemas",
                    model.config.schema().unwrap_or_default()
                ),
            });
        }
    }
    let mut seen: HashMap<(Option<String>, String), &Node> = HashMap::new();
    for node in nodes.iter().filter(|n| !n.is_test()) {
        let key = (
            node.relation.schema.clone(),
            node.relation.identifier.to_lowercase(),
        );
        if let Some(earlier) = seen.insert(key, node) {
            errors.push(Error::InvalidModel {
                location: Location::new(&node.path, 1, 1),
                model: node.name.clone(),
                message: format!(
                    "is published as `{}`, as `{}` ({}) is: give one of them another `alias` or `schema`",
                    node.relation,
                    earlier.name,
                    earlier.path.display()
                ),
            });
        }
    }
    errors
}

/// A compiled model's node, published where [`published`] says.
fn model_node(
    model: &Model,
    compiled: CompiledModel,
    deps: &Dependencies,
    target: &Target,
    literal: bool,
) -> Node {
    Node {
        name: model.name.clone(),
        tags: model.config.tags.clone(),
        kind: NodeKind::Model(std::sync::Arc::new(compiled)),
        path: model.path.clone(),
        relation: published(model, target, literal),
        depends_on: dependency_ids(deps),
    }
}

/// A parse result computed (not taken from the cache) during this compile.
pub(super) type FreshParse = (Hash, ParsedModel);

/// The distinct nodes a model depends on, in id order.
pub(super) fn dependency_ids(deps: &Dependencies) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = deps.iter().map(|(dep, _)| *dep).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Test names share the namespace of models and seeds (and so each other).
/// A model or seed published where a declared source table lives (SQLite
/// has one namespace) would replace the source's data: refuse it.
fn shadowed_sources(nodes: &[Arc<Node>], resolver: &Resolver<'_>) -> Vec<Error> {
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
fn duplicate_test_names(nodes: &[Arc<Node>], resolver: &Resolver<'_>) -> Vec<Error> {
    let mut tests: HashMap<String, &Node> = HashMap::new();
    let mut errors = Vec::new();
    for node in nodes.iter().filter(|node| node.is_test()) {
        let folded = node.name.to_lowercase();
        let earlier = match resolver.nodes.get(&folded) {
            Some(id) => Some(&*nodes[*id]),
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
pub(super) type Dependencies = Vec<(NodeId, (u32, u32))>;
