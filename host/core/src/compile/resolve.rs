//! Resolution: each reference a model wrote, mapped to a model, seed or
//! declared source, or an error at its line and column.

use std::collections::{BTreeMap, HashMap};

use super::Dependencies;
use super::types::*;
use crate::dag::{NodeId, RelationName};
use crate::error::{Error, Location, Result};
use crate::project::{Model, Project};

/// What a name in SQL can resolve to.
#[derive(Clone)]
pub(super) enum Resolved {
    Node(NodeId),
    Source { key: String, relation: RelationName },
}

pub(super) struct Resolver<'a> {
    /// Folded name -> node id; ids number seeds first, then models.
    pub(super) nodes: HashMap<String, NodeId>,
    pub(super) sources: BTreeMap<(String, String), RelationName>,
    known_names: Vec<&'a str>,
    disabled: &'a [String],
    strategies: &'a dyn crate::incremental::Strategies,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(
        project: &'a Project,
        strategies: &'a dyn crate::incremental::Strategies,
    ) -> Self {
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
            strategies,
        }
    }

    pub(super) fn resolve(&self, parts: &[String]) -> Option<Resolved> {
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

    pub(super) fn hint(&self, written: &str) -> String {
        let written = written.to_lowercase();
        if let Some(name) = self.disabled.iter().find(|d| d.to_lowercase() == written) {
            return format!(": model `{name}` is disabled (enabled = false), so nothing builds it");
        }
        crate::error::did_you_mean(&written, self.known_names.iter().copied(), 2, true)
    }
}

pub(super) fn resolve_model(
    model: &Model,
    parsed: &ParsedModel,
    resolver: &Resolver<'_>,
) -> Result<(CompiledModel, Dependencies)> {
    let mut deps = Vec::new();
    let mut sources = Vec::new();
    let mut references = Vec::new();
    let mut errors = Vec::new();
    let stateful = resolver
        .strategies
        .keeps_history(&model.config.materialized);
    let at =
        |(line, column): (u32, u32)| Location::new(&model.path, line as usize, column as usize);
    if let Some(call) = parsed.incremental_call.filter(|_| !stateful) {
        return Err(Error::InvalidModel {
            location: at(call),
            model: model.name.clone(),
            message: format!(
                "calls is_incremental() or if_incremental(), which only a model whose materialization keeps history may (incremental, snapshot, or a plugin's that declares it); it is materialized as '{}'",
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
        stateful,
    };
    Ok((compiled, deps))
}
