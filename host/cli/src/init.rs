//! `orbital init`: a new native project, or with `--from-dbt DIR` the
//! native equivalent of a dbt project (plain SQL with `-- config:` lines,
//! `orbital.toml`, the seed files), saying what it could not translate.
//! Nothing is overwritten, and nothing is left half-written: every file is
//! made in a staging folder first, then moved into place.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use orbital_engine::EngineError;

use crate::diagnostics::Failure;
use crate::report::Output;

/// Creates the project in `dir`.
pub(crate) fn init(
    dir: &Path,
    from_dbt: Option<&Path>,
    output: &Output,
) -> Result<ExitCode, Failure> {
    let translation = match from_dbt {
        Some(source) => orbital_core::dbt::translate(source).map_err(EngineError::from)?,
        None => starter(dir),
    };
    let wanted: Vec<PathBuf> = translation
        .files
        .iter()
        .map(|(path, _)| path.clone())
        .chain(translation.seeds.iter().map(|(_, to)| to.clone()))
        .collect();
    if let Some(taken) = wanted.iter().find(|path| dir.join(path).exists()) {
        return Err(Failure::Usage(format!(
            "{} already exists: `orbital init` writes a new project and overwrites nothing",
            dir.join(taken).display()
        )));
    }
    write_all(dir, &translation)?;
    if output.json {
        let files: Vec<String> = wanted.iter().map(|p| p.display().to_string()).collect();
        println!(
            "{}",
            serde_json::json!({ "dir": dir.display().to_string(), "files": files, "notes": translation.notes })
        );
    } else {
        println!("Wrote {} files to {}.", wanted.len(), dir.display());
        for note in &translation.notes {
            println!("  not translated: {note}");
        }
        println!("Next: orbital --project {} build", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A new project: orbital.toml on the embedded SQLite default, and one model.
fn starter(dir: &Path) -> orbital_core::dbt::Translation {
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "warehouse".into());
    let config = format!(
        "name = {}\n\n[targets.dev]\nurl = \"sqlite://target/warehouse.db\"\n",
        toml::Value::String(name)
    );
    orbital_core::dbt::Translation {
        files: vec![
            ("orbital.toml".into(), config),
            (
                "models/example.sql".into(),
                "-- config: materialized = 'view'\nselect 1 as id, 'hello' as greeting\n".into(),
            ),
        ],
        seeds: Vec::new(),
        notes: Vec::new(),
    }
}

/// Writes every file into a staging folder inside `dir`, then moves each
/// into place.
fn write_all(dir: &Path, translation: &orbital_core::dbt::Translation) -> Result<(), Failure> {
    let written = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Failure::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(written(dir))?;
    let staging = tempfile::Builder::new()
        .prefix(".orbital-init-")
        .tempdir_in(dir)
        .map_err(written(dir))?;
    let stage = |relative: &Path| -> Result<PathBuf, Failure> {
        let path = staging.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(written(parent))?;
        }
        Ok(path)
    };
    let mut staged = Vec::new();
    for (relative, text) in &translation.files {
        let path = stage(relative)?;
        std::fs::write(&path, text).map_err(written(&path))?;
        staged.push(relative.clone());
    }
    for (from, relative) in &translation.seeds {
        let path = stage(relative)?;
        std::fs::copy(from, &path).map_err(written(&path))?;
        staged.push(relative.clone());
    }
    for relative in staged {
        let target = dir.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(written(parent))?;
        }
        std::fs::rename(staging.path().join(&relative), &target).map_err(written(&target))?;
    }
    Ok(())
}
