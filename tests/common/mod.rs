//! Helpers shared by the integration tests that drive the `reproduce` binary.
// Each test binary uses a subset of these.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_reproduce");

/// The binary, run from the crate's root on the committed fixtures (`tests/fixtures/data`) and
/// offline: the same data on every machine, and nothing is downloaded.
pub fn command() -> Command {
    on_data(&majority_kernels::data::test_data())
}

/// The binary on the datasets in `dir` (for the tests that need a full dataset), offline.
pub fn on_data(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MK_DATA_DIR", dir)
        .env("HF_HUB_OFFLINE", "1");
    command
}

/// Runs `reproduce ARGS --results-dir RESULTS` from the crate's root, on the fixtures.
pub fn reproduce(args: &[&str], results: &Path) -> Output {
    command()
        .args(args)
        .arg("--results-dir")
        .arg(results)
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

/// Runs `reproduce ARGS EXTRA` from the crate's root on the fixtures (for commands that take
/// their folders under other flag names than `--results-dir`).
pub fn run_with(args: &[&str], extra: &[&str]) -> Output {
    command()
        .args(args)
        .args(extra)
        .output()
        .expect("the binary runs")
}
