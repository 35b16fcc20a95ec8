//! `compile` and `ls`: the project compiled and selected, without touching
//! the warehouse; and the seed checks every loading command makes first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use orbital_core::{CompiledProject, Dag, NodeId, Project, Selection};

use crate::components::{components, store_path};
use crate::error::EngineError;
use crate::macros::PluginMacros;
use crate::request::{CompileRequest, Compiled, Details, Listing, Selector};
use crate::session::SaveParses;
use crate::{Engine, blocking};

impl Engine {
    /// Loads, compiles and selects the project of `request`.
    pub async fn compile(&self, request: CompileRequest) -> Result<Compiled, EngineError> {
        let engine = self.clone();
        blocking(move || engine.compile_now(&request)).await?
    }

    /// The whole project compiled on `selector`'s target and vars (its
    /// selection is ignored): what lineage and docs read.
    pub(crate) async fn compile_whole(
        &self,
        project: &Path,
        selector: &Selector,
        listing: Listing,
    ) -> Result<Compiled, EngineError> {
        self.compile(CompileRequest {
            project: project.to_path_buf(),
            selector: Selector {
                target: selector.target.clone(),
                vars: selector.vars.clone(),
                ..Selector::default()
            },
            listing,
        })
        .await
    }

    fn compile_now(&self, request: &CompileRequest) -> Result<Compiled, EngineError> {
        let root = &request.project;
        let config = orbital_core::ProjectConfig::load(root)?;
        let (target_name, target) = config.target(request.selector.target.as_deref())?;
        let (target_name, target) = (target_name.to_string(), target.clone());
        let config = config
            .running_on(&target_name)
            .with_vars(request.selector.vars.as_deref())?;
        let store = self.store(&store_path(root, &config))?;
        let components = components(root, &config, || Ok(store.clone()))?;
        let macros = PluginMacros::new(self, &components, &config)?;
        // The snapshot and the parse cache, as a run uses them: an
        // unchanged project is not read again, an unchanged model not parsed.
        let (project, compiled, stamped) = crate::session::load(
            self,
            root,
            config,
            &target,
            &store,
            &macros,
            SaveParses::Now,
        )?;
        let mut selection = Selection::resolve(
            &compiled.dag,
            &request.selector.select,
            &request.selector.exclude,
        )?;
        let details = (request.listing == Listing::Detailed)
            .then(|| {
                let content = content_version(&target, &macros, &project);
                self.details(
                    root,
                    content,
                    &project,
                    &compiled,
                    &target,
                    &store,
                    &components,
                    &macros,
                )
            })
            .transpose()?;
        if request.listing == Listing::Models {
            // `compile` shows ephemeral models too.
            selection
                .nodes
                .retain(|&id| compiled.dag.nodes[id].as_model().is_some());
        } else {
            check_seeds(&project, &compiled, &selection)?;
        }
        let output = stamped.map(|(key, files)| output_identity(&key, &files, &selection.nodes));
        Ok(Compiled {
            project,
            compiled,
            selection,
            details,
            output,
        })
    }
}

/// What a project's listing is made from: its config (as loaded), the SQL
/// dialect, the macro plugins, and each model's, seed's and test's name,
/// path and text. Read from the files' content, not their stamps, which may
/// be too fresh to trust.
fn content_version(
    target: &orbital_core::Target,
    macros: &PluginMacros,
    project: &Project,
) -> orbital_core::Hash {
    use orbital_core::macros::SqlMacros;
    let mut hasher = blake3::Hasher::new();
    let mut add = |part: &[u8]| {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    };
    add(format!("{:?}", project.config).as_bytes());
    add(target.parser_dialect().as_bytes());
    add(SqlMacros::identity(macros).as_bytes());
    for model in &project.models {
        add(model.name.as_bytes());
        add(model.path.as_os_str().as_encoded_bytes());
        add(model.sql.as_bytes());
    }
    for seed in &project.seeds {
        add(seed.name.as_bytes());
        add(seed.path.as_os_str().as_encoded_bytes());
        add(&seed.content.0);
    }
    for test in &project.tests {
        add(test.name.as_bytes());
        add(test.path.as_os_str().as_encoded_bytes());
        add(test.sql.as_bytes());
    }
    orbital_core::Hash::of(hasher.finalize().as_bytes())
}

impl Engine {
    /// [`Details`] of a compiled project, kept for its version: its
    /// content ([`content_version`]) and the plugins' hashes the last run
    /// learned. The columns are a parse of every model (about a second of
    /// CPU at 10k models), the fingerprints a hash of every node.
    #[allow(clippy::too_many_arguments)]
    fn details(
        &self,
        root: &Path,
        content: orbital_core::Hash,
        project: &Project,
        compiled: &CompiledProject,
        target: &orbital_core::Target,
        store: &orbital_cas::Store,
        components: &[orbital_runner::Component],
        macros: &PluginMacros,
    ) -> Result<Arc<Details>, EngineError> {
        // The plugins' hashes as the last run learned them: fingerprints
        // without loading any component.
        let set_key = orbital_runner::plugin_set_key(components, target.scheme());
        let plugins = store.plugin_set(&set_key)?;
        let version = orbital_core::Hash::of(format!("{content} {plugins:?}").as_bytes());
        if let Some(kept) = self.kept_details(root, &version) {
            return Ok(kept);
        }
        let fingerprints = plugins.and_then(|plugins| {
            orbital_core::fingerprint::fingerprint(project, &compiled.dag, &plugins)
                .ok()
                .map(|f| f.full)
        });
        let cache = store.parse_cache()?;
        let columns = orbital_core::catalog::project_columns(project, target, &cache, macros);
        let details = Arc::new(Details {
            version,
            fingerprints,
            columns,
        });
        self.keep_details(root, details.clone());
        Ok(details)
    }
}

impl Compiled {
    /// Where `compile` writes the compiled SQL.
    pub fn out_dir(&self) -> PathBuf {
        self.project
            .root
            .join(&self.project.config.target_path)
            .join("compiled")
    }

    /// Writes each selected model's SQL to `out_dir/<model path>`, replacing
    /// the folder only once everything is written; returns how many.
    pub fn write(&self) -> Result<usize, EngineError> {
        write_compiled(
            &self.compiled.dag,
            &self.selection.nodes,
            &self.out_dir(),
            self.output,
        )
    }
}

/// What names the compiled files of a project known by its stamps: the
/// snapshot key (config, target, build, macro plugins), every source file's
/// stamp, and the selection. Equal identities, equal files.
fn output_identity(
    key: &orbital_core::Hash,
    files: &[(PathBuf, orbital_core::snapshot::Stamp)],
    selection: &[NodeId],
) -> orbital_core::Hash {
    let mut hasher = orbital_core::hash::Hasher::new("orbital compiled output v1");
    hasher.field(key.0);
    orbital_core::snapshot::hash_stamps(&mut hasher, files);
    for id in selection {
        hasher.field(id.to_le_bytes());
    }
    hasher.finish()
}

/// Reads every selected seed before anything runs, so a malformed CSV stops
/// the command with nothing written.
pub(crate) fn check_seeds(
    project: &Project,
    compiled: &CompiledProject,
    selection: &Selection,
) -> Result<(), EngineError> {
    let errors: Vec<orbital_core::Error> = selection
        .nodes
        .iter()
        .map(|&id| &compiled.dag.nodes[id])
        .filter_map(|node| match &node.kind {
            orbital_core::NodeKind::Seed(config) => orbital_core::seed::read(
                &node.name,
                &project.absolute(&node.path),
                &node.path,
                config,
            )
            .err(),
            orbital_core::NodeKind::Model(_) | orbital_core::NodeKind::Test(_) => None,
        })
        .collect();
    Ok(orbital_core::Error::collect(errors)?)
}

/// One node as `ls --json` and the API list it: name, kind, file,
/// materialization, tags and what it reads.
pub fn node_json(dag: &Dag, id: NodeId) -> serde_json::Value {
    let node = &dag.nodes[id];
    serde_json::json!({
        "name": node.name,
        "kind": node.kind_name(),
        "path": node.path.display().to_string(),
        "materialized": node.as_model().map(|m| m.config.materialized.clone()),
        "tags": node.tags,
        "depends_on": node.depends_on.iter().map(|d| dag.nodes[*d].name.clone()).collect::<Vec<_>>(),
    })
}

/// The model or seed named `name` (any case), or a usage error with the
/// nearest name.
pub(crate) fn model_or_seed(dag: &Dag, name: &str) -> Result<NodeId, EngineError> {
    dag.find(name)
        .filter(|&id| !dag.nodes[id].is_test())
        .ok_or_else(|| {
            let names = dag
                .nodes
                .iter()
                .filter(|n| !n.is_test())
                .map(|n| n.name.as_str());
            let hint = orbital_core::did_you_mean(name, names, 3, true);
            EngineError::Usage(format!("no model or seed named `{name}`{hint}"))
        })
}

/// A model's SQL as users read it: references by their relation names.
pub fn user_sql(dag: &Dag, id: NodeId) -> Option<String> {
    orbital_core::compile::render_model(dag, id, |dep| dag.nodes[dep].relation.quoted())
}

/// The list of what `compile` last wrote, beside it: each file's path and
/// the hash of its text.
const MANIFEST: &str = ".orbital-compiled";

/// Writes each selected model's SQL to `out_dir/<model path>`: only the
/// files whose text changed since the last compile (per the manifest), and
/// removes those of models no longer selected. A folder without a manifest
/// (made by hand, or by an older orbital) is replaced whole.
fn write_compiled(
    dag: &Dag,
    selection: &[NodeId],
    out_dir: &Path,
    identity: Option<orbital_core::Hash>,
) -> Result<usize, EngineError> {
    use rayon::prelude::*;
    let manifest_path = out_dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if out_dir.exists() {
                std::fs::remove_dir_all(out_dir).map_err(EngineError::write(out_dir))?;
            }
            String::new()
        }
        Err(source) => {
            return Err(EngineError::Write {
                path: manifest_path,
                source,
            });
        }
    };
    let (previous, folders, written_for) = parse_manifest(&text);
    // A file deleted from a folder changes the folder's modification time:
    // a folder as the manifest left it still holds every file it listed, so
    // its files need no look each.
    let untouched: std::collections::HashSet<&Path> = folders
        .iter()
        .filter(|(folder, modified)| folder_modified(&out_dir.join(folder)) == Some(*modified))
        .map(|(folder, _)| *folder)
        .collect();
    // The same project, stamp for stamp, and every folder as it was left:
    // the files are what this compile would write. Nothing is rendered.
    let identity = identity.map(|i| i.to_string());
    if identity.is_some()
        && written_for == identity.as_deref()
        && untouched.len() == folders.len()
        && out_dir.exists()
    {
        return Ok(previous.len());
    }
    let current: Vec<(PathBuf, String, String)> = selection
        .par_iter()
        .filter_map(|&id| {
            let sql = format!("{}\n", user_sql(dag, id)?);
            let hash = blake3::hash(sql.as_bytes()).to_hex().to_string();
            Some((dag.nodes[id].path.clone(), hash, sql))
        })
        .collect();
    let stale: Vec<&(PathBuf, String, String)> = current
        .par_iter()
        .filter(|(path, hash, _)| {
            previous.get(path.as_path()) != Some(&hash.as_str())
                || !(path
                    .parent()
                    .is_some_and(|folder| untouched.contains(folder))
                    || out_dir.join(path).is_file())
        })
        .collect();
    // Each folder once, not once per file.
    let folders: std::collections::BTreeSet<PathBuf> = stale
        .iter()
        .filter_map(|(path, _, _)| out_dir.join(path).parent().map(Path::to_path_buf))
        .collect();
    for folder in &folders {
        std::fs::create_dir_all(folder).map_err(EngineError::write(folder))?;
    }
    stale.par_iter().try_for_each(|(path, _, sql)| {
        let file = out_dir.join(path);
        std::fs::write(&file, sql).map_err(EngineError::write(&file))
    })?;
    let kept: std::collections::HashSet<&Path> =
        current.iter().map(|(path, _, _)| path.as_path()).collect();
    for gone in previous.keys().filter(|path| !kept.contains(*path)) {
        let file = out_dir.join(gone);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(EngineError::write(&file)(e));
            }
            _ => {}
        }
    }
    let written_folders: std::collections::BTreeSet<&Path> = current
        .iter()
        .filter_map(|(path, _, _)| path.parent())
        .filter(|folder| !folder.as_os_str().is_empty())
        .collect();
    let mut manifest: String = identity
        .map(|identity| format!("#{identity}\n"))
        .unwrap_or_default();
    manifest.extend(written_folders.into_iter().filter_map(|folder| {
        let modified = folder_modified(&out_dir.join(folder))?;
        Some(format!("/{modified} {}\n", folder.display()))
    }));
    for (path, hash, _) in &current {
        manifest.push_str(&format!("{hash} {}\n", path.display()));
    }
    std::fs::create_dir_all(out_dir).map_err(EngineError::write(out_dir))?;
    let staged = out_dir.join(format!("{MANIFEST}.partial"));
    std::fs::write(&staged, manifest).map_err(EngineError::write(&staged))?;
    std::fs::rename(&staged, &manifest_path).map_err(EngineError::write(&manifest_path))?;
    Ok(current.len())
}

/// The manifest's lines: path -> hash, each folder's modification time
/// (lines starting with `/`), and the identity of the compile that wrote
/// them (the line starting with `#`), if it had one.
type Manifest<'a> = (
    std::collections::HashMap<&'a Path, &'a str>,
    Vec<(&'a Path, u128)>,
    Option<&'a str>,
);

fn parse_manifest(text: &str) -> Manifest<'_> {
    let (mut files, mut folders) = (std::collections::HashMap::new(), Vec::new());
    let identity = text.lines().next().and_then(|line| line.strip_prefix('#'));
    for (first, rest) in text.lines().filter_map(|line| line.split_once(' ')) {
        match first.strip_prefix('/') {
            Some(modified) => {
                if let Ok(modified) = modified.parse() {
                    folders.push((Path::new(rest), modified));
                }
            }
            None => {
                files.insert(Path::new(rest), first);
            }
        }
    }
    (files, folders, identity)
}

/// A folder's modification time in nanoseconds since the epoch.
fn folder_modified(folder: &Path) -> Option<u128> {
    let modified = std::fs::metadata(folder).ok()?.modified().ok()?;
    Some(
        modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_nanos(),
    )
}
