//! Running the built `orbital` binary from the benchmark examples (a folder
//! without `main.rs`, so cargo does not take it for an example itself).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The `orbital` binary beside this example's target folder.
pub fn orbital_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("orbital")
}

/// Runs `orbital <args> --project dir`, which must succeed; the wall time.
pub fn timed_orbital(dir: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let output = Command::new(orbital_binary())
        .args(args)
        .arg("--project")
        .arg(dir)
        .output()
        .expect("run orbital");
    assert!(
        output.status.success(),
        "orbital {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}
