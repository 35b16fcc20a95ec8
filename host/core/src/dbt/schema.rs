//! Schema files: `*.yml` under the model folders, with each model's
//! config, description, columns with their descriptions and generic tests,
//! and the project's `sources:`; and the `{% docs %}` blocks of the `*.md`
//! files beside them, which descriptions name with `doc('name')`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::config::SourceConfig;
use crate::error::{Error, Location, Result};

/// What the schema files of a project say.
pub(super) struct Schemas {
    /// Per model, its config as native config writes it: the `config:`
    /// mapping, `description`, `columns.<column>.description`, and
    /// `tests.<column> = [...]`.
    pub(super) models: BTreeMap<String, toml::Table>,
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
    description: Option<String>,
    #[serde(default)]
    config: serde_json::Map<String, Value>,
    #[serde(default)]
    columns: Vec<ColumnEntry>,
}

#[derive(Deserialize)]
struct ColumnEntry {
    name: String,
    description: Option<String>,
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

/// Reads every schema file and docs block under `model_paths`.
pub(super) fn load(root: &Path, model_paths: &[PathBuf]) -> Result<Schemas> {
    let mut schemas = Schemas {
        models: BTreeMap::new(),
        sources: BTreeMap::new(),
        files: Vec::new(),
    };
    let mut docs_files = Vec::new();
    for dir in model_paths {
        for ext in ["yml", "yaml"] {
            schemas
                .files
                .extend(crate::project::paths_with_extension(root, dir, ext)?);
        }
        docs_files.extend(crate::project::paths_with_extension(root, dir, "md")?);
    }
    schemas.files.sort();
    docs_files.sort();
    let docs = Docs::load(root, &docs_files)?;
    schemas.files.extend(docs_files);
    for path in schemas
        .files
        .iter()
        .filter(|p| p.extension().is_none_or(|e| e != "md"))
    {
        let full = root.join(path);
        let text = std::fs::read_to_string(&full).map_err(|e| Error::io(full, e))?;
        let file: SchemaFile = super::from_yaml(path, &text)?;
        let at = |needle: &str| {
            let offset = text.find(needle).unwrap_or(0);
            let (line, column) = crate::error::line_col(&text, offset);
            Location::new(path, line, column)
        };
        for model in file.models {
            let table = schemas.models.entry(model.name.clone()).or_default();
            let own =
                super::json_to_toml_table(&model.config).map_err(|message| Error::Config {
                    location: at(&format!("name: {}", model.name)),
                    message: format!("model `{}`, config: {message}", model.name),
                })?;
            table.extend(own);
            if let Some(description) = &model.description {
                let text = docs.render(description, || at(description))?;
                table.insert("description".into(), toml::Value::String(text));
            }
            let mut described = toml::Table::new();
            for column in &model.columns {
                if let Some(description) = &column.description {
                    let text = docs.render(description, || at(description))?;
                    let mut entry = toml::Table::new();
                    entry.insert("description".into(), toml::Value::String(text));
                    described.insert(column.name.clone(), toml::Value::Table(entry));
                }
            }
            if !described.is_empty() {
                table.insert("columns".into(), toml::Value::Table(described));
            }
            let mut tests = toml::Table::new();
            for column in model.columns {
                let declared = column.tests.iter().chain(&column.data_tests);
                let column_tests: Vec<toml::Value> = declared
                    .map(native_test)
                    .collect::<std::result::Result<_, String>>()
                    .map_err(|message| Error::Config {
                        location: at(&format!("name: {}", column.name)),
                        message: format!(
                            "model `{}`, column `{}`: {message}",
                            model.name, column.name
                        ),
                    })?;
                if !column_tests.is_empty() {
                    tests.insert(column.name, toml::Value::Array(column_tests));
                }
            }
            if !tests.is_empty() {
                table.insert("tests".into(), toml::Value::Table(tests));
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
    schemas.models.retain(|_, table| !table.is_empty());
    Ok(schemas)
}

/// The `{% docs name %}...{% enddocs %}` blocks of a project.
struct Docs {
    env: minijinja::Environment<'static>,
}

impl Docs {
    fn load(root: &Path, files: &[PathBuf]) -> Result<Self> {
        let mut blocks: BTreeMap<String, String> = BTreeMap::new();
        for path in files {
            let full = root.join(path);
            let text = std::fs::read_to_string(&full).map_err(|e| Error::io(full, e))?;
            for (name, body, at) in docs_blocks(&text).map_err(|(offset, message)| {
                let (line, column) = crate::error::line_col(&text, offset);
                Error::Config {
                    location: Location::new(path, line, column),
                    message,
                }
            })? {
                if blocks.insert(name.clone(), body).is_some() {
                    let (line, column) = crate::error::line_col(&text, at);
                    return Err(Error::Config {
                        location: Location::new(path, line, column),
                        message: format!("a second docs block named `{name}`"),
                    });
                }
            }
        }
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let blocks = std::sync::Arc::new(blocks);
        env.add_function("doc", move |name: String| match blocks.get(&name) {
            Some(body) => Ok(body.clone()),
            None => {
                let hint =
                    crate::error::did_you_mean(&name, blocks.keys().map(String::as_str), 3, true);
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("doc('{name}'): no docs block is named `{name}`{hint}"),
                ))
            }
        });
        Ok(Self { env })
    }

    /// A description with its `doc('name')` calls (and any other Jinja)
    /// rendered; an error is placed `at` the description.
    fn render(&self, text: &str, at: impl Fn() -> Location) -> Result<String> {
        if !text.contains("{{") && !text.contains("{%") {
            return Ok(text.to_string());
        }
        self.env
            .render_str(text, minijinja::context! {})
            .map_err(|e| {
                let detail = e.detail().map_or(String::new(), |d| format!(": {d}"));
                Error::Config {
                    location: at(),
                    message: format!("description: Jinja: {}{detail}", e.kind()),
                }
            })
    }
}

/// A docs block: its name, its body (trimmed) and the byte where it starts.
type DocsBlock = (String, String, usize);

/// The docs blocks of one file; or where the text is malformed and why.
fn docs_blocks(text: &str) -> std::result::Result<Vec<DocsBlock>, (usize, String)> {
    Ok(blocks(text, "docs")?
        .into_iter()
        .map(|b| (b.name, text[b.body.clone()].trim().to_string(), b.start))
        .collect())
}

/// A `{% kind name %} ... {% endkind %}` block of a file.
pub(super) struct Block {
    pub(super) name: String,
    /// The bytes between the two tags.
    pub(super) body: std::ops::Range<usize>,
    /// Where its opening tag starts.
    pub(super) start: usize,
}

/// The `kind` blocks of `text` (`docs`, `snapshot`); or where the text is
/// malformed and why.
pub(super) fn blocks(text: &str, kind: &str) -> std::result::Result<Vec<Block>, (usize, String)> {
    let mut found_blocks = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("{%") {
        let start = from + found;
        let Some(close) = text[start..].find("%}") else {
            return Err((start, "a `{%` tag that never ends with `%}`".into()));
        };
        let tag = text[start + 2..start + close]
            .trim_matches(['-', '+'])
            .trim();
        let after = start + close + 2;
        from = after;
        let Some(name) = tag
            .strip_prefix(kind)
            .filter(|rest| rest.starts_with(char::is_whitespace))
        else {
            continue;
        };
        let name = name.trim().to_string();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((
                start,
                format!("{kind} block name `{name}`: use letters, digits and `_`"),
            ));
        }
        let end = end_tag(text, after, &format!("end{kind}")).ok_or_else(|| {
            (
                start,
                format!("{kind} block `{name}` has no `{{% end{kind} %}}`"),
            )
        })?;
        found_blocks.push(Block {
            name,
            body: after..end.0,
            start,
        });
        from = end.1;
    }
    Ok(found_blocks)
}

/// Where the `{% end %}` tag (`enddocs`, ...) after `from` starts and ends.
fn end_tag(text: &str, from: usize, end: &str) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(found) = text[at..].find("{%") {
        let start = at + found;
        let close = text[start..].find("%}")?;
        let tag = text[start + 2..start + close]
            .trim_matches(['-', '+'])
            .trim();
        if tag == end {
            return Some((start, start + close + 2));
        }
        at = start + close + 2;
    }
    None
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
    let mut config = match args.remove("config") {
        Some(Value::Object(config)) => config,
        _ => serde_json::Map::new(),
    };
    let severity = config
        .remove("severity")
        .or_else(|| args.remove("severity"));
    let store_failures = config
        .remove("store_failures")
        .or_else(|| args.remove("store_failures"));
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
    if let Some(Value::Bool(keep)) = store_failures {
        entry.insert("store_failures".into(), toml::Value::Boolean(keep));
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

    #[test]
    fn docs_blocks_are_found_and_descriptions_name_them() {
        let text = "intro\n{% docs status %}\nOne of *placed*, *shipped*.\n{% enddocs %}\n\
                    {%- docs __overview__ -%} The shop. {%- enddocs -%}\n";
        let blocks = docs_blocks(text).unwrap();
        let names: Vec<&str> = blocks.iter().map(|(name, _, _)| name.as_str()).collect();
        assert_eq!(names, ["status", "__overview__"]);
        assert_eq!(blocks[0].1, "One of *placed*, *shipped*.");
        assert_eq!(blocks[0].2, 6);
        assert_eq!(blocks[1].1, "The shop.");
        let unterminated = docs_blocks("{% docs x %}\nno end").unwrap_err();
        assert_eq!(unterminated.0, 0);
        assert!(
            unterminated.1.contains("no `{% enddocs %}`"),
            "{}",
            unterminated.1
        );
        assert!(docs_blocks("{% docs a-b %}{% enddocs %}").is_err());

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("docs.md"), text).unwrap();
        let docs = Docs::load(dir.path(), &[PathBuf::from("docs.md")]).unwrap();
        let at = || Location::new("models/schema.yml", 3, 9);
        assert_eq!(
            docs.render("Status: {{ doc('status') }}", at).unwrap(),
            "Status: One of *placed*, *shipped*."
        );
        assert_eq!(docs.render("plain text", at).unwrap(), "plain text");
        let missing = docs
            .render("{{ doc('stats') }}", at)
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("models/schema.yml:3:9") && missing.contains("did you mean `status`?"),
            "{missing}"
        );
        std::fs::write(
            dir.path().join("twice.md"),
            "{% docs status %}x{% enddocs %}",
        )
        .unwrap();
        let twice = Docs::load(
            dir.path(),
            &[PathBuf::from("docs.md"), PathBuf::from("twice.md")],
        );
        assert!(
            twice
                .err()
                .unwrap()
                .to_string()
                .contains("a second docs block named `status`")
        );
    }
}
