//! `orbital docs`: writes the docs site the engine makes to
//! `<target-path>/docs/`, each file whole or not at all.

use std::path::{Path, PathBuf};

use crate::diagnostics::Failure;

/// What `orbital docs` wrote.
pub struct Written {
    pub page: PathBuf,
    pub data: PathBuf,
}

/// Writes `document` as `docs.json` and the page embedding it as
/// `index.html`, in the project's target folder.
pub fn write(project: &Path, document: &orbital_engine::DocsDocument) -> Result<Written, Failure> {
    let config =
        orbital_core::ProjectConfig::load(project).map_err(orbital_engine::EngineError::from)?;
    let folder = project.join(&config.target_path).join("docs");
    std::fs::create_dir_all(&folder).map_err(|source| Failure::Write {
        path: folder.clone(),
        source,
    })?;
    let written = Written {
        page: folder.join("index.html"),
        data: folder.join("docs.json"),
    };
    whole(
        &written.data,
        &serde_json::to_vec(document).unwrap_or_default(),
    )?;
    whole(
        &written.page,
        orbital_engine::docs_site(document).as_bytes(),
    )?;
    Ok(written)
}

/// Writes `bytes` to `path` through a file beside it, renamed into place.
fn whole(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let partial = path.with_extension("partial");
    let failed = |source| Failure::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&partial, bytes).map_err(failed)?;
    std::fs::rename(&partial, path).map_err(failed)
}
