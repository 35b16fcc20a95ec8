//! The compiled-component cache: a component's machine code, kept as a file
//! named by the hash of its `.wasm` and of the engine's settings, and mapped
//! back into memory on the next load.
//!
//! wasmtime's own cache (zstd-compressed, with a statistics file rewritten
//! on every hit) took 1 to 9 ms per component; mapping the uncompressed
//! file takes well under one, which on a small project is most of a run's
//! plugin start-up.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// The component compiled from `bytes`: from `dir` when it holds a usable
/// copy, else compiled now and written there for the next process. A
/// cache that cannot be read or written costs only the compile.
pub(crate) fn load(
    engine: &Engine,
    dir: Option<&Path>,
    bytes: &[u8],
) -> wasmtime::Result<Component> {
    let Some(dir) = dir else {
        return Component::new(engine, bytes);
    };
    let path = dir.join(file_name(engine, bytes));
    if path.is_file() {
        // SAFETY: the file is one this function wrote (atomically, by
        // rename) into the user's own cache folder, named by the hash of
        // the source and of the engine's compatibility key, so it holds
        // code compiled by this engine configuration from exactly `bytes`.
        // wasmtime checks its header and refuses a file from another
        // version or configuration; that error recompiles below.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok(component),
            Err(e) => tracing::warn!("recompiling {}: {e:#}", path.display()),
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = save(&path, &component) {
        tracing::warn!(
            "cannot cache the compiled plugin at {}: {e:#}",
            path.display()
        );
    }
    Ok(component)
}

/// `<hash of the wasm>-<hash of the engine's compatibility key>.cwasm`.
fn file_name(engine: &Engine, bytes: &[u8]) -> String {
    let mut compatibility = Blake3Hasher(blake3::Hasher::new());
    engine
        .precompile_compatibility_hash()
        .hash(&mut compatibility);
    let engine_key = compatibility.0.finalize();
    format!(
        "{}-{}.cwasm",
        blake3::hash(bytes).to_hex(),
        &engine_key.to_hex()[..16]
    )
}

/// Written under a temporary name and renamed, so a reader never maps a
/// half-written file and two processes compiling at once both end well.
fn save(path: &Path, component: &Component) -> wasmtime::Result<()> {
    let serialized = component.serialize()?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temporary: PathBuf = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&temporary, serialized)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })?;
    Ok(())
}

/// Feeds `std::hash::Hash` output to blake3: the engine exposes its key
/// only as a `Hash` value, and std's hashers make no promise of stability.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let hash = self.0.finalize();
        let mut first = [0; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component() -> Vec<u8> {
        let (_, bytes) = orbital_bundle::FIRST_PARTY
            .iter()
            .find(|(name, _)| *name == "materialization-view")
            .expect("a bundled component");
        bytes.to_vec()
    }

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    #[test]
    fn a_second_load_maps_the_cached_file_and_a_corrupt_one_is_recompiled() {
        let engine = engine();
        let bytes = component();
        let dir = tempfile::tempdir().unwrap();
        load(&engine, Some(dir.path()), &bytes).unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].extension().unwrap(), "cwasm");
        load(&engine, Some(dir.path()), &bytes).unwrap();

        std::fs::write(&files[0], b"not machine code").unwrap();
        load(&engine, Some(dir.path()), &bytes).unwrap();
        assert_ne!(std::fs::read(&files[0]).unwrap(), b"not machine code");
    }

    #[test]
    fn another_engine_configuration_uses_another_file() {
        let bytes = component();
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        assert_ne!(file_name(&engine(), &bytes), file_name(&other, &bytes));
    }
}
