//! Loading a project: `orbital.toml`, `models/**/*.sql`, `seeds/*.csv`.
//!
//! A model is one `.sql` file holding one `SELECT`. Its name is the file stem.
//! Per-model config sits in `-- config:` comment lines, written like dbt's
//! `config(...)` call (the text is a TOML inline table body):
//!
//! ```sql
//! -- config: materialized = 'table', tags = ['finance', 'daily']
//! select ...
//! ```
//!
//! Config merges in order: `[models]`, then each enclosing folder's table,
//! then the file's own lines; later wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::{ProjectConfig, SeedConfig};
use crate::data_test::{ColumnTest, SingularTest};
use crate::error::{Error, Location, Result};

const CONFIG_PREFIX: &str = "config:";

/// A loaded project; nothing parsed yet beyond config.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub config: ProjectConfig,
    /// Shared: a daemon's compile after an edit copies the project it kept.
    pub models: Vec<std::sync::Arc<Model>>,
    pub seeds: Vec<Seed>,
    /// Singular data tests, from `test-paths`.
    pub tests: Vec<SingularTest>,
    /// The names of models with `enabled = false`, so that reading one is
    /// an error that says so.
    pub disabled: Vec<String>,
}

/// One model file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    pub name: String,
    /// Path relative to the project root, with `/` separators.
    pub path: PathBuf,
    pub sql: String,
    #[serde(with = "stored_config")]
    pub config: ModelConfig,
    /// A dbt model's incremental build: its Jinja rendered with
    /// `is_incremental()` true, when that differs from `sql` (a native
    /// model writes both builds in one text, with `if_incremental(...)`).
    #[serde(default)]
    pub incremental_text: Option<String>,
}

impl Model {
    /// The key of this model's parse result: its SQL (both builds, for a
    /// dbt model whose Jinja writes two), the dialect and the macros.
    pub fn parse_key(&self, dialect: &str, macros: &str) -> crate::Hash {
        match &self.incremental_text {
            None => crate::compile::parse_key(dialect, macros, &self.sql),
            Some(incremental) => crate::compile::parse_key(
                dialect,
                macros,
                &format!("{}\0incremental build\0{incremental}", self.sql),
            ),
        }
    }
}

/// A model's merged config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    /// The materialization plugin's strategy name: `view`, `table`, ...
    pub materialized: String,
    pub tags: Vec<String>,
    pub enabled: bool,
    /// Generic data tests on its columns (`tests.<column>`); not the
    /// materialization's business, and not part of the fingerprint.
    #[serde(skip)]
    pub tests: Vec<ColumnTest>,
    /// Every other key, passed to the materialization as JSON.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One seed CSV file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seed {
    pub name: String,
    pub path: PathBuf,
    pub config: SeedConfig,
    /// The hash of the CSV file's bytes.
    pub content: crate::Hash,
}

impl Project {
    /// The error for model `model` asking for a materialization no plugin
    /// provides: where it is asked for (the model's `-- config:` line, else
    /// orbital.toml's), and the nearest of `installed` when one is close.
    pub fn unknown_materialization(
        &self,
        model: &str,
        strategy: &str,
        installed: &[&str],
    ) -> Error {
        let asked = |text: &str| {
            text.lines().enumerate().find_map(|(i, line)| {
                let at = line.find("materialized")?;
                let value = line[at..].find(strategy).map_or(at, |v| at + v);
                Some((i + 1, line[..value].chars().count() + 1))
            })
        };
        let in_file =
            self.models.iter().find(|m| m.name == model).and_then(|m| {
                asked(&m.sql).map(|(line, column)| Location::new(&m.path, line, column))
            });
        let location = in_file.unwrap_or_else(|| {
            let config = std::fs::read_to_string(self.root.join(crate::config::FILE_NAME))
                .unwrap_or_default();
            let (line, column) = asked(&config).unwrap_or((1, 1));
            Location::new(crate::config::FILE_NAME, line, column)
        });
        let nearest = crate::error::did_you_mean(
            &strategy.to_lowercase(),
            installed.iter().copied(),
            2,
            false,
        );
        Error::InvalidModel {
            location,
            model: model.to_string(),
            message: format!(
                "asks for materialized = '{strategy}', which no installed plugin provides (installed: {}){nearest}",
                installed.join(", ")
            ),
        }
    }

    /// Loads the project in `root`.
    pub fn load(root: &Path) -> Result<Self> {
        Self::load_with_config(root, ProjectConfig::load(root)?)
    }

    /// Loads the models and seeds of a project whose `orbital.toml` is loaded.
    pub fn load_with_config(root: &Path, config: ProjectConfig) -> Result<Self> {
        let mut errors = Vec::new();
        let mut models = Vec::new();
        let mut paths = Vec::new();
        for dir in &config.model_paths {
            paths.extend(paths_with_extension(root, dir, "sql")?);
        }
        // Reading and config parsing are per file: spread them over the cores.
        let loaded: Vec<Result<Model>> = crate::threads::install(|| {
            paths
                .par_iter()
                .map(|path| load_model(root, path, &config))
                .collect()
        });
        let mut loaded = loaded;
        if let Some(dbt) = &config.dbt {
            for dir in &dbt.snapshot_paths {
                for path in paths_with_extension(root, dir, "sql")? {
                    match load_snapshots(root, &path, &config, dbt) {
                        Ok(snapshots) => loaded.extend(snapshots.into_iter().map(Ok)),
                        Err(e) => loaded.push(Err(e)),
                    }
                }
            }
        }
        let mut disabled = Vec::new();
        for model in loaded {
            match model {
                Ok(model) if model.config.enabled => models.push(model),
                Ok(model) => disabled.push(model.name),
                Err(e) => errors.push(e),
            }
        }
        let mut seeds = Vec::new();
        for dir in &config.seed_paths {
            for path in paths_with_extension(root, dir, "csv")? {
                let name = stem(&path);
                let full = root.join(&path);
                let content = match std::fs::read(&full) {
                    Ok(bytes) => crate::Hash::of(&bytes),
                    Err(e) => {
                        errors.push(Error::io(full, e));
                        continue;
                    }
                };
                seeds.push(Seed {
                    content,
                    config: config.seeds.get(&name).cloned().unwrap_or_default(),
                    name,
                    path,
                });
            }
        }
        let mut tests = Vec::new();
        for dir in &config.test_paths {
            for path in paths_with_extension(root, dir, "sql")? {
                match load_test(root, &path, &config) {
                    Ok(test) => tests.push(test),
                    Err(e) => errors.push(e),
                }
            }
        }
        errors.extend(duplicate_names(&models, &seeds, &tests));
        errors.extend(unmatched_config(root, &config, &paths, &seeds));
        Error::collect(errors)?;
        Ok(Self {
            root: root.to_path_buf(),
            config,
            models: models.into_iter().map(std::sync::Arc::new).collect(),
            seeds,
            tests,
            disabled,
        })
    }

    /// This project with the model files `changed` read again, and those
    /// models' indices (ascending), or `None` when that is not enough to
    /// know it (a changed file is not one of its models, or a model turned
    /// disabled): load the whole project then.
    pub fn reloaded(self, changed: &[PathBuf]) -> Option<Result<(Self, Vec<usize>)>> {
        // A dbt model's text depends on macros, vars and schema files too.
        if self.config.dbt.is_some() {
            return None;
        }
        let mut project = self;
        let mut errors = Vec::new();
        let mut indices = Vec::with_capacity(changed.len());
        for path in changed {
            let index = (project.models.iter()).position(|m| same_listed_path(&m.path, path))?;
            indices.push(index);
            match load_model(&project.root, path, &project.config) {
                Ok(model) if model.config.enabled => project.models[index] = model.into(),
                Ok(_) => return None,
                Err(e) => errors.push(e),
            }
        }
        indices.sort_unstable();
        indices.dedup();
        // Names come from paths, and no path changed: they are as unique
        // as when the project was loaded.
        Some(Error::collect(errors).map(|()| (project, indices)))
    }

    /// The absolute path of a project-relative path.
    pub fn absolute(&self, relative: &Path) -> PathBuf {
        self.root.join(relative)
    }
}

/// Whether two project-relative paths, both as a project listing gives
/// them ([`source_files`]), are the same file: compared as bytes, since
/// `Path`'s `==` parses both into components first (looking one file up
/// among 10k: about a millisecond).
pub fn same_listed_path(a: &Path, b: &Path) -> bool {
    a.as_os_str() == b.as_os_str()
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Project-relative paths of every file a project is loaded from:
/// `orbital.toml`, then model files, seed files and test files.
pub fn source_files(root: &Path, config: &ProjectConfig) -> Result<Vec<PathBuf>> {
    Ok(source_entries(root, config)?
        .into_iter()
        .map(|(path, _)| path)
        .collect())
}

/// [`source_files`], each with the directory entry it was found by (none
/// for `orbital.toml`): asking an entry for its metadata stats the file
/// relative to its open directory, without walking the path again.
pub(crate) fn source_entries(
    root: &Path,
    config: &ProjectConfig,
) -> Result<Vec<(PathBuf, Option<std::fs::DirEntry>)>> {
    let mut files = match &config.dbt {
        // Its project file, schema files and macros.
        Some(dbt) => std::iter::once(PathBuf::from(crate::dbt::PROJECT_FILE))
            .chain(dbt.files.iter().cloned())
            .map(|path| (path, None))
            .collect(),
        None => vec![(PathBuf::from(crate::config::FILE_NAME), None)],
    };
    for dir in &config.model_paths {
        files.extend(files_with_extension(root, dir, "sql")?);
    }
    for dir in &config.seed_paths {
        files.extend(files_with_extension(root, dir, "csv")?);
    }
    for dir in &config.test_paths {
        files.extend(files_with_extension(root, dir, "sql")?);
    }
    Ok(files)
}

/// Project-relative paths of the files under `root/dir` ending in `.ext`, sorted.
pub(crate) fn paths_with_extension(root: &Path, dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let files = files_with_extension(root, dir, ext)?;
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

/// [`paths_with_extension`], with the directory entries.
pub(crate) fn files_with_extension(
    root: &Path,
    dir: &Path,
    ext: &str,
) -> Result<Vec<(PathBuf, Option<std::fs::DirEntry>)>> {
    let start = root.join(dir);
    let real = match std::fs::canonicalize(&start) {
        Ok(real) => real,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(start, e)),
    };
    let mut out = Vec::new();
    walk(root, &start, &mut vec![real], ext, &mut out)?;
    Ok(out)
}

/// Appends the files under `dir` ending in `ext` in `Path` order (component
/// by component): each directory's entries sorted by name, a subdirectory's
/// files where its name falls. Sorting names per directory spares sorting
/// whole paths, which took half of walking 100k files. `inside` holds the
/// real paths of `dir` and the directories above it in this walk, so that a
/// symbolic link back to one of them is an error, not an endless walk.
fn walk(
    root: &Path,
    dir: &Path,
    inside: &mut Vec<PathBuf>,
    ext: &str,
    out: &mut Vec<(PathBuf, Option<std::fs::DirEntry>)>,
) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // Gone since its parent was listed: as if it never was.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut named = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        named.push((entry.file_name(), entry));
    }
    named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (name, entry) in named {
        // Hidden files and folders are not the project's: editor lock files
        // (`.#orders.sql`), `.git`, swap files.
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = entry.path();
        // The directory entry knows its type on most file systems: no stat.
        let (is_dir, linked) = match entry.file_type() {
            // A link to nothing named like a model or seed would lose that
            // node without a word: an error. Any other is not the
            // project's.
            Ok(kind) if kind.is_symlink() && !path.exists() => {
                if path.extension().is_some_and(|e| e == ext) {
                    let target = std::fs::read_link(&path)
                        .map(|t| t.display().to_string())
                        .unwrap_or_default();
                    let gone = std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("a symbolic link to {target}, which does not exist"),
                    );
                    return Err(Error::io(&path, gone));
                }
                continue;
            }
            Ok(kind) if kind.is_symlink() => (path.is_dir(), true),
            Ok(kind) => (kind.is_dir(), false),
            Err(e) => return Err(Error::io(&path, e)),
        };
        if is_dir {
            let real = match linked {
                true => std::fs::canonicalize(&path).map_err(|e| Error::io(&path, e))?,
                false => inside
                    .last()
                    .map_or_else(|| path.clone(), |up| up.join(&name)),
            };
            if inside.contains(&real) {
                let cycle = std::io::Error::other(
                    "a symbolic link to a directory it is inside: the walk would never end",
                );
                return Err(Error::io(&path, cycle));
            }
            inside.push(real);
            walk(root, &path, inside, ext, out)?;
            inside.pop();
        } else if path.extension().is_some_and(|e| e == ext) {
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.push((relative, Some(entry)));
        }
    }
    Ok(())
}

/// The text of the project file at `path` (relative to `root`): a file
/// that is not UTF-8 is refused at the first byte that is not, by line and
/// column.
fn read_source(root: &Path, path: &Path) -> Result<String> {
    let full = root.join(path);
    let bytes = read_bytes(&full).map_err(|e| Error::io(&full, e))?;
    decode_text(bytes).map_err(|not| Error::Config {
        location: crate::error::Location::new(path, not.line, not.column),
        message: not.to_string(),
    })
}

/// Where a file stops being UTF-8.
#[derive(Debug)]
pub(crate) struct NotUtf8 {
    pub(crate) line: usize,
    pub(crate) column: usize,
    byte: u8,
}

impl std::fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "not UTF-8 text (byte 0x{:02x}): save the file as UTF-8",
            self.byte
        )
    }
}

/// A file's bytes as text, without a leading byte-order mark.
pub(crate) fn decode_text(bytes: Vec<u8>) -> std::result::Result<String, NotUtf8> {
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        // Everything before `at` is valid UTF-8.
        let before = String::from_utf8_lossy(&bytes[..at]);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        NotUtf8 {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            byte: bytes[at],
        }
    })?;
    if text.starts_with(BOM) {
        text.drain(..BOM.len_utf8());
    }
    Ok(text)
}

/// A file's bytes, as `std::fs::read` reads them but without asking the
/// file for its size and position first: two system calls of the five per
/// file, about a tenth of reading 100k small models.
pub(crate) fn read_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut chunk = [0u8; 16 * 1024];
    let mut bytes = Vec::new();
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => bytes.extend_from_slice(&chunk[..read]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(bytes)
}

/// The byte-order mark some editors write at the start of a file: not part
/// of its text (models, seeds, orbital.toml).
pub(crate) const BOM: char = '\u{feff}';

fn load_model(root: &Path, path: &Path, project: &ProjectConfig) -> Result<Model> {
    let text = read_source(root, path)?;
    let name = stem(path);
    // A dbt model's own config comes from its `config(...)` calls and its
    // schema files, a native one's from its `-- config:` lines.
    let target = project
        .dbt
        .as_ref()
        .map(|_| crate::dbt::jinja_target(project));
    let dbt = project.dbt.as_deref().zip(target.as_ref());
    let (sql, own, incremental_text) = match dbt {
        Some((dbt, target)) => dbt.render_model(path, &name, &text, target)?,
        None => {
            let own = file_config(path, &text)?;
            (text, own, None)
        }
    };
    let rendered = Rendered {
        name,
        sql,
        own,
        incremental_text,
    };
    model_from(
        root,
        path,
        rendered,
        &project.model_defaults,
        &project.model_paths,
        project,
        dbt,
    )
}

/// A model's text as rendered, with its own config.
pub(crate) struct Rendered {
    pub(crate) name: String,
    pub(crate) sql: String,
    pub(crate) own: toml::Table,
    pub(crate) incremental_text: Option<String>,
}

/// The dbt snapshots of the file `path`, each a model materialized as a
/// snapshot.
fn load_snapshots(
    root: &Path,
    path: &Path,
    project: &ProjectConfig,
    dbt: &crate::dbt::DbtProject,
) -> Result<Vec<Model>> {
    let text = read_source(root, path)?;
    let target = crate::dbt::jinja_target(project);
    let mut models = Vec::new();
    for (rendered, target_schema) in dbt.render_snapshots(path, &text, &target)? {
        let mut model = model_from(
            root,
            path,
            rendered,
            &dbt.snapshot_defaults,
            &dbt.snapshot_paths,
            project,
            Some((dbt, &target)),
        )?;
        // dbt takes `target_schema` as it is, not through generate_schema_name.
        match target_schema {
            Some(schema) if schema != target.2 => {
                model.config.extra.insert(SCHEMA.into(), schema.into());
            }
            Some(_) => {
                model.config.extra.remove(SCHEMA);
            }
            None => {}
        }
        models.push(model);
    }
    Ok(models)
}

/// Model `rendered` of `path`, its config merged over the folder
/// `defaults` that apply to it (folders of `paths`) and checked; a dbt
/// model's (`dbt`, with the target it renders for) with its hooks rendered
/// and its names resolved.
fn model_from(
    root: &Path,
    path: &Path,
    rendered: Rendered,
    defaults: &BTreeMap<String, toml::Table>,
    paths: &[PathBuf],
    project: &ProjectConfig,
    dbt: Option<(&crate::dbt::DbtProject, &crate::dbt::JinjaTarget)>,
) -> Result<Model> {
    let Rendered {
        name,
        sql,
        own,
        incremental_text,
    } = rendered;
    let mut merged = toml::Table::new();
    let levels = defaults
        .iter()
        .filter(|(folder, _)| folder_applies(folder, path, paths))
        .map(|(_, defaults)| defaults.clone())
        .chain(std::iter::once(own));
    for level in levels {
        merge_level(&mut merged, level);
    }
    let config = model_config(merged).map_err(|message| {
        // A `tests.<column>: ...` message points at that declaration, a
        // ``config `key` ...`` one at the key's `-- config:` line.
        let key = message
            .strip_prefix("config `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(key, _)| config_key_at(&sql, key))
            .filter(|(line, _)| *line > 0);
        let (line, column) = key.unwrap_or_else(|| {
            message
                .strip_prefix("tests.")
                .and_then(|rest| rest.split_once(':'))
                .map_or((1, 1), |(column, _)| {
                    crate::data_test::declared_at(&sql, column)
                })
        });
        Error::InvalidModel {
            location: Location::new(path, line, column),
            model: name.clone(),
            message,
        }
    })?;
    let config = match dbt {
        Some((dbt, target)) => {
            let config = dbt.render_hooks(path, &name, config, target)?;
            dbt.resolve_names(path, &name, &project.name, config, target)?
        }
        None => config,
    };
    if let Some(key) = project.dbt.as_ref().and(unsupported_dbt_key(&config)) {
        return Err(Error::InvalidModel {
            location: Location::new(path, 1, 1),
            model: name,
            message: format!(
                "has dbt config `{key}`, which Orbital does not support yet (docs/dbt.md lists what it does)"
            ),
        });
    }
    if let Some((key, hint)) = unknown_key(&config) {
        let (line, column) = config_key_at(&sql, &key);
        let location = match line {
            // From a folder table of orbital.toml.
            0 => crate::config::location_in_file(root, "", &key),
            _ => Location::new(path, line, column),
        };
        return Err(Error::InvalidModel {
            location,
            model: name,
            message: format!(
                "has config `{key}`, which materialized = '{}' does not take{hint}",
                config.materialized
            ),
        });
    }
    Ok(Model {
        name,
        path: path.to_path_buf(),
        sql,
        config,
        incremental_text,
    })
}

/// Config keys the host reads itself, for every model.
const HOST_KEYS: &[&str] = &[
    "materialized",
    "tags",
    "enabled",
    "tests",
    "meta",
    DESCRIPTION,
    COLUMNS,
    SCHEMA,
    ALIAS,
    PRE_HOOK,
    POST_HOOK,
];

/// The config key of what a model is, for people reading about it.
pub const DESCRIPTION: &str = "description";
/// The config key of what each column is (`columns.<name>.description`).
pub const COLUMNS: &str = "columns";
/// Config keys that say nothing about what a build holds: not part of the
/// fingerprint, so changing them rebuilds nothing.
pub const NOT_BUILT: &[&str] = &[SCHEMA, ALIAS, DESCRIPTION, COLUMNS];

/// The config key naming the schema a model is published in, apart from
/// the target's (`<target schema>_<schema>`, as dbt names it).
pub const SCHEMA: &str = "schema";
/// The config key naming the relation a model is published as, instead of
/// its file's name.
pub const ALIAS: &str = "alias";
/// The config key of SQL run before a model's build.
pub const PRE_HOOK: &str = "pre_hook";
/// The config key of SQL run after a model's build.
pub const POST_HOOK: &str = "post_hook";
/// What a hook writes for the relation the build makes; the run puts that
/// relation's name in its place.
pub const HOOK_THIS: &str = "{{ this }}";

/// Hook `hook` with each `{{ this }}` (spaces inside the braces as
/// written) replaced by `this`, the relation the build made.
pub fn hook_sql(hook: &str, this: &str) -> String {
    let mut out = String::with_capacity(hook.len());
    let mut rest = hook;
    while let Some(at) = rest.find("{{") {
        let inside = &rest[at + 2..];
        let word = inside.trim_start();
        let tail = word.strip_prefix("this").map(str::trim_start);
        match tail.and_then(|t| t.strip_prefix("}}")) {
            Some(after) => {
                out.push_str(&rest[..at]);
                out.push_str(this);
                rest = after;
            }
            None => {
                out.push_str(&rest[..at + 2]);
                rest = inside;
            }
        }
    }
    out.push_str(rest);
    out
}

impl ModelConfig {
    /// The schema the model is published in beside the target's, if any.
    pub fn schema(&self) -> Option<&str> {
        self.extra.get(SCHEMA).and_then(serde_json::Value::as_str)
    }

    /// The name the model is published as, if not its own.
    pub fn alias(&self) -> Option<&str> {
        self.extra.get(ALIAS).and_then(serde_json::Value::as_str)
    }

    /// The statements of hook `key` ([`PRE_HOOK`] or [`POST_HOOK`]), in
    /// the order they run.
    pub fn hooks(&self, key: &str) -> Vec<&str> {
        match self.extra.get(key) {
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(serde_json::Value::as_str).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// The keys each first-party materialization takes. A strategy from a
/// project's own plugin takes any key: plugin API 0.1 has no way to
/// declare them.
fn strategy_keys(strategy: &str) -> Option<&'static [&'static str]> {
    Some(match strategy {
        "view" | "table" | crate::dag::EPHEMERAL => &[],
        "incremental" => &["unique_key", "incremental_strategy", "on_schema_change"],
        "sharded_table" => &["shards", "shard_key"],
        "snapshot" => &[
            "unique_key",
            "strategy",
            "updated_at",
            "check_cols",
            "hard_deletes",
        ],
        _ => return None,
    })
}

/// A key a first-party materialization does not take (`materialzed`), and
/// a "did you mean" for it.
/// dbt model config keys Orbital knows of and does not do yet: named as
/// such rather than as typos.
fn unsupported_dbt_key(config: &ModelConfig) -> Option<&str> {
    const NOT_YET: &[&str] = &[
        "database",
        "persist_docs",
        "grants",
        "contract",
        "docs",
        "full_refresh",
        "sql_header",
    ];
    config
        .extra
        .keys()
        .map(String::as_str)
        .find(|key| NOT_YET.contains(key))
}

fn unknown_key(config: &ModelConfig) -> Option<(String, String)> {
    let strategy = strategy_keys(&config.materialized)?;
    let known = || HOST_KEYS.iter().chain(strategy);
    let key = config.extra.keys().find(|key| !known().any(|k| k == key))?;
    let hint = crate::error::nearest(key, known().copied(), 3, false).map_or_else(
        || {
            let keys: Vec<&str> = known().copied().collect();
            format!(" (it takes: {})", keys.join(", "))
        },
        |k| format!("; did you mean `{k}`?"),
    );
    Some((key.clone(), hint))
}

/// Where a `-- config:` line of `sql` names `key`; line 0 when none does
/// (it came from orbital.toml).
fn config_key_at(sql: &str, key: &str) -> (usize, usize) {
    sql.lines()
        .enumerate()
        .filter(|(_, line)| line.trim_start().starts_with("--") && line.contains(CONFIG_PREFIX))
        .find_map(|(i, line)| {
            line.find(key)
                .map(|at| (i + 1, line[..at].chars().count() + 1))
        })
        .unwrap_or((0, 0))
}

/// Folder tables of `[models]` that reach no model, and `[seeds.<name>]`
/// tables that name no seed: most likely a typo, which would otherwise
/// quietly configure nothing.
fn unmatched_config(
    root: &Path,
    config: &ProjectConfig,
    model_paths: &[PathBuf],
    seeds: &[Seed],
) -> Vec<Error> {
    let at = |needle: &str| crate::config::location_in_file(root, "", needle);
    let mut errors = Vec::new();
    for folder in config.model_defaults.keys().filter(|f| !f.is_empty()) {
        if !model_paths
            .iter()
            .any(|path| folder_applies(folder, path, &config.model_paths))
        {
            let table = folder.replace('/', ".");
            errors.push(Error::Config {
                location: at(&format!("models.{table}")),
                message: format!(
                    "[models.{table}] applies to no model: no model is under the folder `{folder}` of {}",
                    config
                        .model_paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    for name in config.seeds.keys() {
        if !seeds.iter().any(|s| &s.name == name) {
            let hint =
                crate::error::did_you_mean(name, seeds.iter().map(|s| s.name.as_str()), 3, false);
            errors.push(Error::Config {
                location: at(&format!("seeds.{name}")),
                message: format!("[seeds.{name}] names no seed{hint}"),
            });
        }
    }
    errors
}

fn load_test(root: &Path, path: &Path, project: &ProjectConfig) -> Result<SingularTest> {
    let text = read_source(root, path)?;
    let name = stem(path);
    let (sql, own) = match &project.dbt {
        Some(dbt) => {
            let target = crate::dbt::jinja_target(project);
            let (sql, own, _) = dbt.render_model(path, &name, &text, &target)?;
            (sql, own)
        }
        None => {
            let own = file_config(path, &text)?;
            (text, own)
        }
    };
    let (severity, store_failures) =
        crate::data_test::singular_config(own).map_err(|message| Error::Config {
            location: Location::new(path, 1, 1),
            message: format!("test `{name}`: {message}"),
        })?;
    Ok(SingularTest {
        name,
        path: path.to_path_buf(),
        sql,
        severity,
        store_failures,
    })
}

/// Whether `[models.<folder>]` covers the model at `path`.
fn folder_applies(folder: &str, path: &Path, model_paths: &[PathBuf]) -> bool {
    folder.is_empty()
        || model_paths.iter().any(|base| {
            path.strip_prefix(base)
                .is_ok_and(|inside| inside.starts_with(folder))
        })
}

/// Later levels win, except `tags`, which accumulate as in dbt.
fn merge_level(merged: &mut toml::Table, level: toml::Table) {
    for (key, value) in level {
        // dbt spells them `pre-hook` / `post-hook` in dbt_project.yml.
        let key = match key.as_str() {
            "pre-hook" => PRE_HOOK.to_string(),
            "post-hook" => POST_HOOK.to_string(),
            _ => key,
        };
        // Hooks add up, a folder's before the model's own, as in dbt.
        if key == PRE_HOOK || key == POST_HOOK {
            let mut hooks = match merged.remove(&key) {
                Some(toml::Value::Array(have)) => have,
                Some(one) => vec![one],
                None => Vec::new(),
            };
            match value {
                toml::Value::Array(more) => hooks.extend(more),
                one => hooks.push(one),
            }
            merged.insert(key, toml::Value::Array(hooks));
            continue;
        }
        match (key.as_str(), merged.get_mut("tags"), value) {
            ("tags", Some(toml::Value::Array(existing)), toml::Value::Array(more)) => {
                existing.extend(
                    more.into_iter()
                        .filter(|t| !existing.contains(t))
                        .collect::<Vec<_>>(),
                );
            }
            ("tags", Some(toml::Value::Array(existing)), more @ toml::Value::String(_)) => {
                if !existing.contains(&more) {
                    existing.push(more);
                }
            }
            (_, _, value) => {
                merged.insert(key, value);
            }
        }
    }
}

/// The `-- config:` lines of a model file, merged.
fn file_config(path: &Path, sql: &str) -> Result<toml::Table> {
    let mut table = toml::Table::new();
    for (index, line) in sql.lines().enumerate() {
        let Some(body) = line.trim_start().strip_prefix("--").map(str::trim_start) else {
            continue;
        };
        let Some(body) = body.strip_prefix(CONFIG_PREFIX) else {
            continue;
        };
        let body_column = line.len() - body.len() + 1;
        let wrapped = format!("c = {{{body}}}");
        let parsed: toml::Table = toml::from_str(&wrapped).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start.saturating_sub(5));
            Error::Config {
                location: Location::new(path, index + 1, body_column + offset.min(body.len())),
                message: format!("invalid `-- config:` line: {}", e.message()),
            }
        })?;
        // A clone, not the parsed table itself: that holds the TOML
        // parser's spare capacity, 25 MiB more at 100k models.
        if let Some(toml::Value::Table(values)) = parsed.get("c") {
            deep_merge(&mut table, values.clone());
        }
    }
    Ok(table)
}

/// Merges `more` into `table`, table values key by key, so that
/// `tests.a = [...]` and `tests.b = [...]` on two lines both count.
fn deep_merge(table: &mut toml::Table, more: toml::Table) {
    for (key, value) in more {
        match (table.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(inner)) => {
                deep_merge(existing, inner);
            }
            (_, value) => {
                table.insert(key, value);
            }
        }
    }
}

fn model_config(mut table: toml::Table) -> std::result::Result<ModelConfig, String> {
    let materialized = match table.remove("materialized") {
        None => "view".to_string(),
        Some(toml::Value::String(s)) => s,
        Some(other) => {
            return Err(format!(
                "config `materialized` must be a string, got {other}"
            ));
        }
    };
    let tags = match table.remove("tags") {
        None => Vec::new(),
        Some(toml::Value::String(s)) => vec![s],
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .map(|t| match t {
                toml::Value::String(s) => Ok(s),
                other => Err(format!("config `tags` must hold strings, got {other}")),
            })
            .collect::<std::result::Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "config `tags` must be a list of strings, got {other}"
            ));
        }
    };
    let tests = match table.remove("tests") {
        None => Vec::new(),
        Some(value) => crate::data_test::parse_column_tests(value)?,
    };
    let enabled = match table.remove("enabled") {
        None => true,
        Some(toml::Value::Boolean(b)) => b,
        Some(other) => {
            return Err(format!(
                "config `enabled` must be true or false, got {other}"
            ));
        }
    };
    for key in [SCHEMA, ALIAS] {
        match table.get(key) {
            None => {}
            Some(toml::Value::String(name)) if is_relation_name(name) => {}
            Some(other) => {
                return Err(format!(
                    "config `{key}` must be a name of letters, digits and `_` (not starting with a digit), got {other}"
                ));
            }
        }
    }
    match table.get(DESCRIPTION) {
        None | Some(toml::Value::String(_)) => {}
        Some(other) => return Err(format!("config `{DESCRIPTION}` must be text, got {other}")),
    }
    if let Some(columns) = table.get(COLUMNS) {
        check_columns(columns)?;
    }
    for key in [PRE_HOOK, POST_HOOK] {
        if let Some(hooks) = table.remove(key) {
            table.insert(key.to_string(), hook_statements(key, hooks)?);
        }
    }
    let extra = match serde_json::to_value(&table) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    Ok(ModelConfig {
        materialized,
        tags,
        enabled,
        tests,
        extra,
    })
}

/// `columns`: a table of `<column> = { description = '...' }`.
fn check_columns(columns: &toml::Value) -> std::result::Result<(), String> {
    let toml::Value::Table(columns) = columns else {
        return Err(format!(
            "config `{COLUMNS}` must be a table of columns, got {columns}"
        ));
    };
    for (column, about) in columns {
        let toml::Value::Table(about) = about else {
            return Err(format!(
                "config `{COLUMNS}.{column}` must be a table (description = '...'), got {about}"
            ));
        };
        for (key, value) in about {
            match (key.as_str(), value) {
                (DESCRIPTION, toml::Value::String(_)) => {}
                (DESCRIPTION, other) => {
                    return Err(format!(
                        "config `{COLUMNS}.{column}.{DESCRIPTION}` must be text, got {other}"
                    ));
                }
                (other, _) => {
                    return Err(format!(
                        "config `{COLUMNS}.{column}` has `{other}`; it takes `{DESCRIPTION}`"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Whether `name` can name a schema or relation as written, unquoted, in
/// every supported database.
fn is_relation_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A hook config as a list of SQL texts: a string, a list of strings, or
/// dbt's `{sql: ...}` tables (alone or in the list).
fn hook_statements(key: &str, value: toml::Value) -> std::result::Result<toml::Value, String> {
    let items = match value {
        toml::Value::Array(items) => items,
        one => vec![one],
    };
    let mut statements = Vec::with_capacity(items.len());
    for item in items {
        let sql = match item {
            toml::Value::String(sql) => sql,
            toml::Value::Table(mut table) => match table.remove("sql") {
                Some(toml::Value::String(sql)) => sql,
                _ => return Err(format!("config `{key}`: a hook table needs `sql = '...'`")),
            },
            other => {
                return Err(format!(
                    "config `{key}` must be SQL text or a list of them, got {other}"
                ));
            }
        };
        if !sql.trim().is_empty() {
            statements.push(toml::Value::String(sql));
        }
    }
    Ok(toml::Value::Array(statements))
}

/// A [`ModelConfig`] in binary caches (the parse cache, snapshots). Its own
/// `Serialize` flattens `extra` for plugins' JSON, which binary formats
/// cannot read back, so `extra` is kept as JSON text here.
pub(crate) mod stored_config {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ModelConfig;

    type Stored = (String, Vec<String>, bool, String, String);

    pub fn serialize<S: Serializer>(
        config: &ModelConfig,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let extra = serde_json::Value::Object(config.extra.clone()).to_string();
        let tests = serde_json::to_string(&config.tests).map_err(serde::ser::Error::custom)?;
        (
            &config.materialized,
            &config.tags,
            config.enabled,
            extra,
            tests,
        )
            .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<ModelConfig, D::Error> {
        let (materialized, tags, enabled, extra, tests): Stored =
            Deserialize::deserialize(deserializer)?;
        let extra = serde_json::from_str(&extra).map_err(serde::de::Error::custom)?;
        let tests = serde_json::from_str(&tests).map_err(serde::de::Error::custom)?;
        Ok(ModelConfig {
            materialized,
            tags,
            enabled,
            tests,
            extra,
        })
    }
}

/// Models, seeds and tests share one namespace: a name is a node.
fn duplicate_names(models: &[Model], seeds: &[Seed], tests: &[SingularTest]) -> Vec<Error> {
    let mut seen: BTreeMap<String, &Path> = BTreeMap::new();
    let mut errors = Vec::new();
    let named = models
        .iter()
        .map(|m| (&m.name, &m.path))
        .chain(seeds.iter().map(|s| (&s.name, &s.path)))
        .chain(tests.iter().map(|t| (&t.name, &t.path)));
    for (name, path) in named {
        match seen.get(&name.to_lowercase()) {
            Some(first) => errors.push(Error::Duplicate {
                location: Location::new(path, 1, 1),
                name: name.clone(),
                first: first.to_path_buf(),
            }),
            None => {
                seen.insert(name.to_lowercase(), path);
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        dir
    }

    #[test]
    fn a_file_that_is_not_utf8_is_refused_where_it_stops_being_utf8() {
        let dir = project(&[
            (
                "orbital.toml",
                "name = \"p\"\n[targets.dev]\nurl = \"sqlite://p.db\"\n",
            ),
            ("models/ok.sql", "select 1 as a"),
        ]);
        std::fs::write(
            dir.path().join("models/bad.sql"),
            b"select 1 as a,\n  '\xc3\xa9\xff' as b",
        )
        .unwrap();
        let error = Project::load(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("models/bad.sql:2:5: not UTF-8 text (byte 0xff)"),
            "{error}"
        );
        // A byte-order mark is not text.
        assert_eq!(
            decode_text(b"\xef\xbb\xbfselect 1".to_vec()).unwrap(),
            "select 1"
        );
    }

    #[test]
    fn hooks_add_up_and_this_is_the_built_relation() {
        let table = |text: &str| toml::from_str::<toml::Table>(text).unwrap();
        let mut merged = toml::Table::new();
        merge_level(
            &mut merged,
            table("pre-hook = 'create x'\npost-hook = ['a', 'b']"),
        );
        merge_level(
            &mut merged,
            table("post_hook = { sql = 'c', transaction = false }"),
        );
        let config = model_config(merged).unwrap();
        assert_eq!(config.hooks(PRE_HOOK), ["create x"]);
        assert_eq!(config.hooks(POST_HOOK), ["a", "b", "c"]);
        assert_eq!(
            hook_sql(
                "grant select on {{ this }} to r; analyze {{this}}; {{ thisx }}",
                "\"s\".\"t\""
            ),
            "grant select on \"s\".\"t\" to r; analyze \"s\".\"t\"; {{ thisx }}"
        );
        assert!(
            model_config(table("post_hook = 3"))
                .unwrap_err()
                .contains("SQL text")
        );
        assert!(
            model_config(table("pre_hook = [{ run = 'x' }]"))
                .unwrap_err()
                .contains("sql = '...'")
        );
    }

    #[test]
    fn a_bad_config_value_is_placed_at_its_key() {
        let dir = project(&[
            ("orbital.toml", "name = \"p\"\n"),
            (
                "models/a.sql",
                "-- config: materialized = 'table'\n-- config: alias = 'two words'\nselect 1 as id\n",
            ),
        ]);
        let error = Project::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("models/a.sql:2:12"), "{error}");
    }

    #[test]
    fn schema_alias_and_descriptions_are_checked() {
        let table = |text: &str| toml::from_str::<toml::Table>(text).unwrap();
        let config = model_config(table("schema = 'marts'\nalias = 'all_orders'")).unwrap();
        assert_eq!(
            (config.schema(), config.alias()),
            (Some("marts"), Some("all_orders"))
        );
        for bad in [
            "alias = 'two words'",
            "schema = '1st'",
            "alias = 3",
            "schema = ''",
        ] {
            let message = model_config(table(bad)).unwrap_err();
            assert!(message.contains("must be a name"), "{bad}: {message}");
        }
        model_config(table(
            "description = 'x'\ncolumns = { id = { description = 'key' } }",
        ))
        .unwrap();
        let typo = model_config(table("columns = { id = { desription = 'key' } }")).unwrap_err();
        assert!(typo.contains("`columns.id` has `desription`"), "{typo}");
        assert!(model_config(table("description = 1")).is_err());
    }

    #[test]
    fn hidden_files_stray_links_and_byte_order_marks_are_no_trouble() {
        let dir = project(&[
            ("orbital.toml", "\u{feff}name = \"p\"\n"),
            ("models/a.sql", "\u{feff}select 1 as x"),
        ]);
        let models = dir.path().join("models");
        std::fs::write(models.join(".hidden.sql"), "not sql at all").unwrap();
        std::fs::create_dir_all(models.join(".git")).unwrap();
        std::fs::write(models.join(".git/x.sql"), "nope").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("user@host.1234:1700000000", models.join(".#a.sql"))
                .unwrap();
            std::os::unix::fs::symlink("gone.txt", models.join("notes.txt")).unwrap();
        }
        let project = Project::load(dir.path()).unwrap();
        let names: Vec<&str> = project.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a"]);
        assert_eq!(project.models[0].sql, "select 1 as x");
        // A model that is a link to nothing is not silently left out.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("gone.sql", models.join("dangling.sql")).unwrap();
            let error = Project::load(dir.path()).unwrap_err().to_string();
            assert!(
                error.contains("dangling.sql") && error.contains("gone.sql, which does not exist"),
                "{error}"
            );
        }
    }

    #[test]
    fn misspelled_config_and_tables_that_match_nothing_are_errors() {
        let dir = project(&[
            (
                "orbital.toml",
                "name = \"p\"\n[models.marts]\nmaterialzed = \"table\"\n[models.finance]\ntags = [\"x\"]\n[seeds.raw_ordrs]\n",
            ),
            ("models/marts/a.sql", "select 1 as x"),
            (
                "models/b.sql",
                "-- config: materialized = 'snapshot', updated = 'at'\nselect 1 as x",
            ),
            (
                "models/c.sql",
                "-- config: materialized = 'my_own', anything = 1\nselect 1 as x",
            ),
            ("seeds/raw_orders.csv", "id\n1\n"),
        ]);
        let errors: Vec<String> = match Project::load(dir.path()) {
            Err(Error::Many(errors)) => errors.iter().map(ToString::to_string).collect(),
            other => panic!("{other:?}"),
        };
        let expected = [
            "models/b.sql:1:39: model `b` has config `updated`, which materialized = 'snapshot' does not take; did you mean `updated_at`?",
            "orbital.toml:3:1: model `a` has config `materialzed`, which materialized = 'view' does not take; did you mean `materialized`?",
            "orbital.toml:4:2: [models.finance] applies to no model: no model is under the folder `finance` of models",
            "orbital.toml:6:2: [seeds.raw_ordrs] names no seed; did you mean `raw_orders`?",
        ];
        assert_eq!(errors, expected);
    }

    #[test]
    fn walks_in_path_order() {
        let files = [
            "models/a-b.sql",
            "models/a/b.sql",
            "models/a.sql",
            "models/a/a.sql",
            "models/ab.sql",
            "models/a b/c.sql",
            "models/a/b/c/d.sql",
            "models/Z.sql",
            "models/a/notes.md",
        ];
        let dir = project(&files.map(|f| (f, "select 1")));
        let walked = paths_with_extension(dir.path(), Path::new("models"), "sql").unwrap();
        let mut expected: Vec<PathBuf> = files
            .iter()
            .filter(|f| f.ends_with(".sql"))
            .map(PathBuf::from)
            .collect();
        expected.sort();
        assert_eq!(walked, expected);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_cycle_is_an_error_not_an_endless_walk() {
        let dir = project(&[("models/a/m.sql", "select 1")]);
        let models = dir.path().join("models");
        std::os::unix::fs::symlink(&models, models.join("a/back")).unwrap();
        let err = paths_with_extension(dir.path(), Path::new("models"), "sql").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("models/a/back") && text.contains("never end"),
            "{text}"
        );
        // A link elsewhere is followed as before.
        std::fs::remove_file(models.join("a/back")).unwrap();
        let other = project(&[("shared/s.sql", "select 2")]);
        std::os::unix::fs::symlink(other.path().join("shared"), models.join("shared")).unwrap();
        let walked = paths_with_extension(dir.path(), Path::new("models"), "sql").unwrap();
        let expected: Vec<PathBuf> = ["models/a/m.sql", "models/shared/s.sql"]
            .map(PathBuf::from)
            .to_vec();
        assert_eq!(walked, expected);
    }

    const TOML: &str = "name = \"p\"\n[targets.dev]\nurl = \"sqlite://p.db\"\n[models.marts]\nmaterialized = \"table\"\ntags = [\"mart\"]\n";
    /// Without folder tables, for projects with no `marts` folder.
    const PLAIN_TOML: &str = "name = \"p\"\n[targets.dev]\nurl = \"sqlite://p.db\"\n";

    #[test]
    fn merges_folder_and_file_config() {
        let dir = project(&[
            ("orbital.toml", TOML),
            ("models/staging/stg_a.sql", "select 1 as x"),
            (
                "models/marts/a.sql",
                "-- config: tags = ['daily'], description = 'id'\nselect 1 as x",
            ),
            (
                "models/marts/b.sql",
                "-- config: materialized = 'view'\nselect 1",
            ),
            ("seeds/raw_a.csv", "x\n1\n"),
        ]);
        let project = Project::load(dir.path()).unwrap();
        let by_name = |n: &str| project.models.iter().find(|m| m.name == n).unwrap();
        assert_eq!(by_name("stg_a").config.materialized, "view");
        let a = &by_name("a").config;
        assert_eq!(
            (a.materialized.as_str(), a.tags.clone()),
            ("table", vec!["mart".to_string(), "daily".to_string()])
        );
        assert_eq!(a.extra["description"], "id");
        assert_eq!(by_name("b").config.materialized, "view");
        assert_eq!(project.seeds[0].name, "raw_a");
    }

    #[test]
    fn duplicate_model_names_name_both_files() {
        let dir = project(&[
            ("orbital.toml", PLAIN_TOML),
            ("models/a/x.sql", "select 1"),
            ("models/b/x.sql", "select 2"),
        ]);
        let err = Project::load(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "models/b/x.sql:1:1: duplicate name `x`: also defined at models/a/x.sql"
        );
    }

    #[test]
    fn a_seed_and_a_model_cannot_share_a_name() {
        let dir = project(&[
            ("orbital.toml", PLAIN_TOML),
            ("models/x.sql", "select 1"),
            ("seeds/x.csv", "a\n1\n"),
        ]);
        assert!(matches!(
            Project::load(dir.path()).unwrap_err(),
            Error::Duplicate { .. }
        ));
    }

    #[test]
    fn bad_config_line_points_into_it() {
        let dir = project(&[
            ("orbital.toml", PLAIN_TOML),
            (
                "models/x.sql",
                "\n-- config: materialized = table\nselect 1",
            ),
        ]);
        let err = Project::load(dir.path()).unwrap_err();
        let location = err.location().unwrap();
        assert_eq!(
            (location.path.to_str().unwrap(), location.line),
            ("models/x.sql", 2)
        );
        assert!(location.column >= 12, "{err}");
    }

    #[test]
    fn missing_project_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Project::load(dir.path())
                .unwrap_err()
                .to_string()
                .starts_with("no orbital.toml in ")
        );
    }
}
