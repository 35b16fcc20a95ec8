//! Plugin components as a project sees them: what each says about itself,
//! installing one into the state store, and listing what a project loads.

use std::path::Path;

use orbital_core::config::INSTALLED_PREFIX;
use orbital_plugin_host::{Limits, Plugin};
use orbital_runner::Component;
use serde::Serialize;

use crate::Engine;
use crate::components::components;
use crate::error::EngineError;

/// What a loaded component says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct Described {
    pub kind: &'static str,
    pub name: String,
    pub version: String,
    pub description: String,
    /// The strategy a materialization provides, the URL schemes of an
    /// adapter, or the macros of a macro plugin.
    pub provides: String,
    /// `blake3:<hex>`: how orbital.toml names it once installed.
    pub hash: String,
    /// Where it came from.
    pub source: String,
}

impl Engine {
    /// Loads the component file at `path` and says what it is.
    pub async fn describe_file(&self, path: &Path) -> Result<Described, EngineError> {
        let component = Component::read(path)?;
        self.describe(&component, &path.display().to_string()).await
    }

    /// Checks the component at `file` and installs it into the state store
    /// of the project at `root`.
    pub async fn install_plugin(&self, root: &Path, file: &Path) -> Result<Described, EngineError> {
        let component = Component::read(file)?;
        let described = self
            .describe(&component, &file.display().to_string())
            .await?;
        let store = self.project_store(root)?;
        crate::in_place(|| store.write(|w| w.put_plugin(&component.bytes)))?;
        Ok(described)
    }

    /// The plugins the project at `root` loads (bundled, then listed in
    /// orbital.toml), then those installed but not listed.
    pub async fn list_plugins(&self, root: &Path) -> Result<Vec<Described>, EngineError> {
        let config = orbital_core::ProjectConfig::load(root)?;
        let store = self.project_store(root)?;
        let loaded = components(root, &config, || Ok(store.clone()))?;
        let mut shown: Vec<(Component, String)> = loaded
            .iter()
            .map(|c| (c.clone(), c.label.clone()))
            .collect();
        // Installed but not in orbital.toml: shown, so they can be found.
        for hash in store.plugins()? {
            if loaded.iter().any(|c| c.hash == hash) {
                continue;
            }
            if let Some(bytes) = store.plugin(&hash)? {
                let component = Component::new(String::new(), bytes, false);
                shown.push((component, "installed, not in orbital.toml".into()));
            }
        }
        let mut listed = Vec::with_capacity(shown.len());
        for (component, source) in &shown {
            listed.push(self.describe(component, source).await?);
        }
        Ok(listed)
    }

    async fn describe(
        &self,
        component: &Component,
        source: &str,
    ) -> Result<Described, EngineError> {
        let host = self.plugin_host(Limits {
            cache_dir: self.options().cache_dir.clone(),
            ..Limits::default()
        })?;
        // A file that is not a plugin is the user's to fix, unlike a plugin
        // failing while it runs.
        let plugin = host
            .load(source, component.bytes.clone())
            .await
            .map_err(|e| match e {
                orbital_plugin_host::PluginError::Load { .. } => EngineError::Usage(e.to_string()),
                other => orbital_runner::RunnerError::from(other).into(),
            })?;
        let (kind, info, provides) = match plugin {
            Plugin::Adapter(adapter) => (
                "adapter",
                adapter.info.plugin.clone(),
                adapter.info.url_schemes.join(", "),
            ),
            Plugin::Materialization(m) => ("materialization", m.info.clone(), m.strategy.clone()),
            Plugin::Macros(m) => (
                "macros",
                m.info.clone(),
                m.signatures
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        };
        Ok(Described {
            kind,
            name: info.name,
            version: info.version,
            description: info.description,
            provides,
            hash: format!("{INSTALLED_PREFIX}{}", component.hash),
            source: source.to_string(),
        })
    }
}
