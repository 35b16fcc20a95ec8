//! `orbital.toml`: the project file.
//!
//! ```toml
//! name = "jaffle_shop"
//! default-target = "dev"
//!
//! [targets.dev]
//! url = "sqlite://${ORBITAL_DB:-target/jaffle_shop.db}"
//!
//! [models]                 # defaults for every model
//! materialized = "view"
//!
//! [models.marts]           # defaults for models/marts/**
//! materialized = "table"
//!
//! [seeds.raw_orders.column-types]
//! order_date = "date"
//!
//! [sources.raw]            # `raw.events` in SQL resolves to this table
//! tables = ["events"]
//! ```
//!
//! `${VAR}` and `${VAR:-default}` are replaced by environment variables before
//! the file is parsed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Location, Result, line_col};
use crate::seed::LogicalType;

pub const FILE_NAME: &str = "orbital.toml";

/// The parsed project file.
#[derive(Debug, Clone)]
pub struct ProjectConfig {
    pub name: String,
    pub model_paths: Vec<PathBuf>,
    pub seed_paths: Vec<PathBuf>,
    /// Folders of singular data tests (`.sql` files returning failing rows).
    pub test_paths: Vec<PathBuf>,
    /// Where compiled SQL and local state go, relative to the project.
    pub target_path: PathBuf,
    pub default_target: Option<String>,
    pub targets: BTreeMap<String, Target>,
    /// Model config defaults: `""` for all models, then one entry per folder.
    pub model_defaults: BTreeMap<String, toml::Table>,
    pub seeds: BTreeMap<String, SeedConfig>,
    pub sources: BTreeMap<String, SourceConfig>,
    pub plugins: PluginSettings,
    /// Set for a dbt project (`dbt_project.yml`): how its models render.
    pub dbt: Option<std::sync::Arc<crate::dbt::DbtProject>>,
}

/// A named database to build into.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Target {
    /// `sqlite://path/to/file.db` (relative to the project) or a server URL.
    #[serde(deserialize_with = "target_url")]
    pub url: String,
    /// Schema models are built in, where the database has schemas.
    pub schema: Option<String>,
    /// How many models build at once.
    #[serde(default, deserialize_with = "thread_count")]
    pub threads: Option<usize>,
}

/// The most nodes that may build at once: each running model holds a
/// plugin instance with its own reserved memory, and a count far past the
/// machine fails deep inside the allocator instead of here.
pub const MAX_THREADS: usize = 256;

/// The most memory one plugin instance may be given, in MiB (64 GiB).
pub const MAX_PLUGIN_MEMORY_MB: u64 = 64 << 10;

/// Checks a thread count, from orbital.toml or `--threads`.
pub fn check_threads(threads: usize) -> std::result::Result<usize, String> {
    match threads {
        1..=MAX_THREADS => Ok(threads),
        _ => Err(format!(
            "threads must be between 1 and {MAX_THREADS}, not {threads}"
        )),
    }
}

fn thread_count<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<usize>, D::Error> {
    let threads = usize::deserialize(deserializer)?;
    check_threads(threads)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A target URL the host can connect to: `sqlite://<file>`,
/// `postgres://...` (`postgresql://`) or `mysql://...` (`mariadb://`).
fn target_url<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<String, D::Error> {
    let url = lowercase_scheme(String::deserialize(deserializer)?);
    check_url(&url).map_err(serde::de::Error::custom)?;
    Ok(url)
}

/// A scheme is case-insensitive (RFC 3986), and lowercase is its
/// canonical form: `Postgres://` is `postgres://` to every driver and
/// adapter.
fn lowercase_scheme(url: String) -> String {
    match url.split_once("://") {
        Some((scheme, rest))
            if is_scheme(scheme) && scheme.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            format!("{}://{rest}", scheme.to_ascii_lowercase())
        }
        _ => url,
    }
}

fn check_url(url: &str) -> std::result::Result<(), String> {
    match url.split_once("://") {
        Some(("sqlite", "")) => Err(format!(
            "`{url}` names no file: write sqlite://path/to/file.db (relative to the project) or sqlite://:memory:"
        )),
        Some(("mysql" | "mariadb", rest)) if !names_database(rest) => Err(format!(
            "`{}` names no database: write mysql://user:password@host:3306/database (a MySQL schema is a database)",
            redacted(url)
        )),
        Some(("sqlite" | "postgres" | "postgresql" | "mysql" | "mariadb", _)) => Ok(()),
        // Another scheme is an adapter plugin's to serve with its own
        // connection: which one is known once plugins load.
        Some((scheme, rest)) if is_scheme(scheme) && !rest.is_empty() => Ok(()),
        Some((scheme, _)) if is_scheme(scheme) => Err(format!(
            "`{}` names no server: write {scheme}://host:port/...",
            redacted(url)
        )),
        Some((scheme, _)) => Err(format!("`{scheme}` is not a URL scheme")),
        None if url.starts_with("sqlite:") => Err(format!(
            "`{url}` is not a SQLite URL: write sqlite://path/to/file.db"
        )),
        None => Err(format!(
            "`{url}` is not a URL: write sqlite://path/to/file.db or postgres://user@host/database"
        )),
    }
}

/// A URL scheme as RFC 3986 spells one: a letter, then letters, digits,
/// `+`, `-` or `.`.
fn is_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Whether the part of a server URL after `scheme://` has a database path.
fn names_database(rest: &str) -> bool {
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    path.split_once('/')
        .is_some_and(|(_, database)| !database.is_empty())
}

/// `url` with any password masked, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

impl Target {
    /// The URL scheme, e.g. `sqlite`.
    pub fn scheme(&self) -> &str {
        self.url
            .split_once("://")
            .map_or(self.url.as_str(), |(scheme, _)| scheme)
    }

    /// The SQL dialect models are parsed with.
    pub fn parser_dialect(&self) -> &'static str {
        match self.scheme() {
            "sqlite" => "sqlite",
            "postgres" | "postgresql" => "postgres",
            "mysql" | "mariadb" => "mysql",
            _ => "generic",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SeedConfig {
    #[serde(default)]
    pub column_types: BTreeMap<String, LogicalType>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceConfig {
    /// The database schema the tables live in (defaults to the source's name
    /// where the database has schemas; ignored by SQLite's main database).
    pub schema: Option<String>,
    pub tables: Vec<String>,
}

/// Where a project's plugin component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentRef {
    /// A `.wasm` file, relative to the project.
    Path(PathBuf),
    /// `blake3:<hex>`: a component installed in the project's state store.
    Installed(crate::hash::Hash),
}

/// How orbital.toml names an installed component.
pub const INSTALLED_PREFIX: &str = "blake3:";

impl<'de> Deserialize<'de> for ComponentRef {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.strip_prefix(INSTALLED_PREFIX) {
            Some(hex) => hex
                .parse()
                .map(ComponentRef::Installed)
                .map_err(serde::de::Error::custom),
            None => Ok(ComponentRef::Path(PathBuf::from(text))),
        }
    }
}

impl std::fmt::Display for ComponentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComponentRef::Path(path) => write!(f, "{}", path.display()),
            ComponentRef::Installed(hash) => write!(f, "{INSTALLED_PREFIX}{hash}"),
        }
    }
}

/// Limits and extra components for WASM plugins.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct PluginSettings {
    /// Extra plugin components: `.wasm` files (relative to the project) or
    /// components `orbital plugin install` put in the state store.
    pub components: Vec<ComponentRef>,
    /// Wall-clock time a plugin may spend running its own code per call,
    /// excluding time the host spends on its database calls.
    pub timeout_ms: u64,
    /// Linear memory one plugin instance may grow to.
    pub memory_limit_mb: u64,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            components: Vec::new(),
            timeout_ms: 30_000,
            memory_limit_mb: 256,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    name: String,
    #[serde(default = "default_model_paths")]
    model_paths: Vec<PathBuf>,
    #[serde(default = "default_seed_paths")]
    seed_paths: Vec<PathBuf>,
    #[serde(default = "default_test_paths")]
    test_paths: Vec<PathBuf>,
    #[serde(default = "default_target_path")]
    target_path: PathBuf,
    default_target: Option<String>,
    #[serde(default)]
    targets: BTreeMap<String, Target>,
    #[serde(default)]
    models: toml::Table,
    #[serde(default)]
    seeds: BTreeMap<String, SeedConfig>,
    #[serde(default)]
    sources: BTreeMap<String, SourceConfig>,
    #[serde(default)]
    plugins: PluginSettings,
}

pub(crate) fn default_model_paths() -> Vec<PathBuf> {
    vec!["models".into()]
}
pub(crate) fn default_seed_paths() -> Vec<PathBuf> {
    vec!["seeds".into()]
}
pub(crate) fn default_test_paths() -> Vec<PathBuf> {
    vec!["tests".into()]
}
pub(crate) fn default_target_path() -> PathBuf {
    "target".into()
}

impl ProjectConfig {
    /// Reads `orbital.toml` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE_NAME);
        let text = match crate::project::read_bytes(&path) {
            Ok(bytes) => crate::project::decode_text(bytes).map_err(|not| Error::Config {
                location: Location::new(&path, not.line, not.column),
                message: not.to_string(),
            })?,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && crate::dbt::is_dbt_project(dir) =>
            {
                return crate::dbt::load_config(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoProject {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        Self::parse(&path, &text, |name| std::env::var(name).ok())
    }

    /// Parses project file text; `env` looks up `${VAR}` references.
    pub fn parse(path: &Path, text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let text = interpolate(path, text, env)?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |span| line_col(&text, span.start));
            Error::Config {
                location: Location::new(path, line, column),
                message: e.message().to_string(),
            }
        })?;
        let whole_file = Location::new(path, 1, 1);
        if let Some(default) = &raw.default_target
            && !raw.targets.contains_key(default)
        {
            return Err(Error::Config {
                location: whole_file,
                message: format!("default-target `{default}` is not one of [targets]"),
            });
        }
        if raw.plugins.memory_limit_mb == 0 || raw.plugins.timeout_ms == 0 {
            return Err(Error::Config {
                location: whole_file,
                message: "[plugins] timeout-ms and memory-limit-mb must be positive".into(),
            });
        }
        // These keys carry no span once parsed.
        let at = |after: &str, needle: &str| {
            let (line, column) = position_in(&text, after, needle);
            Location::new(path, line, column)
        };
        if raw.plugins.memory_limit_mb > MAX_PLUGIN_MEMORY_MB {
            return Err(Error::Config {
                location: at("", "memory-limit-mb"),
                message: format!(
                    "[plugins] memory-limit-mb is at most {MAX_PLUGIN_MEMORY_MB} (64 GiB), not {}",
                    raw.plugins.memory_limit_mb
                ),
            });
        }
        if let Some(name) = raw.targets.keys().find(|name| !is_plain_name(name)) {
            return Err(Error::Config {
                location: at("targets", name),
                message: format!(
                    "target name `{name}`: use letters, digits, `_` and `-` (it names lock files and schemas)"
                ),
            });
        }
        let mut model_paths: Vec<PathBuf> = Vec::new();
        for folder in raw.model_paths {
            let normal = normalized(&folder);
            if !model_paths.iter().any(|p| normalized(p) == normal) {
                model_paths.push(folder);
            }
        }
        let target_path = normalized(&raw.target_path);
        if let Some(folder) = model_paths
            .iter()
            .chain(&raw.test_paths)
            .find(|folder| target_path.starts_with(normalized(folder)))
        {
            return Err(Error::Config {
                location: at("", "target-path"),
                message: format!(
                    "target-path `{}` is inside `{}`, where Orbital reads models and tests: its compiled SQL would load as more of them; put it beside",
                    raw.target_path.display(),
                    folder.display()
                ),
            });
        }
        Ok(Self {
            name: raw.name,
            model_paths,
            seed_paths: raw.seed_paths,
            test_paths: raw.test_paths,
            target_path: raw.target_path,
            default_target: raw.default_target,
            targets: raw.targets,
            model_defaults: split_folder_defaults(raw.models),
            seeds: raw.seeds,
            sources: raw.sources,
            plugins: raw.plugins,
            dbt: None,
        })
    }

    /// This config, for a command on target `name`: a dbt project's models
    /// render `target.name` as the target the command runs on.
    pub fn running_on(mut self, name: &str) -> Self {
        if self.dbt.is_some() {
            self.default_target = Some(name.to_string());
        }
        self
    }

    /// This config with `vars` (YAML or JSON: a mapping) over a dbt
    /// project's own vars, as `--vars` gives them.
    pub fn with_vars(mut self, vars: Option<&str>) -> Result<Self> {
        let Some(text) = vars else {
            return Ok(self);
        };
        let flag = Location::new("--vars", 1, 1);
        let Some(dbt) = &self.dbt else {
            return Err(Error::Config {
                location: flag,
                message: "vars are for dbt projects (a native model has no template to read them)"
                    .into(),
            });
        };
        let more: serde_json::Map<String, serde_json::Value> =
            crate::dbt::from_yaml(std::path::Path::new("--vars"), text).map_err(|e| match e {
                Error::Config { location, message } => Error::Config {
                    location,
                    message: format!("not a YAML or JSON mapping: {message}"),
                },
                other => other,
            })?;
        let mut dbt = dbt.as_ref().clone();
        dbt.renderer = dbt.renderer.with_vars(more);
        self.dbt = Some(std::sync::Arc::new(dbt));
        Ok(self)
    }

    /// The target named `name`, or the default one.
    pub fn target(&self, name: Option<&str>) -> Result<(&str, &Target)> {
        let wanted = name.or(self.default_target.as_deref()).or_else(|| {
            // One target needs no default-target line.
            (self.targets.len() == 1)
                .then(|| self.targets.keys().next().map(String::as_str))
                .flatten()
        });
        let unknown = |name: &str| Error::UnknownTarget {
            name: name.to_string(),
            available: self.targets.keys().cloned().collect(),
        };
        let wanted = wanted.ok_or_else(|| unknown("(none given)"))?;
        self.targets
            .get_key_value(wanted)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| unknown(wanted))
    }
}

/// The 1-based line and column where `needle` is first written after the
/// first `after` in `text` (1:1 when it is not): for errors about keys and
/// tables of orbital.toml, which carry no span once parsed.
fn position_in(text: &str, after: &str, needle: &str) -> (usize, usize) {
    text.find(after)
        .and_then(|start| text[start..].find(needle).map(|o| start + o))
        .map_or((1, 1), |offset| line_col(text, offset))
}

/// [`position_in`] the orbital.toml of the project at `root`, read only
/// now: an error about it is being reported.
pub(crate) fn location_in_file(root: &Path, after: &str, needle: &str) -> Location {
    let text = std::fs::read_to_string(root.join(FILE_NAME)).unwrap_or_default();
    let (line, column) = position_in(&text, after, needle);
    Location::new(FILE_NAME, line, column)
}

/// Where target `target`'s `url` is written in the orbital.toml of the
/// project at `root` (1:1 when it cannot be found): for errors about the
/// URL that only a later step can make, such as which plugin serves it.
pub fn target_url_location(root: &Path, target: &str) -> Location {
    location_in_file(root, &format!("[targets.{target}]"), "url")
}

/// Letters, digits, `_` and `-`.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A project-relative path without `.` parts or a trailing slash, for
/// comparing folders as written.
fn normalized(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// Splits `[models]` into config keys (scalars, arrays, `+`-prefixed keys)
/// and folder tables, keyed by folder path ("" for the top level).
pub(crate) fn split_folder_defaults(models: toml::Table) -> BTreeMap<String, toml::Table> {
    let mut out = BTreeMap::new();
    collect_folder(String::new(), models, &mut out);
    out
}

fn collect_folder(folder: String, table: toml::Table, out: &mut BTreeMap<String, toml::Table>) {
    let mut own = toml::Table::new();
    for (key, value) in table {
        match (key.strip_prefix('+'), value) {
            (Some(config_key), value) => {
                own.insert(config_key.to_string(), value);
            }
            (None, toml::Value::Table(sub)) => {
                let path = if folder.is_empty() {
                    key
                } else {
                    format!("{folder}/{key}")
                };
                collect_folder(path, sub, out);
            }
            (None, value) => {
                own.insert(key, value);
            }
        }
    }
    out.insert(folder, own);
}

/// Replaces `${VAR}` and `${VAR:-default}` outside comment lines.
fn interpolate(path: &Path, text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let column = line.len() - rest.len() + start + 1;
            let location = || Location::new(path, index + 1, column);
            let Some(end) = rest[start..].find('}') else {
                return Err(Error::Config {
                    location: location(),
                    message: "unclosed `${`".into(),
                });
            };
            let expr = &rest[start + 2..start + end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            let value = env(name).or_else(|| default.map(str::to_string)).ok_or_else(|| Error::Config {
                location: location(),
                message: format!("environment variable `{name}` is not set (write `${{{name}:-default}}` for a default)"),
            })?;
            out.push_str(&value.replace('\\', "\\\\").replace('"', "\\\""));
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProjectConfig> {
        ProjectConfig::parse(Path::new("orbital.toml"), text, |name| {
            (name == "HOME_DB").then(|| "/tmp/x.db".into())
        })
    }

    #[test]
    fn reads_targets_folders_and_env() {
        let config = parse(
            r#"
name = "shop"
# ${NOT_SET} in a comment is left alone
[targets.dev]
url = "sqlite://${HOME_DB}"
[targets.ci]
url = "sqlite://${CI_DB:-ci.db}"
[models]
materialized = "view"
[models.marts]
materialized = "table"
[models.marts.finance]
tags = ["finance"]
"+meta" = { owner = "ana" }
"#,
        )
        .unwrap();
        assert_eq!(config.targets["dev"].url, "sqlite:///tmp/x.db");
        assert_eq!(config.targets["ci"].url, "sqlite://ci.db");
        assert_eq!(
            config.model_defaults[""]["materialized"].as_str(),
            Some("view")
        );
        assert_eq!(
            config.model_defaults["marts"]["materialized"].as_str(),
            Some("table")
        );
        assert!(config.model_defaults["marts/finance"].contains_key("meta"));
        assert_eq!(
            config.target(None).unwrap_err().to_string(),
            "unknown target `(none given)`; orbital.toml defines: ci, dev"
        );
        assert_eq!(config.target(Some("ci")).unwrap().0, "ci");
    }

    #[test]
    fn missing_env_var_points_at_it() {
        let err = parse("name = \"x\"\n[targets.dev]\nurl = \"sqlite://${NOPE}\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "orbital.toml:3:17: environment variable `NOPE` is not set (write `${NOPE:-default}` for a default)"
        );
    }

    #[test]
    fn malformed_toml_has_line_and_column() {
        let err = parse("name = \"x\"\n[targets.dev\nurl = 1\n").unwrap_err();
        let location = err.location().unwrap();
        assert_eq!((location.line, location.column), (2, 13));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = parse("name = \"x\"\nmodel_paths = []\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `model_paths`"),
            "{err}"
        );
    }

    #[test]
    fn a_url_scheme_is_read_in_any_case() {
        for (written, read) in [
            ("SQLite://target/A.db", "sqlite://target/A.db"),
            ("ClickHouse://U:P@h:8123/DB", "clickhouse://U:P@h:8123/DB"),
            ("postgres://h/db", "postgres://h/db"),
        ] {
            let config = ProjectConfig::parse(
                Path::new("orbital.toml"),
                &format!("name = \"p\"\n[targets.dev]\nurl = \"{written}\"\n"),
                |_| None,
            )
            .unwrap();
            assert_eq!(config.targets["dev"].url, read);
        }
    }

    #[test]
    fn bad_targets_and_limits_are_errors_at_their_line() {
        let cases = [
            (
                "url = \"sqlite:\"",
                "orbital.toml:4:7",
                "is not a SQLite URL",
            ),
            ("url = \"sqlite://\"", "orbital.toml:4:7", "names no file"),
            ("url = \"oracle://\"", "orbital.toml:4:7", "names no server"),
            (
                "url = \"ora cle://db\"",
                "orbital.toml:4:7",
                "is not a URL scheme",
            ),
            (
                "url = \"mysql://ana:secret@db:3306\"",
                "orbital.toml:4:7",
                "`mysql://ana:***@db:3306` names no database",
            ),
            (
                "url = \"mariadb://db/?ssl-mode=disabled\"",
                "orbital.toml:4:7",
                "names no database",
            ),
            ("url = \"target/x.db\"", "orbital.toml:4:7", "is not a URL"),
            (
                "url = \"sqlite://a.db\"\nthreads = 100000000",
                "orbital.toml:5:11",
                "threads must be between 1 and 256",
            ),
            (
                "url = \"sqlite://a.db\"\nthreads = 0",
                "orbital.toml:5:11",
                "between 1 and 256",
            ),
        ];
        for (target, at, message) in cases {
            let text = format!("name = \"x\"\n\n[targets.dev]\n{target}\n");
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.starts_with(at) && err.contains(message),
                "{target}: {err}"
            );
        }
        let err = parse("name = \"x\"\n[targets.\"a/b\"]\nurl = \"sqlite://a.db\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("orbital.toml:2:") && err.contains("target name `a/b`"),
            "{err}"
        );
        let err = parse("name = \"x\"\n[plugins]\nmemory-limit-mb = 18446744073709551615\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("orbital.toml:3:1") && err.contains("at most 65536"),
            "{err}"
        );
    }

    #[test]
    fn model_paths_are_deduplicated_and_target_path_stays_out_of_them() {
        let config =
            parse("name = \"x\"\nmodel-paths = [\"models\", \"./models\", \"more\"]\n").unwrap();
        assert_eq!(
            config.model_paths,
            [PathBuf::from("models"), PathBuf::from("more")]
        );
        let err = parse("name = \"x\"\ntarget-path = \"models/out\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("orbital.toml:2:1") && err.contains("is inside `models`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_target_lists_the_known_ones() {
        let config = parse("name = \"x\"\n[targets.dev]\nurl = \"sqlite://a.db\"\n").unwrap();
        assert_eq!(config.target(None).unwrap().0, "dev");
        let err = config.target(Some("prod")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown target `prod`; orbital.toml defines: dev"
        );
    }
}
