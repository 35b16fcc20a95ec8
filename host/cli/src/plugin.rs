//! `orbital plugin`: scaffold a plugin crate, build it to a component,
//! install a component into the project's state store, list what a project
//! loads. Everything a third party needs to go from nothing to a model built
//! by their own materialization.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::{Subcommand, ValueEnum};
use orbital_core::config::INSTALLED_PREFIX;
use orbital_engine::{Described, Engine};

use crate::diagnostics::Failure;
use crate::{Cli, report};

/// The WASM target plugins build for.
const WASM_TARGET: &str = "wasm32-wasip2";

#[derive(Subcommand)]
pub(crate) enum PluginCommand {
    /// Create a plugin crate that `orbital plugin build` turns into a component.
    New {
        /// What the plugin provides.
        kind: PluginKind,
        /// The plugin's name (lowercase letters, digits, `-`, `_`); for a
        /// materialization, also the `materialized` value models use (with
        /// `-` as `_`).
        name: String,
        /// Where to create the crate (default: ./NAME).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The orbital-sdk crate to depend on, as a path (default: the SDK
        /// this orbital carries, unpacked into its cache folder).
        #[arg(long, value_name = "DIR")]
        sdk_path: Option<PathBuf>,
    },
    /// Build the plugin crate in DIR for wasm32-wasip2 and check that the
    /// result loads as a plugin.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Also copy the component to FILE (e.g. where orbital.toml lists it).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check a component and install it into the project's state store; the
    /// project then lists it in orbital.toml as `blake3:<hash>`.
    Install { file: PathBuf },
    /// The plugins the project loads (bundled, then listed in orbital.toml),
    /// then those installed but not listed.
    List,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PluginKind {
    Materialization,
    Adapter,
    /// Macros; the template provides a generic data test.
    Macros,
}

pub(crate) async fn command(
    engine: &Engine,
    cli: &Cli,
    command: &PluginCommand,
    output: &report::Output,
) -> Result<ExitCode, Failure> {
    match command {
        PluginCommand::New {
            kind,
            name,
            dir,
            sdk_path,
        } => {
            let dir = dir.clone().unwrap_or_else(|| PathBuf::from(name));
            scaffold(*kind, name, &dir, sdk_path.as_deref())?;
            print(output, serde_json::json!({ "created": dir }), || {
                format!(
                    "Created the plugin crate {}. Build it with: orbital plugin build {}",
                    dir.display(),
                    dir.display()
                )
            });
        }
        PluginCommand::Build { dir, out } => {
            let mut wasm = build(dir)?;
            if let Some(out) = out {
                copy_component(&wasm, out)?;
                wasm.clone_from(out);
            }
            let described = engine.describe_file(&wasm).await?;
            print(output, serde_json::json!({ "built": described }), || {
                format!("Built {}\n{}", wasm.display(), line(&described))
            });
        }
        PluginCommand::Install { file } => {
            let installed = engine.install_plugin(&cli.project, file).await?;
            let (described, listed) = (&installed.described, &installed.listed);
            print(
                output,
                serde_json::json!({ "installed": described, "orbital_toml": listed }),
                || {
                    format!(
                        "Installed {}\n{}",
                        line(described),
                        listed_line(&described.hash, &described.name, listed)
                    )
                },
            );
        }
        PluginCommand::List => {
            let listed = engine.list_plugins(&cli.project).await?;
            print(output, serde_json::json!({ "plugins": listed }), || {
                listed.iter().map(line).collect::<Vec<_>>().join("\n")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `orbital plugin install` did to orbital.toml, in words.
pub(crate) fn listed_line(hash: &str, name: &str, listed: &orbital_engine::ListedIn) -> String {
    match (listed.listed, listed.already, listed.replaced.as_slice()) {
        (false, _, _) => format!(
            "No orbital.toml to list it in; to use it, add:\n  [plugins]\n  components = [\"{hash}\"]"
        ),
        (true, true, _) => "orbital.toml lists it already.".into(),
        (true, false, []) => format!("Added {hash} to orbital.toml's [plugins] components."),
        (true, false, replaced) => format!(
            "Listed {hash} in orbital.toml in place of {} (another build of {name}).",
            replaced.join(", ")
        ),
    }
}

/// One line of `orbital plugin list`.
fn line(described: &Described) -> String {
    let provides = match described.keeps_history {
        true => format!("{} (keeps history)", described.provides),
        false => described.provides.clone(),
    };
    format!(
        "{:<16} {:<32} {:<10} api {} provides {:<20} {} ({})",
        described.kind,
        described.name,
        described.version,
        described.api,
        provides,
        &described.hash[..INSTALLED_PREFIX.len() + 12],
        described.source
    )
}

fn print(output: &report::Output, json: serde_json::Value, human: impl FnOnce() -> String) {
    if output.json {
        println!("{json}");
    } else {
        println!("{}", human());
    }
}

fn check_name(name: &str) -> Result<(), Failure> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Failure::Usage(format!(
            "`{name}` is not a plugin name: use lowercase letters, digits, `-` and `_`, starting with a letter"
        )))
    }
}

/// Writes the crate into a temporary folder beside `dir`, then renames it
/// into place, so a failure leaves nothing behind.
fn scaffold(
    kind: PluginKind,
    name: &str,
    dir: &Path,
    sdk_path: Option<&Path>,
) -> Result<(), Failure> {
    check_name(name)?;
    if dir.exists() {
        return Err(Failure::Usage(format!(
            "{} already exists; choose another --dir",
            dir.display()
        )));
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let files = [
        ("Cargo.toml", manifest(name, &sdk_dependency(sdk_path)?)),
        ("src/lib.rs", source(kind, name)),
        (".gitignore", "/target\n".to_string()),
    ];
    let staged = staged_folder(&parent, files.iter().map(|(p, t)| (*p, t.as_str())))?;
    std::fs::rename(&staged, dir).map_err(|source| {
        let _ = std::fs::remove_dir_all(&staged);
        Failure::Write {
            path: dir.to_path_buf(),
            source,
        }
    })
}

/// Writes `files` (relative path, text) into a new folder in `parent` and
/// returns it, for the caller to rename into place: a failure or a crash
/// never leaves a half-written folder where it is looked for.
pub(crate) fn staged_folder<'a>(
    parent: &Path,
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<PathBuf, Failure> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Failure::Write { path, source }
    };
    std::fs::create_dir_all(parent).map_err(write_error(parent))?;
    let staging = tempfile::TempDir::new_in(parent).map_err(write_error(parent))?;
    for (relative, text) in files {
        let path = staging.path().join(relative);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(write_error(folder))?;
        }
        std::fs::write(&path, text).map_err(write_error(&path))?;
    }
    Ok(staging.keep())
}

/// The `orbital-sdk` dependency line: a path to the SDK source.
fn sdk_dependency(sdk_path: Option<&Path>) -> Result<String, Failure> {
    let path = match sdk_path {
        Some(path) => path.to_path_buf(),
        None => crate::sdk_source::unpacked(&cache_root()?)?,
    };
    let path = path
        .canonicalize()
        .map_err(|e| Failure::Usage(format!("--sdk-path {}: {e}", path.display())))?;
    if !path.join("Cargo.toml").is_file() {
        return Err(Failure::Usage(format!(
            "{} holds no Cargo.toml; --sdk-path names the orbital-sdk crate's folder",
            path.display()
        )));
    }
    // A TOML basic string: escape what would end or bend it.
    let escaped = path
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    Ok(format!("{{ path = \"{escaped}\" }}"))
}

fn manifest(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: for wasm32-wasip2 the linker makes it a WebAssembly component.
crate-type = ["cdylib"]

[dependencies]
orbital-sdk = {sdk}

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"

# Its own workspace, wherever it is created.
[workspace]
"#
    )
}

fn source(kind: PluginKind, name: &str) -> String {
    let strategy = name.replace('-', "_");
    match kind {
        PluginKind::Materialization => format!(
            r#"//! `{name}`: an Orbital materialization.
//!
//! Models use it with `-- config: materialized = '{strategy}'`.
//! `orbital plugin build` makes the component; list the `.wasm` file under
//! `[plugins] components` in orbital.toml, or `orbital plugin install` it
//! and list the `blake3:<hash>` it prints.

use orbital_sdk::{{Materialization, ModelTask, Outcome, PluginInfo, database, dialect}};

struct Plugin;

impl Materialization for Plugin {{
    fn info() -> PluginInfo {{
        orbital_sdk::plugin_info!("{name}", "Builds a model as a table")
    }}

    fn strategy() -> String {{
        "{strategy}".into()
    }}

    // A strategy whose tables carry history a rebuild cannot recreate
    // returns true here: its builds then get `task.previous` (see the
    // SDK's docs of `Materialization`).
    fn keeps_history() -> bool {{
        false
    }}

    fn materialize(task: ModelTask) -> Result<Outcome, String> {{
        // One transaction: a failed build leaves what was there.
        let mut statements = match database::relation_kind(&task.relation)? {{
            Some(kind) => dialect::drop_relation(&task.relation, kind),
            None => Vec::new(),
        }};
        statements.extend(dialect::create_table_as(&task.relation, &task.sql));
        database::run_in_transaction(&statements)?;
        let rows = database::row_count(&task.relation)?;
        Ok(Outcome {{
            rows_affected: Some(rows),
            message: format!("built by {name} ({{rows}} rows)"),
        }})
    }}
}}

orbital_sdk::export_materialization!(Plugin);
"#
        ),
        PluginKind::Macros => format!(
            r#"//! `{name}`: Orbital macros. The template provides one generic data
//! test, `{strategy}`: models declare it per column,
//! `-- config: tests.amount = ['{strategy}']`, and it fails the rows where the
//! column is negative. A test macro returns the query of failing rows.

use orbital_sdk::{{Call, Macros, PluginInfo, Position, Signature}};

struct Plugin;

impl Macros for Plugin {{
    fn info() -> PluginInfo {{
        orbital_sdk::plugin_info!("{name}", "Generic data tests")
    }}

    fn signatures() -> Vec<Signature> {{
        vec![Signature {{
            name: "{strategy}".into(),
            positions: vec![Position::Test],
            params: vec!["column".into()],
            required: 1,
            description: "Fails rows where the column is negative".into(),
        }}]
    }}

    fn expand(call: Call) -> Result<String, String> {{
        // The host passes the tested column first, named `column`.
        let column = call
            .args
            .iter()
            .find(|a| a.name.as_deref() == Some("column"))
            .ok_or("no column given")?;
        Ok(format!("select * from {{}} where {{}} < 0", call.model, column.sql))
    }}
}}

orbital_sdk::export_macros!(Plugin);
"#
        ),
        PluginKind::Adapter => format!(
            r#"//! `{name}`: an Orbital adapter, the SQL dialect of one kind of database.
//!
//! Every method of `Adapter` but `info` has a standard-SQL default; override
//! what your database says differently. The host connects to the URL
//! schemes it has drivers for (`sqlite`, `postgres`, `mysql`); an adapter
//! claiming one replaces the bundled adapter for it. For a database the
//! host has no driver for, implement `orbital_sdk::Connection` as well and
//! export both with `orbital_sdk::export_connected_adapter!` (see the SDK's
//! `connection` docs).

use orbital_sdk::{{Adapter, AdapterInfo}};

struct Plugin;

impl Adapter for Plugin {{
    fn info() -> AdapterInfo {{
        AdapterInfo {{
            plugin: orbital_sdk::plugin_info!("{name}", "A SQL dialect"),
            url_schemes: vec!["sqlite".into()],
            parser_dialect: "sqlite".into(),
            transactional_ddl: true,
        }}
    }}
}}

orbital_sdk::export_adapter!(Plugin);
"#
        ),
    }
}

/// Copies a built component to `out`, writing aside and renaming so a
/// reader never sees half a file.
fn copy_component(wasm: &Path, out: &Path) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Usage(format!("cannot write {}: {e}", out.display()));
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let aside = out.with_extension("wasm.partial");
    std::fs::copy(wasm, &aside).map_err(io)?;
    std::fs::rename(&aside, out).map_err(io)
}

/// Builds the crate in `dir` and returns its component's path.
fn build(dir: &Path) -> Result<PathBuf, Failure> {
    if !dir.join("Cargo.toml").is_file() {
        return Err(Failure::Usage(format!(
            "{} holds no Cargo.toml; `orbital plugin new` creates a plugin crate",
            dir.display()
        )));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // `rustc --crate-type cdylib`: a crate that is also a plain library in
    // some workspace (as the example's is) still builds as a component.
    // Every plugin builds in one target folder under the cache (unless
    // CARGO_TARGET_DIR names another), so the SDK and its dependencies
    // compile once, not once per plugin; never a workspace's own, where a
    // cargo that runs this binary may hold the lock.
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => match crate::cache_dir() {
            Some(cache) => cache.join("builds"),
            None => dir.join("target"),
        },
    };
    let built = Command::new(cargo)
        .current_dir(dir)
        .args(["rustc", "--release", "--lib", "--crate-type", "cdylib"])
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["--message-format", "json-render-diagnostics"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Failure::Environment(format!("cannot run cargo: {e}")))?;
    if !built.status.success() {
        return Err(Failure::Usage(format!(
            "building the plugin in {} failed (cargo's errors above); if the target is missing: rustup target add {WASM_TARGET}",
            dir.display()
        )));
    }
    let component = component_path(&String::from_utf8_lossy(&built.stdout)).ok_or_else(|| {
        Failure::Usage(format!(
            "cargo built no .wasm in {}: is the crate's [lib] crate-type \"cdylib\"?",
            dir.display()
        ))
    })?;
    // The shared folder holds the last build of each crate name: the
    // component is copied to where cargo alone would have put it.
    let own = std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .join("target")
        .join(WASM_TARGET)
        .join("release");
    let Some(file) = component.file_name() else {
        return Ok(component);
    };
    if component.parent() == Some(own.as_path()) {
        return Ok(component);
    }
    std::fs::create_dir_all(&own).map_err(|source| Failure::Write {
        path: own.clone(),
        source,
    })?;
    let copy = own.join(file);
    copy_component(&component, &copy)?;
    Ok(copy)
}

/// The cache folder the SDK is unpacked into and plugins are built in.
fn cache_root() -> Result<PathBuf, Failure> {
    crate::cache_dir().ok_or_else(|| {
        Failure::Usage(
            "no cache folder (neither ORBITAL_CACHE_DIR nor HOME is set): set ORBITAL_CACHE_DIR, or pass --sdk-path <dir of orbital-sdk>".into(),
        )
    })
}

/// The `.wasm` file among cargo's JSON messages: the last artifact of the
/// root package (dependencies are rlibs).
fn component_path(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .filter(|f| f.extension().is_some_and(|e| e == "wasm"))
                .collect::<Vec<_>>()
        })
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("audited_table").is_ok());
        assert!(check_name("my-mat2").is_ok());
        for bad in ["", "Mat", "2mat", "a b", "a/b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_component_is_the_wasm_artifact() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","filenames":["/t/libdep.rlib"]}"#,
            "\n",
            r#"{"reason":"compiler-artifact","filenames":["/t/my_mat.wasm"]}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            component_path(messages),
            Some(PathBuf::from("/t/my_mat.wasm"))
        );
        assert_eq!(component_path(""), None);
    }
}
