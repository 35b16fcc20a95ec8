use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state/state.redb")).unwrap();
    (dir, store)
}

fn entry(n: u8) -> EnvEntry {
    EnvEntry {
        fingerprint: Hash::of(&[n]),
        local: Hash::of(&[n, n]),
        sql: None,
        relation: orbital_core::dag::RelationName {
            schema: None,
            identifier: format!("m{n}"),
        },
    }
}

#[test]
fn environments_are_separate_per_warehouse_and_name() {
    let (_dir, store) = store();
    store
        .write(|w| {
            w.set_env("w1", "prod", "a", &entry(1))?;
            w.set_env("w1", "dev", "a", &entry(2))?;
            w.set_env("w2", "prod", "a", &entry(3))
        })
        .unwrap();
    assert_eq!(store.environment("w1", "prod").unwrap()["a"], entry(1));
    assert_eq!(store.environment("w1", "dev").unwrap()["a"], entry(2));
    assert_eq!(store.environments("w1").unwrap().len(), 2);
    assert!(store.environment("w1", "pro").unwrap().is_empty());
}

#[test]
fn a_failed_write_commits_nothing() {
    let (_dir, store) = store();
    let result: Result<()> = store.write(|w| {
        w.set_env("w", "prod", "a", &entry(1))?;
        Err(CasError::Encoding("boom".into()))
    });
    assert!(result.is_err());
    assert!(store.environment("w", "prod").unwrap().is_empty());
}

#[test]
fn runs_are_numbered_and_listed_newest_first() {
    let (_dir, store) = store();
    for command in ["run", "build"] {
        store
            .write(|w| {
                w.add_run(RunRecord {
                    id: 0,
                    command: command.into(),
                    target: "dev".into(),
                    environment: "prod".into(),
                    started_at: String::new(),
                    elapsed_ms: 1,
                    status: RunStatus::Succeeded,
                    error: None,
                    holder: None,
                    nodes: Vec::new(),
                })
            })
            .unwrap();
    }
    let runs = store.runs(10).unwrap();
    assert_eq!((runs[0].id, runs[0].command.as_str()), (2, "build"));
    assert_eq!(runs[1].id, 1);
}

#[test]
fn garbage_is_what_nothing_reaches() {
    let (_dir, store) = store();
    let (kept, dropped) = store
        .write(|w| {
            let kept = w.put_object(b"kept")?;
            let dropped = w.put_object(b"dropped")?;
            let mut e = entry(1);
            e.sql = Some(kept);
            w.set_env("w", "prod", "a", &e)?;
            Ok((kept, dropped))
        })
        .unwrap();
    assert_eq!(
        store.collect_garbage(&BTreeSet::new(), true).unwrap(),
        (1, 0)
    );
    assert!(store.object(&dropped).unwrap().is_some());
    store.collect_garbage(&BTreeSet::new(), false).unwrap();
    assert!(store.object(&dropped).unwrap().is_none());
    assert!(store.object(&kept).unwrap().is_some());
}

#[test]
fn a_foreign_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    std::fs::write(&path, vec![7u8; 10_000]).unwrap();
    let err = Store::open(&path).err().unwrap();
    assert!(
        err.to_string().contains("is not an Orbital state store"),
        "{err}"
    );
}

#[test]
fn a_newer_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    drop(Store::open(&path).unwrap());
    {
        let db = Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .create(&path)
            .unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("format", "99")
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&path).err().unwrap();
    assert!(
        err.to_string().contains("written by a newer Orbital"),
        "{err}"
    );
}

#[test]
fn two_handles_can_be_open_at_once() {
    let (dir, store) = store();
    let other = Store::open(&dir.path().join("state/state.redb")).unwrap();
    other
        .write(|w| w.set_env("w", "prod", "a", &entry(1)))
        .unwrap();
    assert_eq!(store.environment("w", "prod").unwrap().len(), 1);
}

#[test]
fn saved_fingerprints_come_back_only_under_their_check() {
    let (_dir, store) = store();
    let key = Hash::of(b"snapshot key");
    let check = Hash::of(b"files and plugins");
    let fingerprints = Fingerprints {
        local: vec![Hash::of(b"a")],
        full: vec![Hash::of(b"b")],
    };
    assert_eq!(store.fingerprints(&key, &check).unwrap(), None);
    store
        .save_fingerprints(&key, &check, &fingerprints)
        .unwrap();
    assert_eq!(
        store.fingerprints(&key, &check).unwrap(),
        Some(fingerprints)
    );
    let other = Hash::of(b"another plugin set");
    assert_eq!(store.fingerprints(&key, &other).unwrap(), None);
}

#[test]
fn warehouse_files_are_remembered_and_reopening_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.warehouse_of_file("1:2:3:/w.db").unwrap(), None);
        store
            .write(|w| w.put_warehouse_file("1:2:3:/w.db", "abc"))
            .unwrap();
    }
    let generation = Store::open(&path).unwrap().generation().unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.warehouse_of_file("1:2:3:/w.db").unwrap().as_deref(),
        Some("abc")
    );
    assert_eq!(store.warehouse_of_file("1:2:4:/w.db").unwrap(), None);
    // The format check of a ready store only reads: no transaction was
    // committed (redb itself may trim free pages off the file's end).
    assert_eq!(store.generation().unwrap(), generation);
    store.write(|_| Ok(())).unwrap();
    assert_eq!(store.generation().unwrap(), generation + 1);
}

fn running(pid: u32) -> RunRecord {
    RunRecord {
        id: 0,
        command: "build".into(),
        target: "dev".into(),
        environment: "prod".into(),
        started_at: String::new(),
        elapsed_ms: 0,
        status: RunStatus::Running,
        error: None,
        holder: Some(Holder {
            host: "here".into(),
            pid,
            started: 7,
        }),
        nodes: Vec::new(),
    }
}

#[test]
fn a_run_left_running_by_a_dead_holder_is_interrupted_and_a_live_one_is_not() {
    let (_dir, store) = store();
    let dead = store.write(|w| w.add_run(running(1))).unwrap();
    let live = store.write(|w| w.add_run(running(2))).unwrap();
    let recovered = store.recover_runs(|holder| holder.pid == 1).unwrap();
    assert_eq!(recovered, vec![dead]);
    let record = store.run(dead).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Interrupted);
    assert!(record.error.unwrap().contains("pid 1 on here"));
    assert_eq!(store.run(live).unwrap().unwrap().status, RunStatus::Running);
    // Once final, a run is no longer looked at.
    let mut ended = store.run(live).unwrap().unwrap();
    ended.status = RunStatus::Succeeded;
    store.write(|w| w.update_run(&ended)).unwrap();
    assert!(store.recover_runs(|_| true).unwrap().is_empty());
    assert_eq!(
        store.run(live).unwrap().unwrap().status,
        RunStatus::Succeeded
    );
}

#[test]
fn an_updated_run_leaves_no_stale_object_behind() {
    let (_dir, store) = store();
    let id = store.write(|w| w.add_run(running(3))).unwrap();
    let mut record = store.run(id).unwrap().unwrap();
    record.status = RunStatus::Cancelled;
    store.write(|w| w.update_run(&record)).unwrap();
    let (objects, _) = store
        .collect_garbage(&std::collections::BTreeSet::new(), true)
        .unwrap();
    assert_eq!(objects, 0, "the first record's object went with the update");
    assert_eq!(store.runs(10).unwrap(), vec![record]);
}

fn version(version: u64, peer: &str) -> EnvVersion {
    EnvVersion {
        version,
        peer: peer.into(),
    }
}

#[test]
fn a_newer_environment_record_replaces_the_pointers_and_an_older_one_does_not() {
    let (_dir, ours) = store();
    ours.write(|w| {
        w.set_env("w", "prod", "a", &entry(1))?;
        w.set_env("w", "prod", "gone", &entry(2))?;
        w.set_env_version("w", "prod", &version(3, "b"))
    })
    .unwrap();
    let (_dir2, theirs) = store();
    theirs
        .write(|w| {
            w.set_env("w", "prod", "a", &entry(5))?;
            w.set_env_version("w", "prod", &version(4, "a"))
        })
        .unwrap();
    let record = theirs.env_record("w", "prod").unwrap();
    assert!(ours.write(|w| w.adopt_environment(&record)).unwrap());
    let adopted = ours.environment("w", "prod").unwrap();
    assert_eq!(adopted.len(), 1, "the pointer the record lacks is gone");
    assert_eq!(adopted["a"], entry(5));
    assert_eq!(ours.env_version("w", "prod").unwrap(), version(4, "a"));
    // The same record again, or an older one, changes nothing.
    assert!(!ours.write(|w| w.adopt_environment(&record)).unwrap());
    let older = EnvRecord {
        version: version(4, "0"),
        entries: vec![],
        ..record
    };
    assert!(!ours.write(|w| w.adopt_environment(&older)).unwrap());
    assert_eq!(ours.environment("w", "prod").unwrap().len(), 1);
    // Every environment is listed with its version, versioned or not.
    ours.write(|w| w.set_env("w", "dev", "a", &entry(1)))
        .unwrap();
    let listed = ours.env_versions().unwrap();
    assert_eq!(
        listed,
        vec![
            ("w".into(), "dev".into(), EnvVersion::default()),
            ("w".into(), "prod".into(), version(4, "a")),
        ]
    );
}
