//! ClickHouse's dialect SQL.

use orbital_sdk::{
    Adapter, AdapterInfo, Column, LogicalType, Relation, Statement, Swap, Value, sql,
};

/// ClickHouse's dialect.
pub struct ClickHouse;

/// Every table: MergeTree, the engine that takes `ALTER`, unordered.
const ENGINE: &str = "ENGINE = MergeTree ORDER BY tuple()";

impl ClickHouse {
    /// `(condition on database, params)`: the relation's schema (a
    /// ClickHouse database), or the session's; the name is the last param.
    fn in_database(relation: &Relation, column: &str) -> (String, Vec<Value>) {
        let name = Value::Text(relation.identifier.clone());
        match &relation.schema {
            Some(schema) => (
                format!("{column} = ?"),
                vec![Value::Text(schema.clone()), name],
            ),
            None => (format!("{column} = currentDatabase()"), vec![name]),
        }
    }

    fn names(columns: &[String]) -> String {
        columns
            .iter()
            .map(|c| Self::quote_identifier(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A statement that fails with `message`: what ClickHouse 18 cannot do
    /// is refused where it is asked for, with the reason.
    fn unsupported(message: &str) -> Vec<Statement> {
        vec![sql(format!(
            "SELECT throwIf(1, '{}')",
            message.replace('\\', "\\\\").replace('\'', "\\'")
        ))]
    }
}

impl Adapter for ClickHouse {
    fn info() -> AdapterInfo {
        AdapterInfo {
            plugin: orbital_sdk::plugin_info!(
                "adapter-clickhouse",
                "ClickHouse dialect, with its own connection over ClickHouse's HTTP interface"
            ),
            url_schemes: vec!["clickhouse".into()],
            parser_dialect: "generic".into(),
            transactional_ddl: false,
        }
    }

    /// A schema is a ClickHouse database: there is no level above it.
    fn render_relation(relation: &Relation) -> String {
        [
            relation.schema.as_deref(),
            Some(relation.identifier.as_str()),
        ]
        .into_iter()
        .flatten()
        .map(Self::quote_identifier)
        .collect::<Vec<_>>()
        .join(".")
    }

    fn relation_kind_query(relation: &Relation) -> Statement {
        let (database, params) = Self::in_database(relation, "database");
        Statement {
            sql: format!(
                "SELECT if(engine = 'View', 'view', 'table') FROM system.tables \
                 WHERE {database} AND name = ?"
            ),
            params,
        }
    }

    /// In table order (`system.columns` of ClickHouse 18 has no position).
    fn columns_query(relation: &Relation) -> Statement {
        let (database, params) = Self::in_database(relation, "database");
        Statement {
            sql: format!("SELECT name, type FROM system.columns WHERE {database} AND table = ?"),
            params,
        }
    }

    fn create_schema(_database: Option<&str>, schema: &str) -> Vec<Statement> {
        vec![sql(format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            Self::quote_identifier(schema)
        ))]
    }

    fn create_table_as(relation: &Relation, query: &str) -> Vec<Statement> {
        vec![sql(format!(
            "CREATE TABLE {} {ENGINE} AS\n{query}",
            Self::render_relation(relation)
        ))]
    }

    fn create_table(relation: &Relation, columns: &[Column]) -> Vec<Statement> {
        let columns = columns
            .iter()
            .map(|c| format!("{} {}", Self::quote_identifier(&c.name), c.data_type))
            .collect::<Vec<_>>()
            .join(", ");
        vec![sql(format!(
            "CREATE TABLE {} ({columns}) {ENGINE}",
            Self::render_relation(relation)
        ))]
    }

    /// Views and tables alike are dropped with `DROP TABLE`.
    fn drop_relation(relation: &Relation, _kind: orbital_sdk::RelationKind) -> Vec<Statement> {
        vec![sql(format!(
            "DROP TABLE IF EXISTS {}",
            Self::render_relation(relation)
        ))]
    }

    /// ClickHouse 18 has no transactions and no `EXCHANGE TABLES`: what
    /// stood at the target is dropped, then the staged table renamed into
    /// place. Between the two, readers find no relation there.
    fn swap_relation(swap: &Swap) -> Vec<Statement> {
        let mut statements = match swap.existing {
            Some(kind) => Self::drop_relation(&swap.target, kind),
            None => Vec::new(),
        };
        statements.push(sql(format!(
            "RENAME TABLE {} TO {}",
            Self::render_relation(&swap.staged),
            Self::render_relation(&swap.target)
        )));
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

    fn merge(_: &Relation, _: &Relation, _: &[String], _: &[String]) -> Vec<Statement> {
        Self::unsupported(
            "incremental models with a unique_key need UPDATE, which ClickHouse 18 does not have: use incremental_strategy = append",
        )
    }

    fn delete_insert(_: &Relation, _: &Relation, _: &[String], _: &[String]) -> Vec<Statement> {
        Self::unsupported(
            "delete+insert needs DELETE, which ClickHouse 18 runs only as an asynchronous mutation: use incremental_strategy = append",
        )
    }

    fn add_column(relation: &Relation, column: &Column) -> Vec<Statement> {
        vec![sql(format!(
            "ALTER TABLE {} ADD COLUMN {} {}",
            Self::render_relation(relation),
            Self::quote_identifier(&column.name),
            column.data_type
        ))]
    }

    fn drop_column(relation: &Relation, name: &str) -> Vec<Statement> {
        vec![sql(format!(
            "ALTER TABLE {} DROP COLUMN {}",
            Self::render_relation(relation),
            Self::quote_identifier(name)
        ))]
    }

    /// Nullable: a seed's empty cells are NULL.
    fn column_type(logical: LogicalType) -> String {
        let inner = match logical {
            LogicalType::Integer => "Int64",
            LogicalType::Real => "Float64",
            LogicalType::Numeric => "Decimal(38, 9)",
            LogicalType::Boolean => "UInt8",
            LogicalType::Text | LogicalType::Json | LogicalType::Bytes => "String",
            LogicalType::Date => "Date",
            LogicalType::Timestamp | LogicalType::Timestamptz => "DateTime",
            LogicalType::Uuid => "UUID",
        };
        format!("Nullable({inner})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relation(schema: Option<&str>, identifier: &str) -> Relation {
        Relation {
            database: None,
            schema: schema.map(str::to_string),
            identifier: identifier.into(),
        }
    }

    #[test]
    fn a_schema_is_a_database_and_tables_are_merge_trees() {
        assert_eq!(
            ClickHouse::render_relation(&relation(Some("s"), "t")),
            "\"s\".\"t\""
        );
        let created = ClickHouse::create_table_as(&relation(None, "t"), "SELECT 1");
        assert_eq!(
            created[0].sql,
            "CREATE TABLE \"t\" ENGINE = MergeTree ORDER BY tuple() AS\nSELECT 1"
        );
        let kind = ClickHouse::relation_kind_query(&relation(None, "t"));
        assert!(kind.sql.contains("currentDatabase()"), "{}", kind.sql);
        assert_eq!(kind.params.len(), 1);
    }

    #[test]
    fn what_clickhouse_18_cannot_do_fails_with_the_reason() {
        let merge = ClickHouse::merge(&relation(None, "t"), &relation(None, "s"), &[], &[]);
        assert!(merge[0].sql.starts_with("SELECT throwIf(1, '"));
        assert!(merge[0].sql.contains("incremental_strategy = append"));
    }
}
