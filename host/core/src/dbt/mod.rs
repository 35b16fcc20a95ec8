//! dbt projects, run as they are: a folder with `dbt_project.yml` and no
//! `orbital.toml` loads into the same [`ProjectConfig`] and
//! [`crate::Project`] as a native project. Nothing is converted on disk.
//!
//! - `dbt_project.yml` gives the name, the folders, `vars` and the
//!   `models:` and `snapshots:` config trees (`+key` and plain keys per
//!   folder, as in orbital.toml's `[models]`).
//! - Schema files (`*.yml` under the model folders) give each model's
//!   config, description, column descriptions (`doc()` rendered from the
//!   `{% docs %}` blocks beside them) and generic tests (`tests` /
//!   `data_tests`, with `accepted_values`, `relationships` and `config:
//!   {severity: warn}`), and the `sources:`.
//! - `{% snapshot %}` blocks under `snapshot-paths` are models built by the
//!   snapshot materialization.
//! - `schema` and `alias` are named as dbt names them: by the project's
//!   own `generate_schema_name` / `generate_alias_name` macros, else by
//!   dbt's defaults (`DbtProject::resolve_names`).
//! - `profiles.yml` (the project folder, then `DBT_PROFILES_DIR`, then
//!   `~/.dbt`) gives the targets for `postgres` and `sqlite` profiles; with
//!   none, the project runs on the embedded SQLite default.
//! - Each model is rendered with Jinja ([`jinja`]) before it is parsed:
//!   `ref()` renders to the model's name, so what a model reads is still
//!   found in its SQL, and the fingerprint covers the rendered SQL.

mod jinja;
mod profiles;
mod schema;
mod translate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::config::{PluginSettings, ProjectConfig};
use crate::error::{Error, Location, Result};

pub use jinja::Renderer;
pub use translate::{Translation, translate};

/// The file that makes a folder a dbt project.
pub const PROJECT_FILE: &str = "dbt_project.yml";

/// What a dbt project adds to its [`ProjectConfig`]: how its models render.
#[derive(Debug, Clone)]
pub struct DbtProject {
    pub renderer: Renderer,
    /// What schema files say of each model, as native config: their
    /// `config:`, `description`, `columns.<column>.description` and generic
    /// tests (`tests.<column> = [...]`).
    pub schema_configs: BTreeMap<String, toml::Table>,
    /// The macro files and schema files the project read (for stamps).
    pub files: Vec<PathBuf>,
    /// Where its snapshots are (`snapshot-paths`).
    pub snapshot_paths: Vec<PathBuf>,
    /// The `snapshots:` config tree of `dbt_project.yml`, per folder.
    pub snapshot_defaults: BTreeMap<String, toml::Table>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ProjectFile {
    name: String,
    profile: Option<String>,
    #[serde(default = "crate::config::default_model_paths")]
    model_paths: Vec<PathBuf>,
    #[serde(default = "crate::config::default_seed_paths")]
    seed_paths: Vec<PathBuf>,
    #[serde(default = "crate::config::default_test_paths")]
    test_paths: Vec<PathBuf>,
    #[serde(default = "macros")]
    macro_paths: Vec<PathBuf>,
    #[serde(default = "snapshots")]
    snapshot_paths: Vec<PathBuf>,
    #[serde(default = "crate::config::default_target_path")]
    target_path: PathBuf,
    #[serde(default)]
    vars: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    models: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    seeds: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    snapshots: serde_json::Map<String, serde_json::Value>,
}

fn macros() -> Vec<PathBuf> {
    vec!["macros".into()]
}

fn snapshots() -> Vec<PathBuf> {
    vec!["snapshots".into()]
}

/// Whether `dir` holds a dbt project (and no orbital.toml, which wins).
pub fn is_dbt_project(dir: &Path) -> bool {
    dir.join(PROJECT_FILE).is_file() && !dir.join(crate::config::FILE_NAME).exists()
}

/// The names `ref()` may name: every model file's and seed file's stem.
fn node_names(dir: &Path, file: &ProjectFile) -> Result<std::collections::BTreeSet<String>> {
    let mut names = std::collections::BTreeSet::new();
    let folders = [(&file.model_paths, "sql"), (&file.seed_paths, "csv")];
    for (paths, ext) in folders {
        for folder in paths {
            for path in crate::project::paths_with_extension(dir, folder, ext)? {
                if let Some(stem) = path.file_stem() {
                    names.insert(stem.to_string_lossy().into_owned());
                }
            }
        }
    }
    // A snapshot is named by its block; a malformed file says so when it
    // is loaded.
    for folder in &file.snapshot_paths {
        for path in crate::project::paths_with_extension(dir, folder, "sql")? {
            let full = dir.join(&path);
            let text = std::fs::read_to_string(&full).map_err(|e| Error::io(full, e))?;
            for block in schema::blocks(&text, "snapshot").unwrap_or_default() {
                names.insert(block.name);
            }
        }
    }
    Ok(names)
}

/// Parses YAML `text` of `path` into `T`, with the error's line and column.
pub(crate) fn from_yaml<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T> {
    serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        Error::Config {
            location: Location::new(path, line, column),
            message: e.to_string(),
        }
    })
}

/// Loads the dbt project in `dir` as a [`ProjectConfig`].
pub fn load_config(dir: &Path) -> Result<ProjectConfig> {
    let path = dir.join(PROJECT_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path.clone(), e))?;
    let file: ProjectFile = from_yaml(Path::new(PROJECT_FILE), &text)?;
    if !crate::config::is_plain_name(&file.name) {
        return Err(Error::Config {
            location: Location::new(PROJECT_FILE, 1, 1),
            message: format!(
                "name `{}`: use letters, digits, `_` and `-` (it names the project and its default database file)",
                file.name
            ),
        });
    }
    let schemas = schema::load(dir, &file.model_paths)?;
    let (targets, default_target) = profiles::targets(dir, &file)?;
    let renderer = Renderer::new(
        dir,
        &file.macro_paths,
        file.vars.clone(),
        node_names(dir, &file)?,
    )?;
    let mut files = schemas.files.clone();
    files.extend(renderer.macro_files().iter().cloned());
    for folder in &file.snapshot_paths {
        files.extend(crate::project::paths_with_extension(dir, folder, "sql")?);
    }
    // The project's own config tree sits under its name; other keys are
    // packages' (not supported yet, so not applied).
    let own = match file.models.get(&file.name) {
        Some(serde_json::Value::Object(tree)) => tree.clone(),
        _ => serde_json::Map::new(),
    };
    let tree = json_to_toml_table(&own).map_err(|message| Error::Config {
        location: Location::new(PROJECT_FILE, 1, 1),
        message: format!("models.{}: {message}", file.name),
    })?;
    let snapshot_tree = match file.snapshots.get(&file.name) {
        Some(serde_json::Value::Object(tree)) => json_to_toml_table(tree),
        _ => Ok(toml::Table::new()),
    }
    .map_err(|message| Error::Config {
        location: Location::new(PROJECT_FILE, 1, 1),
        message: format!("snapshots.{}: {message}", file.name),
    })?;
    // Its folders are under the snapshot paths, as the models' are under
    // the model paths.
    let snapshot_defaults = crate::config::split_folder_defaults(snapshot_tree);
    let seeds = seed_configs(&file.seeds, &file.name)?;
    Ok(ProjectConfig {
        name: file.name,
        model_paths: file.model_paths,
        seed_paths: file.seed_paths,
        test_paths: file.test_paths,
        target_path: file.target_path,
        default_target,
        targets,
        model_defaults: crate::config::split_folder_defaults(tree),
        seeds,
        sources: schemas.sources,
        plugins: PluginSettings::default(),
        dbt: Some(Arc::new(DbtProject {
            renderer,
            schema_configs: schemas.models,
            files,
            snapshot_paths: file.snapshot_paths,
            snapshot_defaults,
        })),
    })
}

/// What Jinja's `target` says while a project's models render: the
/// target's name, adapter type and schema.
pub(crate) type JinjaTarget = (String, String, String);

/// [`JinjaTarget`] as the renderer takes it.
fn borrowed(target: &JinjaTarget) -> (&str, &str, &str) {
    (&target.0, &target.1, &target.2)
}

/// The [`JinjaTarget`] of `config`: the target the command runs on (its
/// default target: the engine sets it).
pub(crate) fn jinja_target(config: &ProjectConfig) -> JinjaTarget {
    let Ok((name, target)) = config.target(None) else {
        return ("dev".into(), "sqlite".into(), "main".into());
    };
    let kind = match target.parser_dialect() {
        "postgres" => "postgres",
        _ => target.scheme(),
    };
    let schema = target.schema.clone().unwrap_or_else(|| match kind {
        "postgres" => "public".into(),
        // MySQL's schema is the URL's database.
        "mysql" | "mariadb" => target
            .url
            .rsplit_once('/')
            .map(|(_, database)| database.split('?').next().unwrap_or_default().to_string())
            .unwrap_or_default(),
        _ => "main".into(),
    });
    (name.to_string(), kind.to_string(), schema)
}

impl DbtProject {
    /// Model `name` of `path` rendered for `target` (name, adapter type,
    /// schema), and its own config: what the schema files say of it, under
    /// its `config(...)` calls (generic tests of both add up).
    pub(crate) fn render_model(
        &self,
        path: &Path,
        name: &str,
        text: &str,
        target: &JinjaTarget,
    ) -> Result<(String, toml::Table, Option<String>)> {
        let (sql, own, incremental) = self.renderer.render(path, name, text, borrowed(target))?;
        let Some(schema) = self.schema_configs.get(name) else {
            return Ok((sql, own, incremental));
        };
        let mut table = schema.clone();
        for (key, value) in own {
            match (key.as_str(), table.get_mut("tests"), value) {
                ("tests", Some(toml::Value::Table(have)), toml::Value::Table(more)) => {
                    for (column, more) in more {
                        match (have.get_mut(&column), more) {
                            (Some(toml::Value::Array(have)), toml::Value::Array(more)) => {
                                have.extend(more)
                            }
                            (_, more) => {
                                have.insert(column, more);
                            }
                        }
                    }
                }
                (_, _, value) => {
                    table.insert(key, value);
                }
            }
        }
        Ok((sql, table, incremental))
    }
}

impl DbtProject {
    /// The `{% snapshot name %} ... {% endsnapshot %}` blocks of the file
    /// `path` (`text`), each rendered as a model (lines and columns as in
    /// the file) materialized as a snapshot, with dbt's snapshot config
    /// mapped to Orbital's, and its `target_schema` (taken as it is).
    pub(crate) fn render_snapshots(
        &self,
        path: &Path,
        text: &str,
        target: &JinjaTarget,
    ) -> Result<Vec<(crate::project::Rendered, Option<String>)>> {
        let at = |offset: usize| {
            let (line, column) = crate::error::line_col(text, offset);
            Location::new(path, line, column)
        };
        let blocks =
            schema::blocks(text, "snapshot").map_err(|(offset, message)| Error::Config {
                location: at(offset),
                message,
            })?;
        if blocks.is_empty() {
            return Err(Error::Config {
                location: at(0),
                message: "a snapshot file holds `{% snapshot name %} ... {% endsnapshot %}` blocks, and this one has none".into(),
            });
        }
        let mut snapshots = Vec::new();
        for block in blocks {
            // Only the block's body, in its place: errors keep their lines.
            let body: String = text
                .char_indices()
                .map(|(i, c)| match block.body.contains(&i) || c == '\n' {
                    true => c,
                    false => ' ',
                })
                .collect();
            let (sql, mut own, incremental_text) =
                self.render_model(path, &block.name, &body, target)?;
            own.entry("materialized")
                .or_insert_with(|| toml::Value::String("snapshot".into()));
            if own.remove("invalidate_hard_deletes") == Some(toml::Value::Boolean(true)) {
                own.insert(
                    "hard_deletes".into(),
                    toml::Value::String("invalidate".into()),
                );
            }
            let target_schema = match own.remove("target_schema") {
                Some(toml::Value::String(schema)) => Some(schema),
                Some(other) => {
                    return Err(Error::InvalidModel {
                        location: at(block.start),
                        model: block.name,
                        message: format!("config `target_schema` must be a name, got {other}"),
                    });
                }
                None => None,
            };
            let rendered = crate::project::Rendered {
                name: block.name,
                sql,
                own,
                incremental_text,
            };
            snapshots.push((rendered, target_schema));
        }
        Ok(snapshots)
    }

    /// `config` with its `schema` and `alias` as the model is published:
    /// the project's own `generate_schema_name` / `generate_alias_name`
    /// macros decide them where it defines them, else dbt's defaults do
    /// (`<target schema>_<schema>`; the alias as given). A schema that is
    /// the target's own is no custom schema.
    pub(crate) fn resolve_names(
        &self,
        path: &Path,
        name: &str,
        project: &str,
        mut config: crate::project::ModelConfig,
        target: &JinjaTarget,
    ) -> Result<crate::project::ModelConfig> {
        use crate::project::{ALIAS, SCHEMA};
        let (custom_schema, custom_alias) = (
            config.schema().map(str::to_string),
            config.alias().map(str::to_string),
        );
        let node = || {
            let mut fqn = vec![project.to_string()];
            let folders = path.parent().into_iter().flat_map(|p| p.iter()).skip(1);
            fqn.extend(folders.map(|part| part.to_string_lossy().into_owned()));
            fqn.push(name.to_string());
            minijinja::context! {
                name => name,
                resource_type => "model",
                package_name => project,
                original_file_path => path.to_string_lossy(),
                fqn => fqn,
                config => minijinja::Value::from(minijinja::value::Serde(&config)),
            }
        };
        // The project's own naming macro, where it defines one.
        let named = |naming: &str, custom: Option<&str>| {
            self.renderer.defines(naming).then(|| {
                self.renderer.call_naming_macro(
                    path,
                    name,
                    naming,
                    custom,
                    node(),
                    borrowed(target),
                )
            })
        };
        let schema = match named("generate_schema_name", custom_schema.as_deref()) {
            Some(full) => Some(full?),
            None => custom_schema.map(|custom| format!("{}_{custom}", target.2)),
        };
        let alias = match named("generate_alias_name", custom_alias.as_deref()) {
            Some(alias) => Some(alias?),
            None => custom_alias,
        };
        for (key, value, plain) in [
            (SCHEMA, schema, &target.2),
            (ALIAS, alias, &name.to_string()),
        ] {
            match value {
                Some(value) if value != *plain => {
                    config
                        .extra
                        .insert(key.into(), serde_json::Value::String(value));
                }
                _ => {
                    config.extra.remove(key);
                }
            }
        }
        Ok(config)
    }

    /// `config` with its hooks' Jinja rendered (`{{ this }}` kept for the
    /// run to fill in).
    pub(crate) fn render_hooks(
        &self,
        path: &Path,
        name: &str,
        mut config: crate::project::ModelConfig,
        target: &JinjaTarget,
    ) -> Result<crate::project::ModelConfig> {
        for key in [crate::project::PRE_HOOK, crate::project::POST_HOOK] {
            let Some(serde_json::Value::Array(hooks)) = config.extra.get_mut(key) else {
                continue;
            };
            for hook in hooks.iter_mut() {
                if let serde_json::Value::String(text) = hook
                    && (text.contains("{{") || text.contains("{%"))
                {
                    *text = self
                        .renderer
                        .render_hook(path, name, key, text, borrowed(target))?;
                }
            }
        }
        Ok(config)
    }
}

/// The `column_types` of each seed in dbt_project.yml's `seeds:` tree
/// (under the project's name, by seed name, at any folder depth), as
/// Orbital's portable types.
fn seed_configs(
    seeds: &serde_json::Map<String, serde_json::Value>,
    project: &str,
) -> Result<BTreeMap<String, crate::config::SeedConfig>> {
    let mut configs = BTreeMap::new();
    let Some(serde_json::Value::Object(own)) = seeds.get(project) else {
        return Ok(configs);
    };
    let mut pending = vec![own];
    while let Some(tree) = pending.pop() {
        for (key, value) in tree {
            let serde_json::Value::Object(inner) = value else {
                continue;
            };
            let types = inner
                .get("+column_types")
                .or_else(|| inner.get("column_types"));
            match types {
                Some(serde_json::Value::Object(types)) => {
                    let mut column_types = BTreeMap::new();
                    for (column, sql_type) in types {
                        let logical = sql_type
                            .as_str()
                            .and_then(logical_type)
                            .ok_or_else(|| Error::Config {
                                location: Location::new(PROJECT_FILE, 1, 1),
                                message: format!(
                                    "seeds.{project}.{key}: column `{column}` has type {sql_type}, which Orbital cannot map (integer, real, numeric, boolean, text, date, timestamp, json, uuid types can)"
                                ),
                            })?;
                        column_types.insert(column.clone(), logical);
                    }
                    configs.insert(key.clone(), crate::config::SeedConfig { column_types });
                }
                _ if !key.starts_with('+') => pending.push(inner),
                _ => {}
            }
        }
    }
    Ok(configs)
}

/// The portable type of a SQL type name as dbt seeds write them.
fn logical_type(sql: &str) -> Option<crate::seed::LogicalType> {
    use crate::seed::LogicalType as T;
    let lower = sql.trim().to_ascii_lowercase();
    let base = lower.split(['(', ' ']).next().unwrap_or("");
    Some(match base {
        "int" | "int2" | "int4" | "int8" | "integer" | "bigint" | "smallint" | "tinyint" => {
            T::Integer
        }
        "real" | "float" | "float4" | "float8" | "double" => T::Real,
        "numeric" | "decimal" | "number" => T::Numeric,
        "bool" | "boolean" => T::Boolean,
        "text" | "varchar" | "char" | "character" | "string" | "nvarchar" => T::Text,
        "date" => T::Date,
        "timestamp" | "datetime" if !lower.contains("with time zone") => T::Timestamp,
        "timestamptz" | "timestamp" => T::Timestamptz,
        "json" | "jsonb" => T::Json,
        "uuid" => T::Uuid,
        _ => return None,
    })
}

/// A JSON object as a TOML table; nulls are dropped (TOML has none).
pub(crate) fn json_to_toml_table(
    object: &serde_json::Map<String, serde_json::Value>,
) -> std::result::Result<toml::Table, String> {
    let mut table = toml::Table::new();
    for (key, value) in object {
        if let Some(value) = json_to_toml(value)? {
            table.insert(key.clone(), value);
        }
    }
    Ok(table)
}

fn json_to_toml(value: &serde_json::Value) -> std::result::Result<Option<toml::Value>, String> {
    use serde_json::Value as J;
    Ok(Some(match value {
        J::Null => return Ok(None),
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64().ok_or(format!("{n} is out of range"))?),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(items) => toml::Value::Array(
            items
                .iter()
                .filter_map(|v| json_to_toml(v).transpose())
                .collect::<std::result::Result<_, _>>()?,
        ),
        J::Object(object) => toml::Value::Table(json_to_toml_table(object)?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_column_types_map_to_portable_ones() {
        let seeds: serde_json::Map<String, serde_json::Value> = serde_yaml_ng::from_str(concat!(
            "shop:\n",
            "  raw_orders:\n",
            "    +column_types: {id: bigint, at: 'timestamp with time zone', note: 'varchar(32)'}\n",
            "  nested:\n",
            "    raw_people:\n",
            "      column_types: {born: date}\n",
        ))
        .unwrap();
        let configs = seed_configs(&seeds, "shop").unwrap();
        use crate::seed::LogicalType as T;
        let orders = &configs["raw_orders"].column_types;
        assert_eq!(
            (orders["id"], orders["at"], orders["note"]),
            (T::Integer, T::Timestamptz, T::Text)
        );
        assert_eq!(configs["raw_people"].column_types["born"], T::Date);
        let bad: serde_json::Map<String, serde_json::Value> = serde_yaml_ng::from_str(
            "shop:
  s:
    +column_types: {x: geography}
",
        )
        .unwrap();
        let message = seed_configs(&bad, "shop").unwrap_err().to_string();
        assert!(message.contains("`x` has type \"geography\""), "{message}");
    }
}
