//! Stateful models: incremental models and snapshots, whose table carries
//! history a rebuild cannot recreate.
//!
//! Their SQL may refer to the model's own table and ask whether this build
//! continues it, without a template language:
//!
//! - `this` as a table name is the model's current table;
//! - `is_incremental()` is true when this build continues the table;
//! - `if_incremental(condition)` is `condition` when it does and true on a
//!   full build; `if_incremental(a, b)` is `a` or `b`.
//!
//! On a full build (the first, or `--full-refresh`) the table does not
//! exist yet, so `this` may appear only inside `if_incremental(...)`:
//!
//! ```sql
//! -- config: materialized = 'incremental', unique_key = 'event_id'
//! select * from source.app.events
//! where if_incremental(occurred_at > (select max(occurred_at) from this))
//! ```
//!
//! The parser produces both variants of such a model from one AST: the
//! full-build SQL and the incremental SQL. The runner picks one per build.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Statement, Value,
    VisitMut, VisitorMut,
};

use crate::error::{Error, Location, Result};
use crate::project::Model;

/// Materializations whose table continues from build to build.
pub const STATEFUL: &[&str] = &["incremental", "snapshot"];

/// The table name a stateful model uses for its own table.
pub const THIS: &str = "this";

const IS_INCREMENTAL: &str = "is_incremental";
const IF_INCREMENTAL: &str = "if_incremental";

/// Whether models materialized as `materialized` continue their table,
/// by the built-in names alone.
pub fn is_stateful(materialized: &str) -> bool {
    STATEFUL.contains(&materialized)
}

/// Which materializations keep history: the built-in names, and the
/// strategies of plugins that declare it (plugin API 0.2.0). The compile
/// asks it for each model's `materialized`.
pub trait Strategies: Sync {
    fn keeps_history(&self, materialized: &str) -> bool;
}

/// The built-in stateful names only: a project without plugins of its own.
pub struct BuiltIn;

impl Strategies for BuiltIn {
    fn keeps_history(&self, materialized: &str) -> bool {
        is_stateful(materialized)
    }
}

/// The two builds of a model that uses the incremental functions.
pub struct Variants {
    pub full: Statement,
    pub incremental: Statement,
    /// Where the first call stands, for "only a stateful model may" errors.
    pub first_call: (u32, u32),
}

/// Splits `statement` into its full and incremental builds, or `None` when
/// it calls neither function (most models: skipped by a text check).
pub fn variants(statement: &Statement, model: &Model) -> Result<Option<Variants>> {
    if !model.sql.to_ascii_lowercase().contains("_incremental") {
        return Ok(None);
    }
    let mut incremental = statement.clone();
    let mut rewriter = Rewriter {
        sql: &model.sql,
        incremental: true,
        first_call: None,
        error: None,
    };
    let _ = VisitMut::visit(&mut incremental, &mut rewriter);
    if let Some((line, column, message)) = rewriter.error {
        return Err(Error::InvalidModel {
            location: Location::new(&model.path, line as usize, column as usize),
            model: model.name.clone(),
            message,
        });
    }
    let Some(first_call) = rewriter.first_call else {
        return Ok(None);
    };
    let mut full = statement.clone();
    let _ = VisitMut::visit(
        &mut full,
        &mut Rewriter {
            sql: &model.sql,
            incremental: false,
            first_call: None,
            error: None,
        },
    );
    Ok(Some(Variants {
        full,
        incremental,
        first_call,
    }))
}

/// Replaces the calls for one kind of build.
struct Rewriter<'a> {
    /// The model's SQL, which the tree's positions point into.
    sql: &'a str,
    incremental: bool,
    first_call: Option<(u32, u32)>,
    error: Option<(u32, u32, String)>,
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        let [name] = function.name.0.as_slice() else {
            return ControlFlow::Continue(());
        };
        let Some(ident) = name.as_ident() else {
            return ControlFlow::Continue(());
        };
        let called = ident.value.to_ascii_lowercase();
        if called != IS_INCREMENTAL && called != IF_INCREMENTAL {
            return ControlFlow::Continue(());
        }
        let at = crate::tokens::position(self.sql, ident.span.start);
        self.first_call.get_or_insert(at);
        let args = match plain_args(&function.args) {
            Some(args) => args,
            None => {
                self.error = Some((
                    at.0,
                    at.1,
                    format!("calls {called}() with named or special arguments"),
                ));
                return ControlFlow::Break(());
            }
        };
        let replacement = match (called.as_str(), args.as_slice()) {
            (IS_INCREMENTAL, []) => boolean(self.incremental),
            (IF_INCREMENTAL, [then]) if self.incremental => nested(then),
            (IF_INCREMENTAL, [_]) => boolean(true),
            (IF_INCREMENTAL, [then, otherwise]) => {
                nested(if self.incremental { then } else { otherwise })
            }
            (IS_INCREMENTAL, _) => {
                self.error = Some((
                    at.0,
                    at.1,
                    "calls is_incremental() with arguments; it takes none".into(),
                ));
                return ControlFlow::Break(());
            }
            _ => {
                self.error = Some((
                    at.0,
                    at.1,
                    format!(
                        "calls if_incremental() with {} arguments; it takes a condition, and optionally what to use on a full build instead",
                        args.len()
                    ),
                ));
                return ControlFlow::Break(());
            }
        };
        *expr = replacement;
        ControlFlow::Continue(())
    }
}

fn plain_args(args: &FunctionArguments) -> Option<Vec<Expr>> {
    match args {
        FunctionArguments::None => Some(Vec::new()),
        FunctionArguments::List(list)
            if list.clauses.is_empty() && list.duplicate_treatment.is_none() =>
        {
            list.args
                .iter()
                .map(|arg| match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                    _ => None,
                })
                .collect()
        }
        _ => None,
    }
}

fn nested(expr: &Expr) -> Expr {
    Expr::Nested(Box::new(expr.clone()))
}

/// `(1 = 1)` or `(1 = 0)`: a boolean every SQL dialect accepts.
fn boolean(value: bool) -> Expr {
    let number = |n: &str| Expr::value(Value::Number(n.into(), false));
    Expr::Nested(Box::new(Expr::BinaryOp {
        left: Box::new(number("1")),
        op: BinaryOperator::Eq,
        right: Box::new(number(if value { "1" } else { "0" })),
    }))
}
