//! `orbital init --from-dbt`: a dbt project written out as the equivalent
//! native one (plain SQL with `-- config:` lines, `orbital.toml`, the seed
//! files), and what could not be translated. Pure: the caller writes.

use std::path::{Path, PathBuf};

use crate::config::ProjectConfig;
use crate::data_test::{ColumnTest, Generic, Severity};
use crate::error::Result;
use crate::project::{Model, Project};

/// A native project's files, and notes on what was not translated.
#[derive(Debug, Default)]
pub struct Translation {
    /// Project-relative path and text of each file to write.
    pub files: Vec<(PathBuf, String)>,
    /// Seed files to copy: (from, project-relative path to write).
    pub seeds: Vec<(PathBuf, PathBuf)>,
    pub notes: Vec<String>,
}

/// Translates the dbt project in `dir`, its models rendered for its
/// default target.
pub fn translate(dir: &Path) -> Result<Translation> {
    let config = super::load_config(dir)?;
    let project = Project::load_with_config(dir, config)?;
    let mut out = Translation::default();
    out.files.push((
        "orbital.toml".into(),
        orbital_toml(&project.config, &mut out.notes),
    ));
    let target_schema = super::jinja_target(&project.config).2;
    for model in &project.models {
        let path = native_path(&project.config.model_paths, &model.path, "models");
        out.files
            .push((path, model_file(model, &target_schema, &mut out.notes)));
    }
    for name in &project.disabled {
        out.notes
            .push(format!("model `{name}` is disabled: not written"));
    }
    for seed in &project.seeds {
        let path = native_path(&project.config.seed_paths, &seed.path, "seeds");
        out.seeds.push((dir.join(&seed.path), path));
    }
    for test in &project.tests {
        let path = native_path(&project.config.test_paths, &test.path, "tests");
        let severity = match test.severity {
            Severity::Warn => "-- config: severity = 'warn'\n",
            Severity::Error => "",
        };
        let keep = match test.store_failures {
            true => "-- config: store_failures = true\n",
            false => "",
        };
        out.files
            .push((path, format!("{severity}{keep}{}\n", test.sql.trim_end())));
    }
    Ok(out)
}

/// `path` (under one of `folders`) under `native` instead.
fn native_path(folders: &[PathBuf], path: &Path, native: &str) -> PathBuf {
    let relative = folders
        .iter()
        .find_map(|folder| path.strip_prefix(folder).ok())
        .unwrap_or(path);
    Path::new(native).join(relative)
}

fn orbital_toml(config: &ProjectConfig, notes: &mut Vec<String>) -> String {
    let mut text = format!("name = {}\n", toml::Value::String(config.name.clone()));
    if let Some(default) = &config.default_target {
        text.push_str(&format!(
            "default-target = {}\n",
            toml::Value::String(default.clone())
        ));
    }
    for (name, target) in &config.targets {
        text.push_str(&format!("\n[targets.{name}]\n"));
        let url = without_password(&target.url, name, notes);
        text.push_str(&format!("url = {}\n", toml::Value::String(url)));
        if let Some(schema) = &target.schema {
            text.push_str(&format!(
                "schema = {}\n",
                toml::Value::String(schema.clone())
            ));
        }
        if let Some(threads) = target.threads {
            text.push_str(&format!("threads = {threads}\n"));
        }
    }
    for (name, source) in &config.sources {
        text.push_str(&format!("\n[sources.{name}]\n"));
        if let Some(schema) = &source.schema {
            text.push_str(&format!(
                "schema = {}\n",
                toml::Value::String(schema.clone())
            ));
        }
        let tables: Vec<toml::Value> = source
            .tables
            .iter()
            .map(|t| toml::Value::String(t.clone()))
            .collect();
        text.push_str(&format!("tables = {}\n", toml::Value::Array(tables)));
    }
    text
}

/// A target URL with its password replaced by an environment variable
/// reference: orbital.toml is committed, passwords are not.
fn without_password(url: &str, target: &str, notes: &mut Vec<String>) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    let Some((user, _password)) = credentials.split_once(':') else {
        return url.to_string();
    };
    let variable = format!(
        "ORBITAL_{}_PASSWORD",
        target.to_ascii_uppercase().replace('-', "_")
    );
    notes.push(format!(
        "target `{target}`: its password is read from ${{{variable}}}, not written"
    ));
    format!("{scheme}://{user}:${{{variable}}}@{host}")
}

/// A native model file: its config as `-- config:` lines, then its SQL.
fn model_file(model: &Model, target_schema: &str, notes: &mut Vec<String>) -> String {
    let config = &model.config;
    let mut lines = vec![format!(
        "materialized = {}",
        toml::Value::String(config.materialized.clone())
    )];
    if !config.tags.is_empty() {
        let tags = config
            .tags
            .iter()
            .cloned()
            .map(toml::Value::String)
            .collect();
        lines.push(format!("tags = {}", toml::Value::Array(tags)));
    }
    for (key, value) in &config.extra {
        // dbt's schema is the whole name; a native one is what follows
        // `<target schema>_`.
        let value = &match (key.as_str(), value) {
            (crate::project::SCHEMA, serde_json::Value::String(full)) => {
                match full.strip_prefix(&format!("{target_schema}_")) {
                    Some(custom) => serde_json::Value::String(custom.to_string()),
                    None => {
                        notes.push(format!(
                            "model `{}`: schema `{full}` is not `{target_schema}_<name>`, which is how a native project names schemas: not written",
                            model.name
                        ));
                        continue;
                    }
                }
            }
            _ => value.clone(),
        };
        match super::json_to_toml(value) {
            Ok(Some(value)) => lines.push(format!("{key} = {}", inline(&value))),
            Ok(None) => {}
            Err(e) => notes.push(format!(
                "model `{}`: config `{key}` not written: {e}",
                model.name
            )),
        }
    }
    let mut columns: Vec<(&str, Vec<toml::Value>)> = Vec::new();
    for test in &config.tests {
        let value = test_value(test);
        match columns
            .iter_mut()
            .find(|(column, _)| *column == test.column)
        {
            Some((_, tests)) => tests.push(value),
            None => columns.push((&test.column, vec![value])),
        }
    }
    for (column, tests) in columns {
        lines.push(format!(
            "tests.{} = {}",
            inline_key(column),
            inline(&toml::Value::Array(tests))
        ));
    }
    if model.incremental_text.is_some() {
        notes.push(format!(
            "model `{}`: its is_incremental() Jinja is not translated; it is written with its full build (add `where if_incremental(...)` by hand)",
            model.name
        ));
    }
    let mut text: String = lines
        .iter()
        .map(|line| format!("-- config: {line}\n"))
        .collect();
    text.push_str(model.sql.trim());
    text.push('\n');
    text
}

/// `value` as TOML on one line (a `-- config:` line): strings with their
/// line breaks escaped, tables inline.
fn inline(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => basic_string(text),
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        toml::Value::Table(table) if table.is_empty() => "{}".into(),
        toml::Value::Table(table) => {
            let entries: Vec<String> = table
                .iter()
                .map(|(key, value)| format!("{} = {}", inline_key(key), inline(value)))
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
        other => other.to_string(),
    }
}

/// A key bare where TOML allows it, else quoted.
fn inline_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        basic_string(key)
    }
}

/// A TOML basic string: `"..."` with `\`, `"` and control characters escaped.
fn basic_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One generic test as native config writes it.
fn test_value(test: &ColumnTest) -> toml::Value {
    let mut entry = toml::Table::new();
    let string = |s: &str| toml::Value::String(s.to_string());
    match &test.test {
        Generic::NotNull if test.severity == Severity::Error && !test.store_failures => {
            return string("not_null");
        }
        Generic::Unique if test.severity == Severity::Error && !test.store_failures => {
            return string("unique");
        }
        Generic::NotNull => {
            entry.insert("not_null".into(), toml::Value::Table(toml::Table::new()));
        }
        Generic::Unique => {
            entry.insert("unique".into(), toml::Value::Table(toml::Table::new()));
        }
        Generic::AcceptedValues(values) => {
            let values = values.iter().map(|v| string(v)).collect();
            entry.insert("accepted_values".into(), toml::Value::Array(values));
        }
        Generic::Relationships { to, field } => {
            let mut args = toml::Table::new();
            args.insert("to".into(), string(to));
            args.insert("field".into(), string(field));
            entry.insert("relationships".into(), toml::Value::Table(args));
        }
        Generic::Custom { name, args } => {
            let args = serde_json::from_str::<serde_json::Value>(args)
                .ok()
                .and_then(|json| super::json_to_toml(&json).ok().flatten())
                .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
            entry.insert(name.clone(), args);
        }
    }
    if test.severity == Severity::Warn {
        entry.insert("severity".into(), string("warn"));
    }
    if test.store_failures {
        entry.insert("store_failures".into(), toml::Value::Boolean(true));
    }
    toml::Value::Table(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dbt_schema_becomes_the_native_custom_schema() {
        let model = |schema: &str| Model {
            name: "people".into(),
            path: "models/people.sql".into(),
            sql: "select 1 as id".into(),
            config: crate::project::ModelConfig {
                materialized: "table".into(),
                tags: Vec::new(),
                enabled: true,
                tests: Vec::new(),
                extra: [("schema".to_string(), serde_json::Value::from(schema))]
                    .into_iter()
                    .collect(),
            },
            incremental_text: None,
        };
        let mut notes = Vec::new();
        let file = model_file(&model("analytics_marts"), "analytics", &mut notes);
        assert!(file.contains("-- config: schema = \"marts\"\n"), "{file}");
        assert!(notes.is_empty(), "{notes:?}");
        let file = model_file(&model("marts"), "analytics", &mut notes);
        assert!(!file.contains("schema"), "{file}");
        assert!(
            notes[0].contains("schema `marts` is not `analytics_<name>`"),
            "{notes:?}"
        );
    }

    #[test]
    fn config_values_are_written_on_one_line_and_read_back_the_same() {
        let value: toml::Value = toml::from_str::<toml::Table>(
            "v = { description = \"two\\nlines, a \\\"quote\\\", a \\\\ and a\\ttab\", \
             columns = { id = { description = \"\" }, \"odd key\" = {} }, hooks = [\"a\", \"b\"], n = 3 }",
        )
        .unwrap()["v"]
            .clone();
        let line = inline(&value);
        assert!(!line.contains('\n'), "{line}");
        let back: toml::Table = toml::from_str(&format!("v = {line}")).unwrap();
        assert_eq!(back["v"], value);
    }
}
