//! The `orbital-sdk` source this binary was built with, carried inside it:
//! `orbital plugin new` unpacks it into the cache and points the new crate
//! at it, so writing a plugin needs neither a checkout of Orbital nor the
//! network (beyond the crates the SDK itself depends on).

use std::path::{Path, PathBuf};

use crate::diagnostics::Failure;

/// The SDK's files and the WIT it binds, by their paths in the repository
/// (the layout is kept when unpacked: the SDK reads `../wit/...`).
const FILES: &[(&str, &str)] = &[
    ("sdk/src/lib.rs", include_str!("../../../sdk/src/lib.rs")),
    (
        "sdk/src/adapter.rs",
        include_str!("../../../sdk/src/adapter.rs"),
    ),
    (
        "sdk/src/materialization.rs",
        include_str!("../../../sdk/src/materialization.rs"),
    ),
    (
        "sdk/src/macros.rs",
        include_str!("../../../sdk/src/macros.rs"),
    ),
    (
        "sdk/src/connection.rs",
        include_str!("../../../sdk/src/connection.rs"),
    ),
    ("sdk/src/http.rs", include_str!("../../../sdk/src/http.rs")),
    (
        "wit/orbital-plugin@0.1.0/plugin.wit",
        include_str!("../../../wit/orbital-plugin@0.1.0/plugin.wit"),
    ),
    (
        "wit/orbital-plugin@0.2.0/plugin.wit",
        include_str!("../../../wit/orbital-plugin@0.2.0/plugin.wit"),
    ),
];

/// The SDK's manifest, which inherits from the workspace's: unpacked, it
/// must stand alone.
const SDK_MANIFEST: &str = include_str!("../../../sdk/Cargo.toml");
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");

/// The folder of the unpacked SDK crate under `cache`, unpacking it first
/// when this binary's SDK is not there yet. The folder is named by the
/// content's hash, so another build's SDK never stands in for this one's.
pub(crate) fn unpacked(cache: &Path) -> Result<PathBuf, Failure> {
    let manifest = standalone_manifest()?;
    let mut hasher = orbital_core::hash::Hasher::new("orbital sdk source");
    hasher.field(&manifest);
    for (path, text) in FILES {
        hasher.field(path).field(text);
    }
    let hash = hasher.finish().to_string();
    let root = cache
        .join("sdk")
        .join(format!("{}-{}", env!("CARGO_PKG_VERSION"), &hash[..16]));
    let crate_dir = root.join("sdk");
    if crate_dir.join("Cargo.toml").is_file() {
        return Ok(crate_dir);
    }
    // Written whole beside its place, then renamed: a crash or a second
    // `orbital` unpacking at once never leaves half an SDK.
    let files = FILES
        .iter()
        .map(|(path, text)| (*path, *text))
        .chain([("sdk/Cargo.toml", manifest.as_str())]);
    let staged = crate::plugin::staged_folder(&cache.join("sdk"), files)?;
    if let Err(source) = std::fs::rename(&staged, &root) {
        let _ = std::fs::remove_dir_all(&staged);
        // Another process unpacked the same SDK first.
        if !crate_dir.join("Cargo.toml").is_file() {
            return Err(Failure::Write { path: root, source });
        }
    }
    Ok(crate_dir)
}

/// The SDK's manifest with what it inherits from the workspace written in,
/// and without the workspace's lints.
fn standalone_manifest() -> Result<String, Failure> {
    let broken = |e: toml::de::Error| {
        Failure::Environment(format!("the SDK manifest carried in this binary: {e}"))
    };
    let mut manifest: toml::Table = toml::from_str(SDK_MANIFEST).map_err(broken)?;
    let workspace: toml::Table = toml::from_str(WORKSPACE_MANIFEST).map_err(broken)?;
    let shared = |section: &str| -> toml::Table {
        workspace
            .get("workspace")
            .and_then(|w| w.get(section))
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    let (package_values, dependency_values) = (shared("package"), shared("dependencies"));
    if let Some(package) = manifest
        .get_mut("package")
        .and_then(toml::Value::as_table_mut)
    {
        inherit(package, &package_values);
    }
    if let Some(dependencies) = manifest
        .get_mut("dependencies")
        .and_then(toml::Value::as_table_mut)
    {
        inherit(dependencies, &dependency_values);
    }
    manifest.remove("lints");
    toml::to_string(&manifest)
        .map_err(|e| Failure::Environment(format!("cannot write the SDK manifest: {e}")))
}

/// Replaces each `key = { workspace = true, ... }` in `table` with the
/// workspace's value, keeping the entry's own extra keys (a dependency's
/// `features`).
fn inherit(table: &mut toml::Table, workspace: &toml::Table) {
    for (key, entry) in table.iter_mut() {
        let Some(own) = entry.as_table() else {
            continue;
        };
        if own.get("workspace").and_then(toml::Value::as_bool) != Some(true) {
            continue;
        }
        let Some(mut value) = workspace.get(key).cloned() else {
            continue;
        };
        let extra: Vec<(String, toml::Value)> = own
            .iter()
            .filter(|(k, _)| k.as_str() != "workspace")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !extra.is_empty() {
            // `dep = "1"` becomes `dep = { version = "1" }` to take the extras.
            if let toml::Value::String(version) = &value {
                let mut spelled = toml::Table::new();
                spelled.insert("version".into(), toml::Value::String(version.clone()));
                value = toml::Value::Table(spelled);
            }
            if let Some(merged) = value.as_table_mut() {
                merged.extend(extra);
            }
        }
        *entry = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_and_wit_file_is_carried() {
        let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut on_disk = Vec::new();
        for folder in ["sdk/src", "wit"] {
            let mut stack = vec![repository.join(folder)];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        let relative = path.strip_prefix(&repository).unwrap();
                        on_disk.push(relative.to_string_lossy().replace('\\', "/"));
                    }
                }
            }
        }
        on_disk.sort();
        let mut carried: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        carried.sort();
        assert_eq!(carried, on_disk, "FILES lists every SDK and WIT file");
    }

    #[test]
    fn the_manifest_stands_alone() {
        let manifest: toml::Table = toml::from_str(&standalone_manifest().unwrap()).unwrap();
        let text = toml::to_string(&manifest).unwrap();
        assert!(!text.contains("workspace"), "{text}");
        assert_eq!(manifest["package"]["name"].as_str(), Some("orbital-sdk"));
        assert_eq!(
            manifest["package"]["version"].as_str(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert!(manifest["package"]["edition"].is_str(), "{text}");
        let bindgen = &manifest["dependencies"]["wit-bindgen"];
        assert!(bindgen["version"].is_str(), "{text}");
        assert!(bindgen["features"].is_array(), "{text}");
        assert!(
            manifest["dependencies"]["serde_json"].is_str()
                || manifest["dependencies"]["serde_json"]["version"].is_str()
        );
        assert!(manifest.get("lints").is_none());
    }

    #[test]
    fn unpacks_once_and_reuses() {
        let cache = tempfile::tempdir().unwrap();
        let first = unpacked(cache.path()).unwrap();
        assert!(first.join("src/lib.rs").is_file());
        assert!(
            first
                .join("../wit/orbital-plugin@0.1.0/plugin.wit")
                .is_file()
        );
        let modified = std::fs::metadata(first.join("Cargo.toml"))
            .unwrap()
            .modified()
            .unwrap();
        let second = unpacked(cache.path()).unwrap();
        assert_eq!(first, second);
        assert_eq!(
            std::fs::metadata(second.join("Cargo.toml"))
                .unwrap()
                .modified()
                .unwrap(),
            modified
        );
    }
}
