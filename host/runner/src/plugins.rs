//! The runtime of one run: the plugin host, the loaded plugins and the pool.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use orbital_core::Target;
use orbital_plugins::{Adapter, Limits, Materialization, Plugin, PluginHost};

use crate::database::Sqlite;
use crate::error::RunnerError;

/// A plugin component to load.
pub struct Component {
    /// How errors name it until it names itself: a file name or `bundled:<name>`.
    pub label: String,
    pub bytes: Vec<u8>,
    /// First-party components give way to project components that claim
    /// the same strategy or URL scheme.
    pub bundled: bool,
}

impl Component {
    /// Reads a component file.
    pub fn read(path: &Path) -> Result<Self, RunnerError> {
        let bytes = std::fs::read(path).map_err(|source| RunnerError::ReadComponent {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            label: path.display().to_string(),
            bytes,
            bundled: false,
        })
    }
}

/// Everything a run needs, shared by its tasks.
pub struct Runtime {
    pub(crate) host: PluginHost,
    pub(crate) adapter: Adapter,
    pub(crate) materializations: BTreeMap<String, Materialization>,
    pub(crate) database: Sqlite,
    pub(crate) project_root: std::path::PathBuf,
}

impl Runtime {
    /// Loads every component (in parallel), picks the adapter for the
    /// target's URL scheme and connects to the target.
    pub async fn start(
        target_name: &str,
        target: &Target,
        project_root: &Path,
        components: Vec<Component>,
        limits: Limits,
    ) -> Result<Arc<Self>, RunnerError> {
        let connections = limits.concurrency;
        let host = PluginHost::new(limits)?;
        let loads = components.into_iter().map(|component| {
            let host = &host;
            async move {
                (
                    component.bundled,
                    host.load(&component.label, component.bytes).await,
                )
            }
        });
        let mut adapters = Vec::new();
        let mut strategies: BTreeMap<String, Vec<(bool, Materialization)>> = BTreeMap::new();
        for (bundled, loaded) in futures::future::join_all(loads).await {
            match loaded? {
                Plugin::Adapter(adapter) => adapters.push((bundled, *adapter)),
                Plugin::Materialization(m) => strategies
                    .entry(m.strategy.clone())
                    .or_default()
                    .push((bundled, m)),
            }
        }
        let scheme = target.scheme().to_string();
        let installed = adapters
            .iter()
            .flat_map(|(_, a)| a.info.url_schemes.clone())
            .collect::<Vec<_>>()
            .join(", ");
        let serving = adapters
            .into_iter()
            .filter(|(_, a)| a.info.url_schemes.contains(&scheme))
            .collect();
        let adapter = pick(format!("the `{scheme}://` URL scheme"), serving, |a| {
            &a.info.plugin.name
        })?
        .ok_or_else(|| RunnerError::NoAdapter {
            target: target_name.to_string(),
            scheme,
            installed,
        })?;
        let mut materializations = BTreeMap::new();
        for (strategy, candidates) in strategies {
            if let Some(m) = pick(format!("materialized = '{strategy}'"), candidates, |m| {
                &m.info.name
            })? {
                materializations.insert(strategy, m);
            }
        }
        let database = Sqlite::open(&target.url, project_root, connections)
            .await
            .map_err(|message| RunnerError::Connect {
                target: target_name.to_string(),
                message,
            })?;
        Ok(Arc::new(Self {
            host,
            adapter,
            materializations,
            database,
            project_root: project_root.to_path_buf(),
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

    pub fn adapter_name(&self) -> &str {
        &self.adapter.info.plugin.name
    }

    pub async fn close(&self) {
        self.database.close().await;
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
