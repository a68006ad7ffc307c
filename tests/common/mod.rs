//! Helpers shared by the integration tests that drive the `reproduce` binary.
// Each test binary uses a subset of these.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_reproduce");

/// Runs `reproduce ARGS --results-dir RESULTS` from the crate's root.
pub fn reproduce(args: &[&str], results: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--results-dir")
        .arg(results)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

/// Standard output and standard error as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Runs `reproduce ARGS EXTRA` from the crate's root (for commands that take their folders
/// under other flag names than `--results-dir`).
pub fn run_with(args: &[&str], extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}
