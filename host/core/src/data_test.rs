//! Data tests: queries that return the rows breaking an expectation; a test
//! passes when it returns none.
//!
//! - **Generic tests** are declared per column in a model's config, under
//!   `tests.<column>`, as dbt users write them in YAML:
//!
//!   ```sql
//!   -- config: tests.order_id = ['unique', 'not_null']
//!   -- config: tests.status = [{ accepted_values = ['placed', 'shipped'] }]
//!   -- config: tests.customer_id = [{ relationships = { to = 'customers', field = 'customer_id' }, severity = 'warn' }]
//!   ```
//!
//!   Each becomes SQL here ([`ColumnTest::sql`]) and compiles like a model.
//! - **Singular tests** are `.sql` files under `test-paths` (default
//!   `tests/`): one SELECT returning failing rows, with an optional
//!   `-- config: severity = 'warn'` line.
//!
//! A failing test of severity `error` fails the command and, in `orbital
//! build`, skips what is built from the model it tests; `warn` only reports.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What a failing test does to the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Error,
    Warn,
}

impl Severity {
    fn parse(value: &toml::Value) -> Result<Self, String> {
        match value.as_str() {
            Some("error") => Ok(Severity::Error),
            Some("warn") => Ok(Severity::Warn),
            _ => Err(format!("`severity` is 'error' or 'warn', not {value}")),
        }
    }
}

/// The generic tests Orbital knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Generic {
    NotNull,
    Unique,
    AcceptedValues(Vec<String>),
    Relationships {
        to: String,
        field: String,
    },
    /// A test a macro plugin provides (position `test`); its arguments as
    /// JSON text (`null` when it has none).
    Custom {
        name: String,
        args: String,
    },
}

/// One generic test on one column of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnTest {
    pub column: String,
    pub test: Generic,
    pub severity: Severity,
    /// Keep its failing rows in a table (`store_failures = true`).
    #[serde(default)]
    pub store_failures: bool,
}

/// A test's `store_failures` config.
fn store_failures(value: Option<toml::Value>) -> Result<bool, String> {
    match value {
        None => Ok(false),
        Some(toml::Value::Boolean(keep)) => Ok(keep),
        Some(other) => Err(format!("`store_failures` is true or false, not {other}")),
    }
}

/// One singular test file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SingularTest {
    pub name: String,
    /// Path relative to the project root.
    pub path: PathBuf,
    pub sql: String,
    pub severity: Severity,
    /// Keep its failing rows in a table (`store_failures = true`).
    pub store_failures: bool,
}

impl Generic {
    fn name(&self) -> &'static str {
        match self {
            Generic::NotNull => "not_null",
            Generic::Unique => "unique",
            Generic::AcceptedValues(_) => "accepted_values",
            Generic::Relationships { .. } => "relationships",
            Generic::Custom { .. } => "custom",
        }
    }

    fn parse(name: &str, args: Option<&toml::Value>) -> Result<Self, String> {
        // `{ unique = {}, severity = 'warn' }`: an empty table is no arguments.
        let no_args = |test: Generic| match args {
            None => Ok(test),
            Some(toml::Value::Table(t)) if t.is_empty() => Ok(test),
            Some(_) => Err(format!("`{name}` takes no arguments")),
        };
        match name {
            "not_null" => no_args(Generic::NotNull),
            "unique" => no_args(Generic::Unique),
            "accepted_values" => {
                let values = match args {
                    Some(toml::Value::Array(values)) => values,
                    Some(toml::Value::Table(t)) => match t.get("values") {
                        Some(toml::Value::Array(values)) => values,
                        _ => return Err("`accepted_values` needs `values = [...]`".into()),
                    },
                    _ => return Err("`accepted_values` needs a list of values".into()),
                };
                if values.is_empty() {
                    return Err("`accepted_values` needs at least one value".into());
                }
                values
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s.clone()),
                        toml::Value::Integer(_)
                        | toml::Value::Float(_)
                        | toml::Value::Boolean(_) => Ok(v.to_string()),
                        other => Err(format!("`accepted_values` cannot hold {other}")),
                    })
                    .collect::<Result<_, _>>()
                    .map(Generic::AcceptedValues)
            }
            "relationships" => {
                let table = args
                    .and_then(toml::Value::as_table)
                    .ok_or("`relationships` needs `{ to = 'model', field = 'column' }`")?;
                let text = |key: &str| {
                    table
                        .get(key)
                        .and_then(toml::Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| format!("`relationships` needs `{key} = '...'`"))
                };
                Ok(Generic::Relationships {
                    to: text("to")?,
                    field: text("field")?,
                })
            }
            // Not built in: a macro plugin may provide it (checked at compile).
            other => Ok(Generic::Custom {
                name: other.to_string(),
                args: match args {
                    Some(value) => serde_json::to_string(value).map_err(|e| e.to_string())?,
                    None => "null".to_string(),
                },
            }),
        }
    }
}

impl ColumnTest {
    /// The test's node name, as dbt names it: `<test>_<model>_<column>`.
    pub fn name(&self, model: &str) -> String {
        let column: String = self
            .column
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        match &self.test {
            Generic::Relationships { to, .. } => format!("relationships_{model}_{column}__{to}"),
            Generic::Custom { name, .. } => {
                let name: String = name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                format!("{name}_{model}_{column}")
            }
            other => format!("{}_{model}_{column}", other.name()),
        }
    }

    /// The query returning the rows that fail, reading `model` by name;
    /// `None` for a custom test, whose plugin writes it.
    pub fn sql(&self, model: &str) -> Option<String> {
        let column = &self.column;
        Some(match &self.test {
            Generic::NotNull => format!("select * from {model} where {column} is null"),
            Generic::Unique => format!(
                "select {column}, count(*) as occurrences from {model} \
                 where {column} is not null group by {column} having count(*) > 1"
            ),
            Generic::AcceptedValues(values) => {
                let list: Vec<String> = values
                    .iter()
                    .map(|v| format!("'{}'", v.replace('\'', "''")))
                    .collect();
                format!(
                    "select * from {model} where {column} is not null and {column} not in ({})",
                    list.join(", ")
                )
            }
            Generic::Relationships { to, field } => format!(
                "select child.{column} from {model} as child \
                 left join {to} as parent on child.{column} = parent.{field} \
                 where child.{column} is not null and parent.{field} is null"
            ),
            Generic::Custom { .. } => return None,
        })
    }
}

/// Generic tests that macro plugins provide: a macro claiming the `test`
/// position returns the query of failing rows for a model's column.
pub trait TestMacros: Sync {
    /// The failing-rows query for `test` on `model`.`column`; `None` when no
    /// plugin provides `test`, `Some(Err)` when its plugin refused or failed.
    fn expand(
        &self,
        test: &str,
        model: &str,
        column: &str,
        args: &str,
    ) -> Option<Result<String, String>>;
    /// The tests plugins provide, for error messages.
    fn names(&self) -> Vec<String>;
}

impl TestMacros for crate::macros::NoMacros {
    fn expand(&self, _: &str, _: &str, _: &str, _: &str) -> Option<Result<String, String>> {
        None
    }
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The message for a test nothing provides.
pub fn unknown_test(name: &str, macros: &dyn TestMacros) -> String {
    let mut known = vec!["not_null", "unique", "accepted_values", "relationships"]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    known.extend(macros.names());
    format!(
        "unknown test `{name}` (generic tests: {})",
        known.join(", ")
    )
}

/// The `tests` table of a model's config: column -> list of tests, each a
/// name (`'unique'`) or a one-test table with an optional `severity`.
pub fn parse_column_tests(value: toml::Value) -> Result<Vec<ColumnTest>, String> {
    let toml::Value::Table(columns) = value else {
        return Err("config `tests` is a table: `tests.<column> = [...]`".into());
    };
    let mut out = Vec::new();
    for (column, tests) in columns {
        let tests = match tests {
            toml::Value::Array(tests) => tests,
            single => vec![single],
        };
        for test in tests {
            out.push(parse_one(&column, test)?);
        }
    }
    Ok(out)
}

fn parse_one(column: &str, test: toml::Value) -> Result<ColumnTest, String> {
    let at = |message: String| format!("tests.{column}: {message}");
    match test {
        toml::Value::String(name) => Ok(ColumnTest {
            column: column.to_string(),
            test: Generic::parse(&name, None).map_err(at)?,
            severity: Severity::Error,
            store_failures: false,
        }),
        toml::Value::Table(mut table) => {
            let severity = match table.remove("severity") {
                Some(value) => Severity::parse(&value).map_err(at)?,
                None => Severity::Error,
            };
            let store_failures = store_failures(table.remove("store_failures")).map_err(at)?;
            let mut entries = table.into_iter();
            let (Some((name, args)), None) = (entries.next(), entries.next()) else {
                return Err(at(
                    "each table names one test, e.g. { accepted_values = ['a', 'b'] }".into(),
                ));
            };
            Ok(ColumnTest {
                column: column.to_string(),
                test: Generic::parse(&name, Some(&args)).map_err(at)?,
                severity,
                store_failures,
            })
        }
        other => Err(at(format!("a test is a name or a table, not {other}"))),
    }
}

/// Where in a model file the tests of `column` are declared: the line and
/// column of `tests.<column>` (or of `tests`) in a `-- config:` line; the
/// file's start when neither is there (a folder default declared them).
pub fn declared_at(sql: &str, column: &str) -> (usize, usize) {
    let wanted = [format!("tests.{column}"), "tests".to_string()];
    for needle in &wanted {
        for (index, line) in sql.lines().enumerate() {
            let is_config = line
                .trim_start()
                .strip_prefix("--")
                .is_some_and(|rest| rest.trim_start().starts_with("config:"));
            if let Some(at) = line.find(needle.as_str()).filter(|_| is_config) {
                return (index + 1, at + 1);
            }
        }
    }
    (1, 1)
}

/// The severity a singular test's config sets; nothing else is allowed there.
/// A singular test's config: its severity, and whether its failing rows
/// are kept (`store_failures`).
pub fn singular_config(mut config: toml::Table) -> Result<(Severity, bool), String> {
    let severity = match config.remove("severity") {
        Some(value) => Severity::parse(&value)?,
        None => Severity::Error,
    };
    let keep = store_failures(config.remove("store_failures"))?;
    match config.keys().next() {
        Some(key) => Err(format!(
            "a test's config takes only `severity` and `store_failures`, not `{key}`"
        )),
        None => Ok((severity, keep)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ColumnTest>, String> {
        let table: toml::Table = toml::from_str(text).unwrap();
        parse_column_tests(table["tests"].clone())
    }

    #[test]
    fn column_tests_parse_names_tables_and_severity() {
        let tests = parse(
            "tests.id = ['unique', 'not_null']\n\
             tests.status = [{ accepted_values = ['a', 'b'], severity = 'warn' }]\n\
             tests.customer_id = { relationships = { to = 'customers', field = 'id' } }",
        )
        .unwrap();
        assert_eq!(tests.len(), 4);
        let status = tests.iter().find(|t| t.column == "status").unwrap();
        assert_eq!(status.severity, Severity::Warn);
        assert_eq!(
            status.test,
            Generic::AcceptedValues(vec!["a".into(), "b".into()])
        );
        let rel = tests.iter().find(|t| t.column == "customer_id").unwrap();
        assert_eq!(
            rel.name("orders"),
            "relationships_orders_customer_id__customers"
        );
        assert!(
            rel.sql("orders")
                .unwrap()
                .contains("left join customers as parent")
        );
    }

    #[test]
    fn bad_tests_say_what_is_wrong() {
        let error = |text| parse(text).unwrap_err();
        let custom = parse("tests.id = [{ is_between = { min = 1 } }]").unwrap();
        assert_eq!(
            custom[0].test,
            Generic::Custom {
                name: "is_between".into(),
                args: r#"{"min":1}"#.into()
            }
        );
        assert!(error("tests.id = [{ accepted_values = [] }]").contains("at least one"));
        assert!(error("tests.id = [{ relationships = { to = 'x' } }]").contains("field"));
        assert!(error("tests.id = [{ not_null = 1 }]").contains("takes no arguments"));
        assert!(error("tests.id = [{ unique = {}, severity = 'fatal' }]").contains("severity"));
        assert!(error("tests = ['unique']").contains("tests.<column>"));
    }

    #[test]
    fn declarations_are_found_on_their_config_line() {
        let sql = "-- config: tags = ['x']\n-- config: tests.id = ['unique']\nselect 1 as id";
        assert_eq!(declared_at(sql, "id"), (2, 12));
        assert_eq!(declared_at("select 1", "id"), (1, 1));
    }

    #[test]
    fn store_failures_is_a_test_config() {
        let tests =
            parse("tests.id = [{ unique = {}, store_failures = true }, 'not_null']").unwrap();
        assert!(tests[0].store_failures && !tests[1].store_failures);
        assert!(parse("tests.id = [{ unique = {}, store_failures = 'yes' }]").is_err());
        let table = |text: &str| toml::from_str::<toml::Table>(text).unwrap();
        assert_eq!(
            singular_config(table("store_failures = true")).unwrap(),
            (Severity::Error, true)
        );
        let typo = singular_config(table("store_failure = true")).unwrap_err();
        assert!(typo.contains("not `store_failure`"), "{typo}");
    }

    #[test]
    fn accepted_values_quote_their_values() {
        let test = ColumnTest {
            column: "s".into(),
            test: Generic::AcceptedValues(vec!["it's".into()]),
            severity: Severity::Error,
            store_failures: false,
        };
        assert!(test.sql("m").unwrap().ends_with("not in ('it''s')"));
    }
}
