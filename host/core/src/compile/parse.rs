//! Parsing one model: one SELECT, macros expanded, references marked, the
//! canonical form written; depends on nothing but the file.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Ident, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableAlias, TableFactor,
    VisitMut, VisitorMut,
};
use sqlparser::dialect::Dialect;

use super::types::*;
use crate::catalog::Catalog;
use crate::error::{Error, Location, Result};
use crate::macros::SqlMacros;
use crate::project::Model;

/// Parses one model: checks it is a single SELECT, marks its table
/// references and formats it canonically.
pub fn parse_model(
    model: &Model,
    dialect: &dyn Dialect,
    macros: &dyn SqlMacros,
    catalog: &dyn Catalog,
) -> Result<ParsedModel> {
    let mut statement = parse_single_select(model, dialect)?;
    let mut expanded = crate::macros::expand(&mut statement, model, dialect, macros, catalog)?;
    unique_columns(&statement, model)?;
    // A dbt model's Jinja wrote its incremental build apart: parse it as
    // its own text.
    let incremental_build = model.incremental_text.as_ref().map(|text| Model {
        sql: text.clone(),
        incremental_text: None,
        ..model.clone()
    });
    let (full, incremental, incremental_call) = match &incremental_build {
        Some(build) => {
            let mut other = parse_single_select(build, dialect)?;
            let more = crate::macros::expand(&mut other, build, dialect, macros, catalog)?;
            expanded.plugins.extend(more.plugins);
            expanded.catalog.extend(more.catalog);
            (statement, Some(other), Some((1, 1)))
        }
        None => match crate::incremental::variants(&statement, model)? {
            Some(v) => (v.full, Some(v.incremental), Some(v.first_call)),
            None => (statement, None, None),
        },
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
            let text = incremental_build.as_ref().map_or(&model.sql, |b| &b.sql);
            let (sql, more) = mark(statement, text).map_err(writes)?;
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
pub(super) fn mark(
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

/// Whether SQL that did not parse holds Jinja tags (`{{ ... }}`, `{% ... %}`).
fn looks_like_jinja(sql: &str) -> bool {
    sql.contains("{{") || sql.contains("{%")
}

pub(super) fn parse_single_select(model: &Model, dialect: &dyn Dialect) -> Result<Statement> {
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
        let mut message = message.trim_start_matches("sql parser error: ").to_string();
        if looks_like_jinja(&model.sql) {
            message.push_str(
                " (this model looks like Jinja: a dbt project runs as it is from a folder with its dbt_project.yml and no orbital.toml)",
            );
        }
        Error::Syntax {
            location: Location::new(&model.path, line, column),
            model: model.name.clone(),
            message,
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

/// Refuses a model whose result names one column twice (`select a, b as a`):
/// PostgreSQL refuses to create such a table, and SQLite silently renames
/// the second (`a:1`). Only names written in the query are known here: a
/// `*` is expanded by the database.
fn unique_columns(statement: &Statement, model: &Model) -> Result<()> {
    let Statement::Query(query) = statement else {
        return Ok(());
    };
    // A set operation's columns are named by its first query.
    let mut body = &*query.body;
    let select = loop {
        match body {
            SetExpr::Select(select) => break select,
            SetExpr::SetOperation { left, .. } => body = left,
            SetExpr::Query(inner) => body = &inner.body,
            _ => return Ok(()),
        }
    };
    let mut seen: Vec<(String, sqlparser::tokenizer::Span)> = Vec::new();
    for ident in select
        .projection
        .iter()
        .filter_map(crate::catalog::written_name)
    {
        let name = fold(ident);
        if let Some((_, first)) = seen.iter().find(|(seen, _)| *seen == name) {
            let (line, column) = crate::tokens::position(&model.sql, ident.span.start);
            let (first_line, first_column) = crate::tokens::position(&model.sql, first.start);
            return Err(Error::InvalidModel {
                location: Location::new(&model.path, line as usize, column as usize),
                model: model.name.clone(),
                message: format!(
                    "returns column `{name}` twice (first at line {first_line}, column {first_column}): give each result column its own name"
                ),
            });
        }
        seen.push((name, ident.span));
    }
    Ok(())
}

/// Where the token after the first top-level `;` of `sql` starts.
pub(super) fn second_statement_start(
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
pub(super) fn split_position(message: &str) -> (&str, usize, usize) {
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

pub(super) fn fold(ident: &Ident) -> String {
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
pub(super) struct Marker<'a> {
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

/// Whether a parsed statement is a plain query (used by tests and macros).
pub fn is_query(statement: &Statement) -> bool {
    matches!(statement, Statement::Query(q) if !matches!(*q.body, SetExpr::Insert(_) | SetExpr::Update(_)))
}
