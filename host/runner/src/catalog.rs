//! What the warehouse really holds, read in one catalog query per run: the
//! state store says which builds exist and what each environment's views
//! read, but a relation dropped by hand, an older copy of the database
//! restored in place, or another checkout with its own store writing the
//! same warehouse make the store wrong. The plan checks every reuse against
//! this instead of trusting the store. On SQLite the query is skipped while
//! the file's schema cookie is the one at which the environment last agreed
//! with the store ([`Warehouse::sqlite_schema_cookie`]).

use std::collections::HashMap;

use orbital_core::dag::RelationName;
use orbital_plugin_host::types::{DbError, RelationKind, Value};

use crate::database::{Warehouse, plain};

/// Whether a relation is a table or a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Table,
    View,
}

/// One relation of the catalog.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    kind: Kind,
    /// For a view: the relations it reads (exactly, where the database
    /// records dependencies; on SQLite, the one relation of a `SELECT *
    /// FROM name` view, else none).
    reads: Vec<RelationName>,
}

/// The relations of the schemas a run touches.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    relations: HashMap<RelationName, Entry>,
}

impl Catalog {
    pub fn exists(&self, relation: &RelationName) -> bool {
        self.relations.contains_key(relation)
    }

    /// What stands at `relation`, if anything.
    pub fn kind(&self, relation: &RelationName) -> Option<RelationKind> {
        self.relations.get(relation).map(|e| match e.kind {
            Kind::Table => RelationKind::Table,
            Kind::View => RelationKind::View,
        })
    }

    /// Whether `view` is a view that reads exactly `physical`.
    pub fn reads(&self, view: &RelationName, physical: &RelationName) -> bool {
        self.relations
            .get(view)
            .is_some_and(|e| e.kind == Kind::View && e.reads.len() == 1 && e.reads[0] == *physical)
    }

    /// Notes what stands at `relation`, as an adapter's relation-kind
    /// query said (a target that cannot list its catalog).
    pub(crate) fn insert_kind(&mut self, relation: RelationName, kind: RelationKind) {
        let kind = match kind {
            RelationKind::Table => Kind::Table,
            RelationKind::View => Kind::View,
        };
        self.insert(relation, kind, Vec::new());
    }

    fn insert(&mut self, relation: RelationName, kind: Kind, reads: Vec<RelationName>) {
        self.relations.insert(relation, Entry { kind, reads });
    }
}

impl Warehouse {
    /// The schema cookie of the SQLite file `url` names, read from the
    /// file's header without opening the database (which would parse its
    /// whole schema): SQLite adds one to it with every CREATE, DROP or
    /// ALTER, and it is what [`Warehouse::schema_cookie`] reads. `None`
    /// where it cannot be read that way: not a SQLite file, or a
    /// write-ahead log with content, whose newer header the file does not
    /// show yet.
    pub fn sqlite_schema_cookie(url: &str, base: &std::path::Path) -> Option<String> {
        use std::io::Read;
        let file = Self::existing_file(url, base)?;
        let mut wal = file.clone().into_os_string();
        wal.push("-wal");
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return None;
        }
        let mut header = [0u8; 44];
        std::fs::File::open(&file)
            .ok()?
            .read_exact(&mut header)
            .ok()?;
        header.starts_with(b"SQLite format 3\0").then(|| {
            u32::from_be_bytes([header[40], header[41], header[42], header[43]]).to_string()
        })
    }

    /// The schema cookie of an open SQLite warehouse (`PRAGMA
    /// schema_version`, what [`Warehouse::sqlite_schema_cookie`] reads from
    /// the file); `None` on PostgreSQL, whose catalog query costs about
    /// what any summary of its catalog would (docs/benchmarks.md).
    pub async fn schema_cookie(&self) -> Result<Option<String>, DbError> {
        if !self.is_sqlite() {
            return Ok(None);
        }
        let rows = self.query(plain("PRAGMA schema_version")).await?;
        match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Integer(cookie)) => Ok(Some(cookie.to_string())),
            other => Err(DbError {
                message: format!("PRAGMA schema_version returned {other:?}"),
                code: None,
                transient: false,
            }),
        }
    }

    /// The tables and views of `schemas` (`None`: the connection's default
    /// schema, or SQLite's only one), in one query.
    pub async fn catalog(&self, schemas: &[Option<String>]) -> Result<Catalog, DbError> {
        if !self.lists_catalog() {
            return Err(DbError {
                message: format!(
                    "a {}:// target's adapter cannot list its relations",
                    self.scheme()
                ),
                code: None,
                transient: false,
            });
        }
        if self.is_sqlite() {
            return self.sqlite_catalog().await;
        }
        if self.is_mysql() {
            return self.mysql_catalog(schemas).await;
        }
        self.postgres_catalog(schemas).await
    }

    /// MySQL records no view's dependencies, only its definition, which
    /// the server rewrites (`select `db`.`t`.`a` AS `a` from `db`.`t``):
    /// what a view reads is the one relation such a definition selects
    /// from, as on SQLite. Names and definitions are two queries: MariaDB
    /// lists names from the data dictionary alone, while a definition
    /// opens its view, and only environment views' are needed (a join
    /// opened every table: 7 ms of jaffle_shop's 60 ms run).
    async fn mysql_catalog(&self, schemas: &[Option<String>]) -> Result<Catalog, DbError> {
        let wanted = schemas
            .iter()
            .map(|s| if s.is_some() { "?" } else { "DATABASE()" })
            .collect::<Vec<_>>()
            .join(", ");
        let params: Vec<Value> = schemas
            .iter()
            .flatten()
            .map(|s| Value::Text(s.clone()))
            .collect();
        let mut names = plain(&format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, DATABASE() FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA IN ({wanted}) AND TABLE_TYPE IN ('BASE TABLE', 'VIEW')"
        ));
        names.params = params.clone();
        let mut definitions = plain(&format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS \
             WHERE TABLE_SCHEMA IN ({wanted}) AND TABLE_NAME NOT LIKE 'orbital\\_\\_%'"
        ));
        definitions.params = params;
        let rows = self.query(names).await?;
        let defined: HashMap<(String, String), String> = self
            .query(definitions)
            .await?
            .rows
            .into_iter()
            .filter_map(|row| match <[Value; 3]>::try_from(row) {
                Ok(
                    [
                        Value::Text(schema),
                        Value::Text(name),
                        Value::Text(definition),
                    ],
                ) => Some(((schema, name), definition)),
                _ => None,
            })
            .collect();
        let default_asked = schemas.iter().any(Option::is_none);
        let mut catalog = Catalog::default();
        for row in &rows.rows {
            let (Some(Value::Text(schema)), Some(Value::Text(name)), Some(Value::Text(kind))) =
                (row.first(), row.get(1), row.get(2))
            else {
                continue;
            };
            let current = match row.get(3) {
                Some(Value::Text(current)) => Some(current.as_str()),
                _ => None,
            };
            let schema_of = |schema: &str| {
                (!(default_asked && Some(schema) == current)).then(|| schema.to_string())
            };
            let relation = RelationName {
                schema: schema_of(schema),
                identifier: name.clone(),
            };
            if kind == "VIEW" {
                let reads = match defined.get(&(schema.clone(), name.clone())) {
                    Some(definition) => mysql_view_reads(definition)
                        .map(|(schema, identifier)| RelationName {
                            schema: schema.as_deref().and_then(schema_of),
                            identifier,
                        })
                        .into_iter()
                        .collect(),
                    None => Vec::new(),
                };
                catalog.insert(relation, Kind::View, reads);
            } else {
                catalog.insert(relation, Kind::Table, Vec::new());
            }
        }
        Ok(catalog)
    }

    async fn sqlite_catalog(&self) -> Result<Catalog, DbError> {
        let rows = self
            .query(plain(
                // A view's definition only for environment views: builds
                // are checked for existence alone.
                "SELECT type, name, CASE WHEN type = 'view' AND name NOT LIKE 'orbital\\_\\_%' ESCAPE '\\' \
                 THEN sql END FROM sqlite_master WHERE type IN ('table', 'view')",
            ))
            .await?;
        let mut catalog = Catalog::default();
        for row in &rows.rows {
            let (Some(Value::Text(kind)), Some(Value::Text(name))) = (row.first(), row.get(1))
            else {
                continue;
            };
            let relation = RelationName {
                schema: None,
                identifier: name.clone(),
            };
            match kind.as_str() {
                "view" => {
                    let reads = match row.get(2) {
                        Some(Value::Text(sql)) => select_star_from(sql).into_iter().collect(),
                        _ => Vec::new(),
                    };
                    catalog.insert(relation, Kind::View, reads);
                }
                _ => catalog.insert(relation, Kind::Table, Vec::new()),
            }
        }
        Ok(catalog)
    }

    async fn postgres_catalog(&self, schemas: &[Option<String>]) -> Result<Catalog, DbError> {
        let mut statement = plain(
            "WITH wanted AS (
                 SELECT CASE WHEN w = chr(2) THEN current_schema() ELSE w END AS nspname,
                        CASE WHEN w = chr(2) THEN '' ELSE w END AS asked
                 FROM unnest(string_to_array($1, chr(1))) AS w
             )
             SELECT wanted.asked, c.relname, CASE WHEN c.relkind IN ('v', 'm') THEN 'view' ELSE 'table' END,
                    -- What a view reads is asked only of environment views:
                    -- builds are checked for existence alone.
                    CASE WHEN c.relkind = 'v' AND c.relname NOT LIKE 'orbital\\_\\_%' THEN
                    (SELECT string_agg(
                                CASE WHEN rn.nspname = current_schema() AND wanted.asked = '' THEN '' ELSE rn.nspname END
                                || chr(1) || r.relname, chr(2))
                     FROM pg_rewrite w
                     JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
                                     AND d.refclassid = 'pg_class'::regclass
                     JOIN pg_class r ON r.oid = d.refobjid AND r.oid <> c.oid
                     JOIN pg_namespace rn ON rn.oid = r.relnamespace
                     WHERE w.ev_class = c.oid) END
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN wanted ON wanted.nspname = n.nspname
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')",
        );
        statement.params = vec![Value::Text(schema_list(schemas))];
        let rows = self.query(statement).await?;
        let mut catalog = Catalog::default();
        let schema_of = |s: &str| (!s.is_empty()).then(|| s.to_string());
        for row in &rows.rows {
            let (Some(Value::Text(schema)), Some(Value::Text(name)), Some(Value::Text(kind))) =
                (row.first(), row.get(1), row.get(2))
            else {
                continue;
            };
            let relation = RelationName {
                schema: schema_of(schema),
                identifier: name.clone(),
            };
            let kind = if kind == "view" {
                Kind::View
            } else {
                Kind::Table
            };
            let mut reads: Vec<RelationName> = match row.get(3) {
                Some(Value::Text(list)) => list
                    .split('\u{2}')
                    .filter_map(|pair| pair.split_once('\u{1}'))
                    .map(|(schema, name)| RelationName {
                        schema: schema_of(schema),
                        identifier: name.to_string(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            reads.sort_by(|a, b| (&a.schema, &a.identifier).cmp(&(&b.schema, &b.identifier)));
            reads.dedup();
            catalog.insert(relation, kind, reads);
        }
        Ok(catalog)
    }
}

/// Schema names as one text parameter, joined by chr(1); chr(2) stands for
/// the default schema (the catalog reports it back as `''`).
fn schema_list(schemas: &[Option<String>]) -> String {
    let names: Vec<String> = schemas
        .iter()
        .map(|s| s.clone().unwrap_or_else(|| "\u{2}".into()))
        .collect();
    names.join("\u{1}")
}

/// The relation a SQLite view of the form Orbital publishes (`CREATE VIEW
/// .. AS SELECT * FROM name`) reads; `None` for any other definition.
fn select_star_from(sql: &str) -> Option<RelationName> {
    let upper = sql.to_ascii_uppercase();
    let at = upper.rfind("SELECT * FROM ")?;
    let rest = sql[at + "SELECT * FROM ".len()..].trim();
    let (name, rest) = identifier(rest)?;
    let (name, rest) = match rest.strip_prefix('.') {
        // `"main"."name"`: the schema is SQLite's only one.
        Some(after) => identifier(after)?,
        None => (name, rest),
    };
    rest.trim_end_matches(';')
        .trim()
        .is_empty()
        .then_some(RelationName {
            schema: None,
            identifier: name,
        })
}

/// The relation (schema, name) a MySQL view definition as the server
/// keeps it selects from, when it selects from one relation and nothing
/// follows: `select ... from `db`.`t``.
fn mysql_view_reads(definition: &str) -> Option<(Option<String>, String)> {
    let at = definition.to_ascii_lowercase().rfind(" from `")?;
    let rest = definition[at + " from ".len()..].trim();
    let (first, rest) = identifier(rest)?;
    let (schema, name, rest) = match rest.strip_prefix('.') {
        Some(after) => {
            let (name, rest) = identifier(after)?;
            (Some(first), name, rest)
        }
        None => (None, first, rest),
    };
    rest.trim().is_empty().then_some((schema, name))
}

/// A leading identifier, double-quoted or backquoted (a doubled quote
/// escapes one) or bare, and what follows it.
fn identifier(text: &str) -> Option<(String, &str)> {
    let quote = text.chars().next().filter(|c| matches!(c, '"' | '`'));
    if let Some(quote) = quote {
        let quoted = &text[1..];
        let mut name = String::new();
        let mut chars = quoted.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c != quote {
                name.push(c);
            } else if chars.peek().is_some_and(|(_, next)| *next == quote) {
                name.push(quote);
                chars.next();
            } else {
                return Some((name, &quoted[i + 1..]));
            }
        }
        return None;
    }
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(text.len());
    (end > 0).then(|| (text[..end].to_string(), &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(identifier: &str) -> Option<RelationName> {
        Some(RelationName {
            schema: None,
            identifier: identifier.into(),
        })
    }

    #[test]
    fn reads_the_relation_a_published_view_selects_from() {
        assert_eq!(
            select_star_from(
                "CREATE VIEW \"customers\" AS\nSELECT * FROM \"orbital__customers__0a1b\""
            ),
            name("orbital__customers__0a1b")
        );
        assert_eq!(
            select_star_from("CREATE VIEW x AS SELECT * FROM \"main\".\"we\"\"ird\";"),
            name("we\"ird")
        );
        assert_eq!(
            select_star_from("create view v as select * from plain_name"),
            name("plain_name")
        );
    }

    #[test]
    fn reads_the_relation_a_mysql_view_selects_from() {
        assert_eq!(
            mysql_view_reads(
                "select `w`.`orbital__a__1`.`id` AS `id`,`w`.`orbital__a__1`.`from x` AS `from x` from `w`.`orbital__a__1`"
            ),
            Some((Some("w".into()), "orbital__a__1".into()))
        );
        assert_eq!(
            mysql_view_reads("select `x`.`a` AS `a` from `x`"),
            Some((None, "x".into()))
        );
        for other in [
            "select `a`.`id` AS `id` from (`a` join `b` on(1))",
            "select `w`.`t`.`id` AS `id` from `w`.`t` where 0",
            "select 1 AS `1`",
        ] {
            assert_eq!(mysql_view_reads(other), None, "{other}");
        }
    }

    #[test]
    fn any_other_view_reads_nothing_it_can_vouch_for() {
        for sql in [
            "CREATE VIEW v AS SELECT * FROM \"orbital__a__1\" WHERE 1 = 0",
            "CREATE VIEW v AS SELECT id FROM t",
            "CREATE VIEW v AS SELECT * FROM \"unterminated",
            "CREATE VIEW v AS SELECT * FROM a JOIN b ON true",
        ] {
            assert_eq!(select_star_from(sql), None, "{sql}");
        }
    }
}
