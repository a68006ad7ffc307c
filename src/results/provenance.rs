//! Where a result came from: code version and time.

/// The commit this binary was built from (`git rev-parse --short=12 HEAD` at build time), with
/// `-dirty` when the sources differed from it, or `unknown` when built outside a checkout.
pub fn git_commit() -> String {
    env!("MK_GIT_COMMIT").to_string()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
