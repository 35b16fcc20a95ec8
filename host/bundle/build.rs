//! Builds every guest crate (first-party plugins and test components) for
//! `wasm32-wasip2` with the `wasm-guest` profile, in its own target folder so
//! the nested cargo never waits on the outer one's lock.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate, file stem) of the plugins embedded in the binary.
const FIRST_PARTY: &[&str] = &[
    "orbital-adapter-sqlite",
    "orbital-adapter-postgres",
    "orbital-adapter-mysql",
    "orbital-adapter-clickhouse",
    "orbital-materialization-view",
    "orbital-materialization-table",
    "orbital-materialization-incremental",
    "orbital-materialization-snapshot",
    "orbital-materialization-sharded",
    "orbital-macros-std",
];
/// Guest crates only the tests use (the example's own plugin among them:
/// tests put it where the example's orbital.toml lists it).
const TEST_COMPONENTS: &[&str] = &[
    "orbital-test-trap",
    "orbital-test-spin",
    "orbital-test-hog",
    "orbital-test-range-tests",
    "orbital-test-wanderer",
    "jaffle-macros",
    "orbital-example-audit-log",
    "orbital-example-mysql-wire",
];
const WASM_TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.join("../..");
    for watched in [
        "sdk",
        "wit",
        "plugins",
        "tests/components",
        "examples/jaffle_shop/plugins/jaffle-macros",
        "examples/plugins",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .unwrap_or(&out_dir)
        .join("wasm-guests");
    build_guests(&workspace, &target_dir);

    let built = target_dir.join(WASM_TARGET).join("wasm-guest");
    let mut code = String::from(
        "/// The first-party plugins: (name, component bytes).\npub const FIRST_PARTY: &[(&str, &[u8])] = &[\n",
    );
    for krate in FIRST_PARTY {
        let file = built.join(format!("{}.wasm", krate.replace('-', "_")));
        let name = krate.trim_start_matches("orbital-");
        writeln!(
            code,
            "    ({name:?}, include_bytes!({:?})),",
            file.display().to_string()
        )
        .ok();
    }
    code.push_str("];\n");
    writeln!(
        code,
        "/// Where the test components are built.\npub const GUEST_DIR: &str = {:?};",
        built.display().to_string()
    )
    .ok();
    std::fs::write(out_dir.join("bundled.rs"), code).expect("OUT_DIR is writable");
}

fn build_guests(workspace: &Path, target_dir: &Path) {
    // Guest crates are plain libraries, so native builds (tests, clippy) of the
    // workspace link; only here are they asked for a cdylib, the component.
    for krate in FIRST_PARTY.iter().chain(TEST_COMPONENTS) {
        let mut command = cargo(workspace);
        command
            .args([
                "rustc",
                "--lib",
                "--crate-type",
                "cdylib",
                "--profile",
                "wasm-guest",
                "--target",
                WASM_TARGET,
            ])
            .args(["-p", krate, "--target-dir"])
            .arg(target_dir);
        let status = command
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build the plugin components: {e}"));
        if !status.success() {
            panic!(
                "building the plugin component {krate} for {WASM_TARGET} failed (see above). \
                 If the target is missing: rustup target add {WASM_TARGET}"
            );
        }
    }
}

/// A cargo command without the outer build's settings (clippy's wrapper,
/// its flags, its target); the jobserver and network settings are shared.
fn cargo(workspace: &Path) -> Command {
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace);
    for (key, _) in env::vars() {
        let keep = key == "CARGO_HOME"
            || key == "CARGO_MAKEFLAGS"
            || key.starts_with("CARGO_NET_")
            || key.starts_with("CARGO_HTTP_")
            || key.starts_with("CARGO_REGISTRIES_");
        if !keep
            && (key.starts_with("CARGO_")
                || key.starts_with("RUSTC")
                || key.starts_with("RUSTDOC")
                || key == "RUSTFLAGS")
        {
            command.env_remove(key);
        }
    }
    command
}
