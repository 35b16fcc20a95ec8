//! Column-level lineage, from the AST: for each output column of a model,
//! the upstream columns it derives from, and how.
//!
//! Each model's canonical SQL (macros expanded, references as markers) is
//! parsed again and walked: CTEs, subqueries, joins, aggregates, `case`,
//! window functions, `select *` (expanded from what is known of the
//! upstream's columns), and set operations by position. An ephemeral model
//! is inlined: its columns' lineage stands in for it. What the walk cannot
//! resolve (a column of a relation whose columns nobody knows without the
//! warehouse, a name two relations could hold) is reported as unknown with
//! why: nothing is guessed.
//!
//! Edges go to the columns of a model's direct upstream nodes (seeds,
//! models, sources); following them model by model gives the whole tree.

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::rc::Rc;

use rayon::prelude::*;
use serde::Serialize;
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, JoinConstraint,
    JoinOperator, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement,
    TableFactor, WindowType,
};

use crate::catalog::{from_factors, last_part, seed_header};
use crate::compile::{CompiledModel, Referent, reference_key};
use crate::dag::{Dag, NodeId, NodeKind};
use crate::project::Project;

/// How a column depends on an upstream column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Its value, unchanged.
    Copy,
    /// Its value, computed on: an expression, an aggregate, a window.
    Transformation,
    /// Decides which rows count, or which branch of a `case` is taken:
    /// `where`, `having`, `qualify`, a `when` condition, `filter (...)`.
    Filter,
    /// Matches the rows of a join.
    Join,
    /// Groups or partitions the rows.
    GroupBy,
}

impl Kind {
    /// How an outer column in position `self` depends on what an inner
    /// column depends on in the way `inner`.
    fn then(self, inner: Kind) -> Kind {
        match (self, inner.carries_value()) {
            // What decided the inner rows still decides them.
            (_, false) => inner,
            (Kind::Copy, true) => inner,
            (outer, true) => outer,
        }
    }

    /// The kind of what sits inside an expression in position `self`.
    fn inside(self) -> Kind {
        match self {
            Kind::Copy => Kind::Transformation,
            other => other,
        }
    }

    /// The kind of a condition inside an expression in position `self`.
    fn condition(self) -> Kind {
        match self {
            Kind::Copy | Kind::Transformation => Kind::Filter,
            other => other,
        }
    }

    /// Whether the column carries the upstream's value (a copy or a
    /// transformation), not only depends on it.
    pub fn carries_value(self) -> bool {
        matches!(self, Kind::Copy | Kind::Transformation)
    }

    /// How `orbital lineage` prints it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Copy => "copy",
            Kind::Transformation => "transformation",
            Kind::Filter => "filter",
            Kind::Join => "join",
            Kind::GroupBy => "group by",
        }
    }
}

/// One upstream column a column depends on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Edge {
    /// The upstream node (model or seed), or the declared source
    /// (`source.table`).
    pub node: String,
    pub column: String,
    pub kind: Kind,
}

/// One output column of a model and what it derives from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnLineage {
    pub column: String,
    pub edges: Vec<Edge>,
    /// What could not be resolved, with why.
    pub unknown: Vec<String>,
}

/// A model's columns and their lineage.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ModelLineage {
    pub columns: Vec<ColumnLineage>,
    /// Why not every output column could be listed (a `select *` over a
    /// relation whose columns are not known without the warehouse).
    pub incomplete: Option<String>,
}

impl ModelLineage {
    pub fn column(&self, name: &str) -> Option<&ColumnLineage> {
        self.columns
            .iter()
            .find(|c| c.column.eq_ignore_ascii_case(name))
    }

    fn names(&self) -> Option<Vec<String>> {
        match self.incomplete {
            None => Some(self.columns.iter().map(|c| c.column.clone()).collect()),
            Some(_) => None,
        }
    }
}

/// The lineage of each model among `wanted` and everything upstream of
/// them, by node id. Models are walked a level at a time, each level in
/// parallel: a model's level is one more than its deepest upstream's, so
/// an upstream model's columns are known before its readers need them.
pub fn lineage(
    project: &Project,
    dag: &Dag,
    dialect: &str,
    wanted: &[NodeId],
) -> HashMap<NodeId, ModelLineage> {
    let mut needed = vec![false; dag.nodes.len()];
    for id in dag
        .ancestors_of_all(wanted)
        .into_iter()
        .chain(wanted.iter().copied())
    {
        needed[id] = true;
    }
    let seeds: HashMap<NodeId, Option<Vec<String>>> = dag
        .order
        .par_iter()
        .filter(|&&id| needed[id] && matches!(dag.nodes[id].kind, NodeKind::Seed(_)))
        .map(|&id| {
            let seed = project.seeds.iter().find(|s| s.name == dag.nodes[id].name);
            (id, seed.and_then(|seed| seed_header(project, seed).ok()))
        })
        .collect();
    let mut done: HashMap<NodeId, ModelLineage> = HashMap::new();
    for level in model_levels(dag, &needed) {
        let found: Vec<(NodeId, ModelLineage)> = level
            .par_iter()
            .filter_map(|&id| {
                let model = dag.nodes[id].as_model()?;
                let walk = Walk {
                    dag,
                    model,
                    seeds: &seeds,
                    done: &done,
                };
                // A parser dialect is not `Sync`; each thread looks its own up.
                Some((id, walk.model(crate::dialect::dialect_for(dialect))))
            })
            .collect();
        done.extend(found);
    }
    done
}

/// The `needed` models grouped by level: a model with no upstream model is
/// level 0, any other one more than its deepest upstream model.
fn model_levels(dag: &Dag, needed: &[bool]) -> Vec<Vec<NodeId>> {
    let mut level_of: Vec<Option<usize>> = vec![None; dag.nodes.len()];
    let mut levels: Vec<Vec<NodeId>> = Vec::new();
    for &id in dag.order.iter().filter(|&&id| needed[id]) {
        if dag.nodes[id].as_model().is_none() {
            continue;
        }
        let level = dag.nodes[id]
            .depends_on
            .iter()
            .filter_map(|&up| level_of[up].map(|l| l + 1))
            .max()
            .unwrap_or(0);
        level_of[id] = Some(level);
        if levels.len() <= level {
            levels.resize_with(level + 1, Vec::new);
        }
        levels[level].push(id);
    }
    levels
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Origin {
    Column { node: String, column: String },
    Unknown(String),
}

type Deps = Vec<(Origin, Kind)>;

/// A relation inside a query (a CTE, a subquery, a query's result): its
/// columns and what each depends on.
#[derive(Debug, Default)]
struct Relation {
    columns: Vec<(String, Deps)>,
    incomplete: Option<String>,
}

impl Relation {
    fn unknown(why: String) -> Self {
        Relation {
            columns: Vec::new(),
            incomplete: Some(why),
        }
    }

    fn column(&self, name: &str) -> Option<&(String, Deps)> {
        self.columns
            .iter()
            .find(|(column, _)| column.eq_ignore_ascii_case(name))
    }
}

/// What a `from` item is.
enum Factor {
    /// A CTE, a subquery or an inlined ephemeral model.
    Known(Rc<Relation>),
    /// An upstream node or source: its columns, where known.
    Node {
        name: String,
        columns: Option<Vec<String>>,
    },
    Unknown(String),
}

impl Factor {
    /// Whether it has column `name`; `None` when its columns are unknown.
    fn has(&self, name: &str) -> Option<bool> {
        match self {
            Factor::Known(relation) => match relation.column(name) {
                Some(_) => Some(true),
                None if relation.incomplete.is_some() => None,
                None => Some(false),
            },
            Factor::Node { columns, .. } => columns
                .as_ref()
                .map(|cs| cs.iter().any(|c| c.eq_ignore_ascii_case(name))),
            Factor::Unknown(_) => None,
        }
    }

    /// Every column, each a copy of itself; `Err` with why when unknown.
    fn all_columns(&self) -> Result<Vec<(String, Deps)>, String> {
        match self {
            Factor::Known(relation) => match &relation.incomplete {
                Some(why) => Err(why.clone()),
                None => Ok(relation.columns.clone()),
            },
            Factor::Node {
                name,
                columns: Some(columns),
            } => Ok(columns
                .iter()
                .map(|column| {
                    let origin = Origin::Column {
                        node: name.clone(),
                        column: column.clone(),
                    };
                    (column.clone(), vec![(origin, Kind::Copy)])
                })
                .collect()),
            Factor::Node {
                name,
                columns: None,
            } => Err(format!(
                "the columns of `{name}` are not known without the warehouse"
            )),
            Factor::Unknown(why) => Err(why.clone()),
        }
    }

    /// Column `name` of it, `written` as in the query.
    fn column(&self, name: &str, written: &str) -> Deps {
        match self {
            Factor::Known(relation) => match relation.column(name) {
                Some((_, deps)) => deps.clone(),
                None => vec![(
                    Origin::Unknown(format!(
                        "`{written}`: {}",
                        relation
                            .incomplete
                            .clone()
                            .unwrap_or_else(|| "no such column".into())
                    )),
                    Kind::Copy,
                )],
            },
            Factor::Node {
                name: node,
                columns,
            } => {
                let known = columns
                    .as_ref()
                    .map(|cs| cs.iter().find(|c| c.eq_ignore_ascii_case(name)));
                match known {
                    Some(None) => vec![(
                        Origin::Unknown(format!("`{written}`: `{node}` has no such column")),
                        Kind::Copy,
                    )],
                    Some(Some(column)) => vec![(
                        Origin::Column {
                            node: node.clone(),
                            column: column.clone(),
                        },
                        Kind::Copy,
                    )],
                    None => vec![(
                        Origin::Column {
                            node: node.clone(),
                            column: name.to_string(),
                        },
                        Kind::Copy,
                    )],
                }
            }
            Factor::Unknown(why) => {
                vec![(Origin::Unknown(format!("`{written}`: {why}")), Kind::Copy)]
            }
        }
    }
}

type Ctes = HashMap<String, Rc<Relation>>;
type Factors = Vec<(String, Factor)>;

/// Walks one model's SQL.
struct Walk<'a> {
    dag: &'a Dag,
    model: &'a CompiledModel,
    seeds: &'a HashMap<NodeId, Option<Vec<String>>>,
    done: &'a HashMap<NodeId, ModelLineage>,
}

impl Walk<'_> {
    fn model(&self, dialect: &dyn sqlparser::dialect::Dialect) -> ModelLineage {
        let query = match crate::tokens::parse_sql(dialect, &self.model.sql) {
            Ok(mut statements) if statements.len() == 1 => match statements.remove(0) {
                Statement::Query(query) => query,
                other => return unknown_model(format!("not a query: {other}")),
            },
            Ok(_) => return unknown_model("not one query".into()),
            Err(e) => return unknown_model(format!("cannot parse its SQL: {e}")),
        };
        let relation = self.query(&query, &Ctes::new());
        ModelLineage {
            columns: relation
                .columns
                .into_iter()
                .map(|(column, deps)| column_lineage(column, deps))
                .collect(),
            incomplete: relation.incomplete,
        }
    }

    fn query(&self, query: &Query, ctes: &Ctes) -> Relation {
        let mut scope = ctes.clone();
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let relation = self.query(&cte.query, &scope);
                scope.insert(cte.alias.name.value.to_lowercase(), Rc::new(relation));
            }
        }
        self.set(&query.body, &scope)
    }

    fn set(&self, body: &SetExpr, ctes: &Ctes) -> Relation {
        match body {
            SetExpr::Select(select) => self.select(select, ctes),
            SetExpr::Query(query) => self.query(query, ctes),
            // By position; named by the first branch.
            SetExpr::SetOperation { left, right, .. } => {
                let (mut left, right) = (self.set(left, ctes), self.set(right, ctes));
                if left.columns.len() != right.columns.len() {
                    left.incomplete.get_or_insert_with(|| {
                        "the branches of a set operation have different columns".into()
                    });
                }
                for ((_, deps), (_, more)) in left.columns.iter_mut().zip(right.columns) {
                    deps.extend(more);
                }
                left.incomplete = left.incomplete.or(right.incomplete);
                left
            }
            SetExpr::Values(values) => Relation {
                columns: (1..=values.rows.first().map_or(0, |row| row.content.len()))
                    .map(|i| (format!("column{i}"), Vec::new()))
                    .collect(),
                incomplete: None,
            },
            other => Relation::unknown(format!("cannot tell the columns of `{other}`")),
        }
    }

    fn factor(&self, factor: &TableFactor, ctes: &Ctes) -> Factor {
        match factor {
            TableFactor::Table {
                name, args: None, ..
            } => {
                if let Some(key) = reference_key(name) {
                    return self.reference(&key);
                }
                match last_part(name).and_then(|n| ctes.get(&n)) {
                    Some(cte) => Factor::Known(cte.clone()),
                    None => Factor::Unknown(format!(
                        "`{name}` is not a model, seed, source or CTE of the query"
                    )),
                }
            }
            TableFactor::Derived { subquery, .. } => {
                Factor::Known(Rc::new(self.query(subquery, ctes)))
            }
            other => Factor::Unknown(format!("cannot tell the columns of `{other}`")),
        }
    }

    /// What the reference marker `key` stands for.
    fn reference(&self, key: &str) -> Factor {
        let referent = self
            .model
            .references
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r);
        match referent {
            Some(Referent::Node(id)) => {
                let node = &self.dag.nodes[*id];
                let lineage = self.done.get(id);
                match (node.is_ephemeral(), lineage) {
                    // Inlined: its columns' lineage stands in for it.
                    (true, Some(lineage)) => Factor::Known(Rc::new(inlined(lineage))),
                    _ => Factor::Node {
                        name: node.name.clone(),
                        columns: match lineage {
                            Some(lineage) => lineage.names(),
                            None => self.seeds.get(id).cloned().flatten(),
                        },
                    },
                }
            }
            Some(Referent::Source(relation)) => Factor::Node {
                name: self
                    .model
                    .sources
                    .iter()
                    .find(|s| s.eq_ignore_ascii_case(key))
                    .cloned()
                    .unwrap_or_else(|| relation.to_string()),
                columns: None,
            },
            Some(Referent::This) => Factor::Unknown("`this`, the model's own table".into()),
            None => Factor::Unknown(format!("`{key}` is not resolved")),
        }
    }

    fn select(&self, select: &Select, ctes: &Ctes) -> Relation {
        let factors: Factors = from_factors(select)
            .into_iter()
            .map(|(qualifier, factor)| (qualifier, self.factor(factor, ctes)))
            .collect();
        // What decides the rows decides every column.
        let mut shared: Deps = Vec::new();
        for join in select.from.iter().flat_map(|t| &t.joins) {
            match constraint(&join.join_operator) {
                Some(JoinConstraint::On(on)) => shared.extend(self.expr(on, &factors, Kind::Join)),
                Some(JoinConstraint::Using(names)) => {
                    for name in names.iter().filter_map(last_part) {
                        for (_, factor) in
                            factors.iter().filter(|(_, f)| f.has(&name) == Some(true))
                        {
                            let deps = factor.column(&name, &name);
                            shared.extend(deps.into_iter().map(|(o, k)| (o, Kind::Join.then(k))));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(filter) = &select.selection {
            shared.extend(self.expr(filter, &factors, Kind::Filter));
        }
        if let GroupByExpr::Expressions(exprs, _) = &select.group_by {
            for expr in exprs
                .iter()
                .filter(|e| !is_position_or_alias(e, select, &factors))
            {
                shared.extend(self.expr(expr, &factors, Kind::GroupBy));
            }
        }
        for condition in select.having.iter().chain(&select.qualify) {
            shared.extend(self.expr(condition, &factors, Kind::Filter));
        }
        let mut relation = Relation::default();
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(expr) => {
                    relation
                        .columns
                        .push((output_name(expr), self.expr(expr, &factors, Kind::Copy)));
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    relation
                        .columns
                        .push((alias.value.clone(), self.expr(expr, &factors, Kind::Copy)));
                }
                SelectItem::ExprWithAliases { expr, aliases } => {
                    let deps = self.expr(expr, &factors, Kind::Copy);
                    for alias in aliases {
                        relation.columns.push((alias.value.clone(), deps.clone()));
                    }
                }
                SelectItem::Wildcard(_) => {
                    for (_, factor) in &factors {
                        expand(&mut relation, factor);
                    }
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    _,
                ) => {
                    let wanted = last_part(name).unwrap_or_default();
                    match factors.iter().find(|(q, _)| *q == wanted) {
                        Some((_, factor)) => expand(&mut relation, factor),
                        None => {
                            relation.incomplete =
                                Some(format!("`{name}.*` names no relation of the query"));
                        }
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    relation.incomplete = Some(format!("cannot tell the columns of `{kind}.*`"));
                }
            }
        }
        for (_, deps) in &mut relation.columns {
            deps.extend(shared.iter().cloned());
        }
        relation
    }

    /// What `expr`, in position `at`, depends on.
    fn expr(&self, expr: &Expr, factors: &Factors, at: Kind) -> Deps {
        match expr {
            Expr::Identifier(ident) => self.column(std::slice::from_ref(ident), factors, at),
            Expr::CompoundIdentifier(parts) => self.column(parts, factors, at),
            Expr::Nested(inner) => self.expr(inner, factors, at),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut deps = Deps::new();
                for condition in operand
                    .iter()
                    .map(|o| &**o)
                    .chain(conditions.iter().map(|c| &c.condition))
                {
                    deps.extend(self.expr(condition, factors, at.condition()));
                }
                for result in conditions
                    .iter()
                    .map(|c| &c.result)
                    .chain(else_result.iter().map(|e| &**e))
                {
                    deps.extend(self.expr(result, factors, at.inside()));
                }
                deps
            }
            Expr::Function(function) => {
                let mut deps = Deps::new();
                for arguments in [&function.parameters, &function.args] {
                    match arguments {
                        FunctionArguments::List(list) => {
                            for arg in &list.args {
                                let arg = match arg {
                                    FunctionArg::Named { arg, .. }
                                    | FunctionArg::ExprNamed { arg, .. }
                                    | FunctionArg::Unnamed(arg) => arg,
                                };
                                if let FunctionArgExpr::Expr(arg) = arg {
                                    deps.extend(self.expr(arg, factors, at.inside()));
                                }
                            }
                        }
                        FunctionArguments::Subquery(query) => {
                            deps.extend(self.subquery(query, factors, at.inside()));
                        }
                        FunctionArguments::None => {}
                    }
                }
                if let Some(filter) = &function.filter {
                    deps.extend(self.expr(filter, factors, at.condition()));
                }
                for order in &function.within_group {
                    deps.extend(self.expr(&order.expr, factors, at.inside()));
                }
                if let Some(WindowType::WindowSpec(window)) = &function.over {
                    let partition = match at {
                        Kind::Copy | Kind::Transformation => Kind::GroupBy,
                        other => other,
                    };
                    for expr in &window.partition_by {
                        deps.extend(self.expr(expr, factors, partition));
                    }
                    for order in &window.order_by {
                        deps.extend(self.expr(&order.expr, factors, at.inside()));
                    }
                }
                deps
            }
            Expr::Subquery(query) => self.subquery(query, factors, at.inside()),
            Expr::Exists { subquery, .. } => self.subquery(subquery, factors, at.condition()),
            Expr::InSubquery { expr, subquery, .. } => {
                let mut deps = self.expr(expr, factors, at.inside());
                deps.extend(self.subquery(subquery, factors, at.inside()));
                deps
            }
            // Anything else computes on the columns it names.
            other => {
                let mut deps = Deps::new();
                let _ = sqlparser::ast::visit_expressions(other, |inner| {
                    match inner {
                        Expr::Identifier(ident) => {
                            deps.extend(self.column(
                                std::slice::from_ref(ident),
                                factors,
                                at.inside(),
                            ));
                        }
                        Expr::CompoundIdentifier(parts) => {
                            deps.extend(self.column(parts, factors, at.inside()));
                        }
                        _ => {}
                    }
                    ControlFlow::<()>::Continue(())
                });
                deps
            }
        }
    }

    /// What a subquery in an expression depends on: every column it
    /// returns. Its own `from` is its scope; a column of the outer query
    /// it names (a correlated subquery) is unknown.
    fn subquery(&self, query: &Query, _outer: &Factors, at: Kind) -> Deps {
        let relation = self.query(query, &Ctes::new());
        let mut deps: Deps = relation
            .columns
            .into_iter()
            .flat_map(|(_, deps)| deps)
            .map(|(origin, kind)| (origin, at.then(kind)))
            .collect();
        if let Some(why) = relation.incomplete {
            deps.push((Origin::Unknown(format!("a subquery: {why}")), at));
        }
        deps
    }

    /// The column `parts` names, in position `at`.
    fn column(&self, parts: &[Ident], factors: &Factors, at: Kind) -> Deps {
        let Some(last) = parts.last() else {
            return Vec::new();
        };
        let written = parts
            .iter()
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>()
            .join(".");
        let name = last.value.to_lowercase();
        let factor = match parts {
            [.., qualifier, _] => {
                let qualifier = qualifier.value.to_lowercase();
                factors
                    .iter()
                    .find(|(q, _)| *q == qualifier)
                    .map(|(_, f)| f)
            }
            _ => match factors.as_slice() {
                [(_, only)] => Some(only),
                _ => {
                    let holding: Vec<&Factor> = factors
                        .iter()
                        .filter(|(_, f)| f.has(&name) == Some(true))
                        .map(|(_, f)| f)
                        .collect();
                    let unsure = factors.iter().any(|(_, f)| f.has(&name).is_none());
                    match (holding.as_slice(), unsure) {
                        ([one], false) => Some(*one),
                        _ => None,
                    }
                }
            },
        };
        match factor {
            Some(factor) => factor
                .column(&name, &written)
                .into_iter()
                .map(|(origin, kind)| (origin, at.then(kind)))
                .collect(),
            None => vec![(
                Origin::Unknown(format!(
                    "`{written}`: cannot tell which relation of the query it is from"
                )),
                at,
            )],
        }
    }
}

/// The constraint of a join, where it has one.
fn constraint(operator: &JoinOperator) -> Option<&JoinConstraint> {
    use JoinOperator as J;
    match operator {
        J::Join(c)
        | J::Inner(c)
        | J::Left(c)
        | J::LeftOuter(c)
        | J::Right(c)
        | J::RightOuter(c)
        | J::FullOuter(c)
        | J::CrossJoin(c)
        | J::Semi(c)
        | J::LeftSemi(c)
        | J::RightSemi(c)
        | J::Anti(c)
        | J::LeftAnti(c)
        | J::RightAnti(c)
        | J::StraightJoin(c) => Some(c),
        J::AsOf { constraint, .. } => Some(constraint),
        _ => None,
    }
}

/// Whether a `group by` item is a position (`group by 1`) or names an
/// output column of `select` that is no input column (an input column wins,
/// as in PostgreSQL): it then adds nothing the projection does not.
fn is_position_or_alias(expr: &Expr, select: &Select, factors: &Factors) -> bool {
    match expr {
        Expr::Value(_) => true,
        Expr::Identifier(ident)
            if factors
                .iter()
                .any(|(_, f)| f.has(&ident.value) != Some(false)) =>
        {
            false
        }
        Expr::Identifier(ident) => select.projection.iter().any(|item| {
            matches!(item, SelectItem::ExprWithAlias { alias, .. } if alias.value.eq_ignore_ascii_case(&ident.value))
        }),
        _ => false,
    }
}

/// `*` over `factor`: each of its columns, or the relation marked
/// incomplete.
fn expand(relation: &mut Relation, factor: &Factor) {
    match factor.all_columns() {
        Ok(columns) => relation.columns.extend(columns),
        Err(why) => {
            relation.incomplete.get_or_insert(why);
        }
    }
}

/// The name a database gives an expression's column without an alias.
fn output_name(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => ident.value.clone(),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map(|p| p.value.clone()).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

/// An ephemeral model's lineage as a relation its readers inline.
fn inlined(lineage: &ModelLineage) -> Relation {
    Relation {
        columns: lineage
            .columns
            .iter()
            .map(|column| {
                let mut deps: Deps = column
                    .edges
                    .iter()
                    .map(|e| {
                        let origin = Origin::Column {
                            node: e.node.clone(),
                            column: e.column.clone(),
                        };
                        (origin, e.kind)
                    })
                    .collect();
                deps.extend(
                    column
                        .unknown
                        .iter()
                        .map(|why| (Origin::Unknown(why.clone()), Kind::Copy)),
                );
                (column.column.clone(), deps)
            })
            .collect(),
        incomplete: lineage.incomplete.clone(),
    }
}

fn unknown_model(why: String) -> ModelLineage {
    ModelLineage {
        columns: Vec::new(),
        incomplete: Some(why),
    }
}

/// A column's dependencies, each once, in order.
fn column_lineage(column: String, deps: Deps) -> ColumnLineage {
    let mut edges = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    for (origin, kind) in deps {
        match origin {
            Origin::Column { node, column } => {
                edges.insert(Edge { node, column, kind });
            }
            Origin::Unknown(why) => {
                unknown.insert(why);
            }
        }
    }
    ColumnLineage {
        column,
        edges: edges.into_iter().collect(),
        unknown: unknown.into_iter().collect(),
    }
}

/// A column and, below it, what it derives from (upstream) or what derives
/// from it (downstream), as `orbital lineage` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tree {
    pub node: String,
    pub column: String,
    /// How the parent depends on this (upstream) or this on the parent
    /// (downstream): one or more ways; none at the root.
    pub kinds: Vec<Kind>,
    pub children: Vec<Tree>,
    /// What could not be resolved below this column, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
    /// Shown in full earlier in the tree: its children are not repeated.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
}

/// Column `column` of `root` traced upstream to seeds and sources, through
/// `lineages` (which hold every model upstream of `root`).
pub fn upstream(
    dag: &Dag,
    lineages: &HashMap<NodeId, ModelLineage>,
    root: NodeId,
    column: &str,
) -> Tree {
    let by_name: HashMap<&str, NodeId> = dag
        .nodes
        .iter()
        .enumerate()
        .map(|(id, node)| (node.name.as_str(), id))
        .collect();
    let mut walk = Up {
        lineages,
        by_name,
        seen: BTreeSet::new(),
    };
    walk.tree(&dag.nodes[root].name, column, Vec::new())
}

/// A walk upstream: each (node, column) in full once.
struct Up<'a> {
    lineages: &'a HashMap<NodeId, ModelLineage>,
    by_name: HashMap<&'a str, NodeId>,
    seen: BTreeSet<(String, String)>,
}

impl Up<'_> {
    fn tree(&mut self, node: &str, column: &str, kinds: Vec<Kind>) -> Tree {
        let mut tree = Tree {
            node: node.to_string(),
            column: column.to_string(),
            kinds,
            children: Vec::new(),
            unknown: Vec::new(),
            repeated: false,
        };
        let lineages = self.lineages;
        let lineage = self.by_name.get(node).and_then(|id| lineages.get(id));
        let Some(lineage) = lineage else {
            return tree;
        };
        if !self.seen.insert((node.to_string(), column.to_lowercase())) {
            tree.repeated = true;
            return tree;
        }
        match lineage.column(column) {
            Some(found) => {
                tree.column = found.column.clone();
                tree.unknown = found.unknown.clone();
                let edges = found.edges.iter().map(|e| ((&e.node, &e.column), e.kind));
                for ((node, column), kinds) in grouped(edges) {
                    let child = self.tree(node, column, kinds);
                    tree.children.push(child);
                }
            }
            None => tree.unknown.push(match &lineage.incomplete {
                Some(why) => format!("`{node}` may have `{column}`: {why}"),
                None => format!("`{node}` has no column `{column}`"),
            }),
        }
        tree
    }
}

/// The columns that read each (node, lowercase column): (reader, its
/// column, how).
type Readers = HashMap<(String, String), Vec<(String, String, Kind)>>;

/// Column `column` of `root` traced downstream to every column derived
/// from it, through `lineages` (which hold every model).
pub fn downstream(
    dag: &Dag,
    lineages: &HashMap<NodeId, ModelLineage>,
    root: NodeId,
    column: &str,
) -> Tree {
    // Readers of each (node, column), with how they read it.
    let mut readers: Readers = HashMap::new();
    let mut ids: Vec<&NodeId> = lineages.keys().collect();
    ids.sort_by_key(|id| dag.position(**id));
    for id in ids {
        for derived in &lineages[id].columns {
            for edge in &derived.edges {
                readers
                    .entry((edge.node.clone(), edge.column.to_lowercase()))
                    .or_default()
                    .push((
                        dag.nodes[*id].name.clone(),
                        derived.column.clone(),
                        edge.kind,
                    ));
            }
        }
    }
    let mut seen = BTreeSet::new();
    down(
        &readers,
        &mut seen,
        &dag.nodes[root].name,
        column,
        Vec::new(),
    )
}

fn down(
    readers: &Readers,
    seen: &mut BTreeSet<(String, String)>,
    node: &str,
    column: &str,
    kinds: Vec<Kind>,
) -> Tree {
    let key = (node.to_string(), column.to_lowercase());
    let mut tree = Tree {
        node: node.to_string(),
        column: column.to_string(),
        kinds,
        children: Vec::new(),
        unknown: Vec::new(),
        repeated: false,
    };
    if !seen.insert(key.clone()) {
        tree.repeated = true;
        return tree;
    }
    let found = readers.get(&key).into_iter().flatten();
    for ((reader, derived), kinds) in grouped(found.map(|(r, d, k)| ((r, d), *k))) {
        tree.children
            .push(down(readers, seen, reader, derived, kinds));
    }
    tree
}

/// `items` with the kinds of equal keys together, in first-seen order.
fn grouped<K: PartialEq>(items: impl Iterator<Item = (K, Kind)>) -> Vec<(K, Vec<Kind>)> {
    let mut groups: Vec<(K, Vec<Kind>)> = Vec::new();
    for (key, kind) in items {
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, kinds)) if kinds.contains(&kind) => {}
            Some((_, kinds)) => kinds.push(kind),
            None => groups.push((key, vec![kind])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project of `models` (name, SQL) over seed `raw` (`header`),
    /// compiled, with every model's lineage.
    fn compiled(
        models: &[(&str, &str)],
        header: &str,
    ) -> (crate::CompiledProject, HashMap<NodeId, ModelLineage>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        std::fs::create_dir_all(dir.path().join("seeds")).unwrap();
        std::fs::write(
            dir.path().join("orbital.toml"),
            "name = \"t\"\n[targets.dev]\nurl = \"sqlite://t.db\"\n\
             [sources.shop]\ntables = [\"orders\"]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("seeds/raw.csv"), format!("{header}\n")).unwrap();
        for (name, sql) in models {
            std::fs::write(dir.path().join(format!("models/{name}.sql")), sql).unwrap();
        }
        let project = Project::load(dir.path()).unwrap();
        let target = project.config.target(None).unwrap().1.clone();
        let compiled =
            crate::compile::compile(&project, &target, crate::CompileOptions::default()).unwrap();
        let all: Vec<NodeId> = (0..compiled.dag.nodes.len()).collect();
        let lineages = lineage(&project, &compiled.dag, target.parser_dialect(), &all);
        (compiled, lineages)
    }

    /// The lineage of the last of `models` over seed `raw` (columns id,
    /// name, amount, kind), and every model's by name.
    fn lineage_of(models: &[(&str, &str)]) -> (ModelLineage, HashMap<String, ModelLineage>) {
        let (compiled, mut all) = compiled(models, "id,name,amount,kind");
        let dag = &compiled.dag;
        let last = dag.find(models.last().unwrap().0).unwrap();
        let named = all
            .iter()
            .map(|(id, l)| (dag.nodes[*id].name.clone(), l.clone()))
            .collect();
        (all.remove(&last).unwrap(), named)
    }

    fn edges(lineage: &ModelLineage, column: &str) -> Vec<(String, String, Kind)> {
        let column = lineage
            .column(column)
            .unwrap_or_else(|| panic!("{column}: {lineage:?}"));
        column
            .edges
            .iter()
            .map(|e| (e.node.clone(), e.column.clone(), e.kind))
            .collect()
    }

    fn edge(node: &str, column: &str, kind: Kind) -> (String, String, Kind) {
        (node.into(), column.into(), kind)
    }

    #[test]
    fn copies_transformations_and_what_decides_the_rows() {
        let (m, _) = lineage_of(&[(
            "m",
            "with r as (select * from raw where kind = 'x') \
             select id, upper(name) as name, \
             sum(case when kind = 'x' then amount else 0 end) as x_amount \
             from r group by id, name",
        )]);
        use Kind::*;
        assert_eq!(
            edges(&m, "id"),
            [
                edge("raw", "id", Copy),
                edge("raw", "id", GroupBy),
                edge("raw", "kind", Filter),
                edge("raw", "name", GroupBy)
            ]
        );
        assert!(edges(&m, "name").contains(&edge("raw", "name", Transformation)));
        assert_eq!(
            edges(&m, "x_amount"),
            [
                edge("raw", "amount", Transformation),
                edge("raw", "id", GroupBy),
                edge("raw", "kind", Filter),
                edge("raw", "name", GroupBy)
            ]
        );
        assert_eq!(m.incomplete, None);
        assert_eq!(
            m.columns
                .iter()
                .map(|c| c.column.as_str())
                .collect::<Vec<_>>(),
            ["id", "name", "x_amount"]
        );
    }

    #[test]
    fn joins_subqueries_windows_and_unions() {
        let (m, _) = lineage_of(&[
            ("a", "select id, amount from raw"),
            (
                "m",
                "select a.id, s.total, row_number() over (partition by s.kind order by a.amount) as rank \
                 from a join (select kind, sum(amount) as total from raw group by kind) as s on a.id = s.total \
                 union all select id, amount, 1 from raw",
            ),
        ]);
        use Kind::*;
        let id = edges(&m, "id");
        assert!(
            id.contains(&edge("a", "id", Copy)) && id.contains(&edge("raw", "id", Copy)),
            "{id:?}"
        );
        assert!(
            id.contains(&edge("a", "id", Join)) && id.contains(&edge("raw", "amount", Join)),
            "{id:?}"
        );
        let total = edges(&m, "total");
        assert!(
            total.contains(&edge("raw", "amount", Transformation)),
            "{total:?}"
        );
        assert!(total.contains(&edge("raw", "kind", GroupBy)), "{total:?}");
        assert!(
            total.contains(&edge("raw", "amount", Copy)),
            "the union's second branch: {total:?}"
        );
        let rank = edges(&m, "rank");
        assert!(rank.contains(&edge("raw", "kind", GroupBy)), "{rank:?}");
        assert!(
            rank.contains(&edge("a", "amount", Transformation)),
            "{rank:?}"
        );
    }

    #[test]
    fn stars_expand_ephemeral_models_inline_and_unknowns_are_said() {
        let (m, all) = lineage_of(&[
            (
                "e",
                "-- config: materialized = 'ephemeral'\nselect id, amount * 2 as double from raw",
            ),
            ("m", "select e.*, x.anything, nope from e, raw as x"),
        ]);
        use Kind::*;
        // Through the ephemeral model, to the seed.
        assert_eq!(edges(&m, "id")[0], edge("raw", "id", Copy));
        assert_eq!(
            edges(&m, "double")[0],
            edge("raw", "amount", Transformation)
        );
        assert!(all.contains_key("e"));
        let anything = m.column("anything").unwrap();
        assert!(anything.edges.is_empty());
        assert!(
            anything.unknown[0].contains("`raw` has no such column"),
            "{anything:?}"
        );
        // `nope` could be in either relation's columns: raw's are known, and
        // have none, but it is not guessed from the inlined one either.
        let nope = m.column("nope").unwrap();
        assert!(
            nope.edges.is_empty() && !nope.unknown.is_empty(),
            "{nope:?}"
        );
    }

    #[test]
    fn a_star_over_what_nobody_knows_is_incomplete() {
        let (m, _) = lineage_of(&[(
            "m",
            "select * from raw, (select 1 as one) as s, shop.orders",
        )]);
        let why = m.incomplete.as_deref().unwrap_or_default();
        assert!(why.contains("`shop.orders` are not known"), "{m:?}");
        // A source's column named through its alias is still an edge.
        let (m, _) = lineage_of(&[("m", "select o.total from shop.orders as o")]);
        assert_eq!(
            edges(&m, "total"),
            [edge("shop.orders", "total", Kind::Copy)]
        );
    }

    #[test]
    fn trees_go_up_to_seeds_and_down_to_readers() {
        let models = [
            ("a", "select id, amount from raw"),
            ("b", "select id, amount * 2 as double from a"),
        ];
        let (compiled, lineages) = compiled(&models, "id,amount");
        let dag = &compiled.dag;
        let tree = upstream(dag, &lineages, dag.find("b").unwrap(), "DOUBLE");
        assert_eq!((tree.column.as_str(), tree.children.len()), ("double", 1));
        let a = &tree.children[0];
        assert_eq!(
            (a.node.as_str(), a.column.as_str(), a.kinds.as_slice()),
            ("a", "amount", [Kind::Transformation].as_slice())
        );
        assert_eq!(
            (a.children[0].node.as_str(), a.children[0].kinds.as_slice()),
            ("raw", [Kind::Copy].as_slice())
        );
        let tree = downstream(dag, &lineages, dag.find("raw").unwrap(), "amount");
        assert_eq!(tree.children[0].node, "a");
        assert_eq!(tree.children[0].children[0].column, "double");
    }
}
