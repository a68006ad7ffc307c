//! Embeds the commit the binary is built from (`MK_GIT_COMMIT`): result rows name the code
//! that produced them, not whatever the checkout holds when the binary runs.

use std::process::Command;

fn main() {
    for path in [".git/HEAD", ".git/index", "src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let commit = match head {
        None => "unknown".to_string(),
        Some(head) => {
            let clean = Command::new("git")
                .args([
                    "diff",
                    "--quiet",
                    "HEAD",
                    "--",
                    "src",
                    "Cargo.toml",
                    "Cargo.lock",
                ])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if clean { head } else { format!("{head}-dirty") }
        }
    };
    println!("cargo:rustc-env=MK_GIT_COMMIT={commit}");
}
