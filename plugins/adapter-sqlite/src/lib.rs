//! The SQLite adapter: dialect SQL for SQLite 3.35 or newer.
//!
//! SQLite has no schemas beyond attached databases, so `create-schema` is a
//! no-op, and it has no `MERGE`: merges are an `UPDATE .. FROM` followed by an
//! `INSERT .. WHERE NOT EXISTS` in one transaction.

use orbital_sdk::{Adapter, AdapterInfo, LogicalType, Relation, Statement, Swap, Value, sql};

struct Sqlite;

impl Sqlite {
    fn master_table(relation: &Relation) -> String {
        match &relation.schema {
            Some(schema) => format!("{}.sqlite_master", Self::quote_identifier(schema)),
            None => "sqlite_master".into(),
        }
    }

    fn key_match(unique_key: &[String], left: &str, right: &str) -> String {
        unique_key
            .iter()
            .map(|k| format!("{left}.{0} = {right}.{0}", Self::quote_identifier(k)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

impl Adapter for Sqlite {
    fn info() -> AdapterInfo {
        AdapterInfo {
            plugin: orbital_sdk::plugin_info!("adapter-sqlite", "SQLite dialect"),
            url_schemes: vec!["sqlite".into()],
            parser_dialect: "sqlite".into(),
            transactional_ddl: true,
        }
    }

    fn relation_kind_query(relation: &Relation) -> Statement {
        Statement {
            sql: format!(
                "SELECT type FROM {} WHERE name = ? AND type IN ('table', 'view')",
                Self::master_table(relation)
            ),
            params: vec![Value::Text(relation.identifier.clone())],
        }
    }

    fn columns_query(relation: &Relation) -> Statement {
        let schema = relation.schema.clone().unwrap_or_else(|| "main".into());
        Statement {
            sql: "SELECT name, type FROM pragma_table_info(?, ?) ORDER BY cid".into(),
            params: vec![
                Value::Text(relation.identifier.clone()),
                Value::Text(schema),
            ],
        }
    }

    fn create_schema(_database: Option<&str>, _schema: &str) -> Vec<Statement> {
        Vec::new()
    }

    fn swap_relation(swap: &Swap) -> Vec<Statement> {
        // Without the legacy flag, SQLite re-checks every view during a rename
        // and fails on views whose table was just dropped in this transaction.
        let mut statements = vec![sql("PRAGMA legacy_alter_table = ON")];
        if let Some(kind) = swap.existing {
            statements.extend(Self::drop_relation(&swap.target, kind));
        }
        statements.push(sql(format!(
            "ALTER TABLE {} RENAME TO {}",
            Self::render_relation(&swap.staged),
            Self::quote_identifier(&swap.target.identifier)
        )));
        statements
    }

    fn insert_values(relation: &Relation, columns: &[String], row_count: u32) -> String {
        let row = format!("({})", vec!["?"; columns.len()].join(", "));
        let names = columns
            .iter()
            .map(|c| Self::quote_identifier(c))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {} ({names}) VALUES {}",
            Self::render_relation(relation),
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
        let set = columns
            .iter()
            .filter(|c| !unique_key.contains(c))
            .map(|c| format!("{0} = s.{0}", Self::quote_identifier(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let names = columns
            .iter()
            .map(|c| Self::quote_identifier(c))
            .collect::<Vec<_>>()
            .join(", ");
        let mut statements = Vec::new();
        if !set.is_empty() {
            statements.push(sql(format!(
                "UPDATE {target_sql} AS t SET {set} FROM {source_sql} AS s WHERE {}",
                Self::key_match(unique_key, "t", "s")
            )));
        }
        statements.push(sql(format!(
            "INSERT INTO {target_sql} ({names}) SELECT {names} FROM {source_sql} AS s \
             WHERE NOT EXISTS (SELECT 1 FROM {target_sql} AS t WHERE {})",
            Self::key_match(unique_key, "t", "s")
        )));
        statements
    }

    fn delete_insert(
        target: &Relation,
        source: &Relation,
        unique_key: &[String],
        columns: &[String],
    ) -> Vec<Statement> {
        let target_sql = Self::render_relation(target);
        let source_sql = Self::render_relation(source);
        // A row-value IN: SQLite probes the target's key index per source
        // key instead of testing every target row against the source.
        let keys = unique_key
            .iter()
            .map(|k| Self::quote_identifier(k))
            .collect::<Vec<_>>()
            .join(", ");
        let mut statements = vec![sql(format!(
            "DELETE FROM {target_sql} WHERE ({keys}) IN (SELECT {keys} FROM {source_sql})"
        ))];
        let names = columns
            .iter()
            .map(|c| Self::quote_identifier(c))
            .collect::<Vec<_>>()
            .join(", ");
        statements.push(sql(format!(
            "INSERT INTO {target_sql} ({names}) SELECT {names} FROM {source_sql}"
        )));
        statements
    }

    fn column_type(logical: LogicalType) -> String {
        match logical {
            LogicalType::Integer => "INTEGER",
            LogicalType::Real => "REAL",
            LogicalType::Numeric => "NUMERIC",
            LogicalType::Boolean => "BOOLEAN",
            LogicalType::Date => "DATE",
            LogicalType::Timestamp => "TIMESTAMP",
            LogicalType::Timestamptz => "TIMESTAMPTZ",
            LogicalType::Json => "JSON",
            LogicalType::Uuid | LogicalType::Text => "TEXT",
            LogicalType::Bytes => "BLOB",
        }
        .into()
    }
}

orbital_sdk::export_adapter!(Sqlite);
