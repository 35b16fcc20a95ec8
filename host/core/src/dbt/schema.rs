//! Schema files: `*.yml` under the model folders, with each model's
//! columns and their generic tests, and the project's `sources:`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::config::SourceConfig;
use crate::error::{Error, Location, Result};

/// What the schema files of a project say.
pub(super) struct Schemas {
    /// Per model: `tests.<column> = [...]`, as native config writes them.
    pub(super) tests: BTreeMap<String, toml::Table>,
    pub(super) sources: BTreeMap<String, SourceConfig>,
    pub(super) files: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct SchemaFile {
    #[serde(default)]
    models: Vec<ModelEntry>,
    #[serde(default)]
    sources: Vec<SourceEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    name: String,
    #[serde(default)]
    columns: Vec<ColumnEntry>,
}

#[derive(Deserialize)]
struct ColumnEntry {
    name: String,
    #[serde(default)]
    tests: Vec<Value>,
    #[serde(default)]
    data_tests: Vec<Value>,
}

#[derive(Deserialize)]
struct SourceEntry {
    name: String,
    schema: Option<String>,
    #[serde(default)]
    tables: Vec<TableEntry>,
}

#[derive(Deserialize)]
struct TableEntry {
    name: String,
}

/// Reads every schema file under `model_paths`.
pub(super) fn load(root: &Path, model_paths: &[PathBuf]) -> Result<Schemas> {
    let mut schemas = Schemas {
        tests: BTreeMap::new(),
        sources: BTreeMap::new(),
        files: Vec::new(),
    };
    for dir in model_paths {
        for ext in ["yml", "yaml"] {
            schemas
                .files
                .extend(crate::project::paths_with_extension(root, dir, ext)?);
        }
    }
    schemas.files.sort();
    for path in &schemas.files {
        let full = root.join(path);
        let text = std::fs::read_to_string(&full).map_err(|e| Error::io(full, e))?;
        let file: SchemaFile = super::from_yaml(path, &text)?;
        let at = |needle: &str| {
            let offset = text.find(needle).unwrap_or(0);
            let (line, column) = crate::error::line_col(&text, offset);
            Location::new(path, line, column)
        };
        for model in file.models {
            let table = schemas.tests.entry(model.name.clone()).or_default();
            for column in model.columns {
                let declared = column.tests.iter().chain(&column.data_tests);
                let tests: Vec<toml::Value> = declared
                    .map(native_test)
                    .collect::<std::result::Result<_, String>>()
                    .map_err(|message| Error::Config {
                        location: at(&format!("name: {}", column.name)),
                        message: format!(
                            "model `{}`, column `{}`: {message}",
                            model.name, column.name
                        ),
                    })?;
                if !tests.is_empty() {
                    table.insert(column.name, toml::Value::Array(tests));
                }
            }
        }
        for source in file.sources {
            let tables = source.tables.into_iter().map(|t| t.name).collect();
            schemas.sources.insert(
                source.name,
                SourceConfig {
                    schema: source.schema,
                    tables,
                },
            );
        }
    }
    schemas.tests.retain(|_, table| !table.is_empty());
    Ok(schemas)
}

/// One dbt test entry as native config writes it: `'unique'`, or
/// `{ accepted_values = { values = [...] }, severity = 'warn' }`.
fn native_test(test: &Value) -> std::result::Result<toml::Value, String> {
    let object = match test {
        Value::String(name) => return Ok(toml::Value::String(name.clone())),
        Value::Object(object) if object.len() == 1 => object,
        other => {
            return Err(format!(
                "a test is a name or a one-key mapping, not {other}"
            ));
        }
    };
    let Some((name, args)) = object.iter().next() else {
        return Err("an empty test".into());
    };
    let mut args = match args {
        Value::Object(args) => args.clone(),
        Value::Null => serde_json::Map::new(),
        other => {
            return Err(format!(
                "`{name}` takes a mapping of arguments, not {other}"
            ));
        }
    };
    // dbt 1.10 and later nest a test's arguments under `arguments`.
    if let Some(Value::Object(nested)) = args.remove("arguments") {
        args.extend(nested);
    }
    let severity = match args.remove("config") {
        Some(Value::Object(mut config)) => config.remove("severity"),
        _ => None,
    }
    .or_else(|| args.remove("severity"));
    if name == "relationships"
        && let Some(Value::String(to)) = args.get("to")
    {
        let model = ref_name(to).ok_or_else(|| {
            format!("relationships: `to: {to}` is not a ref('model') Orbital can follow")
        })?;
        args.insert("to".into(), Value::String(model));
    }
    let mut entry = toml::Table::new();
    entry.insert(
        name.clone(),
        toml::Value::Table(super::json_to_toml_table(&args)?),
    );
    if let Some(Value::String(severity)) = severity {
        entry.insert(
            "severity".into(),
            toml::Value::String(severity.to_lowercase()),
        );
    }
    Ok(toml::Value::Table(entry))
}

/// The model a `ref('m')` (or `ref('package', 'm')`) names.
fn ref_name(text: &str) -> Option<String> {
    let inner = text.trim().strip_prefix("ref(")?.strip_suffix(')')?;
    let last = inner.rsplit(',').next()?.trim();
    let unquoted = last
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| last.strip_prefix('"').and_then(|s| s.strip_suffix('"')))?;
    Some(unquoted.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbt_tests_become_native_ones() {
        let test = |yaml: &str| native_test(&serde_yaml_ng::from_str(yaml).unwrap()).unwrap();
        assert_eq!(test("unique").to_string(), "\"unique\"");
        assert_eq!(
            test("accepted_values: {values: [a, b], config: {severity: warn}}").to_string(),
            "{ accepted_values = { values = [\"a\", \"b\"] }, severity = \"warn\" }"
        );
        assert_eq!(
            test("relationships: {to: \"ref('customers')\", field: customer_id}").to_string(),
            "{ relationships = { field = \"customer_id\", to = \"customers\" } }"
        );
        assert_eq!(
            test("accepted_values: {arguments: {values: [a]}}").to_string(),
            "{ accepted_values = { values = [\"a\"] } }"
        );
        let bad = native_test(
            &serde_yaml_ng::from_str("relationships: {to: \"source('a', 'b')\", field: x}")
                .unwrap(),
        );
        assert!(bad.unwrap_err().contains("not a ref('model')"));
        assert_eq!(ref_name("ref(\"pkg\", \"m\")").as_deref(), Some("m"));
    }
}
