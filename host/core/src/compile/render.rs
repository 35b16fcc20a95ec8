//! Rendering: canonical SQL with its markers swapped for the relations a
//! build reads, and ephemeral models inlined as CTEs.

use sqlparser::ast::Ident;

use super::types::MARKER;
use crate::dag::{Dag, NodeId, RelationName};

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
    // inlines a direct dependency; in `order`, each stands before its
    // readers. (Walking `order` itself per model made a build quadratic.)
    let mut inlined: Vec<NodeId> = dag.nodes[id]
        .depends_on
        .iter()
        .copied()
        .filter(|&dep| dag.nodes[dep].is_ephemeral())
        .collect();
    inlined.sort_unstable_by_key(|&dep| dag.position(dep));
    let ctes: Vec<String> = inlined
        .into_iter()
        .filter_map(|dep| {
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

pub(super) fn ephemeral_cte(name: &str) -> String {
    Ident::with_quote('"', format!("__orbital_ephemeral__{name}")).to_string()
}

/// The quoted marker canonical SQL holds for the reference `key`.
pub(super) fn marker(key: &str) -> String {
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
