//! The catalog macros read at compile time: the column names of models and
//! seeds, known before anything is built.
//!
//! - a seed's columns are its CSV header;
//! - a model's are its SELECT's output names, after its own macros expand:
//!   a column's name or alias, and for `*` or `t.*` the columns of the
//!   relations it selects from (models and seeds recursively, CTEs and
//!   subqueries of the same statement);
//! - a declared source's columns are not known without the warehouse: an
//!   error the macro passes on.
//!
//! A macro receives the columns of each relation passed to it as an
//! argument (`std.star(orders, ...)`), looked up here before the plugin
//! runs; a model's parse result records what it was given, so the parse
//! cache reparses it when an upstream's columns change.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableFactor,
};

use crate::compile::{ParseCache, ParsedModel, parse_model};
use crate::dialect::dialect_for;
use crate::hash::Hash;
use crate::macros::SqlMacros;
use crate::project::{Model, Project};

/// Column names by relation name, for macros.
pub trait Catalog: Sync {
    /// The columns of the model, seed or source written `relation`
    /// (lowercase, `source.table` for sources); `None` when it names none.
    fn columns(&self, relation: &str) -> Option<Result<Vec<String>, String>>;
}

/// A catalog that knows no relation.
pub struct NoCatalog;

impl Catalog for NoCatalog {
    fn columns(&self, _: &str) -> Option<Result<Vec<String>, String>> {
        None
    }
}

thread_local! {
    /// The models this thread is parsing, innermost last: a model whose
    /// columns depend on itself is a cycle, not a deadlock.
    static PARSING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// The catalog of a project being compiled; also parses its models, so a
/// model's parse can ask for another's columns.
pub(crate) struct ProjectCatalog<'a> {
    pub(crate) project: &'a Project,
    pub(crate) dialect: &'a str,
    pub(crate) identity: &'a str,
    cache: &'a dyn ParseCache,
    macros: &'a dyn SqlMacros,
    models: HashMap<String, usize>,
    seeds: HashMap<String, usize>,
    sources: HashSet<String>,
    /// Columns worked out so far (successes only: an error may depend on
    /// who asked, as a cycle does).
    known: Mutex<HashMap<String, Vec<String>>>,
}

impl<'a> ProjectCatalog<'a> {
    pub(crate) fn new(
        project: &'a Project,
        dialect: &'a str,
        identity: &'a str,
        cache: &'a dyn ParseCache,
        macros: &'a dyn SqlMacros,
    ) -> Self {
        let lower = |s: &str| s.to_lowercase();
        Self {
            project,
            dialect,
            identity,
            cache,
            macros,
            models: (project.models.iter().enumerate())
                .map(|(i, m)| (lower(&m.name), i))
                .collect(),
            seeds: (project.seeds.iter().enumerate())
                .map(|(i, s)| (lower(&s.name), i))
                .collect(),
            sources: (project.config.sources.iter())
                .flat_map(|(source, config)| {
                    config
                        .tables
                        .iter()
                        .map(move |t| format!("{}.{}", lower(source), lower(t)))
                })
                .collect(),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Model `index` of the project.
    pub(crate) fn model(&self, index: usize) -> &'a Model {
        &self.project.models[index]
    }

    /// Model `index` parsed (or taken from the cache when every column
    /// list it was given is still what the catalog says): its parse key,
    /// the result, and whether it was parsed now.
    pub(crate) fn parse(&self, index: usize) -> crate::Result<(Hash, ParsedModel, bool)> {
        let model = self.model(index);
        let key = model.parse_key(self.dialect, self.identity);
        if let Some(parsed) = self.cached(&key) {
            return Ok((key, parsed, false));
        }
        PARSING.with(|p| p.borrow_mut().push(index));
        let parsed = parse_model(model, dialect_for(self.dialect), self.macros, self);
        PARSING.with(|p| p.borrow_mut().pop());
        parsed.map(|parsed| (key, parsed, true))
    }

    /// The cached parse result under `key`, if the column lists its macros
    /// were given are still what the catalog says.
    pub(crate) fn cached(&self, key: &Hash) -> Option<ParsedModel> {
        let parsed = self.cache.get(key)?;
        let valid = parsed
            .catalog
            .iter()
            .all(|(name, columns)| matches!(self.columns(name), Some(Ok(now)) if &now == columns));
        valid.then_some(parsed)
    }

    fn model_columns(&self, name: &str, index: usize) -> Result<Vec<String>, String> {
        if PARSING.with(|p| p.borrow().contains(&index)) {
            return Err(format!(
                "the columns of `{name}` depend on the model asking for them: a cycle"
            ));
        }
        let (_, parsed, _) = self
            .parse(index)
            .map_err(|e| format!("`{name}` does not compile: {e}"))?;
        let dialect = dialect_for(self.dialect);
        let statement = crate::tokens::parse_sql(dialect, &parsed.sql)
            .ok()
            .and_then(|mut s| s.pop());
        match statement {
            Some(Statement::Query(query)) => query_columns(&query, &HashMap::new(), self),
            _ => Err(format!("cannot read the canonical SQL of `{name}`")),
        }
    }

    fn seed_columns(&self, index: usize) -> Result<Vec<String>, String> {
        seed_header(self.project, &self.project.seeds[index])
    }
}

/// The column names of `seed`: its CSV file's header.
pub fn seed_header(project: &Project, seed: &crate::Seed) -> Result<Vec<String>, String> {
    let path = project.root.join(&seed.path);
    let mut reader = csv::Reader::from_path(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let headers = reader
        .headers()
        .map_err(|e| format!("cannot read the header of {}: {e}", path.display()))?;
    Ok(headers.iter().map(|h| h.trim().to_string()).collect())
}

impl Catalog for ProjectCatalog<'_> {
    fn columns(&self, relation: &str) -> Option<Result<Vec<String>, String>> {
        let name = relation.to_lowercase();
        if let Some(known) = self.known.lock().ok()?.get(&name) {
            return Some(Ok(known.clone()));
        }
        let columns = if let Some(&index) = self.models.get(&name) {
            self.model_columns(&name, index)
        } else if let Some(&index) = self.seeds.get(&name) {
            self.seed_columns(index)
        } else if self.sources.contains(&name) {
            Err(format!(
                "the columns of source `{name}` are not known at compile time (Orbital does not read the warehouse while compiling)"
            ))
        } else {
            return None;
        };
        if let (Ok(columns), Ok(mut known)) = (&columns, self.known.lock()) {
            known.insert(name, columns.clone());
        }
        Some(columns)
    }
}

/// The column names of every seed and model of `project` that can be
/// known without the warehouse, by name (lowercase); what cannot (a model
/// reading a source with `*`) is left out. Parses go through `cache`.
pub fn project_columns(
    project: &Project,
    target: &crate::Target,
    cache: &dyn ParseCache,
    macros: &dyn SqlMacros,
) -> HashMap<String, Vec<String>> {
    let identity = SqlMacros::identity(macros);
    SqlMacros::prepare(macros);
    let catalog = ProjectCatalog::new(project, target.parser_dialect(), &identity, cache, macros);
    let names: Vec<&String> = (project.seeds.iter().map(|s| &s.name))
        .chain(project.models.iter().map(|m| &m.name))
        .collect();
    // Parsing wants the compile pool's deep stacks; models in parallel.
    crate::threads::install(|| {
        use rayon::prelude::*;
        names
            .par_iter()
            .filter_map(|name| match catalog.columns(name)? {
                Ok(columns) => Some((name.to_lowercase(), columns)),
                Err(_) => None,
            })
            .collect()
    })
}

/// The output column names of `query`; `ctes` are the CTEs in scope.
fn query_columns(
    query: &Query,
    ctes: &HashMap<String, &Query>,
    catalog: &dyn Catalog,
) -> Result<Vec<String>, String> {
    let mut scope = ctes.clone();
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            scope.insert(cte.alias.name.value.to_lowercase(), &cte.query);
        }
    }
    set_columns(&query.body, &scope, catalog)
}

fn set_columns(
    body: &SetExpr,
    ctes: &HashMap<String, &Query>,
    catalog: &dyn Catalog,
) -> Result<Vec<String>, String> {
    match body {
        SetExpr::Select(select) => select_columns(select, ctes, catalog),
        SetExpr::Query(query) => query_columns(query, ctes, catalog),
        // A set operation's columns are named by its first branch.
        SetExpr::SetOperation { left, .. } => set_columns(left, ctes, catalog),
        SetExpr::Values(values) => Ok((1..=values.rows.first().map_or(0, |row| row.content.len()))
            .map(|i| format!("column{i}"))
            .collect()),
        other => Err(format!("cannot tell the columns of `{other}`")),
    }
}

/// The relations a SELECT reads, in order: (the name that qualifies them, the factor).
pub(crate) fn from_factors(select: &Select) -> Vec<(String, &TableFactor)> {
    select
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
        .map(|factor| (qualifier(factor), factor))
        .collect()
}

fn qualifier(factor: &TableFactor) -> String {
    match factor {
        TableFactor::Table { alias: Some(a), .. } | TableFactor::Derived { alias: Some(a), .. } => {
            a.name.value.to_lowercase()
        }
        TableFactor::Table { name, .. } => last_part(name).unwrap_or_default(),
        _ => String::new(),
    }
}

/// The last part of a dotted name, lowercase: how a relation is qualified.
pub(crate) fn last_part(name: &ObjectName) -> Option<String> {
    name.0
        .last()
        .and_then(ObjectNamePart::as_ident)
        .map(|i| i.value.to_lowercase())
}

fn select_columns(
    select: &Select,
    ctes: &HashMap<String, &Query>,
    catalog: &dyn Catalog,
) -> Result<Vec<String>, String> {
    let factors = from_factors(select);
    let mut columns = Vec::new();
    for item in &select.projection {
        match item {
            SelectItem::ExprWithAliases { aliases, .. } => {
                columns.extend(aliases.iter().map(|a| a.value.clone()));
            }
            SelectItem::ExprWithAlias { .. } | SelectItem::UnnamedExpr(_) => {
                match written_name(item) {
                    Some(ident) => columns.push(ident.value.clone()),
                    None => {
                        return Err(format!("cannot name the column `{item}`: give it an alias"));
                    }
                }
            }
            SelectItem::Wildcard(_) => {
                for (_, factor) in &factors {
                    columns.extend(factor_columns(factor, ctes, catalog)?);
                }
            }
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) => {
                let wanted = last_part(name).unwrap_or_default();
                let factor = factors
                    .iter()
                    .find(|(q, _)| *q == wanted)
                    .map(|(_, f)| *f)
                    .ok_or_else(|| format!("`{name}.*` names no relation of the query"))?;
                columns.extend(factor_columns(factor, ctes, catalog)?);
            }
            SelectItem::QualifiedWildcard(kind, _) => {
                return Err(format!("cannot tell the columns of `{kind}.*`"));
            }
        }
    }
    Ok(columns)
}

/// The name a projection item gives its column as written: its alias, or
/// the column it copies (`a`, `t.a`). `None` for a wildcard, several
/// aliases, or an expression without an alias (the database names those).
pub(crate) fn written_name(item: &SelectItem) -> Option<&Ident> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(alias),
        SelectItem::UnnamedExpr(Expr::Identifier(ident)) => Some(ident),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last(),
        _ => None,
    }
}

fn factor_columns(
    factor: &TableFactor,
    ctes: &HashMap<String, &Query>,
    catalog: &dyn Catalog,
) -> Result<Vec<String>, String> {
    match factor {
        TableFactor::Derived { subquery, .. } => query_columns(subquery, ctes, catalog),
        TableFactor::Table {
            name, args: None, ..
        } => {
            let written = name.to_string();
            if let Some(key) = crate::compile::reference_key(name) {
                return catalog
                    .columns(&key)
                    .unwrap_or_else(|| Err(format!("`{key}` is not a model or seed")));
            }
            match last_part(name).and_then(|s| ctes.get(&s).copied()) {
                Some(cte) => query_columns(cte, ctes, catalog),
                None => Err(format!("cannot tell the columns of `{written}`")),
            }
        }
        other => Err(format!("cannot tell the columns of `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Catalog for Fixed {
        fn columns(&self, relation: &str) -> Option<Result<Vec<String>, String>> {
            (relation == "orders").then(|| Ok(vec!["id".into(), "status".into()]))
        }
    }

    fn columns(sql: &str) -> Result<Vec<String>, String> {
        let dialect = sqlparser::dialect::GenericDialect {};
        let Statement::Query(query) = crate::tokens::parse_sql(&dialect, sql).unwrap().remove(0)
        else {
            panic!("not a query")
        };
        query_columns(&query, &HashMap::new(), &Fixed)
    }

    #[test]
    fn names_aliases_stars_ctes_and_subqueries() {
        assert_eq!(
            columns("select a, t.b, c + 1 as d from x as t").unwrap(),
            ["a", "b", "d"]
        );
        assert_eq!(
            columns("with s as (select 1 as one) select s.*, n from s, (select 2 as n) as q")
                .unwrap(),
            ["one", "n"]
        );
        assert_eq!(
            columns("select o.*, 1 as extra from \"__orbital_ref__orders\" as o").unwrap(),
            ["id", "status", "extra"]
        );
        assert!(
            columns("select a + 1 from x")
                .unwrap_err()
                .contains("give it an alias")
        );
    }
}
