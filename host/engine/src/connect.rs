//! Targets the host has no driver for, served by an adapter plugin that
//! brings its own connection (plugin API 0.2.0): which component serves a
//! URL scheme, and opening its connection.

use std::path::Path;
use std::sync::Arc;

use orbital_plugin_host::{Adapter, Plugin};
use orbital_runner::Warehouse;

use crate::Engine;
use crate::components::{components, store_path};
use crate::error::EngineError;

/// The URL schemes the host's own drivers serve.
const BUILT_IN: &[&str] = &["sqlite", "postgres", "postgresql", "mysql", "mariadb"];

/// Whether `url`'s scheme is one the host connects to itself.
pub(crate) fn built_in(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| BUILT_IN.contains(&scheme))
}

impl Engine {
    /// Opens target `target_name` of the project at `root`, whose `url`
    /// only an adapter plugin with its own connection can serve: the
    /// project's component for the URL's scheme wins over a bundled one.
    pub(crate) async fn plugin_warehouse(
        &self,
        url: &str,
        root: &Path,
        target_name: &str,
        threads: usize,
    ) -> Result<Warehouse, EngineError> {
        let config = orbital_core::ProjectConfig::load(root)?;
        let (_, target) = config.target(Some(target_name))?;
        let scheme = url.split_once("://").map_or(url, |(s, _)| s);
        let store = self.store(&store_path(root, &config))?;
        let host = self.plugin_host(crate::session::limits(self, &config, threads))?;
        let mut serving: Vec<(bool, Adapter)> = Vec::new();
        let mut schemes: Vec<String> = BUILT_IN.iter().map(|s| s.to_string()).collect();
        for component in components(root, &config, || Ok(store.clone()))? {
            let loaded = host
                .load(&component.label, component.bytes.clone())
                .await
                .map_err(orbital_runner::RunnerError::from)?;
            if let Plugin::Adapter(adapter) = loaded {
                if adapter.has_connection() {
                    schemes.extend(adapter.info.url_schemes.iter().cloned());
                }
                if adapter.info.url_schemes.iter().any(|s| s == scheme) {
                    serving.push((component.bundled, *adapter));
                }
            }
        }
        // A project's own component wins over a bundled one.
        serving.sort_by_key(|(bundled, _)| *bundled);
        let Some((_, adapter)) = serving.into_iter().next() else {
            schemes.sort();
            schemes.dedup();
            let hint =
                orbital_core::did_you_mean(scheme, schemes.iter().map(String::as_str), 2, true);
            return Err(EngineError::Usage(format!(
                "{}: target `{target_name}`: no installed adapter serves {scheme}:// URLs (served: {}){hint}",
                orbital_core::config::target_url_location(root, target_name),
                schemes.join(", ")
            )));
        };
        if !adapter.has_connection() {
            return Err(EngineError::Usage(format!(
                "target `{target_name}`: adapter `{}` serves {scheme}:// URLs but brings no connection of its own (orbital:plugin/connection@0.2.0), and this host has no driver for them",
                adapter.info.plugin.name
            )));
        }
        let settings = target
            .schema
            .iter()
            .map(|schema| ("schema".to_string(), schema.clone()))
            .collect();
        Warehouse::plugin(host, Arc::new(adapter), target_name, url, settings, threads)
            .await
            .map_err(|source| {
                orbital_runner::RunnerError::Connect {
                    target: target_name.to_string(),
                    source,
                }
                .into()
            })
    }
}
