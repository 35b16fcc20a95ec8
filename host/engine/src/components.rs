//! The plugin components a project loads, and where its state lives.

use std::path::{Path, PathBuf};

use orbital_cas::Store;
use orbital_core::{ComponentRef, ProjectConfig};
use orbital_runner::Component;

use crate::error::EngineError;

/// The components a project loads: the bundled ones, then those its
/// orbital.toml lists (files, or components installed in `store`, which is
/// needed only when it lists an installed one).
pub(crate) fn components(
    root: &Path,
    config: &ProjectConfig,
    store: impl FnOnce() -> Result<std::sync::Arc<Store>, EngineError>,
) -> Result<Vec<Component>, EngineError> {
    let installed = config
        .plugins
        .components
        .iter()
        .any(|c| matches!(c, ComponentRef::Installed(_)));
    let store = installed.then(store).transpose()?;
    let mut components = bundled_components();
    for reference in &config.plugins.components {
        components.push(match reference {
            ComponentRef::Path(path) => Component::read(&root.join(path))?,
            ComponentRef::Installed(hash) => {
                let bytes = match &store {
                    Some(store) => store.plugin(hash)?,
                    None => None,
                };
                let bytes = bytes.ok_or_else(|| {
                    EngineError::Usage(format!(
                        "orbital.toml lists the plugin `{reference}`, which is not installed in \
                         {}; install it with `orbital plugin install <file.wasm>`",
                        store_path(root, config).display()
                    ))
                })?;
                Component::new(reference.to_string(), bytes, false)
            }
        });
    }
    Ok(components)
}

fn bundled_components() -> Vec<Component> {
    orbital_bundle::FIRST_PARTY
        .iter()
        .map(|(name, bytes)| Component::new(format!("bundled:{name}"), *bytes, true))
        .collect()
}

/// `<target-path>/orbital`: the state store and the locks.
pub fn state_dir(root: &Path, config: &ProjectConfig) -> PathBuf {
    root.join(&config.target_path).join("orbital")
}

/// The state store's file.
pub(crate) fn store_path(root: &Path, config: &ProjectConfig) -> PathBuf {
    state_dir(root, config).join("state.redb")
}
