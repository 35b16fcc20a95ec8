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

/// The project's orbital.toml, parsed to be edited; `None` when there is
/// none.
fn read_config(
    root: &Path,
) -> Result<Option<(std::path::PathBuf, toml_edit::DocumentMut)>, EngineError> {
    let path = root.join(orbital_core::config::FILE_NAME);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let document: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        EngineError::Usage(format!("{}: {e}", path.display()))
    })?;
    if let Some(plugins) = document.get("plugins") {
        let components = plugins.as_table_like().map(|t| t.get("components"));
        let refused = match components {
            None => Some("`plugins` is not a table"),
            Some(Some(list)) if list.as_array().is_none() => {
                Some("`plugins.components` is not a list")
            }
            Some(_) => None,
        };
        if let Some(why) = refused {
            return Err(EngineError::Usage(format!("{}: {why}", path.display())));
        }
    }
    Ok(Some((path, document)))
}

/// A component installed into a project's state store, and how its
/// orbital.toml now lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    pub described: Described,
    pub listed: ListedIn,
}

/// What installing did to orbital.toml's `[plugins] components`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct ListedIn {
    /// orbital.toml lists the component (false: the project has no
    /// orbital.toml to list it in).
    pub listed: bool,
    /// It was listed already.
    pub already: bool,
    /// The entries it replaced: other builds of the same plugin.
    pub replaced: Vec<String>,
}

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
    /// A materialization whose builds continue the model's previous table.
    pub keeps_history: bool,
    /// The `orbital:plugin` version it was built against.
    pub api: &'static str,
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

    /// Checks the component at `file`, installs it into the state store of
    /// the project at `root` and lists it in the project's orbital.toml.
    pub async fn install_plugin(&self, root: &Path, file: &Path) -> Result<Installed, EngineError> {
        let component = Component::read(file)?;
        let described = self
            .describe(&component, &file.display().to_string())
            .await?;
        // A broken orbital.toml is refused before anything is stored.
        let config = read_config(root)?;
        let store = self.project_store(root)?;
        crate::in_place(|| store.write(|w| w.put_plugin(&component.bytes)))?;
        let listed = match config {
            Some((path, document)) => {
                self.list_in_config(root, &path, document, &described)
                    .await?
            }
            None => ListedIn::default(),
        };
        Ok(Installed { described, listed })
    }

    /// Lists `installed` in the project's orbital.toml, in place of the
    /// entries that are other builds of the same plugin (same name and
    /// kind); the file's comments and layout are kept.
    async fn list_in_config(
        &self,
        root: &Path,
        path: &Path,
        mut document: toml_edit::DocumentMut,
        installed: &Described,
    ) -> Result<ListedIn, EngineError> {
        let entries: Vec<String> = document
            .get("plugins")
            .and_then(|p| p.get("components"))
            .and_then(toml_edit::Item::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if entries.contains(&installed.hash) {
            return Ok(ListedIn {
                listed: true,
                already: true,
                replaced: Vec::new(),
            });
        }
        let store = self.project_store(root)?;
        let mut replaced = Vec::new();
        for entry in &entries {
            let bytes = match entry.strip_prefix(INSTALLED_PREFIX) {
                Some(digits) => digits
                    .parse::<orbital_core::Hash>()
                    .ok()
                    .and_then(|hash| store.plugin(&hash).ok().flatten()),
                None => std::fs::read(root.join(entry)).ok(),
            };
            // An entry that cannot be read or loaded is the user's to fix,
            // and left as it is.
            let Some(bytes) = bytes else { continue };
            let component = Component::new(entry.clone(), bytes, false);
            if let Ok(other) = self.describe(&component, entry).await
                && other.name == installed.name
                && other.kind == installed.kind
            {
                replaced.push(entry.clone());
            }
        }
        if !document.contains_key("plugins") {
            document.insert("plugins", toml_edit::table());
        }
        let plugins = document["plugins"].as_table_like_mut().ok_or_else(|| {
            EngineError::Usage(format!("{}: `plugins` is not a table", path.display()))
        })?;
        if !plugins.contains_key("components") {
            plugins.insert("components", toml_edit::value(toml_edit::Array::new()));
        }
        let components = plugins
            .get_mut("components")
            .and_then(toml_edit::Item::as_array_mut)
            .ok_or_else(|| {
                EngineError::Usage(format!(
                    "{}: `plugins.components` is not a list",
                    path.display()
                ))
            })?;
        // The new build takes the first old one's place; the others go.
        let first = (0..components.len()).find(|&i| {
            components
                .get(i)
                .and_then(|v| v.as_str())
                .is_some_and(|s| replaced.iter().any(|r| r == s))
        });
        match first {
            Some(at) => {
                components.replace(at, installed.hash.as_str());
                components.retain(|v| v.as_str().is_none_or(|s| !replaced.iter().any(|r| r == s)));
            }
            None => components.push(installed.hash.as_str()),
        }
        let partial = path.with_extension("toml.partial");
        let written = std::fs::write(&partial, document.to_string())
            .and_then(|()| std::fs::rename(&partial, path));
        written.map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            EngineError::Usage(format!("cannot write {}: {e}", path.display()))
        })?;
        Ok(ListedIn {
            listed: true,
            already: false,
            replaced,
        })
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
        let api = plugin.api_version();
        let keeps_history = match &plugin {
            Plugin::Materialization(m) => m.keeps_history == Some(true),
            _ => false,
        };
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
            keeps_history,
            api,
            hash: format!("{INSTALLED_PREFIX}{}", component.hash),
            source: source.to_string(),
        })
    }
}
