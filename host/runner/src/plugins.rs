//! The plugins one run loaded: the adapter and the materializations, on the
//! process's plugin host, with the run's database.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use orbital_core::{Hash, PluginHashes, Target};
use orbital_plugin_host::{Adapter, Materialization, Plugin, PluginHost};

use crate::database::Warehouse;
use crate::error::RunnerError;

/// A plugin component to load.
#[derive(Clone)]
pub struct Component {
    /// How errors name it until it names itself: a file name or `bundled:<name>`.
    pub label: String,
    pub bytes: orbital_plugin_host::Bytes,
    /// First-party components give way to project components that claim
    /// the same strategy or URL scheme.
    pub bundled: bool,
    /// The hash of `bytes`: what fingerprints record.
    pub hash: Hash,
}

impl Component {
    /// Reads a component file.
    pub fn read(path: &Path) -> Result<Self, RunnerError> {
        let bytes = std::fs::read(path).map_err(|source| RunnerError::ReadComponent {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::new(path.display().to_string(), bytes, false))
    }

    pub fn new(label: String, bytes: impl Into<orbital_plugin_host::Bytes>, bundled: bool) -> Self {
        let bytes = bytes.into();
        Self {
            label,
            hash: Hash::of(&bytes),
            bytes,
            bundled,
        }
    }
}

/// The key under which the store remembers which component of `components`
/// serves a target scheme and each strategy: the hashes of the components
/// (with their standing) and the scheme.
pub fn plugin_set_key(components: &[Component], scheme: &str) -> Hash {
    let mut hashes: Vec<(Hash, bool)> = components.iter().map(|c| (c.hash, c.bundled)).collect();
    hashes.sort();
    let mut hasher = orbital_core::hash::Hasher::new("orbital plugin set v1");
    hasher.field(scheme);
    for (hash, bundled) in hashes {
        hasher.field(hash.0).field([u8::from(bundled)]);
    }
    hasher.finish()
}

/// A loaded plugin: whether it is bundled, and its component hash.
type Candidate<T> = (bool, (Hash, T));

/// Everything a run needs, shared by its tasks.
pub struct LoadedPlugins {
    pub(crate) host: Arc<PluginHost>,
    pub(crate) adapter: Adapter,
    pub(crate) materializations: BTreeMap<String, Materialization>,
    pub(crate) database: Warehouse,
    pub(crate) project_root: std::path::PathBuf,
    hashes: PluginHashes,
}

impl LoadedPlugins {
    /// Loads every component (in parallel) on `host`, which compiles each
    /// component once per process, and picks the adapter for the target's
    /// URL scheme and the materialization of each strategy.
    pub async fn start(
        target_name: &str,
        target: &Target,
        project_root: &Path,
        components: Vec<Component>,
        host: Arc<PluginHost>,
        database: Warehouse,
    ) -> Result<Arc<Self>, RunnerError> {
        let loads = components.into_iter().map(|component| {
            let host = &*host;
            async move {
                (
                    component.bundled,
                    component.hash,
                    host.load(&component.label, component.bytes).await,
                )
            }
        });
        let mut adapters = Vec::new();
        let mut strategies: BTreeMap<String, Vec<Candidate<Materialization>>> = BTreeMap::new();
        for (bundled, hash, loaded) in futures::future::join_all(loads).await {
            match loaded? {
                Plugin::Adapter(adapter) => adapters.push((bundled, (hash, *adapter))),
                Plugin::Materialization(m) => strategies
                    .entry(m.strategy.clone())
                    .or_default()
                    .push((bundled, (hash, m))),
                // Macros run at compile time (the CLI loads them); a run
                // needs none.
                Plugin::Macros(_) => {}
            }
        }
        let scheme = target.scheme().to_string();
        let installed = adapters
            .iter()
            .flat_map(|(_, (_, a))| a.info.url_schemes.clone())
            .collect::<Vec<_>>()
            .join(", ");
        let serving = adapters
            .into_iter()
            .filter(|(_, (_, a))| a.info.url_schemes.contains(&scheme))
            .collect();
        let (adapter_hash, adapter) =
            pick(format!("the `{scheme}://` URL scheme"), serving, |a| {
                &a.1.info.plugin.name
            })?
            .ok_or_else(|| RunnerError::NoAdapter {
                target: target_name.to_string(),
                scheme,
                installed,
            })?;
        let mut materializations = BTreeMap::new();
        let mut hashes = PluginHashes {
            adapter: adapter_hash,
            strategies: BTreeMap::new(),
        };
        for (strategy, candidates) in strategies {
            if let Some((hash, m)) =
                pick(format!("materialized = '{strategy}'"), candidates, |m| {
                    &m.1.info.name
                })?
            {
                hashes.strategies.insert(strategy.clone(), hash);
                materializations.insert(strategy, m);
            }
        }
        Ok(Arc::new(Self {
            host,
            adapter,
            materializations,
            database,
            project_root: project_root.to_path_buf(),
            hashes,
        }))
    }

    /// Fails before running anything if a model asks for a strategy no plugin provides.
    pub fn check_strategies<'a>(
        &self,
        wanted: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), RunnerError> {
        for (model, strategy) in wanted {
            if !self.materializations.contains_key(strategy) {
                return Err(RunnerError::NoMaterialization {
                    model: model.to_string(),
                    strategy: strategy.to_string(),
                    installed: self
                        .materializations
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        Ok(())
    }

    /// Which component serves the adapter and each strategy.
    pub fn plugin_hashes(&self) -> &PluginHashes {
        &self.hashes
    }

    pub fn adapter_name(&self) -> &str {
        &self.adapter.info.plugin.name
    }
}

/// The one candidate to use: a project component wins over a bundled one;
/// two of the same standing are a conflict.
fn pick<T>(
    what: String,
    mut candidates: Vec<(bool, T)>,
    name: impl Fn(&T) -> &String,
) -> Result<Option<T>, RunnerError> {
    candidates.sort_by_key(|(bundled, _)| *bundled);
    if let [(first_bundled, first), (second_bundled, second), ..] = candidates.as_slice()
        && first_bundled == second_bundled
    {
        return Err(RunnerError::Conflict {
            what,
            first: name(first).clone(),
            second: name(second).clone(),
        });
    }
    Ok(candidates
        .into_iter()
        .next()
        .map(|(_, candidate)| candidate))
}
