//! What a long-lived process (the daemon) keeps in memory between
//! requests, with [`crate::EngineOptions::keep_projects`]: each project's
//! last compile with its file stamps, and the parse results it used, so a
//! request on an unchanged project decodes no snapshot, and one after an
//! edit reads and parses only the files that changed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

use orbital_core::compile::{ParseCache, ParsedModel};
use orbital_core::snapshot::Stamp;
use orbital_core::{Hash, Snapshot};

/// A project's last compile.
pub(crate) struct Kept {
    pub(crate) snapshot: Snapshot,
    /// Files whose stamps were too recent to trust when it was read
    /// ([`Snapshot::racy`]): read again whatever their stamps say.
    pub(crate) racy: Vec<usize>,
}

impl Kept {
    /// The files that changed since this compile, or `None` when files came
    /// or went (the project is read whole then).
    pub(crate) fn changed(&self, files: &[(PathBuf, Stamp)]) -> Option<Vec<PathBuf>> {
        let kept = &self.snapshot.files;
        if kept.len() != files.len() || kept.iter().zip(files).any(|(a, b)| a.0 != b.0) {
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
        Kept {
            snapshot: Snapshot {
                key: Hash::of(b"k"),
                files: files
                    .iter()
                    .map(|(p, n)| (PathBuf::from(p), stamp(*n)))
                    .collect(),
                models: Vec::new(),
                seeds: Vec::new(),
                tests: Vec::new(),
                dag: orbital_core::Dag::new(Vec::new(), |_, _| None).unwrap(),
            },
            racy,
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
