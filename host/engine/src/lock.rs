//! Advisory file locks between orbital processes on one project.
//!
//! - `<state>/locks/<target>--<env>.lock`, exclusive: one run (or promote)
//!   per environment at a time across processes; a second fails at once,
//!   naming the holder. (Within one process, runs queue before this lock:
//!   [`crate::Engine::queue`].)
//! - `<state>/locks/gc.lock`: runs hold it shared, `gc` exclusive, so `gc`
//!   never drops a relation a run is about to point at.
//!
//! The OS releases a lock when its process dies, even by kill -9.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::EngineError;

pub(crate) struct Lock {
    _file: File,
}

fn open(dir: &Path, name: &str) -> Result<File, EngineError> {
    let locks = dir.join("locks");
    std::fs::create_dir_all(&locks).map_err(EngineError::write(&locks))?;
    let path = locks.join(name);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(EngineError::write(&path))
}

/// How long a lock this process released may still look held: a child
/// forked at that moment shares the open file until it execs.
const FORK_WINDOW: Duration = Duration::from_secs(5);

/// Takes the environment's lock or says who holds it.
///
/// Callers hold this process's queue turn for the environment, so a holder
/// with this process's pid is a forked child's inherited copy of a lock
/// already released, gone at its exec: wait for it instead of failing.
pub(crate) fn environment(dir: &Path, target: &str, env: &str) -> Result<Lock, EngineError> {
    let mut file = open(dir, &format!("{target}--{env}.lock"))?;
    let deadline = Instant::now() + FORK_WINDOW;
    loop {
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the next process's message.
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = write!(file, "{}", std::process::id());
                return Ok(Lock { _file: file });
            }
            Err(TryLockError::WouldBlock) => {
                let holder = holder(&mut file);
                if holder == std::process::id().to_string() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                return Err(busy(target, env, &holder));
            }
            Err(TryLockError::Error(source)) => {
                return Err(EngineError::write(&dir.join("locks"))(source));
            }
        }
    }
}

fn holder(file: &mut File) -> String {
    let mut holder = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut holder);
    holder.trim().to_string()
}

fn busy(target: &str, env: &str, holder: &str) -> EngineError {
    let who = if holder.is_empty() {
        "another orbital process".to_string()
    } else {
        format!("another orbital process (pid {holder})")
    };
    EngineError::Busy(format!(
        "environment `{env}` of target `{target}` is in use by {who}; try again when it finishes"
    ))
}

/// Runs share the gc lock; `exclusive` is for gc.
pub(crate) fn gc(dir: &Path, exclusive: bool) -> Result<Lock, EngineError> {
    let file = open(dir, "gc.lock")?;
    let taken = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match taken {
        Ok(()) => Ok(Lock { _file: file }),
        Err(TryLockError::WouldBlock) if exclusive => Err(EngineError::Busy(
            "an orbital run is in progress on this project; run gc when it finishes".into(),
        )),
        Err(TryLockError::WouldBlock) => Err(EngineError::Busy(
            "orbital gc is running on this project; try again when it finishes".into(),
        )),
        Err(TryLockError::Error(source)) => Err(EngineError::write(&dir.join("locks"))(source)),
    }
}
