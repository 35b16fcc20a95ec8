//! Macros in model SQL: a function call whose name a macro plugin claims is
//! replaced, on the parsed AST and before references are resolved, by the
//! SQL the plugin returns for it.
//!
//! Three positions, as the `macros` world defines them:
//!
//! - **expression**: `select std.surrogate_key(order_id, customer_id) as id`;
//! - **select items**: a call standing alone as a select item may expand to
//!   several, `select order_id, std.pivot(payment_method, amount, 'coupon', 'gift_card')`;
//! - **table**: `from std.generate_series(10)` becomes a derived table.
//!
//! Expanded SQL may call macros again; expansion stops with an error after
//! [`MAX_EXPANSIONS`] calls in one model (a macro that calls itself). The
//! plugins that expanded something are recorded, so their hashes enter the
//! fingerprints of the models they touched.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart,
    Query, SelectItem, SetExpr, Statement, TableAlias, TableFactor, Value as SqlValue, VisitMut,
    VisitorMut,
};
use sqlparser::dialect::Dialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use crate::catalog::Catalog;
use crate::error::{Error, Location, Result};
use crate::hash::Hash;
use crate::project::Model;

/// How many macro calls one model may expand, counting nested ones.
pub const MAX_EXPANSIONS: usize = 1_000;

/// Where in a statement a macro call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacroPosition {
    Expression,
    SelectItems,
    Table,
}

/// One argument of a call, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct MacroArg {
    /// Set for `name => value`.
    pub name: Option<String>,
    pub sql: String,
    /// The value, when the argument is a literal.
    pub literal: Option<serde_json::Value>,
}

/// One macro call to expand.
#[derive(Debug, Clone, PartialEq)]
pub struct MacroCall {
    /// The name as claimed, lowercase: `surrogate_key`, `std.pivot`.
    pub name: String,
    pub position: MacroPosition,
    pub args: Vec<MacroArg>,
    /// The model being compiled.
    pub model: String,
    /// The columns of each argument that names a model, seed or source
    /// (by the name written, lowercase), from the [`Catalog`]: what the
    /// plugin's catalog import answers.
    pub columns: Vec<(String, std::result::Result<Vec<String>, String>)>,
}

/// What expanding a model's macros used.
#[derive(Debug, Default)]
pub struct Expanded {
    /// The plugins that expanded something.
    pub plugins: Vec<Hash>,
    /// The column lists the calls were given.
    pub catalog: Vec<(String, Vec<String>)>,
}

/// The macros a compile can expand (from macro plugins).
pub trait SqlMacros: Sync {
    /// The positions macro `name` (lowercase) may stand in; `None` when no
    /// plugin claims the name.
    fn positions(&self, name: &str) -> Option<Vec<MacroPosition>>;
    /// SQL for the call's position, or the plugin's error (which names the
    /// macro and the plugin).
    fn expand(&self, call: &MacroCall) -> std::result::Result<String, String>;
    /// The hash of the plugin that provides macro `name`.
    fn plugin(&self, name: &str) -> Option<Hash>;
    /// The text `` of plugin `NAME` `` naming the plugin of macro `name`, for
    /// messages.
    fn plugin_name(&self, _name: &str) -> Option<String> {
        None
    }
    /// Every macro name claimed, with how many leading arguments it requires.
    fn claimed(&self) -> &[(String, u32)] {
        &[]
    }
    /// Changes when any macro plugin does: parse results depend on it.
    fn identity(&self) -> String;
    /// Called once before parsing starts, off the parallel parse: a plugin
    /// host compiles components on the same thread pool the parse uses, so
    /// loading from inside the parse could wait on itself.
    fn prepare(&self) {}
}

/// Everything a compile can ask macro plugins for: SQL macros and generic
/// data tests.
pub trait ProjectMacros: SqlMacros + crate::data_test::TestMacros {}

impl<T: SqlMacros + crate::data_test::TestMacros> ProjectMacros for T {}

/// No macros: every call is an ordinary function call.
pub struct NoMacros;

impl SqlMacros for NoMacros {
    fn positions(&self, _: &str) -> Option<Vec<MacroPosition>> {
        None
    }
    fn expand(&self, _: &MacroCall) -> std::result::Result<String, String> {
        Err("no macros".into())
    }
    fn plugin(&self, _: &str) -> Option<Hash> {
        None
    }
    fn identity(&self) -> String {
        String::new()
    }
}

/// Expands every macro call in `statement`, giving calls the columns of
/// relations passed to them from `catalog`.
pub fn expand(
    statement: &mut Statement,
    model: &Model,
    dialect: &dyn Dialect,
    macros: &dyn SqlMacros,
    catalog: &dyn Catalog,
) -> Result<Expanded> {
    if !may_call_macros(&model.sql, macros) {
        return Ok(Expanded::default());
    }
    let mut expander = Expander {
        model,
        dialect,
        macros,
        catalog,
        given: Vec::new(),
        expansions: 0,
        used: BTreeSet::new(),
        error: None,
        round: 0,
        first_site: None,
    };
    // Select items first: a call standing alone there is one to spread.
    loop {
        expander.round += 1;
        let before = expander.expansions;
        let _ = VisitMut::visit(statement, &mut SelectItemPass(&mut expander));
        if let Some(error) = expander.error.take() {
            return Err(error);
        }
        let _ = VisitMut::visit(statement, &mut expander);
        if let Some(error) = expander.error.take() {
            return Err(error);
        }
        // Expanded SQL may hold select-item calls again.
        if expander.expansions == before {
            break;
        }
    }
    let mut given = expander.given;
    given.sort();
    given.dedup();
    Ok(Expanded {
        plugins: expander.used.into_iter().collect(),
        catalog: given,
    })
}

struct Expander<'a> {
    model: &'a Model,
    dialect: &'a dyn Dialect,
    macros: &'a dyn SqlMacros,
    catalog: &'a dyn Catalog,
    /// The column lists calls were given.
    given: Vec<(String, Vec<String>)>,
    expansions: usize,
    used: BTreeSet<Hash>,
    error: Option<Error>,
    /// Rounds after the first expand calls that macros wrote, whose
    /// positions are in text nobody wrote: errors there point at
    /// `first_site`, the first call of the model's own text.
    round: usize,
    first_site: Option<Location>,
}

impl Expander<'_> {
    /// The claimed name of a call, when a plugin claims it for `position`.
    fn claimed(&self, name: &ObjectName, position: MacroPosition) -> Option<String> {
        let text = call_name(name)?;
        let positions = self.macros.positions(&text)?;
        positions.contains(&position).then_some(text)
    }

    /// A call that is no macro but names a macro namespace (`std.pivott`)
    /// is a misspelled macro, not a database function: an error.
    fn check_namespace(&self, name: &ObjectName) -> std::result::Result<(), Error> {
        let Some(text) = call_name(name) else {
            return Ok(());
        };
        let Some((namespace, _)) = text.rsplit_once('.') else {
            return Ok(());
        };
        if self.macros.positions(&text).is_some() {
            return Ok(());
        }
        let claimed = self.macros.claimed();
        let in_namespace: Vec<&String> = claimed
            .iter()
            .map(|(n, _)| n)
            .filter(|n| n.rsplit_once('.').is_some_and(|(ns, _)| ns == namespace))
            .collect();
        if in_namespace.is_empty() {
            return Ok(());
        }
        let hint = crate::error::nearest(&text, in_namespace.iter().map(|n| n.as_str()), 3, false)
            .map(|n| format!("; did you mean `{n}`?"))
            .unwrap_or_else(|| {
                let all: Vec<&str> = in_namespace.iter().map(|n| n.as_str()).collect();
                format!(" (`{namespace}` has: {})", all.join(", "))
            });
        Err(self.fail(name, &text, format!("unknown macro `{text}`{hint}")))
    }

    /// Refuses a call with fewer arguments than the macro requires.
    fn check_arity(
        &self,
        name: &ObjectName,
        macro_name: &str,
        args: &FunctionArguments,
    ) -> std::result::Result<(), Error> {
        let given = match args {
            FunctionArguments::List(list) => list.args.len(),
            _ => 0,
        };
        let required = self
            .macros
            .claimed()
            .iter()
            .find(|(n, _)| n == macro_name)
            .map_or(0, |(_, r)| *r as usize);
        if given >= required {
            return Ok(());
        }
        let plugin = self.macros.plugin_name(macro_name).unwrap_or_default();
        Err(self.fail(
            name,
            macro_name,
            format!(
                "macro `{macro_name}`{plugin} needs at least {required} argument(s), got {given}"
            ),
        ))
    }

    fn location(&self, name: &ObjectName) -> Location {
        if self.round > 1
            && let Some(site) = &self.first_site
        {
            return site.clone();
        }
        let start = name
            .0
            .first()
            .and_then(ObjectNamePart::as_ident)
            .map(|i| i.span.start);
        let (line, column) = start.map_or((1, 1), |s| crate::tokens::position(&self.model.sql, s));
        Location::new(&self.model.path, line as usize, column as usize)
    }

    fn fail(&self, name: &ObjectName, macro_name: &str, message: String) -> Error {
        Error::Macro {
            location: self.location(name),
            model: self.model.name.clone(),
            name: macro_name.to_string(),
            message,
        }
    }

    /// Calls the plugin; the SQL it returns.
    fn call(
        &mut self,
        name: &ObjectName,
        macro_name: String,
        position: MacroPosition,
        args: &FunctionArguments,
    ) -> std::result::Result<String, Error> {
        self.expansions += 1;
        if self.expansions > MAX_EXPANSIONS {
            return Err(self.fail(
                name,
                &macro_name,
                format!(
                    "macro `{macro_name}`: more than {MAX_EXPANSIONS} macro calls in one model: does a macro call itself?"
                ),
            ));
        }
        if self.first_site.is_none() {
            self.first_site = Some(self.location(name));
        }
        self.check_arity(name, &macro_name, args)?;
        let columns = self.relation_columns(args);
        let call = MacroCall {
            args: arguments(args),
            name: macro_name.clone(),
            position,
            model: self.model.name.clone(),
            columns,
        };
        // The expander's errors name the macro and its plugin already.
        let sql = self
            .macros
            .expand(&call)
            .map_err(|message| self.fail(name, &macro_name, message))?;
        if let Some(plugin) = self.macros.plugin(&macro_name) {
            self.used.insert(plugin);
        }
        Ok(sql)
    }

    /// The catalog's columns of each argument that names a relation.
    fn relation_columns(
        &mut self,
        args: &FunctionArguments,
    ) -> Vec<(String, std::result::Result<Vec<String>, String>)> {
        let FunctionArguments::List(list) = args else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for arg in &list.args {
            let (FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))
            | FunctionArg::Named {
                arg: FunctionArgExpr::Expr(expr),
                ..
            }) = arg
            else {
                continue;
            };
            let name = match expr {
                Expr::Identifier(ident) => ident.value.to_lowercase(),
                Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                    format!("{}.{}", parts[0].value, parts[1].value).to_lowercase()
                }
                _ => continue,
            };
            if let Some(columns) = self.catalog.columns(&name) {
                if let Ok(columns) = &columns {
                    self.given.push((name.clone(), columns.clone()));
                }
                found.push((name, columns));
            }
        }
        found
    }

    fn unparseable(
        &self,
        name: &ObjectName,
        macro_name: &str,
        what: &str,
        sql: &str,
        e: impl std::fmt::Display,
    ) -> Error {
        let plugin = self.macros.plugin_name(macro_name).unwrap_or_default();
        self.fail(
            name,
            macro_name,
            format!("macro `{macro_name}`{plugin} returned SQL that is not {what} ({e}): {sql}"),
        )
    }

    fn expression(&mut self, expr: &mut Expr) -> std::result::Result<(), Error> {
        let Expr::Function(function) = expr else {
            return Ok(());
        };
        let Some(macro_name) = self.claimed(&function.name, MacroPosition::Expression) else {
            return self.check_namespace(&function.name);
        };
        let name = function.name.clone();
        let sql = self.call(
            &name,
            macro_name.clone(),
            MacroPosition::Expression,
            &function.args,
        )?;
        // Macro output is short: sqlparser's own dialect, and its errors.
        let parsed = Parser::new(crate::dialect::plain(self.dialect))
            .try_with_sql(&sql)
            .and_then(|mut parser| {
                let expr = parser.parse_expr()?;
                let next = parser.peek_token();
                match next.token {
                    Token::EOF => Ok(expr),
                    _ => parser.expected("the end of the expression", next),
                }
            })
            .map_err(|e| self.unparseable(&name, &macro_name, "one expression", &sql, e))?;
        *expr = parsed;
        Ok(())
    }

    fn table(&mut self, factor: &mut TableFactor) -> std::result::Result<(), Error> {
        let TableFactor::Table {
            name,
            alias,
            args: Some(args),
            ..
        } = factor
        else {
            return Ok(());
        };
        let Some(macro_name) = self.claimed(name, MacroPosition::Table) else {
            return self.check_namespace(name);
        };
        let name = name.clone();
        let arguments = FunctionArguments::List(sqlparser::ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args.args.clone(),
            clauses: Vec::new(),
        });
        let sql = self.call(&name, macro_name.clone(), MacroPosition::Table, &arguments)?;
        let query = parse_query(self.dialect, &sql)
            .map_err(|e| self.unparseable(&name, &macro_name, "one query", &sql, e))?;
        let alias = alias.take().unwrap_or_else(|| TableAlias {
            explicit: true,
            name: Ident::new(macro_name.rsplit('.').next().unwrap_or(&macro_name)),
            columns: Vec::new(),
            at: None,
        });
        *factor = TableFactor::Derived {
            lateral: false,
            subquery: Box::new(query),
            alias: Some(alias),
            sample: None,
        };
        Ok(())
    }

    /// Spreads select-item calls in one projection.
    fn projection(&mut self, items: &mut Vec<SelectItem>) -> std::result::Result<(), Error> {
        let mut out = Vec::with_capacity(items.len());
        for item in items.drain(..) {
            let SelectItem::UnnamedExpr(Expr::Function(function)) = &item else {
                out.push(item);
                continue;
            };
            let Some(macro_name) = self.claimed(&function.name, MacroPosition::SelectItems) else {
                out.push(item);
                continue;
            };
            let name = function.name.clone();
            let sql = self.call(
                &name,
                macro_name.clone(),
                MacroPosition::SelectItems,
                &function.args,
            )?;
            let query = parse_query(self.dialect, &format!("SELECT {sql}"))
                .map_err(|e| self.unparseable(&name, &macro_name, "select items", &sql, e))?;
            match *query.body {
                SetExpr::Select(select) => out.extend(select.projection),
                _ => {
                    return Err(self.unparseable(
                        &name,
                        &macro_name,
                        "select items",
                        &sql,
                        "a set operation",
                    ));
                }
            }
        }
        *items = out;
        Ok(())
    }
}

/// Whether the model's text mentions a macro (or a macro namespace) at
/// all: most models call none, and a text search is far cheaper than the
/// two walks of the AST that expansion takes.
fn may_call_macros(sql: &str, macros: &dyn SqlMacros) -> bool {
    let claimed = macros.claimed();
    if claimed.is_empty() {
        return false;
    }
    let text = sql.to_lowercase();
    claimed.iter().any(|(name, _)| {
        let last = name.rsplit('.').next().unwrap_or(name);
        let namespace = name.rsplit_once('.').map(|(ns, _)| format!("{ns}."));
        text.contains(last) || namespace.is_some_and(|ns| text.contains(&ns))
    })
}

/// A call's name as macros are claimed: lowercase, dotted.
fn call_name(name: &ObjectName) -> Option<String> {
    let parts: Option<Vec<&Ident>> = name.0.iter().map(ObjectNamePart::as_ident).collect();
    Some(
        parts?
            .iter()
            .map(|p| p.value.to_lowercase())
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// A macro's query. sqlparser's own tokens and dialect, so that positions
/// in it are lines and columns, never read as offsets into the model's
/// text, and errors are worded as sqlparser words them.
fn parse_query(dialect: &dyn Dialect, sql: &str) -> std::result::Result<Query, String> {
    let dialect = crate::dialect::plain(dialect);
    let mut statements = Parser::parse_sql(dialect, sql).map_err(|e| e.to_string())?;
    match (statements.pop(), statements.is_empty()) {
        (Some(Statement::Query(query)), true) => Ok(*query),
        _ => Err("expected one SELECT".into()),
    }
}

impl VisitorMut for Expander<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // After the children: arguments that are macro calls expand first.
        match self.expression(expr) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        match self.table(factor) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

struct SelectItemPass<'e, 'a>(&'e mut Expander<'a>);

impl VisitorMut for SelectItemPass<'_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        match selects(&mut query.body, &mut |items| self.0.projection(items)) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.0.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

/// Applies `f` to the projection of every SELECT of a query body (through
/// UNION and friends; nested queries are visited on their own).
fn selects(
    body: &mut SetExpr,
    f: &mut dyn FnMut(&mut Vec<SelectItem>) -> std::result::Result<(), Error>,
) -> std::result::Result<(), Error> {
    match body {
        SetExpr::Select(select) => f(&mut select.projection),
        SetExpr::SetOperation { left, right, .. } => {
            selects(left, f)?;
            selects(right, f)
        }
        _ => Ok(()),
    }
}

/// The call's arguments as SQL text, with literal values where they are.
fn arguments(args: &FunctionArguments) -> Vec<MacroArg> {
    let FunctionArguments::List(list) = args else {
        return Vec::new();
    };
    list.args
        .iter()
        .map(|arg| {
            let (name, expr) = match arg {
                FunctionArg::Named { name, arg, .. } => (Some(name.value.clone()), arg),
                FunctionArg::ExprNamed { name, arg, .. } => (Some(name.to_string()), arg),
                FunctionArg::Unnamed(arg) => (None, arg),
            };
            let (sql, literal) = match expr {
                FunctionArgExpr::Expr(e) => (e.to_string(), literal(e)),
                other => (other.to_string(), None),
            };
            MacroArg { name, sql, literal }
        })
        .collect()
}

fn literal(expr: &Expr) -> Option<serde_json::Value> {
    let Expr::Value(value) = expr else {
        return None;
    };
    match &value.value {
        SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => {
            Some(serde_json::Value::String(s.clone()))
        }
        SqlValue::Number(n, _) => serde_json::from_str(&n.to_string()).ok(),
        SqlValue::Boolean(b) => Some(serde_json::Value::Bool(*b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::ModelConfig;

    /// `twice(x)` -> `x * 2`; `cols()` -> `1 AS a, 2 AS b`; `one()` ->
    /// a one-row query; `forever()` calls itself.
    struct Fake {
        claimed: Vec<(String, u32)>,
    }

    fn fake() -> Fake {
        Fake {
            claimed: ["twice", "forever", "cols", "one"]
                .iter()
                .map(|n| (n.to_string(), 0))
                .collect(),
        }
    }

    impl SqlMacros for Fake {
        fn positions(&self, name: &str) -> Option<Vec<MacroPosition>> {
            match name {
                "twice" | "forever" => Some(vec![MacroPosition::Expression]),
                "cols" => Some(vec![MacroPosition::SelectItems]),
                "one" => Some(vec![MacroPosition::Table]),
                _ => None,
            }
        }
        fn expand(&self, call: &MacroCall) -> std::result::Result<String, String> {
            Ok(match call.name.as_str() {
                "twice" => format!("{} * 2", call.args[0].sql),
                "cols" => "1 AS a, 2 AS b".into(),
                "one" => "SELECT 1 AS x".into(),
                _ => "forever()".into(),
            })
        }
        fn plugin(&self, _: &str) -> Option<Hash> {
            Some(Hash::of(b"fake"))
        }
        fn identity(&self) -> String {
            "fake".into()
        }
        fn claimed(&self) -> &[(String, u32)] {
            &self.claimed
        }
    }

    fn expanded(sql: &str) -> Result<(String, Vec<Hash>)> {
        let dialect = sqlparser::dialect::GenericDialect {};
        let model = Model {
            name: "m".into(),
            path: "models/m.sql".into(),
            sql: sql.into(),
            config: ModelConfig {
                materialized: "view".into(),
                tags: Vec::new(),
                enabled: true,
                tests: Vec::new(),
                extra: Default::default(),
            },
            incremental_text: None,
        };
        let mut statement = Parser::parse_sql(&dialect, sql).unwrap().remove(0);
        let used = expand(
            &mut statement,
            &model,
            &dialect,
            &fake(),
            &crate::catalog::NoCatalog,
        )?
        .plugins;
        Ok((statement.to_string(), used))
    }

    #[test]
    fn calls_expand_in_each_position_inner_first() {
        let (sql, used) =
            expanded("SELECT twice(twice(n)) AS y, cols(), upper(s) FROM one()").unwrap();
        assert_eq!(
            sql,
            "SELECT n * 2 * 2 AS y, 1 AS a, 2 AS b, upper(s) FROM (SELECT 1 AS x) AS one"
        );
        assert_eq!(used, vec![Hash::of(b"fake")]);
        let (plain, used) = expanded("SELECT upper(s) FROM t").unwrap();
        assert_eq!(plain, "SELECT upper(s) FROM t");
        assert!(used.is_empty());
    }

    #[test]
    fn a_macro_that_calls_itself_stops_with_an_error() {
        let error = expanded("SELECT\n  forever() AS x")
            .unwrap_err()
            .to_string();
        assert!(error.contains("models/m.sql:2:3"), "{error}");
        assert!(error.contains("does a macro call itself"), "{error}");
    }
}
