//! Snapshots: a project loaded and compiled for one target, saved whole with
//! the size, modification time and inode of every file it came from. When
//! no file has changed, a snapshot stands in for reading and compiling the
//! project (what git's index does for `git status`).
//!
//! A stamp can miss an edit that keeps the size and lands in the same clock
//! tick as the read. So, as git does with "racily clean" entries, a project
//! with a file modified (or its inode changed) within [`RACY_WINDOW`] of
//! when it was read is not snapshotted; the next command reads it again.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::{ProjectConfig, Target};
use crate::dag::Dag;
use crate::data_test::SingularTest;
use crate::error::{Error, Result};
use crate::hash::{Hash, Hasher};
use crate::project::{Model, Project, Seed};

/// How close to its read a file's modification time makes its stamp untrustworthy.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// What the file system says about one file, without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub len: u64,
    /// Nanoseconds since the Unix epoch.
    pub modified: u128,
    /// Inode change time and inode number (0 where the platform has none):
    /// they catch a file replaced by another with the same size and mtime.
    pub changed: i128,
    pub inode: u64,
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        let modified = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        #[cfg(unix)]
        let (changed, inode) = {
            use std::os::unix::fs::MetadataExt;
            (
                i128::from(metadata.ctime()) * 1_000_000_000 + i128::from(metadata.ctime_nsec()),
                metadata.ino(),
            )
        };
        #[cfg(not(unix))]
        let (changed, inode) = (0, 0);
        Self {
            len: metadata.len(),
            modified,
            changed,
            inode,
        }
    }
}

/// One file's stamp, following a symbolic link as [`stamp_files`] does.
pub fn stamp_file(path: &Path) -> std::io::Result<Stamp> {
    std::fs::metadata(path).map(|metadata| Stamp::of(&metadata))
}

/// Every source file of the project with its stamp, in [`crate::project::source_files`] order.
pub fn stamp_files(root: &Path, config: &ProjectConfig) -> Result<Vec<(PathBuf, Stamp)>> {
    let files = crate::project::source_entries(root, config)?;
    crate::threads::install(|| {
        files
            .into_par_iter()
            .map(|(path, entry)| {
                let full = || root.join(&path);
                // An entry's metadata describes a symlink itself: follow those.
                let metadata = match &entry {
                    Some(entry) if entry.file_type().is_ok_and(|t| !t.is_symlink()) => {
                        entry.metadata()
                    }
                    _ => std::fs::metadata(full()),
                }
                .map_err(|e| Error::io(full(), e))?;
                Ok((path, Stamp::of(&metadata)))
            })
            .collect()
    })
}

/// What a snapshot is valid for besides its files: the Orbital build that
/// compiled it (`build` names the binary, since compiling can change between
/// builds of one version), the parts of the target that compiling reads, and
/// the project config that loading and compiling read. The config is taken
/// as loaded, after `${VAR}` interpolation, because the same `orbital.toml`
/// can mean another config under another environment.
pub fn key(config: &ProjectConfig, target: &Target, build: &str) -> Hash {
    let read = (
        &config.model_paths,
        &config.seed_paths,
        &config.test_paths,
        &config.model_defaults,
        &config.seeds,
        &config.sources,
    );
    // v2: tests keep `store_failures`; v3: models keep `stateful`.
    Hasher::new("orbital snapshot v3")
        .field(env!("CARGO_PKG_VERSION"))
        .field(build)
        .field(target.parser_dialect())
        .field(target.schema.as_deref().unwrap_or(""))
        // Debug output is deterministic here: every map is a BTreeMap.
        .field(format!("{read:?}"))
        .finish()
}

/// What a project's fingerprints are a function of, when it matches a
/// snapshot: the snapshot's key, every file's stamp, and the plugins that
/// build it. Fingerprints saved under this (see the state store) stand in
/// for hashing every model again.
pub fn fingerprint_key(
    key: &Hash,
    files: &[(PathBuf, Stamp)],
    plugins: &crate::PluginHashes,
) -> Hash {
    let mut hasher = Hasher::new("orbital fingerprints v1");
    hasher.field(key.0).field(format!("{plugins:?}"));
    hash_stamps(&mut hasher, files);
    hasher.finish()
}

/// Adds every file's path and stamp to `hasher`, in order.
pub fn hash_stamps(hasher: &mut Hasher, files: &[(PathBuf, Stamp)]) {
    for (path, stamp) in files {
        hasher
            .field(path.as_os_str().as_encoded_bytes())
            .field(stamp.len.to_le_bytes())
            .field(stamp.modified.to_le_bytes())
            .field(stamp.changed.to_le_bytes())
            .field(stamp.inode.to_le_bytes());
    }
}

/// A loaded and compiled project and the stamps of the files it was read from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub key: Hash,
    pub files: Vec<(PathBuf, Stamp)>,
    pub models: Vec<std::sync::Arc<Model>>,
    pub seeds: Vec<Seed>,
    pub tests: Vec<SingularTest>,
    pub dag: Dag,
}

/// A snapshot as it is saved: the same fields as [`Snapshot`], borrowed
/// from the project and graph, so saving one copies nothing (10k models:
/// 23 MB).
#[derive(Serialize)]
pub struct SnapshotOf<'a> {
    pub key: &'a Hash,
    pub files: &'a [(PathBuf, Stamp)],
    pub models: &'a [std::sync::Arc<Model>],
    pub seeds: &'a [Seed],
    pub tests: &'a [SingularTest],
    pub dag: &'a Dag,
}

impl Snapshot {
    /// A snapshot of `project` compiled to `dag`, from files stamped at
    /// `read_at` (taken before reading them); `None` when a file is too new
    /// to trust its stamp.
    pub fn capture<'a>(
        key: &'a Hash,
        files: &'a [(PathBuf, Stamp)],
        read_at: SystemTime,
        project: &'a Project,
        dag: &'a Dag,
    ) -> Option<SnapshotOf<'a>> {
        let since_epoch = read_at.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        let trusted_before = since_epoch.checked_sub(RACY_WINDOW)?.as_nanos();
        let recent = |s: &Stamp| {
            s.modified >= trusted_before
                || s.changed >= i128::try_from(trusted_before).unwrap_or(i128::MAX)
        };
        if files.iter().any(|(_, s)| recent(s)) {
            return None;
        }
        Some(SnapshotOf {
            key,
            files,
            models: &project.models,
            seeds: &project.seeds,
            tests: &project.tests,
            dag,
        })
    }

    /// Which of `files`, stamped at `read_at`, changed too recently for
    /// their stamps to be trusted: a second write within the file system's
    /// clock tick would leave the same stamp.
    pub fn racy(files: &[(PathBuf, Stamp)], read_at: SystemTime) -> Vec<usize> {
        let trusted_before = read_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .and_then(|since| since.checked_sub(RACY_WINDOW))
            .map_or(u128::MAX, |d| d.as_nanos());
        files
            .iter()
            .enumerate()
            .filter(|(_, (_, s))| {
                s.modified >= trusted_before
                    || s.changed >= i128::try_from(trusted_before).unwrap_or(i128::MAX)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether this snapshot describes the project as its files are now.
    pub fn matches(&self, key: &Hash, files: &[(PathBuf, Stamp)]) -> bool {
        self.key == *key && self.files == files
    }

    /// The project alone, copied out, with `config` as loaded now.
    pub fn project(&self, root: &Path, config: ProjectConfig) -> Project {
        Project {
            root: root.to_path_buf(),
            config,
            models: self.models.clone(),
            seeds: self.seeds.clone(),
            tests: self.tests.clone(),
            disabled: Vec::new(),
        }
    }

    /// The project and its graph, with `config` as loaded now (equal to the
    /// snapshot's, since `orbital.toml`'s stamp matched).
    pub fn restore(self, root: &Path, config: ProjectConfig) -> (Project, Dag) {
        let project = Project {
            root: root.to_path_buf(),
            config,
            models: self.models,
            seeds: self.seeds,
            tests: self.tests,
            // Only a project that compiled is snapshotted: nothing reads a
            // disabled model.
            disabled: Vec::new(),
        };
        (project, self.dag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, path: &str, text: &str) {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }

    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "orbital.toml",
            "name = \"p\"\n[targets.dev]\nurl = \"sqlite://p.db\"\n",
        );
        write(dir.path(), "seeds/raw.csv", "id\n1\n");
        write(dir.path(), "models/a.sql", "select id from raw");
        dir
    }

    fn compiled(root: &Path) -> (Project, Dag, Hash) {
        let project = Project::load(root).unwrap();
        let target = project.config.target(None).unwrap().1.clone();
        let dag = crate::compile(&project, &target, Default::default())
            .unwrap()
            .dag
            .as_ref()
            .clone();
        (project.clone(), dag, key(&project.config, &target, "test"))
    }

    #[test]
    fn a_snapshot_round_trips_and_matches_until_a_file_changes() {
        let dir = project();
        let (project, dag, key) = compiled(dir.path());
        let files = stamp_files(dir.path(), &project.config).unwrap();
        let later = SystemTime::now() + RACY_WINDOW * 2;
        let captured = Snapshot::capture(&key, &files, later, &project, &dag).unwrap();
        let bytes = postcard::to_stdvec(&captured).unwrap();
        let back: Snapshot = postcard::from_bytes(&bytes).unwrap();
        assert!(back.matches(&key, &files));
        let (restored, restored_dag) = back.restore(dir.path(), project.config.clone());
        assert_eq!(restored.models[0].sql, project.models[0].sql);
        assert_eq!(restored.models[0].config, project.models[0].config);
        assert_eq!(
            restored_dag.nodes[1].as_model().unwrap(),
            dag.nodes[1].as_model().unwrap()
        );

        write(dir.path(), "models/a.sql", "select id + 1 as id from raw");
        let now = stamp_files(dir.path(), &project.config).unwrap();
        let snapshot: Snapshot = postcard::from_bytes(&bytes).unwrap();
        assert!(!snapshot.matches(&key, &now), "an edited file must miss");
        write(dir.path(), "models/b.sql", "select 1 as x");
        let more = stamp_files(dir.path(), &project.config).unwrap();
        assert_eq!(more.len(), files.len() + 1, "a new file must be listed");
    }

    #[test]
    fn the_fingerprint_key_follows_every_stamp_and_the_plugins() {
        let dir = project();
        let (project, _, key) = compiled(dir.path());
        let files = stamp_files(dir.path(), &project.config).unwrap();
        let plugins = crate::PluginHashes::default();
        let base = fingerprint_key(&key, &files, &plugins);
        assert_eq!(base, fingerprint_key(&key, &files, &plugins));
        let mut touched = files.clone();
        touched[1].1.changed += 1;
        assert_ne!(base, fingerprint_key(&key, &touched, &plugins));
        let mut upgraded = plugins.clone();
        upgraded.adapter = Hash::of(b"another adapter");
        assert_ne!(base, fingerprint_key(&key, &files, &upgraded));
        assert_ne!(base, fingerprint_key(&Hash::of(b"k"), &files, &plugins));
    }

    #[test]
    fn files_modified_just_before_the_read_are_not_trusted() {
        let dir = project();
        let (project, dag, key) = compiled(dir.path());
        let files = stamp_files(dir.path(), &project.config).unwrap();
        assert!(Snapshot::capture(&key, &files, SystemTime::now(), &project, &dag).is_none());
    }
}
