//! # orbital-cas: the content-addressed storage box
//!
//! One redb file per project (`<target-path>/state.redb`) holds:
//!
//! - **objects**: bytes by blake3 hash (canonical compiled SQL, run records);
//! - **builds**: per warehouse, the physical relations that exist, by the
//!   fingerprint they were built with;
//! - **environments**: per warehouse, named pointers model -> fingerprint;
//! - **runs**: run id -> the run record's object hash; **active runs**: the
//!   ids of runs queued or running, checked on open for runs whose process
//!   died ([`Store::recover_runs`]);
//! - **parse cache**: parse results by file hash;
//! - **installed plugins**: component bytes by blake3 hash, put there by
//!   `orbital plugin install` and named in orbital.toml as `blake3:<hex>`;
//!   apart from objects because `gc` never removes them;
//! - **plugin sets**: which component provides the adapter and each
//!   materialization, by the hash of the set of components, so an unchanged
//!   run fingerprints without loading a plugin.
//!
//! A warehouse is one target database, named by the identity Orbital writes
//! into it, so deleting the database forgets its builds.
//!
//! Everything one run changes goes through one [`Store::write`] call: one
//! redb transaction, atomic and durable. Several processes may open the store
//! at once (redb's multi-writer mode); write transactions take turns.
//!
//! Synchronous. Depends on the core (for hashes and parse results), redb and
//! serde; knows nothing of databases, plugins or the CLI.

mod error;
mod migrate;
mod records;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use orbital_core::{
    Fingerprints, Hash, ParseCache, ParsedModel, PluginHashes, Snapshot, SnapshotOf,
};
use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};

pub use error::CasError;
pub use records::{
    BuildRecord, EnvEntry, EnvRecord, EnvVersion, Holder, NodeRun, NodeStatus, RunRecord, RunStatus,
};

pub type Result<T, E = CasError> = std::result::Result<T, E>;

/// The store format this build reads and writes. A store with a higher
/// number was written by a newer Orbital; a lower one is migrated on open
/// ([`migrate`]).
///
/// 2: run records carry a status, the holding process and an error; node
/// statuses are an enum; the active-runs table.
pub const FORMAT: u32 = 2;

pub(crate) const META: TableDefinition<'_, &str, &str> = TableDefinition::new("meta");
/// The key in [`META`] of [`Store::generation`].
const GENERATION: &str = "generation";

/// Increases [`Store::generation`] in the transaction `txn`.
fn bump_generation(txn: &redb::WriteTransaction) -> Result<()> {
    let mut meta = txn.open_table(META)?;
    let now = read_generation(meta.get(GENERATION)?.map(|v| v.value().to_string()));
    meta.insert(GENERATION, (now + 1).to_string().as_str())?;
    Ok(())
}

/// A stored generation: none (a store no write has bumped yet) is 0.
fn read_generation(stored: Option<String>) -> u64 {
    stored.and_then(|text| text.parse().ok()).unwrap_or(0)
}
pub(crate) const OBJECTS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("objects");
const PARSED: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("parsed");
const PLUGIN_SETS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("plugin_sets");
/// `warehouse/fingerprint-hex` -> [`BuildRecord`].
const BUILDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("builds");
/// `warehouse/environment/model` -> [`EnvEntry`].
const ENVIRONMENTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("environments");
/// component hash -> component bytes.
const PLUGINS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("plugins");
/// run id -> the run record's object hash.
pub(crate) const RUNS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("runs");
/// The ids of runs not yet final.
pub(crate) const ACTIVE_RUNS: TableDefinition<'_, u64, ()> = TableDefinition::new("active_runs");
/// A SQLite warehouse file's identity (device, inode, birth time, path) ->
/// the warehouse id read from it, so commands that only need the id do not
/// open the file (opening reads its whole schema: 20k entries for a
/// 10k-model project).
const WAREHOUSE_FILES: TableDefinition<'_, &str, &str> = TableDefinition::new("warehouse_files");
/// `warehouse/environment` -> [`EnvVersion`]: how new this store's
/// pointers of that environment are, so peers converge on the newest.
const ENV_VERSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("env_versions");

/// An open store.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens the store at `path`, creating it (and its folder) if missing.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| CasError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let not_a_store = |detail: String| CasError::NotAStore {
            path: path.to_path_buf(),
            detail,
        };
        // redb trusts a cleanly closed file and may panic on bytes that are
        // not a redb file at all; a foreign file is a user error, not a crash.
        let opened = std::panic::catch_unwind(|| {
            Database::builder()
                .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
                .create(path)
        })
        .map_err(|_| not_a_store("the file is not a redb database".into()))?;
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Io(source))
                if source.kind() != std::io::ErrorKind::InvalidData =>
            {
                CasError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
            other => not_a_store(other.to_string()),
        })?;
        let store = Self {
            db,
            path: path.to_path_buf(),
        };
        store.check_format()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the format marker and creates what is missing; a store that
    /// needs neither is only read (a write transaction costs two syncs).
    fn check_format(&self) -> Result<()> {
        if self.is_ready()? {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("format")?.map(|v| v.value().to_string());
            match found {
                None => {
                    meta.insert("format", FORMAT.to_string().as_str())?;
                }
                Some(text) => {
                    let found: u32 = text.parse().map_err(|_| CasError::NotAStore {
                        path: self.path.clone(),
                        detail: format!("unreadable format marker `{text}`"),
                    })?;
                    if found > FORMAT {
                        return Err(CasError::Newer {
                            path: self.path.clone(),
                            found,
                            supported: FORMAT,
                        });
                    }
                    if found < FORMAT {
                        drop(meta);
                        migrate::migrate(&txn, found).map_err(|e| CasError::Migration {
                            path: self.path.clone(),
                            from: found,
                            detail: e.to_string(),
                        })?;
                        meta = txn.open_table(META)?;
                        meta.insert("format", FORMAT.to_string().as_str())?;
                    }
                }
            }
            // Create every table, so readers never meet a missing one.
            txn.open_table(OBJECTS)?;
            txn.open_table(PARSED)?;
            txn.open_table(PLUGIN_SETS)?;
            txn.open_table(BUILDS)?;
            txn.open_table(ENVIRONMENTS)?;
            txn.open_table(RUNS)?;
            txn.open_table(ACTIVE_RUNS)?;
            txn.open_table(PLUGINS)?;
            txn.open_table(WAREHOUSE_FILES)?;
            txn.open_table(ENV_VERSIONS)?;
        }
        bump_generation(&txn)?;
        txn.commit()?;
        Ok(())
    }

    /// Whether the store has a marker of this format (or older) and every
    /// table.
    fn is_ready(&self) -> Result<bool> {
        let txn = self.read()?;
        let meta = match txn.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let marker = meta.get("format")?.map(|v| v.value().to_string());
        // None, unreadable, older or newer: the write path reports, writes
        // or migrates it.
        if !marker.is_some_and(|text| text.parse::<u32>().is_ok_and(|found| found == FORMAT)) {
            return Ok(false);
        }
        use redb::TableHandle;
        let names: BTreeSet<String> = txn
            .list_tables()?
            .map(|table| table.name().to_string())
            .collect();
        // Every table `check_format` creates.
        let tables = [
            OBJECTS.name(),
            PARSED.name(),
            PLUGIN_SETS.name(),
            BUILDS.name(),
            ENVIRONMENTS.name(),
            RUNS.name(),
            ACTIVE_RUNS.name(),
            PLUGINS.name(),
            WAREHOUSE_FILES.name(),
            ENV_VERSIONS.name(),
        ];
        Ok(tables.iter().all(|name| names.contains(*name)))
    }

    fn read(&self) -> Result<ReadTransaction> {
        Ok(self.db.begin_read()?)
    }

    /// A read-only view of the parse cache, for [`orbital_core::compile`].
    pub fn parse_cache(&self) -> Result<StoredParses> {
        Ok(StoredParses {
            table: self.read()?.open_table(PARSED)?,
        })
    }

    /// Where snapshots are kept: files beside the database, one per key. A
    /// snapshot is a cache (any of them can go), and one is tens of MB for
    /// 10k models, which a file reads several times faster than redb's pages.
    fn snapshots_dir(&self) -> PathBuf {
        self.path.with_file_name("snapshots")
    }

    /// The snapshot saved under `key`; a damaged one is a miss.
    pub fn snapshot(&self, key: &Hash) -> Result<Option<Snapshot>> {
        let path = self.snapshots_dir().join(key.to_string());
        match std::fs::read(&path) {
            Ok(bytes) => Ok(postcard::from_bytes(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CasError::Io { path, source }),
        }
    }

    /// Saves `snapshot` under its key, replacing the file whole (written
    /// aside, then renamed), so a reader never sees half of one. Encoded
    /// straight into the file: no 23 MB buffer for 10k models.
    pub fn save_snapshot(&self, snapshot: &SnapshotOf<'_>) -> Result<()> {
        let path = self.snapshots_dir().join(snapshot.key.to_string());
        let dir = self.snapshots_dir();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CasError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let file = tempfile::NamedTempFile::new_in(&dir).map_err(io(&dir))?;
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
        postcard::to_io(snapshot, &mut writer).map_err(|e| CasError::Encoding(e.to_string()))?;
        let file = writer.into_inner().map_err(|e| CasError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        file.persist(&path).map_err(|e| CasError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Replaces the file at `path` whole: written aside, then renamed.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CasError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
        std::io::Write::write_all(&mut file, bytes).map_err(io(file.path()))?;
        file.persist(path).map_err(|e| CasError::Io {
            path: path.to_path_buf(),
            source: e.error,
        })?;
        Ok(())
    }

    /// The fingerprints saved for the project of snapshot `key`, if they
    /// were saved under `check` ([`orbital_core::snapshot::fingerprint_key`]).
    pub fn fingerprints(&self, key: &Hash, check: &Hash) -> Result<Option<Fingerprints>> {
        let path = self.fingerprints_path(key);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(postcard::from_bytes::<(Hash, Fingerprints)>(&bytes)
                .ok()
                .filter(|(saved, _)| saved == check)
                .map(|(_, fingerprints)| fingerprints)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CasError::Io { path, source }),
        }
    }

    /// Saves `fingerprints` for snapshot `key` under `check`, replacing any
    /// saved before (one file per snapshot, beside it).
    pub fn save_fingerprints(
        &self,
        key: &Hash,
        check: &Hash,
        fingerprints: &Fingerprints,
    ) -> Result<()> {
        self.write_file(
            &self.fingerprints_path(key),
            &encode(&(check, fingerprints))?,
        )
    }

    fn fingerprints_path(&self, key: &Hash) -> PathBuf {
        self.snapshots_dir().join(format!("{key}.fingerprints"))
    }

    /// Removes every snapshot (the next command takes a new one).
    fn clear_snapshots(&self) -> Result<()> {
        let dir = self.snapshots_dir();
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CasError::Io {
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// The warehouse id last read from the SQLite file whose identity is
    /// `file` (see [`Writer::put_warehouse_file`]).
    pub fn warehouse_of_file(&self, file: &str) -> Result<Option<String>> {
        let table = self.read()?.open_table(WAREHOUSE_FILES)?;
        Ok(table.get(file)?.map(|v| v.value().to_string()))
    }

    /// The schema cookie at which environment `env` of `warehouse` last
    /// agreed with the warehouse (see [`Writer::put_verified_schema`]).
    pub fn verified_schema(&self, warehouse: &str, env: &str) -> Result<Option<String>> {
        let table = self.read()?.open_table(META)?;
        Ok(table
            .get(verified_key(warehouse, env).as_str())?
            .map(|v| v.value().to_string()))
    }

    /// The plugin set recorded under `key`.
    pub fn plugin_set(&self, key: &Hash) -> Result<Option<PluginHashes>> {
        let table = self.read()?.open_table(PLUGIN_SETS)?;
        table
            .get(key.0.as_slice())?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// An object's bytes.
    pub fn object(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        let table = self.read()?.open_table(OBJECTS)?;
        Ok(table.get(hash.0.as_slice())?.map(|v| v.value().to_vec()))
    }

    /// Each of `hashes` as an object or, failing that, an installed
    /// component (what peers are served), in one read transaction.
    pub fn objects_or_plugins(&self, hashes: &[Hash]) -> Result<Vec<Option<Vec<u8>>>> {
        self.look_up(hashes, <[u8]>::to_vec)
    }

    /// `hash` as an object or, failing that, an installed component.
    pub fn object_or_plugin(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        Ok(self
            .objects_or_plugins(std::slice::from_ref(hash))?
            .pop()
            .flatten())
    }

    /// The size of each of `hashes` as an object or installed component,
    /// without copying their bytes.
    pub fn object_sizes(&self, hashes: &[Hash]) -> Result<Vec<Option<u64>>> {
        self.look_up(hashes, |bytes| bytes.len() as u64)
    }

    /// `what` of each of `hashes`' bytes, as an object or else an installed
    /// component.
    fn look_up<T>(&self, hashes: &[Hash], what: impl Fn(&[u8]) -> T) -> Result<Vec<Option<T>>> {
        let txn = self.read()?;
        let (objects, plugins) = (txn.open_table(OBJECTS)?, txn.open_table(PLUGINS)?);
        let mut out = Vec::with_capacity(hashes.len());
        for hash in hashes {
            let found = match objects.get(hash.0.as_slice())? {
                Some(value) => Some(what(value.value())),
                None => plugins.get(hash.0.as_slice())?.map(|v| what(v.value())),
            };
            out.push(found);
        }
        Ok(out)
    }

    /// The installed component with hash `hash`.
    pub fn plugin(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        let table = self.read()?.open_table(PLUGINS)?;
        Ok(table.get(hash.0.as_slice())?.map(|v| v.value().to_vec()))
    }

    /// The hashes of every installed component.
    pub fn plugins(&self) -> Result<Vec<Hash>> {
        let table = self.read()?.open_table(PLUGINS)?;
        let mut hashes = Vec::new();
        for item in table.iter()? {
            hashes.push(hash_from(item?.0.value())?);
        }
        Ok(hashes)
    }

    /// Every environment of `warehouse`: name -> model -> entry.
    pub fn environments(
        &self,
        warehouse: &str,
    ) -> Result<BTreeMap<String, BTreeMap<String, EnvEntry>>> {
        let table = self.read()?.open_table(ENVIRONMENTS)?;
        let prefix = format!("{warehouse}/");
        let mut out: BTreeMap<String, BTreeMap<String, EnvEntry>> = BTreeMap::new();
        for item in table.range(prefix.as_str()..)? {
            let (key, value) = item?;
            let Some(rest) = key.value().strip_prefix(&prefix) else {
                break;
            };
            let Some((env, model)) = rest.split_once('/') else {
                continue;
            };
            out.entry(env.to_string())
                .or_default()
                .insert(model.to_string(), decode(value.value())?);
        }
        Ok(out)
    }

    /// The names of `warehouse`'s environments (keys only: nothing decoded).
    pub fn environment_names(&self, warehouse: &str) -> Result<Vec<String>> {
        let table = self.read()?.open_table(ENVIRONMENTS)?;
        let prefix = format!("{warehouse}/");
        let mut names: Vec<String> = Vec::new();
        let mut from = prefix.clone();
        // Skip from one environment to the next instead of reading each entry.
        while let Some(item) = table.range(from.as_str()..)?.next() {
            let (key, _) = item?;
            let Some((env, _)) = key
                .value()
                .strip_prefix(&prefix)
                .and_then(|r| r.split_once('/'))
            else {
                break;
            };
            names.push(env.to_string());
            // '/' + 1 is '0': the first key after every `<env>/...`.
            from = format!("{prefix}{env}0");
        }
        Ok(names)
    }

    /// One environment of `warehouse`: model -> entry (empty if unknown).
    pub fn environment(&self, warehouse: &str, env: &str) -> Result<BTreeMap<String, EnvEntry>> {
        let table = self.read()?.open_table(ENVIRONMENTS)?;
        let prefix = format!("{warehouse}/{env}/");
        let mut out = BTreeMap::new();
        for item in table.range(prefix.as_str()..)? {
            let (key, value) = item?;
            let Some(model) = key.value().strip_prefix(&prefix) else {
                break;
            };
            out.insert(model.to_string(), decode(value.value())?);
        }
        Ok(out)
    }

    /// The version of every environment of every warehouse this store
    /// has pointers for: `(warehouse, environment, version)`. An
    /// environment with pointers and no recorded version is at version 0.
    pub fn env_versions(&self) -> Result<Vec<(String, String, EnvVersion)>> {
        let txn = self.read()?;
        let versions = txn.open_table(ENV_VERSIONS)?;
        let mut out = BTreeMap::new();
        for item in versions.iter()? {
            let (key, value) = item?;
            if let Some((warehouse, env)) = key.value().split_once('/') {
                out.insert(
                    (warehouse.to_string(), env.to_string()),
                    decode(value.value())?,
                );
            }
        }
        // Environments recorded before versions were, or by a CLI that
        // never published a change since.
        let entries = txn.open_table(ENVIRONMENTS)?;
        let mut from = String::new();
        while let Some(item) = entries.range(from.as_str()..)?.next() {
            let (key, _) = item?;
            let mut parts = key.value().splitn(3, '/');
            let (Some(warehouse), Some(env)) = (parts.next(), parts.next()) else {
                break;
            };
            out.entry((warehouse.to_string(), env.to_string()))
                .or_insert_with(EnvVersion::default);
            // '/' + 1 is '0': the first key after every `<w>/<env>/...`.
            from = format!("{warehouse}/{env}0");
        }
        Ok(out.into_iter().map(|((w, e), v)| (w, e, v)).collect())
    }

    /// Environment `env` of `warehouse` as peers exchange it: its version
    /// and its pointers.
    pub fn env_record(&self, warehouse: &str, env: &str) -> Result<EnvRecord> {
        Ok(EnvRecord {
            warehouse: warehouse.to_string(),
            env: env.to_string(),
            version: self.env_version(warehouse, env)?,
            entries: self.environment(warehouse, env)?.into_iter().collect(),
        })
    }

    /// The version of environment `env` of `warehouse` (0 if none).
    pub fn env_version(&self, warehouse: &str, env: &str) -> Result<EnvVersion> {
        let table = self.read()?.open_table(ENV_VERSIONS)?;
        match table.get(format!("{warehouse}/{env}").as_str())? {
            Some(value) => decode(value.value()),
            None => Ok(EnvVersion::default()),
        }
    }

    /// The builds of `warehouse` among `fingerprints` (one read of each).
    pub fn builds_of(&self, warehouse: &str, fingerprints: &[Hash]) -> Result<Vec<BuildRecord>> {
        let table = self.read()?.open_table(BUILDS)?;
        let mut out = Vec::new();
        for fingerprint in fingerprints {
            let key = format!("{warehouse}/{fingerprint}");
            if let Some(value) = table.get(key.as_str())? {
                out.push(decode(value.value())?);
            }
        }
        Ok(out)
    }

    /// Every physical relation built in `warehouse`, by fingerprint.
    pub fn builds(&self, warehouse: &str) -> Result<BTreeMap<Hash, BuildRecord>> {
        let table = self.read()?.open_table(BUILDS)?;
        let prefix = format!("{warehouse}/");
        let mut out = BTreeMap::new();
        for item in table.range(prefix.as_str()..)? {
            let (key, value) = item?;
            if !key.value().starts_with(&prefix) {
                break;
            }
            let record: BuildRecord = decode(value.value())?;
            out.insert(record.fingerprint, record);
        }
        Ok(out)
    }

    /// The run with id `id`.
    pub fn run(&self, id: u64) -> Result<Option<RunRecord>> {
        let txn = self.read()?;
        let runs = txn.open_table(RUNS)?;
        let objects = txn.open_table(OBJECTS)?;
        let Some(hash) = runs.get(id)? else {
            return Ok(None);
        };
        objects
            .get(hash.value())?
            .map(|bytes| decode(bytes.value()))
            .transpose()
    }

    /// Marks `interrupted` every queued or running run whose holder
    /// `is_dead` says has gone (a process killed mid-run); returns their
    /// ids. Costs one small read when no run is active.
    pub fn recover_runs(&self, is_dead: impl Fn(&Holder) -> bool) -> Result<Vec<u64>> {
        let active: Vec<u64> = {
            let txn = self.read()?;
            let table = txn.open_table(ACTIVE_RUNS)?;
            let mut ids = Vec::new();
            for item in table.iter()? {
                ids.push(item?.0.value());
            }
            ids
        };
        let mut dead = Vec::new();
        for id in active {
            let Some(record) = self.run(id)? else {
                continue;
            };
            if !record.status.is_final() && record.holder.as_ref().is_some_and(&is_dead) {
                dead.push(record);
            }
        }
        if dead.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|w| {
            let mut ids = Vec::new();
            for mut record in dead {
                // Checked again inside the transaction: it may have ended meanwhile.
                if w.txn.open_table(ACTIVE_RUNS)?.get(record.id)?.is_none() {
                    continue;
                }
                let holder = record.holder.clone();
                record.status = RunStatus::Interrupted;
                record.error = holder.map(|h| {
                    format!(
                        "its process (pid {} on {}) ended before the run finished",
                        h.pid, h.host
                    )
                });
                ids.push(record.id);
                w.update_run(&record)?;
            }
            Ok(ids)
        })
    }

    /// The latest `limit` runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.runs_before(u64::MAX, limit)
    }

    /// The latest `limit` runs with an id below `before`, newest first: a
    /// page after the run `before`.
    pub fn runs_before(&self, before: u64, limit: usize) -> Result<Vec<RunRecord>> {
        let txn = self.read()?;
        let runs = txn.open_table(RUNS)?;
        let objects = txn.open_table(OBJECTS)?;
        let mut out = Vec::new();
        for item in runs.range(..before)?.rev().take(limit) {
            let (_, hash) = item?;
            if let Some(bytes) = objects.get(hash.value())? {
                out.push(decode(bytes.value())?);
            }
        }
        Ok(out)
    }

    /// Runs `change` in one write transaction and commits it, or commits
    /// nothing if it fails.
    pub fn write<T>(&self, change: impl FnOnce(&mut Writer) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_write()?;
        let mut writer = Writer { txn };
        let out = change(&mut writer)?;
        bump_generation(&writer.txn)?;
        writer.txn.commit()?;
        Ok(out)
    }

    /// A number every write transaction (of any process) increases: while
    /// it is the same, so is everything stored. What a long-lived process
    /// keeps of what it read is good while this number is.
    pub fn generation(&self) -> Result<u64> {
        let txn = self.read()?;
        let meta = txn.open_table(META)?;
        Ok(read_generation(
            meta.get(GENERATION)?.map(|v| v.value().to_string()),
        ))
    }

    /// Removes objects and parse results nothing reaches: objects not named
    /// by a build, an environment entry or a run, and parse results whose
    /// key is not in `keep_parses`. Returns how many of each went (or would
    /// go, with `dry_run`).
    pub fn collect_garbage(
        &self,
        keep_parses: &BTreeSet<Hash>,
        dry_run: bool,
    ) -> Result<(usize, usize)> {
        self.write(|w| {
            let mut reachable = BTreeSet::new();
            for item in w.txn.open_table(BUILDS)?.iter()? {
                let record: BuildRecord = decode(item?.1.value())?;
                reachable.extend(record.sql);
            }
            for item in w.txn.open_table(ENVIRONMENTS)?.iter()? {
                let entry: EnvEntry = decode(item?.1.value())?;
                reachable.extend(entry.sql);
            }
            for item in w.txn.open_table(RUNS)?.iter()? {
                reachable.insert(hash_from(item?.1.value())?);
            }
            let mut objects = w.txn.open_table(OBJECTS)?;
            let dead_objects: Vec<Vec<u8>> = objects
                .iter()?
                .filter_map(|item| item.ok())
                .map(|(key, _)| key.value().to_vec())
                .filter(|key| hash_from(key).is_ok_and(|h| !reachable.contains(&h)))
                .collect();
            let mut parsed = w.txn.open_table(PARSED)?;
            let dead_parses: Vec<Vec<u8>> = parsed
                .iter()?
                .filter_map(|item| item.ok())
                .map(|(key, _)| key.value().to_vec())
                .filter(|key| hash_from(key).is_ok_and(|h| !keep_parses.contains(&h)))
                .collect();
            if !dry_run {
                for key in &dead_objects {
                    objects.remove(key.as_slice())?;
                }
                for key in &dead_parses {
                    parsed.remove(key.as_slice())?;
                }
            }
            Ok((dead_objects.len(), dead_parses.len()))
        })
        .and_then(|counts| {
            if !dry_run {
                self.clear_snapshots()?;
            }
            Ok(counts)
        })
    }
}

/// The changes of one write transaction.
pub struct Writer {
    txn: WriteTransaction,
}

impl Writer {
    /// Stores `bytes` as an object; returns its hash.
    pub fn put_object(&mut self, bytes: &[u8]) -> Result<Hash> {
        let hash = Hash::of(bytes);
        self.txn
            .open_table(OBJECTS)?
            .insert(hash.0.as_slice(), bytes)?;
        Ok(hash)
    }

    /// Installs a component; returns its hash.
    pub fn put_plugin(&mut self, bytes: &[u8]) -> Result<Hash> {
        let hash = Hash::of(bytes);
        self.txn
            .open_table(PLUGINS)?
            .insert(hash.0.as_slice(), bytes)?;
        Ok(hash)
    }

    pub fn put_parsed(&mut self, key: &Hash, parsed: &ParsedModel) -> Result<()> {
        self.txn
            .open_table(PARSED)?
            .insert(key.0.as_slice(), encode(parsed)?.as_slice())?;
        Ok(())
    }

    /// Remembers that the SQLite file with identity `file` holds warehouse
    /// `id`. The identity includes the file's inode and birth time, so a
    /// file deleted and made again (a new warehouse) is a new key.
    /// Records that environment `env` of `warehouse` and the store agree
    /// at schema cookie `cookie`: while the warehouse reports the same
    /// cookie, no table or view has been created, dropped or redefined.
    pub fn put_verified_schema(&mut self, warehouse: &str, env: &str, cookie: &str) -> Result<()> {
        self.txn
            .open_table(META)?
            .insert(verified_key(warehouse, env).as_str(), cookie)?;
        Ok(())
    }

    pub fn put_warehouse_file(&mut self, file: &str, id: &str) -> Result<()> {
        self.txn.open_table(WAREHOUSE_FILES)?.insert(file, id)?;
        Ok(())
    }

    pub fn put_plugin_set(&mut self, key: &Hash, set: &PluginHashes) -> Result<()> {
        self.txn
            .open_table(PLUGIN_SETS)?
            .insert(key.0.as_slice(), encode(set)?.as_slice())?;
        Ok(())
    }

    pub fn record_build(&mut self, warehouse: &str, record: &BuildRecord) -> Result<()> {
        let key = format!("{warehouse}/{}", record.fingerprint);
        self.txn
            .open_table(BUILDS)?
            .insert(key.as_str(), encode(record)?.as_slice())?;
        Ok(())
    }

    /// Whether a build of `fingerprint` in `warehouse` is recorded.
    pub fn has_build(&mut self, warehouse: &str, fingerprint: &Hash) -> Result<bool> {
        let key = format!("{warehouse}/{fingerprint}");
        Ok(self.txn.open_table(BUILDS)?.get(key.as_str())?.is_some())
    }

    pub fn remove_build(&mut self, warehouse: &str, fingerprint: &Hash) -> Result<()> {
        let key = format!("{warehouse}/{fingerprint}");
        self.txn.open_table(BUILDS)?.remove(key.as_str())?;
        Ok(())
    }

    pub fn set_env(
        &mut self,
        warehouse: &str,
        env: &str,
        model: &str,
        entry: &EnvEntry,
    ) -> Result<()> {
        let key = format!("{warehouse}/{env}/{model}");
        self.txn
            .open_table(ENVIRONMENTS)?
            .insert(key.as_str(), encode(entry)?.as_slice())?;
        Ok(())
    }

    pub fn set_env_version(
        &mut self,
        warehouse: &str,
        env: &str,
        version: &EnvVersion,
    ) -> Result<()> {
        let key = format!("{warehouse}/{env}");
        self.txn
            .open_table(ENV_VERSIONS)?
            .insert(key.as_str(), encode(version)?.as_slice())?;
        Ok(())
    }

    /// Takes a peer's `record` of an environment if it is newer than this
    /// store's: its pointers replace this store's. Whether it was taken.
    pub fn adopt_environment(&mut self, record: &EnvRecord) -> Result<bool> {
        let (warehouse, env) = (record.warehouse.as_str(), record.env.as_str());
        let key = format!("{warehouse}/{env}");
        let mut versions = self.txn.open_table(ENV_VERSIONS)?;
        let ours: EnvVersion = match versions.get(key.as_str())? {
            Some(value) => decode(value.value())?,
            None => EnvVersion::default(),
        };
        if !record.version.newer_than(&ours) {
            return Ok(false);
        }
        versions.insert(key.as_str(), encode(&record.version)?.as_slice())?;
        drop(versions);
        let prefix = format!("{warehouse}/{env}/");
        let mut entries = self.txn.open_table(ENVIRONMENTS)?;
        let stale: Vec<String> = entries
            .range(prefix.as_str()..)?
            .filter_map(|item| item.ok())
            .map(|(key, _)| key.value().to_string())
            .take_while(|key| key.starts_with(&prefix))
            .collect();
        for key in stale {
            entries.remove(key.as_str())?;
        }
        for (model, entry) in &record.entries {
            let key = format!("{prefix}{model}");
            entries.insert(key.as_str(), encode(entry)?.as_slice())?;
        }
        drop(entries);
        // The warehouse no longer agrees with what was last verified.
        self.txn
            .open_table(META)?
            .remove(verified_key(warehouse, env).as_str())?;
        Ok(true)
    }

    pub fn remove_env(&mut self, warehouse: &str, env: &str, model: &str) -> Result<()> {
        let key = format!("{warehouse}/{env}/{model}");
        self.txn.open_table(ENVIRONMENTS)?.remove(key.as_str())?;
        Ok(())
    }

    /// Records a run under the next run id, which it returns. A run not
    /// yet final is also listed as active until [`Writer::update_run`]
    /// records its end.
    pub fn add_run(&mut self, mut record: RunRecord) -> Result<u64> {
        let id = {
            let runs = self.txn.open_table(RUNS)?;
            runs.last()?.map_or(1, |(key, _)| key.value() + 1)
        };
        record.id = id;
        self.update_run(&record)?;
        Ok(id)
    }

    /// Replaces the record of run `record.id` (its old object goes).
    pub fn update_run(&mut self, record: &RunRecord) -> Result<()> {
        let hash = self.put_object(&encode(record)?)?;
        let old = self
            .txn
            .open_table(RUNS)?
            .insert(record.id, hash.0.as_slice())?
            .map(|old| old.value().to_vec());
        if let Some(old) = old.filter(|old| old.as_slice() != hash.0.as_slice()) {
            self.txn.open_table(OBJECTS)?.remove(old.as_slice())?;
        }
        let mut active = self.txn.open_table(ACTIVE_RUNS)?;
        if record.status.is_final() {
            active.remove(record.id)?;
        } else {
            active.insert(record.id, ())?;
        }
        Ok(())
    }
}

/// The parse cache as the core reads it.
pub struct StoredParses {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl ParseCache for StoredParses {
    fn get(&self, key: &Hash) -> Option<ParsedModel> {
        // A damaged entry is a cache miss: the model is parsed again.
        let value = self.table.get(key.0.as_slice()).ok()??;
        postcard::from_bytes(value.value()).ok()
    }
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| CasError::Encoding(e.to_string()))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| CasError::Encoding(e.to_string()))
}

fn hash_from(bytes: &[u8]) -> Result<Hash> {
    <[u8; 32]>::try_from(bytes)
        .map(Hash)
        .map_err(|_| CasError::Encoding("a stored hash is not 32 bytes".into()))
}

#[cfg(test)]
mod tests;

/// The [`META`] key of an environment's verified schema cookie.
fn verified_key(warehouse: &str, env: &str) -> String {
    format!("verified-schema/{warehouse}/{env}")
}
