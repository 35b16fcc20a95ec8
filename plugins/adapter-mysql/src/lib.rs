//! The MySQL and MariaDB adapter: dialect SQL for MariaDB 10.6 or newer and
//! MySQL 8 (`mysql://` and `mariadb://` targets, served by the host's own
//! driver).
//!
//! The host runs every session with `ANSI_QUOTES`, so names are quoted
//! with double quotes as everywhere else, and models are parsed as MySQL
//! with double-quoted names. What differs from the SDK's defaults:
//!
//! - a schema is a database: `CREATE SCHEMA` makes one, and a relation
//!   without a schema is in the connection's database (`DATABASE()`);
//! - DDL is not transactional: each statement commits on its own. A table
//!   is put in place with one `RENAME TABLE`, which swaps both names
//!   atomically, and the old table is dropped after;
//! - there is no `MERGE`: a merge is an `UPDATE .. JOIN` followed by an
//!   `INSERT .. WHERE NOT EXISTS`, in one transaction;
//! - parameters are `?`;
//! - portable types: `DECIMAL(38, 9)` for numerics (MySQL's bare `DECIMAL`
//!   has no fraction), `DATETIME(6)` for both timestamps (the host binds a
//!   timestamp with a zone as UTC), `CHAR(36)` for UUIDs, `LONGBLOB` for
//!   bytes.

use orbital_sdk::{Adapter, AdapterInfo, LogicalType, Relation, Statement, Swap, Value, sql};

/// The dialect; public so that an adapter with its own MySQL connection
/// (`examples/plugins/mysql-wire`) can reuse it.
pub struct MySql;

/// The longest name MySQL accepts.
const MAX_NAME: usize = 64;

impl MySql {
    /// `(condition on table_schema, params)`: the relation's schema, or the
    /// connection's database; the relation's name is the last parameter.
    fn in_schema(relation: &Relation) -> (&'static str, Vec<Value>) {
        let name = Value::Text(relation.identifier.clone());
        match &relation.schema {
            Some(schema) => ("table_schema = ?", vec![Value::Text(schema.clone()), name]),
            None => ("table_schema = DATABASE()", vec![name]),
        }
    }

    fn key_match(unique_key: &[String], left: &str, right: &str) -> String {
        unique_key
            .iter()
            .map(|k| format!("{left}.{0} = {right}.{0}", Self::quote_identifier(k)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    fn names(columns: &[String]) -> String {
        columns
            .iter()
            .map(|c| Self::quote_identifier(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Where `swap` moves what stood at its target, until it is dropped.
    fn retired(target: &Relation) -> Relation {
        const SUFFIX: &str = "__orbital_old";
        let mut identifier = target.identifier.clone();
        // Truncated on a char boundary so the suffix fits.
        while identifier.len() + SUFFIX.len() > MAX_NAME {
            identifier.pop();
        }
        Relation {
            identifier: format!("{identifier}{SUFFIX}"),
            ..target.clone()
        }
    }
}

impl Adapter for MySql {
    fn info() -> AdapterInfo {
        AdapterInfo {
            plugin: orbital_sdk::plugin_info!("adapter-mysql", "MySQL and MariaDB dialect"),
            url_schemes: vec!["mysql".into(), "mariadb".into()],
            parser_dialect: "mysql".into(),
            transactional_ddl: false,
        }
    }

    fn relation_kind_query(relation: &Relation) -> Statement {
        let (schema, params) = Self::in_schema(relation);
        Statement {
            sql: format!(
                "SELECT CASE table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END \
                 FROM information_schema.tables WHERE {schema} AND table_name = ?"
            ),
            params,
        }
    }

    /// The full column type (`decimal(10,2)`, `varchar(20)`), which a
    /// `CREATE TABLE` or `ADD COLUMN` can take as it is.
    fn columns_query(relation: &Relation) -> Statement {
        let (schema, params) = Self::in_schema(relation);
        Statement {
            sql: format!(
                "SELECT column_name, column_type FROM information_schema.columns \
                 WHERE {schema} AND table_name = ? ORDER BY ordinal_position"
            ),
            params,
        }
    }

    /// A schema is a database; MySQL has no level above it.
    fn create_schema(_database: Option<&str>, schema: &str) -> Vec<Statement> {
        vec![sql(format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            Self::quote_identifier(schema)
        ))]
    }

    fn create_view(relation: &Relation, query: &str) -> Vec<Statement> {
        vec![sql(format!(
            "CREATE OR REPLACE VIEW {} AS\n{query}",
            Self::render_relation(relation)
        ))]
    }

    /// One `RENAME TABLE` swaps both names at once (views included), so
    /// readers see the old relation or the new one, never none.
    fn swap_relation(swap: &Swap) -> Vec<Statement> {
        let target = Self::render_relation(&swap.target);
        let staged = Self::render_relation(&swap.staged);
        let Some(existing) = swap.existing else {
            return vec![sql(format!("RENAME TABLE {staged} TO {target}"))];
        };
        let retired = Self::retired(&swap.target);
        let mut statements = Self::drop_relation(&retired, existing);
        statements.push(sql(format!(
            "RENAME TABLE {target} TO {}, {staged} TO {target}",
            Self::render_relation(&retired)
        )));
        statements.extend(Self::drop_relation(&retired, existing));
        statements
    }

    fn insert_values(relation: &Relation, columns: &[String], row_count: u32) -> String {
        let row = format!("({})", vec!["?"; columns.len()].join(", "));
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            Self::render_relation(relation),
            Self::names(columns),
            vec![row; row_count as usize].join(", ")
        )
    }

    fn merge(
        target: &Relation,
        source: &Relation,
        unique_key: &[String],
        columns: &[String],
    ) -> Vec<Statement> {
        let target_sql = Self::render_relation(target);
        let source_sql = Self::render_relation(source);
        let on = Self::key_match(unique_key, "t", "s");
        let set = columns
            .iter()
            .filter(|c| !unique_key.contains(c))
            .map(|c| format!("t.{0} = s.{0}", Self::quote_identifier(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let names = Self::names(columns);
        let mut statements = Vec::new();
        if !set.is_empty() {
            statements.push(sql(format!(
                "UPDATE {target_sql} AS t JOIN {source_sql} AS s ON {on} SET {set}"
            )));
        }
        statements.push(sql(format!(
            "INSERT INTO {target_sql} ({names}) SELECT {names} FROM {source_sql} AS s \
             WHERE NOT EXISTS (SELECT 1 FROM {target_sql} AS t WHERE {on})"
        )));
        statements
    }

    fn column_type(logical: LogicalType) -> String {
        match logical {
            LogicalType::Integer => "BIGINT",
            LogicalType::Real => "DOUBLE",
            LogicalType::Numeric => "DECIMAL(38, 9)",
            LogicalType::Boolean => "BOOLEAN",
            LogicalType::Text => "TEXT",
            LogicalType::Date => "DATE",
            LogicalType::Timestamp | LogicalType::Timestamptz => "DATETIME(6)",
            LogicalType::Json => "JSON",
            LogicalType::Uuid => "CHAR(36)",
            LogicalType::Bytes => "LONGBLOB",
        }
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbital_sdk::RelationKind;

    fn relation(schema: Option<&str>, identifier: &str) -> Relation {
        Relation {
            database: None,
            schema: schema.map(str::to_string),
            identifier: identifier.into(),
        }
    }

    #[test]
    fn a_swap_renames_both_names_in_one_statement() {
        let swap = Swap {
            staged: relation(Some("w"), "t__orbital_staged"),
            target: relation(Some("w"), "t"),
            existing: Some(RelationKind::Table),
        };
        let sql: Vec<String> = MySql::swap_relation(&swap)
            .into_iter()
            .map(|s| s.sql)
            .collect();
        assert_eq!(
            sql,
            [
                "DROP TABLE IF EXISTS \"w\".\"t__orbital_old\"",
                "RENAME TABLE \"w\".\"t\" TO \"w\".\"t__orbital_old\", \"w\".\"t__orbital_staged\" TO \"w\".\"t\"",
                "DROP TABLE IF EXISTS \"w\".\"t__orbital_old\"",
            ]
        );
    }

    #[test]
    fn a_retired_name_fits_mysqls_limit() {
        let long = relation(None, &"x".repeat(64));
        assert_eq!(MySql::retired(&long).identifier.len(), MAX_NAME);
    }
}

// Only in the component: a native build (tests, clippy) turns the feature on
// for every crate at once, and the mysql-wire example's test binary would
// then link this export beside its own.
#[cfg(all(feature = "component", target_family = "wasm"))]
orbital_sdk::export_adapter!(MySql);
