//! Where a result came from: code version and time.

use std::process::Command;

/// `git rev-parse --short=12 HEAD`, with `-dirty` when code or experiment files differ from
/// it (result files are ignored for this check), or `unknown` outside a checkout.
pub fn git_commit() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let Some(head) = run(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let clean = Command::new("git")
        .args([
            "diff",
            "--quiet",
            "HEAD",
            "--",
            "src",
            "Cargo.toml",
            "Cargo.lock",
            "experiments",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if clean { head } else { format!("{head}-dirty") }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
