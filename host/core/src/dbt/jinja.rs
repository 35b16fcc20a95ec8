//! Rendering dbt models with Jinja (minijinja): `ref()`, `source()`,
//! `config()`, `var()`, `env_var()`, `target`, `this`, `adapter.quote()`,
//! `is_incremental()`, and the macros of `macro-paths`, callable by name
//! from every model.
//!
//! A model whose Jinja asks `is_incremental()` is rendered twice, once for
//! each answer: the two texts are the model's full and incremental builds,
//! as a native model's `if_incremental(...)` makes them, and `this` renders
//! as the native name of the model's own table.
//! Anything else Jinja offers (`{% set %}`, loops, conditionals, filters,
//! whitespace control, comments) is minijinja's own. A name that is not
//! defined is an error at its line and column, never an empty string.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::value::{Kwargs, Object, Rest, Value};
use minijinja::{Environment, ErrorKind, State, UndefinedBehavior};

use crate::error::{Error, Location, Result, line_col};

/// Where `config(...)` calls put their arguments while a model renders.
const CAPTURE: &str = "__orbital_config";

/// Whether the model renders for its incremental build.
const INCREMENTAL: &str = "__orbital_incremental";

/// The vars `var()` reads: the project's, under `--vars`.
const VARS: &str = "__orbital_vars";

/// Renders one project's models.
#[derive(Clone)]
pub struct Renderer {
    env: Environment<'static>,
    /// `{% from "<macro file>" import ... %}` for each macro file, put in
    /// front of each model on its first line (so its lines keep their
    /// numbers).
    prefix: String,
    /// Each macro file and its text.
    macros: Vec<(PathBuf, String)>,
    /// Whether a macro may ask `is_incremental()` (then every model is
    /// rendered for both builds).
    macros_ask_incremental: bool,
    /// The names of the macros the macro files define.
    defined: std::collections::BTreeSet<String>,
    /// `dbt_project.yml`'s vars, under those given on the command line.
    vars: serde_json::Map<String, serde_json::Value>,
    /// `vars` as templates read them.
    vars_value: Value,
    /// When this command started, in UTC, as dbt prints `run_started_at`.
    started_at: String,
}

/// Whether Jinja `text` may ask `is_incremental()`.
fn asks_incremental(text: &str) -> bool {
    text.contains("is_incremental")
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("macros", &self.macro_files())
            .finish()
    }
}

/// The `config(...)` arguments of the model being rendered.
#[derive(Debug, Default)]
struct Capture(Mutex<serde_json::Map<String, serde_json::Value>>);

impl Object for Capture {}

/// `adapter`: what dbt's adapter object offers that Orbital supports.
#[derive(Debug)]
struct Adapter;

impl Object for Adapter {
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> std::result::Result<Value, minijinja::Error> {
        match (method, args) {
            ("quote", [identifier]) => {
                let text = identifier.to_string();
                Ok(Value::from(format!("\"{}\"", text.replace('"', "\"\""))))
            }
            _ => Err(minijinja::Error::new(
                ErrorKind::UnknownMethod,
                format!("adapter.{method}() is not supported (adapter.quote(name) is)"),
            )),
        }
    }
}

impl Renderer {
    /// A renderer with the macros of `macro_paths` (relative to `root`)
    /// and the project's `vars`.
    pub(super) fn new(
        root: &Path,
        macro_paths: &[PathBuf],
        vars: serde_json::Map<String, serde_json::Value>,
        nodes: std::collections::BTreeSet<String>,
    ) -> Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let nodes = Arc::new(nodes);
        env.add_function("ref", move |args: Rest<String>| reference(&nodes, args));
        env.add_function("source", source);
        env.add_function("config", config);
        env.add_function("env_var", env_var);
        env.add_function("is_incremental", |state: &State<'_, '_>| {
            state.lookup(INCREMENTAL).is_some_and(|v| v.is_true())
        });
        env.add_function("var", var);
        env.add_global("adapter", Value::from_object(Adapter));
        let mut macros = Vec::new();
        let mut prefix = String::new();
        let mut all_defined = std::collections::BTreeSet::new();
        for dir in macro_paths {
            for path in crate::project::paths_with_extension(root, dir, "sql")? {
                let full = root.join(&path);
                let text = std::fs::read_to_string(&full).map_err(|e| Error::io(full, e))?;
                let name = template_name(&path);
                let defined = macro_names(&text);
                env.add_template_owned(name.clone(), text.clone())
                    .map_err(|e| jinja_error(&path, &text, 0, &e))?;
                if !defined.is_empty() {
                    prefix.push_str(&format!(
                        "{{% from {name:?} import {} %}}",
                        defined.join(", ")
                    ));
                }
                all_defined.extend(defined);
                macros.push((path, text));
            }
        }
        Ok(Self {
            env,
            prefix,
            macros_ask_incremental: macros.iter().any(|(_, text)| asks_incremental(text)),
            macros,
            defined: all_defined,
            vars_value: Value::from(minijinja::value::Serde(vars.clone())),
            vars,
            started_at: utc_timestamp(std::time::SystemTime::now()),
        })
    }

    /// This renderer with `more` vars (from the command line) over the
    /// project's.
    pub fn with_vars(&self, more: serde_json::Map<String, serde_json::Value>) -> Self {
        let mut vars = self.vars.clone();
        vars.extend(more);
        Self {
            vars_value: Value::from(minijinja::value::Serde(vars.clone())),
            vars,
            ..self.clone()
        }
    }

    /// The macro files read.
    pub fn macro_files(&self) -> Vec<PathBuf> {
        self.macros.iter().map(|(path, _)| path.clone()).collect()
    }

    /// Model `name` (`text`, from `path`) rendered for `target` (its name,
    /// adapter type and schema), the config its `config(...)` calls set,
    /// and its incremental build when `is_incremental()` changes the text.
    pub fn render(
        &self,
        path: &Path,
        name: &str,
        text: &str,
        target: (&str, &str, &str),
    ) -> Result<(String, toml::Table, Option<String>)> {
        let (sql, config) = self.render_build(path, name, text, target, false)?;
        let incremental = match self.macros_ask_incremental || asks_incremental(text) {
            true => Some(self.render_build(path, name, text, target, true)?.0),
            false => None,
        }
        .filter(|other| *other != sql);
        Ok((sql, config, incremental))
    }

    /// [`Renderer::render`] for one build.
    fn render_build(
        &self,
        path: &Path,
        name: &str,
        text: &str,
        target: (&str, &str, &str),
        incremental: bool,
    ) -> Result<(String, toml::Table)> {
        let capture = Arc::new(Capture::default());
        let source = format!("{}{text}", self.prefix);
        let template_name = template_name(path);
        let fail = |e: minijinja::Error| self.error(path, text, &e);
        let template = self
            .env
            .template_from_named_str(&template_name, &source)
            .map_err(fail)?;
        let context = self.context(
            name,
            target,
            crate::incremental::THIS,
            incremental,
            Value::from_dyn_object(capture.clone()),
        );
        let sql = template.render(context).map_err(fail)?;
        let config = capture
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let table = super::json_to_toml_table(&config).map_err(|message| Error::InvalidModel {
            location: Location::new(path, 1, 1),
            model: name.to_string(),
            message: format!("config(...): {message}"),
        })?;
        Ok((sql, table))
    }

    /// What a model's templates see.
    fn context(
        &self,
        name: &str,
        target: (&str, &str, &str),
        this: &str,
        incremental: bool,
        capture: Value,
    ) -> Value {
        let (target_name, kind, schema) = target;
        let target: BTreeMap<&str, Value> = [
            ("name", Value::from(target_name)),
            ("type", Value::from(kind)),
            ("schema", Value::from(schema)),
        ]
        .into();
        minijinja::context! {
            this => this,
            __orbital_incremental => incremental,
            __orbital_vars => self.vars_value.clone(),
            run_started_at => self.started_at.clone(),
            target => target,
            model => minijinja::context! { name => name },
            __orbital_config => capture,
        }
    }

    /// Hook `text` (`pre_hook` or `post_hook`, per `key`) of model `name`
    /// rendered: `{{ this }}` stays as it is, for the run to replace with
    /// the relation it builds ([`crate::project::HOOK_THIS`]).
    pub fn render_hook(
        &self,
        path: &Path,
        name: &str,
        key: &str,
        text: &str,
        target: (&str, &str, &str),
    ) -> Result<String> {
        let fail = |e: minijinja::Error| {
            let detail = e.detail().map_or(String::new(), |d| format!(": {d}"));
            Error::InvalidModel {
                location: Location::new(path, 1, 1),
                model: name.to_string(),
                message: format!("{key} `{text}`: Jinja: {}{detail}", e.kind()),
            }
        };
        let source = format!("{}{text}", self.prefix);
        let context = self.context(
            name,
            target,
            crate::project::HOOK_THIS,
            false,
            Value::from_dyn_object(Arc::new(Capture::default())),
        );
        self.env.render_str(&source, context).map_err(fail)
    }

    /// Whether the project's macros define `name`.
    pub fn defines(&self, name: &str) -> bool {
        self.defined.contains(name)
    }

    /// The project's own `naming` macro (`generate_schema_name`,
    /// `generate_alias_name`) called as dbt calls it for model `name` of
    /// `path`: with the model's `custom` value and `node` (its name,
    /// resource type, fqn and config). Its output, trimmed.
    pub fn call_naming_macro(
        &self,
        path: &Path,
        name: &str,
        naming: &str,
        custom: Option<&str>,
        node: Value,
        target: (&str, &str, &str),
    ) -> Result<String> {
        let base = self.context(
            name,
            target,
            crate::incremental::THIS,
            false,
            Value::from_dyn_object(Arc::new(Capture::default())),
        );
        let context = minijinja::context! {
            __orbital_custom => custom,
            __orbital_node => node,
            ..base
        };
        let source = format!(
            "{}{{{{ {naming}(__orbital_custom, __orbital_node) }}}}",
            self.prefix
        );
        let rendered = self.env.render_str(&source, context).map_err(|e| {
            match self.error(path, "", &e) {
                // In the model's own text there is nothing to point at.
                Error::Config { message, .. } => Error::InvalidModel {
                    location: Location::new(path, 1, 1),
                    model: name.to_string(),
                    message: format!("{naming}(): {message}"),
                },
                in_macro => in_macro,
            }
        })?;
        Ok(rendered.trim().to_string())
    }

    /// `e` where it happened: in the model (`text` of `path`), or in a
    /// macro file.
    fn error(&self, path: &Path, text: &str, e: &minijinja::Error) -> Error {
        let in_macro = e.name().and_then(|name| {
            self.macros
                .iter()
                .find(|(macro_path, _)| template_name(macro_path) == name)
        });
        match in_macro {
            Some((macro_path, macro_text)) => jinja_error(macro_path, macro_text, 0, e),
            None => jinja_error(path, text, self.prefix.len(), e),
        }
    }
}

/// An error of the template `text` of `path`, whose first line had
/// `prefixed` bytes put in front of it when rendered.
fn jinja_error(path: &Path, text: &str, prefixed: usize, e: &minijinja::Error) -> Error {
    let line = e.line().unwrap_or(1);
    let column = e
        .range()
        .map(|range| {
            let start = range.start.saturating_sub(prefixed).min(text.len());
            line_col(text, start).1
        })
        .unwrap_or(1);
    let detail = e.detail().map_or(String::new(), |d| format!(": {d}"));
    Error::Config {
        location: Location::new(path, line, column),
        message: format!("Jinja: {}{detail}", e.kind()),
    }
}

/// How a file is named as a template: its project-relative path.
fn template_name(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// The names of the `{% macro name(...) %}` a macro file defines.
fn macro_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("{%") {
        rest = &rest[at + 2..];
        let tag = rest.trim_start_matches(['-', '+']).trim_start();
        if let Some(after) = tag.strip_prefix("macro") {
            let name: String = after
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && after.starts_with(char::is_whitespace) {
                names.push(name);
            }
        }
    }
    names
}

fn unsupported(message: &str) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        message.to_string(),
    ))
}

/// `ref('model')` or `ref('package', 'model')`: the model's (or seed's)
/// name, which the parser then finds in the SQL as any other relation. A
/// name that is neither is an error here, at the call.
fn reference(
    nodes: &std::collections::BTreeSet<String>,
    args: Rest<String>,
) -> std::result::Result<Value, minijinja::Error> {
    let name = match args.as_slice() {
        [model] | [_, model] => model,
        _ => return unsupported("ref() takes a model name, or a package and a model name"),
    };
    if !nodes.contains(name) {
        let hint = crate::error::did_you_mean(name, nodes.iter().map(String::as_str), 3, true);
        return unsupported(&format!(
            "ref('{name}'): the project has no model or seed named `{name}`{hint}"
        ));
    }
    Ok(Value::from(name.clone()))
}

/// `source('source', 'table')`: the table as native models name it.
fn source(source: String, table: String) -> Value {
    Value::from(format!("{source}.{table}"))
}

/// `config(key=value, ...)`: noted as the model's own config; renders as
/// nothing.
fn config(state: &State<'_, '_>, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let capture = state.lookup(CAPTURE).ok_or_else(|| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "config() outside a model")
    })?;
    let capture = capture.downcast_object_ref::<Capture>().ok_or_else(|| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "config() outside a model")
    })?;
    let mut config = capture
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for key in kwargs.args() {
        let value: Value = kwargs.get(key)?;
        let json = serde_json::to_value(&value)
            .map_err(|e| minijinja::Error::new(ErrorKind::BadSerialization, e.to_string()))?;
        config.insert(key.to_string(), json);
    }
    Ok(Value::from(""))
}

/// `time` as `YYYY-MM-DD HH:MM:SS.ffffff+00:00` (UTC).
fn utc_timestamp(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (days, seconds) = (since.as_secs() / 86_400, since.as_secs() % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}+00:00",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60,
        since.subsec_micros()
    )
}

/// `var('name', default)`: from `--vars`, then dbt_project.yml's `vars`.
fn var(
    state: &State<'_, '_>,
    name: String,
    default: Option<Value>,
) -> std::result::Result<Value, minijinja::Error> {
    let value = state
        .lookup(VARS)
        .and_then(|vars| vars.get_attr(&name).ok())
        .filter(|value| !value.is_undefined());
    match (value, default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default),
        (None, None) => unsupported(&format!(
            "required var '{name}' is not set (in dbt_project.yml's vars or --vars), and var() gives no default"
        )),
    }
}

/// `env_var('NAME', default)`.
fn env_var(name: String, default: Option<String>) -> std::result::Result<Value, minijinja::Error> {
    match (std::env::var(&name), default) {
        (Ok(value), _) => Ok(Value::from(value)),
        (Err(_), Some(default)) => Ok(Value::from(default)),
        (Err(_), None) => unsupported(&format!(
            "environment variable `{name}` is not set, and env_var() gives no default"
        )),
    }
}

/// Renders `text` (a profiles.yml) with `env_var()` only.
pub(super) fn render_profiles(path: &Path, text: &str) -> Result<String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_function("env_var", env_var);
    env.render_named_str("profiles.yml", text, ())
        .map_err(|e| jinja_error(path, text, 0, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renderer(macros: &[(&str, &str)], vars: serde_json::Value) -> (Renderer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in macros {
            let path = dir.path().join("macros").join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let vars = vars.as_object().cloned().unwrap_or_default();
        let nodes = ["orders", "people", "events"].map(String::from).into();
        let renderer = Renderer::new(dir.path(), &["macros".into()], vars, nodes).unwrap();
        (renderer, dir)
    }

    fn render(renderer: &Renderer, text: &str) -> Result<(String, toml::Table)> {
        renderer
            .render(
                Path::new("models/m.sql"),
                "m",
                text,
                ("dev", "sqlite", "main"),
            )
            .map(|(sql, config, _)| (sql, config))
    }

    fn error_at(renderer: &Renderer, text: &str) -> (String, usize, usize, String) {
        match render(renderer, text).unwrap_err() {
            Error::Config { location, message } => (
                location.path.display().to_string(),
                location.line,
                location.column,
                message,
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refs_sources_config_vars_and_targets_render() {
        let (r, _dir) = renderer(&[], serde_json::json!({ "low": 3, "methods": ["a", "b"] }));
        let (sql, config) = render(
            &r,
            "{{ config(materialized='table', tags=['x'], unique_key='id') }}\
             select * from {{ ref('orders') }} join {{ ref('pkg', 'people') }} using (id) \
             join {{ source('app', 'events') }} using (id) where n > {{ var('low') }} \
             and t = '{{ target.name }}/{{ target.type }}/{{ target.schema }}' \
             and {{ var('missing', 7) }} = 7 -- {{ this }} {{ adapter.quote('Col') }}",
        )
        .unwrap();
        assert_eq!(
            sql,
            "select * from orders join people using (id) join app.events using (id) \
             where n > 3 and t = 'dev/sqlite/main' and 7 = 7 -- this \"Col\""
        );
        assert_eq!(
            config.to_string(),
            "materialized = \"table\"\ntags = [\"x\"]\nunique_key = \"id\"\n"
        );
    }

    #[test]
    fn statements_loops_filters_whitespace_and_comments_are_jinjas() {
        let (r, _dir) = renderer(&[], serde_json::json!({ "methods": ["a", "b"] }));
        let (sql, _) = render(
            &r,
            "{# a comment #}{% set cols = var('methods') %}select\n\
             {%- for c in cols %}\n  sum(case when m = '{{ c }}' then x end) as {{ c | upper }}_x\
             {%- if not loop.last %},{% endif %}{% endfor %}\nfrom t",
        )
        .unwrap();
        assert_eq!(
            sql,
            "select\n  sum(case when m = 'a' then x end) as A_x,\n  sum(case when m = 'b' then x end) as B_x\nfrom t"
        );
    }

    #[test]
    fn macros_of_macro_paths_are_callable_by_name() {
        let (r, _dir) = renderer(
            &[(
                "cents.sql",
                "{% macro cents_to_dollars(column, scale=2) -%}\n  round({{ column }} / 100.0, {{ scale }})\n{%- endmacro %}",
            )],
            serde_json::json!({}),
        );
        let (sql, _) = render(
            &r,
            "select {{ cents_to_dollars('amount') }} as dollars from p",
        )
        .unwrap();
        assert_eq!(sql, "select round(amount / 100.0, 2) as dollars from p");
        assert_eq!(r.macro_files(), vec![PathBuf::from("macros/cents.sql")]);
    }

    #[test]
    fn errors_say_where_in_the_template() {
        let (r, _dir) = renderer(
            &[(
                "bad.sql",
                "{% macro boom() %}\n{{ nope() }}\n{% endmacro %}",
            )],
            serde_json::json!({}),
        );
        let (file, line, column, message) = error_at(&r, "select 1\nfrom {{ undefined_thing }}");
        assert_eq!((file.as_str(), line), ("models/m.sql", 2));
        assert!(column >= 6, "{column}");
        assert!(message.contains("undefined"), "{message}");
        let (_, line, _, message) = error_at(&r, "select {{ var('nothing') }}");
        assert_eq!(line, 1);
        assert!(message.contains("required var 'nothing'"), "{message}");
        let (_, line, column, message) = error_at(&r, "select 1\nfrom {{ ref('order') }}");
        assert_eq!((line, column), (2, 9), "{message}");
        assert!(
            message.contains("no model or seed named `order`; did you mean `orders`?"),
            "{message}"
        );
        let (_, line, _, message) = error_at(&r, "select 1\n\n{% if %}");
        assert_eq!(line, 3, "{message}");
        let (file, line, _, _) = error_at(&r, "select {{ boom() }}");
        assert_eq!((file.as_str(), line), ("macros/bad.sql", 2));
        let (_, _, _, message) = error_at(&r, "{{ adapter.dispatch('x') }}");
        assert!(
            message.contains("adapter.dispatch() is not supported"),
            "{message}"
        );
    }

    #[test]
    fn run_started_at_is_the_commands_start_in_utc() {
        let at =
            |secs: u64| utc_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01 00:00:00.000000+00:00");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00.000000+00:00");
        assert_eq!(
            at(1_796_000_000 + 3_723),
            "2026-11-30 01:55:23.000000+00:00"
        );
        let (r, _dir) = renderer(&[], serde_json::json!({}));
        let (sql, _) = render(&r, "select '{{ run_started_at }}' as at").unwrap();
        assert_eq!(sql, format!("select '{}' as at", r.started_at));
    }

    #[test]
    fn is_incremental_renders_both_builds() {
        let (r, _dir) = renderer(&[], serde_json::json!({}));
        let text = "select * from {{ ref('events') }}\n\
                    {% if is_incremental() %}where id > (select max(id) from {{ this }}){% endif %}";
        let model = Path::new("models/m.sql");
        let (full, _, incremental) = r
            .render(model, "m", text, ("dev", "sqlite", "main"))
            .unwrap();
        assert_eq!(full, "select * from events\n");
        assert_eq!(
            incremental.as_deref(),
            Some("select * from events\nwhere id > (select max(id) from this)")
        );
        // Asked, with no difference: one build.
        let same = "select 1{% if is_incremental() %}{% endif %}";
        let (_, _, incremental) = r
            .render(model, "m", same, ("dev", "sqlite", "main"))
            .unwrap();
        assert_eq!(incremental, None);
    }

    #[test]
    fn env_vars_render_with_defaults_and_fail_without() {
        let (r, _dir) = renderer(&[], serde_json::json!({}));
        let (sql, _) = render(&r, "{{ env_var('ORBITAL_SURELY_UNSET_VAR', 'fallback') }}").unwrap();
        assert_eq!(sql, "fallback");
        let (_, _, _, message) = error_at(&r, "{{ env_var('ORBITAL_SURELY_UNSET_VAR') }}");
        assert!(message.contains("ORBITAL_SURELY_UNSET_VAR"), "{message}");
    }
}
