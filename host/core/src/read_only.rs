//! Models and data tests are queries: anything in a statement that writes
//! or locks is refused at compile time, wherever it sits in the tree (a CTE,
//! a subquery, either side of a set operation).
//!
//! A model runs inside the DDL Orbital writes around it (`CREATE TABLE ..
//! AS`, `CREATE VIEW ..`, a test's count), so a data-modifying CTE would
//! run with the build, behind the state store's back: PostgreSQL's
//! `with d as (delete from t returning *) select * from d` empties `t`.
//! Functions with side effects (`nextval`, `pg_terminate_backend`) cannot
//! be told apart by syntax and are not refused.

#[cfg(test)]
use std::ops::ControlFlow;

use sqlparser::ast::{Query, SetExpr, Spanned, Statement};
use sqlparser::tokenizer::Location;

/// Where a write starts, and what it is.
pub(crate) type Write = (Location, &'static str);

/// `statement` itself, when it is not a query. Called for every statement
/// of the tree, nested ones included (`SetExpr::Insert` holds one).
pub(crate) fn statement_write(statement: &Statement) -> Option<Write> {
    match statement {
        Statement::Query(_) => None,
        other => Some((other.span().start, statement_kind(other))),
    }
}

/// A write in `query` itself: a locking clause, `SELECT ... INTO`, or a
/// data-modifying statement as its body or a set operation's side. Called
/// for every query of the tree: nested queries answer for themselves.
pub(crate) fn query_write(query: &Query) -> Option<Write> {
    if let Some(lock) = query.locks.first() {
        let at = lock
            .of
            .as_ref()
            .map_or(query.span().start, |of| of.span().start);
        return Some((at, "a locking clause (FOR UPDATE/SHARE)"));
    }
    write_in(&query.body)
}

/// The first part of `statement` that is not a pure query. Compiling runs
/// the same checks inside its one walk of the tree (`compile::Marker`).
#[cfg(test)]
pub(crate) fn first_write(statement: &Statement) -> Option<Write> {
    use sqlparser::ast::{Visit, Visitor};

    /// What it found is kept here rather than in `Break`: a larger
    /// `Break` grows every frame of the walk, and trees run 20,000 levels
    /// deep.
    struct WriteFinder(Option<Write>);

    impl Visitor for WriteFinder {
        type Break = ();

        fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
            self.0 = statement_write(statement);
            match self.0 {
                Some(_) => ControlFlow::Break(()),
                None => ControlFlow::Continue(()),
            }
        }

        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            self.0 = query_write(query);
            match self.0 {
                Some(_) => ControlFlow::Break(()),
                None => ControlFlow::Continue(()),
            }
        }
    }

    let mut finder = WriteFinder(None);
    let _ = statement.visit(&mut finder);
    finder.0
}

/// A write directly in a set expression (nested queries are visited apart).
fn write_in(body: &SetExpr) -> Option<Write> {
    match body {
        SetExpr::Select(select) => select
            .into
            .as_ref()
            .map(|into| (into.span().start, "SELECT ... INTO (it creates a table)")),
        SetExpr::SetOperation { left, right, .. } => write_in(left).or_else(|| write_in(right)),
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
            Some((s.span().start, statement_kind(s)))
        }
        SetExpr::Query(_) | SetExpr::Values(_) | SetExpr::Table(_) => None,
    }
}

fn statement_kind(statement: &Statement) -> &'static str {
    match statement {
        Statement::Insert(_) => "an INSERT",
        Statement::Update(_) => "an UPDATE",
        Statement::Delete(_) => "a DELETE",
        Statement::Merge(_) => "a MERGE",
        _ => "a statement that is not a query",
    }
}

#[cfg(test)]
mod tests {
    use sqlparser::dialect::{PostgreSqlDialect, SQLiteDialect};
    use sqlparser::parser::Parser;

    use super::first_write;

    fn found(sql: &str) -> Option<(u64, u64, &'static str)> {
        let dialects: [&dyn sqlparser::dialect::Dialect; 2] =
            [&PostgreSqlDialect {}, &SQLiteDialect {}];
        let mut answers = dialects.iter().filter_map(|d| {
            let statement = Parser::parse_sql(*d, sql).ok()?.remove(0);
            Some(first_write(&statement).map(|(at, what)| (at.line, at.column, what)))
        });
        answers.next().expect("parses in one of the dialects")
    }

    #[test]
    fn pure_queries_pass() {
        for sql in [
            "select 1",
            "with a as (select 1 as x) select * from a union all select 2",
            "select * from (select * from t) s where exists (select 1 from u)",
            "values (1), (2)",
            "select (select max(x) from t) as m",
        ] {
            assert_eq!(found(sql), None, "{sql}");
        }
    }

    #[test]
    fn writes_anywhere_in_the_tree_are_found_where_they_start() {
        let cases = [
            (
                "with d as (delete from raw returning *) select * from d",
                (1, 12),
                "a DELETE",
            ),
            (
                "with d as (update raw set x = 1 returning *) select * from d",
                (1, 12),
                "an UPDATE",
            ),
            (
                "with d as (insert into raw values (1) returning *) select * from d",
                (1, 12),
                "an INSERT",
            ),
            (
                "select * from t\nwhere x in (with d as (delete from raw returning id) select id from d)",
                (2, 24),
                "a DELETE",
            ),
            (
                "select 1 union all\nselect * into t2 from t",
                (2, 15),
                "SELECT ... INTO (it creates a table)",
            ),
            (
                "select * into new_table from t",
                (1, 15),
                "SELECT ... INTO (it creates a table)",
            ),
        ];
        for (sql, (line, column), what) in cases {
            assert_eq!(found(sql), Some((line, column, what)), "{sql}");
        }
        let (_, _, what) = found("select * from t for update").unwrap();
        assert_eq!(what, "a locking clause (FOR UPDATE/SHARE)");
    }
}
