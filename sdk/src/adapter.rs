//! The `adapter` world: dialect SQL generation.
//!
//! Every method but [`Adapter::info`] has a default written in standard SQL
//! (double-quoted identifiers, `ALTER TABLE .. RENAME TO`, `INSERT .. SELECT`),
//! so an adapter overrides only where its database differs.

use crate::__wit::adapter::exports::orbital::plugin::dialect as wit;
use crate::{Column, LogicalType, Relation, RelationKind, Statement, sql};

pub use wit::{AdapterInfo, Swap};

/// A database adapter. Implement it on a unit struct and call
/// [`export_adapter!`](crate::export_adapter).
pub trait Adapter {
    /// Who this adapter is and which targets it serves.
    fn info() -> AdapterInfo;

    /// Quotes an identifier, doubling embedded quotes.
    fn quote_identifier(name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    /// The relation as written in SQL.
    fn render_relation(relation: &Relation) -> String {
        [
            relation.database.as_deref(),
            relation.schema.as_deref(),
            Some(relation.identifier.as_str()),
        ]
        .into_iter()
        .flatten()
        .map(Self::quote_identifier)
        .collect::<Vec<_>>()
        .join(".")
    }

    /// A query returning `table` or `view` for an existing relation.
    fn relation_kind_query(relation: &Relation) -> Statement {
        let schema = relation.schema.clone().unwrap_or_else(|| "public".into());
        Statement {
            sql: "SELECT CASE table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END \
                  FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2"
                .into(),
            params: vec![
                crate::Value::Text(schema),
                crate::Value::Text(relation.identifier.clone()),
            ],
        }
    }

    /// A query returning (name, data type) per column, in order.
    fn columns_query(relation: &Relation) -> Statement {
        let schema = relation.schema.clone().unwrap_or_else(|| "public".into());
        Statement {
            sql: "SELECT column_name, data_type FROM information_schema.columns \
                  WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position"
                .into(),
            params: vec![
                crate::Value::Text(schema),
                crate::Value::Text(relation.identifier.clone()),
            ],
        }
    }

    /// Creates a schema if it does not exist.
    fn create_schema(database: Option<&str>, schema: &str) -> Vec<Statement> {
        let name = match database {
            Some(db) => format!(
                "{}.{}",
                Self::quote_identifier(db),
                Self::quote_identifier(schema)
            ),
            None => Self::quote_identifier(schema),
        };
        vec![sql(format!("CREATE SCHEMA IF NOT EXISTS {name}"))]
    }

    /// `CREATE VIEW relation AS sql`.
    fn create_view(relation: &Relation, query: &str) -> Vec<Statement> {
        vec![sql(format!(
            "CREATE VIEW {} AS\n{query}",
            Self::render_relation(relation)
        ))]
    }

    /// `CREATE TABLE relation AS sql`.
    fn create_table_as(relation: &Relation, query: &str) -> Vec<Statement> {
        vec![sql(format!(
            "CREATE TABLE {} AS\n{query}",
            Self::render_relation(relation)
        ))]
    }

    /// `CREATE TABLE relation (columns)`.
    fn create_table(relation: &Relation, columns: &[Column]) -> Vec<Statement> {
        let columns = columns
            .iter()
            .map(|c| format!("{} {}", Self::quote_identifier(&c.name), c.data_type))
            .collect::<Vec<_>>()
            .join(", ");
        vec![sql(format!(
            "CREATE TABLE {} ({columns})",
            Self::render_relation(relation)
        ))]
    }

    /// Drops a relation of the given kind if it exists.
    fn drop_relation(relation: &Relation, kind: RelationKind) -> Vec<Statement> {
        let keyword = match kind {
            RelationKind::Table => "TABLE",
            RelationKind::View => "VIEW",
        };
        vec![sql(format!(
            "DROP {keyword} IF EXISTS {}",
            Self::render_relation(relation)
        ))]
    }

    /// Puts `staged` where `target` stands; the host runs these in one transaction.
    fn swap_relation(swap: &Swap) -> Vec<Statement> {
        let mut statements = match swap.existing {
            Some(kind) => Self::drop_relation(&swap.target, kind),
            None => Vec::new(),
        };
        statements.push(sql(format!(
            "ALTER TABLE {} RENAME TO {}",
            Self::render_relation(&swap.staged),
            Self::quote_identifier(&swap.target.identifier)
        )));
        statements
    }

    /// `INSERT INTO relation (columns) sql`; no column list when `columns` is empty.
    fn insert_select(relation: &Relation, columns: &[String], query: &str) -> Vec<Statement> {
        vec![sql(format!(
            "INSERT INTO {}{}\n{query}",
            Self::render_relation(relation),
            column_list::<Self>(columns)
        ))]
    }

    /// A parameterised multi-row insert with `$n` placeholders.
    fn insert_values(relation: &Relation, columns: &[String], row_count: u32) -> String {
        let width = columns.len();
        let rows = (0..row_count as usize)
            .map(|r| {
                let cells = (1..=width)
                    .map(|c| format!("${}", r * width + c))
                    .collect::<Vec<_>>();
                format!("({})", cells.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {}{} VALUES {rows}",
            Self::render_relation(relation),
            column_list::<Self>(columns)
        )
    }

    /// Upserts `source` into `target` with `MERGE`.
    fn merge(
        target: &Relation,
        source: &Relation,
        unique_key: &[String],
        columns: &[String],
    ) -> Vec<Statement> {
        let on = unique_key
            .iter()
            .map(|k| format!("t.{0} = s.{0}", Self::quote_identifier(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let set = columns
            .iter()
            .map(|c| format!("{0} = s.{0}", Self::quote_identifier(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let names = columns
            .iter()
            .map(|c| Self::quote_identifier(c))
            .collect::<Vec<_>>();
        let values = names.iter().map(|c| format!("s.{c}")).collect::<Vec<_>>();
        vec![sql(format!(
            "MERGE INTO {} AS t USING {} AS s ON {on}\nWHEN MATCHED THEN UPDATE SET {set}\n\
             WHEN NOT MATCHED THEN INSERT ({}) VALUES ({})",
            Self::render_relation(target),
            Self::render_relation(source),
            names.join(", "),
            values.join(", ")
        ))]
    }

    /// Deletes the rows of `target` that `source` replaces, then inserts `source`.
    fn delete_insert(
        target: &Relation,
        source: &Relation,
        unique_key: &[String],
        columns: &[String],
    ) -> Vec<Statement> {
        let target_sql = Self::render_relation(target);
        let source_sql = Self::render_relation(source);
        let keys = unique_key
            .iter()
            .map(|k| Self::quote_identifier(k))
            .collect::<Vec<_>>()
            .join(", ");
        let mut statements = vec![sql(format!(
            "DELETE FROM {target_sql} WHERE ({keys}) IN (SELECT {keys} FROM {source_sql})"
        ))];
        statements.extend(Self::insert_select(
            target,
            columns,
            &format!("SELECT {} FROM {source_sql}", select_list::<Self>(columns)),
        ));
        statements
    }

    /// `ALTER TABLE relation ADD COLUMN`.
    fn add_column(relation: &Relation, column: &Column) -> Vec<Statement> {
        vec![sql(format!(
            "ALTER TABLE {} ADD COLUMN {} {}",
            Self::render_relation(relation),
            Self::quote_identifier(&column.name),
            column.data_type
        ))]
    }

    /// `ALTER TABLE relation DROP COLUMN`.
    fn drop_column(relation: &Relation, name: &str) -> Vec<Statement> {
        vec![sql(format!(
            "ALTER TABLE {} DROP COLUMN {}",
            Self::render_relation(relation),
            Self::quote_identifier(name)
        ))]
    }

    /// The database type for a portable type ([`default_column_type`]
    /// unless overridden).
    fn column_type(logical: LogicalType) -> String {
        default_column_type(logical)
    }
}

/// The SQL-standard (and PostgreSQL) type of a portable type: what
/// [`Adapter::column_type`] returns unless an adapter overrides it, for an
/// override to fall back on.
pub fn default_column_type(logical: LogicalType) -> String {
    match logical {
        LogicalType::Integer => "BIGINT",
        LogicalType::Real => "DOUBLE PRECISION",
        LogicalType::Numeric => "NUMERIC",
        LogicalType::Boolean => "BOOLEAN",
        LogicalType::Text => "TEXT",
        LogicalType::Date => "DATE",
        LogicalType::Timestamp => "TIMESTAMP",
        LogicalType::Timestamptz => "TIMESTAMP WITH TIME ZONE",
        LogicalType::Json => "JSON",
        LogicalType::Uuid => "UUID",
        LogicalType::Bytes => "BYTEA",
    }
    .into()
}

fn column_list<A: Adapter + ?Sized>(columns: &[String]) -> String {
    if columns.is_empty() {
        String::new()
    } else {
        format!(" ({})", select_list::<A>(columns))
    }
}

fn select_list<A: Adapter + ?Sized>(columns: &[String]) -> String {
    if columns.is_empty() {
        "*".into()
    } else {
        columns
            .iter()
            .map(|c| A::quote_identifier(c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Connects an [`Adapter`] to the generated bindings; used by [`export_adapter!`](crate::export_adapter).
#[doc(hidden)]
pub struct AdapterExport<A>(std::marker::PhantomData<A>);

impl<A: Adapter> wit::Guest for AdapterExport<A> {
    fn describe() -> AdapterInfo {
        A::info()
    }
    fn quote_identifier(name: String) -> String {
        A::quote_identifier(&name)
    }
    fn render_relation(relation: Relation) -> String {
        A::render_relation(&relation)
    }
    fn relation_kind_query(relation: Relation) -> Statement {
        A::relation_kind_query(&relation)
    }
    fn columns_query(relation: Relation) -> Statement {
        A::columns_query(&relation)
    }
    fn create_schema(database: Option<String>, schema: String) -> Vec<Statement> {
        A::create_schema(database.as_deref(), &schema)
    }
    fn create_view(relation: Relation, sql: String) -> Vec<Statement> {
        A::create_view(&relation, &sql)
    }
    fn create_table_as(relation: Relation, sql: String) -> Vec<Statement> {
        A::create_table_as(&relation, &sql)
    }
    fn create_table(relation: Relation, columns: Vec<Column>) -> Vec<Statement> {
        A::create_table(&relation, &columns)
    }
    fn drop_relation(relation: Relation, kind: RelationKind) -> Vec<Statement> {
        A::drop_relation(&relation, kind)
    }
    fn swap_relation(swap: Swap) -> Vec<Statement> {
        A::swap_relation(&swap)
    }
    fn insert_select(relation: Relation, columns: Vec<String>, sql: String) -> Vec<Statement> {
        A::insert_select(&relation, &columns, &sql)
    }
    fn insert_values(relation: Relation, columns: Vec<String>, row_count: u32) -> String {
        A::insert_values(&relation, &columns, row_count)
    }
    fn merge(
        target: Relation,
        source: Relation,
        unique_key: Vec<String>,
        columns: Vec<String>,
    ) -> Vec<Statement> {
        A::merge(&target, &source, &unique_key, &columns)
    }
    fn delete_insert(
        target: Relation,
        source: Relation,
        unique_key: Vec<String>,
        columns: Vec<String>,
    ) -> Vec<Statement> {
        A::delete_insert(&target, &source, &unique_key, &columns)
    }
    fn add_column(relation: Relation, column: Column) -> Vec<Statement> {
        A::add_column(&relation, &column)
    }
    fn drop_column(relation: Relation, name: String) -> Vec<Statement> {
        A::drop_column(&relation, &name)
    }
    fn column_type(logical: LogicalType) -> String {
        A::column_type(logical)
    }
}

/// Exports an [`Adapter`] implementation as this component's `adapter` world.
#[macro_export]
macro_rules! export_adapter {
    ($adapter:ty) => {
        type __OrbitalAdapterExport = $crate::AdapterExport<$adapter>;
        $crate::__wit::adapter::__export_adapter_world!(__OrbitalAdapterExport with_types_in $crate::__wit::adapter);
    };
}
