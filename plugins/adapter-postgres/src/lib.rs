//! The PostgreSQL adapter: dialect SQL for PostgreSQL 15 or newer (`MERGE`).
//!
//! Most of it is the SDK's defaults, which are written for PostgreSQL. What
//! differs:
//!
//! - relations and columns are read from `pg_catalog` (the
//!   `information_schema` types are domains a client reads poorly), in the
//!   relation's schema or the connection's current one;
//! - replacing an existing table keeps the table and swaps its rows
//!   (`TRUNCATE`, then `INSERT` from the staged table, in one transaction):
//!   PostgreSQL views bind to a table, not its name, so dropping it would
//!   take every environment's view onto it along;
//! - a view is replaced with `CREATE OR REPLACE VIEW`, for the same reason;
//! - JSON is stored as `jsonb`.

use orbital_sdk::{
    Adapter, AdapterInfo, LogicalType, Relation, RelationKind, Statement, Swap, Value, sql,
};

struct Postgres;

/// `(schema condition, params)` for a relation: its schema, or the current one.
fn in_schema(relation: &Relation) -> (&'static str, Vec<Value>) {
    match &relation.schema {
        Some(schema) => (
            "n.nspname = $2",
            vec![
                Value::Text(relation.identifier.clone()),
                Value::Text(schema.clone()),
            ],
        ),
        None => (
            "n.nspname = current_schema()",
            vec![Value::Text(relation.identifier.clone())],
        ),
    }
}

impl Adapter for Postgres {
    fn info() -> AdapterInfo {
        AdapterInfo {
            plugin: orbital_sdk::plugin_info!("adapter-postgres", "PostgreSQL dialect"),
            url_schemes: vec!["postgres".into(), "postgresql".into()],
            parser_dialect: "postgres".into(),
            transactional_ddl: true,
        }
    }

    fn relation_kind_query(relation: &Relation) -> Statement {
        let (schema, params) = in_schema(relation);
        Statement {
            sql: format!(
                "SELECT CASE WHEN c.relkind IN ('v', 'm') THEN 'view' ELSE 'table' END \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relname = $1 AND {schema} AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            ),
            params,
        }
    }

    fn columns_query(relation: &Relation) -> Statement {
        let (schema, params) = in_schema(relation);
        Statement {
            sql: format!(
                "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod) \
                 FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relname = $1 AND {schema} AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum"
            ),
            params,
        }
    }

    /// `CREATE OR REPLACE VIEW`: replacing a view keeps the views that read it.
    fn create_view(relation: &Relation, query: &str) -> Vec<Statement> {
        vec![sql(format!(
            "CREATE OR REPLACE VIEW {} AS\n{query}",
            Self::render_relation(relation)
        ))]
    }

    fn swap_relation(swap: &Swap) -> Vec<Statement> {
        let target = Self::render_relation(&swap.target);
        let staged = Self::render_relation(&swap.staged);
        match swap.existing {
            // Same table, new rows: whatever reads the table keeps reading it.
            Some(RelationKind::Table) => vec![
                sql(format!("TRUNCATE {target}")),
                sql(format!("INSERT INTO {target} SELECT * FROM {staged}")),
                sql(format!("DROP TABLE {staged}")),
            ],
            Some(RelationKind::View) => vec![
                sql(format!("DROP VIEW {target}")),
                sql(format!(
                    "ALTER TABLE {staged} RENAME TO {}",
                    Self::quote_identifier(&swap.target.identifier)
                )),
            ],
            None => vec![sql(format!(
                "ALTER TABLE {staged} RENAME TO {}",
                Self::quote_identifier(&swap.target.identifier)
            ))],
        }
    }

    fn column_type(logical: LogicalType) -> String {
        match logical {
            LogicalType::Json => "JSONB".into(),
            LogicalType::Timestamptz => "TIMESTAMPTZ".into(),
            other => orbital_sdk::default_column_type(other),
        }
    }
}

orbital_sdk::export_adapter!(Postgres);
