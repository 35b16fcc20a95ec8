//! What a long-lived process (the daemon) keeps in memory between
//! requests, with [`crate::EngineOptions::keep_projects`]: each project's
//! last compile with its file stamps, and the parse results it used, so a
//! request on an unchanged project decodes no snapshot, and one after an
//! edit reads and parses only the files that changed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use orbital_core::compile::{ParseCache, ParsedModel};
use orbital_core::fingerprint::{Fingerprints, PluginHashes};
use orbital_core::snapshot::Stamp;
use orbital_core::{Dag, Hash, NodeId, Project};

/// A project's last compile, shared with the sessions that use it: a
/// request on an unchanged project copies nothing.
pub(crate) struct Kept {
    /// The snapshot key it was compiled under ([`orbital_core::snapshot::key`]).
    pub(crate) key: Hash,
    /// Every source file's stamp when it was read.
    pub(crate) files: Vec<(PathBuf, Stamp)>,
    /// The project watch's event number those stamps are as new as
    /// ([`crate::watch::Watch::stamps`]), when it is watched.
    pub(crate) watched: Option<u64>,
    pub(crate) project: Arc<Project>,
    pub(crate) dag: Arc<Dag>,
    /// Files whose stamps were too recent to trust when it was read
    /// ([`orbital_core::Snapshot::racy`]): read again whatever their stamps say.
    pub(crate) racy: Vec<usize>,
    /// Its fingerprints, once a request computed them, with the plugins
    /// they were computed for.
    pub(crate) fingerprints: Mutex<Option<Prints>>,
    /// When it was made from the previous compile by compiling some models
    /// again: that compile's fingerprints (if it had any), and those
    /// models' node ids. Most of its own are the same.
    pub(crate) since: Option<(Prints, Vec<NodeId>)>,
}

/// A compile's fingerprints for one set of plugins.
pub(crate) type Prints = (PluginHashes, Arc<Fingerprints>);

impl Kept {
    /// Its fingerprints for `plugins`: kept, else computed from the
    /// previous compile's where they can be, else by `whole`, and kept.
    pub(crate) fn fingerprints(
        &self,
        plugins: &PluginHashes,
        whole: impl FnOnce() -> Result<Fingerprints, (String, String)>,
    ) -> Result<Arc<Fingerprints>, (String, String)> {
        let mut kept = crate::lock(&self.fingerprints);
        if let Some((for_plugins, prints)) = &*kept
            && for_plugins == plugins
        {
            return Ok(prints.clone());
        }
        let prints = match &self.since {
            Some(((for_plugins, earlier), changed)) if for_plugins == plugins => {
                tracing::debug!(
                    changed = changed.len(),
                    "fingerprints from the previous compile's"
                );
                orbital_core::fingerprint::fingerprint_since(
                    &self.project,
                    &self.dag,
                    plugins,
                    earlier,
                    changed,
                )?
            }
            _ => whole()?,
        };
        let prints = Arc::new(prints);
        *kept = Some((plugins.clone(), prints.clone()));
        Ok(prints)
    }

    /// The fingerprints kept, if any, with what a compile made from this one
    /// by compiling `changed` (node ids) again needs of them.
    pub(crate) fn since(&self, changed: Vec<NodeId>) -> Option<(Prints, Vec<NodeId>)> {
        let kept = crate::lock(&self.fingerprints).clone()?;
        Some((kept, changed))
    }
}

impl Kept {
    /// The files that changed since this compile, or `None` when files came
    /// or went (the project is read whole then).
    pub(crate) fn changed(&self, files: &[(PathBuf, Stamp)]) -> Option<Vec<PathBuf>> {
        let kept = &self.files;
        let same = |(a, _): &(PathBuf, Stamp), (b, _): &(PathBuf, Stamp)| {
            orbital_core::project::same_listed_path(a, b)
        };
        if kept.len() != files.len() || kept.iter().zip(files).any(|(a, b)| !same(a, b)) {
            return None;
        }
        let changed = kept
            .iter()
            .zip(files)
            .enumerate()
            .filter(|(i, (a, b))| a.1 != b.1 || self.racy.contains(i))
            .map(|(_, (_, (path, _)))| path.clone());
        Some(changed.collect())
    }
}

/// A parse cache over the store's that answers from memory first and
/// notes every result it gave, so the next compile's memory holds exactly
/// what this one used.
pub(crate) struct MemoParses<'a> {
    pub(crate) memory: &'a RwLock<HashMap<Hash, ParsedModel>>,
    pub(crate) store: &'a dyn ParseCache,
    pub(crate) used: Mutex<HashMap<Hash, ParsedModel>>,
}

impl ParseCache for MemoParses<'_> {
    fn get(&self, key: &Hash) -> Option<ParsedModel> {
        let remembered = self
            .memory
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned();
        let parsed = remembered.or_else(|| self.store.get(key))?;
        crate::lock(&self.used).insert(*key, parsed.clone());
        Some(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(len: u64) -> Stamp {
        Stamp {
            len,
            modified: 1,
            changed: 1,
            inode: 1,
        }
    }

    fn kept(files: &[(&str, u64)], racy: Vec<usize>) -> Kept {
        let root = std::path::Path::new("/nowhere");
        Kept {
            key: Hash::of(b"k"),
            files: files
                .iter()
                .map(|(p, n)| (PathBuf::from(p), stamp(*n)))
                .collect(),
            watched: None,
            project: Arc::new(Project {
                root: root.to_path_buf(),
                config: orbital_core::ProjectConfig::parse(
                    &root.join("orbital.toml"),
                    "name = \"kept\"\n",
                    |_| None,
                )
                .unwrap(),
                models: Vec::new(),
                seeds: Vec::new(),
                tests: Vec::new(),
                disabled: Vec::new(),
            }),
            dag: Arc::new(Dag::new(Vec::new(), |_, _| None).unwrap()),
            racy,
            fingerprints: Mutex::default(),
            since: None,
        }
    }

    #[test]
    fn changed_files_are_the_restamped_and_the_racy_ones() {
        let now = |files: &[(&str, u64)]| -> Vec<(PathBuf, Stamp)> {
            files
                .iter()
                .map(|(p, n)| (PathBuf::from(p), stamp(*n)))
                .collect()
        };
        let before = kept(&[("a.sql", 1), ("b.sql", 1), ("c.sql", 1)], vec![2]);
        assert_eq!(
            before.changed(&now(&[("a.sql", 5), ("b.sql", 1), ("c.sql", 1)])),
            Some(vec![PathBuf::from("a.sql"), PathBuf::from("c.sql")])
        );
        // A file added or removed: read the project whole.
        assert_eq!(before.changed(&now(&[("a.sql", 1), ("b.sql", 1)])), None);
        assert_eq!(
            before.changed(&now(&[("a.sql", 1), ("b.sql", 1), ("d.sql", 1)])),
            None
        );
    }
}
