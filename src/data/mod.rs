//! Datasets: where they are found, how they are decoded, and how batches are made.

pub mod dataset;
pub mod hub;
pub mod mnist;

use std::path::PathBuf;

pub use dataset::{DataSplits, ImageDataset};

use crate::error::{Error, Result};

/// Names of the datasets this build can load.
pub const DATASETS: [&str; 1] = ["mnist"];

/// Directories searched for datasets, in order: the explicit `--data-dir`, `$MK_DATA_DIR`,
/// then the project's shared data folder (`../shared/data`) and `./data` when they exist.
pub fn search_dirs(explicit: Option<PathBuf>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = explicit.into_iter().collect();
    if let Some(env) = std::env::var_os("MK_DATA_DIR") {
        dirs.push(env.into());
    }
    for fallback in ["../shared/data", "data"] {
        let dir = PathBuf::from(fallback);
        if dir.is_dir() {
            dirs.push(dir);
        }
    }
    dirs
}

/// Loads the dataset `name` from the first directory holding it, else from the Hub.
pub fn load(name: &str, dirs: &[PathBuf]) -> Result<DataSplits> {
    match name {
        "mnist" => mnist::load(dirs, &hub::HubAccess::from_env()),
        other => Err(Error::Usage(format!(
            "unknown dataset `{other}`: expected one of {}",
            DATASETS.join(", ")
        ))),
    }
}

/// The shared real-data folder beside the project, when present (tests use it).
pub fn shared_data_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    dir.is_dir().then_some(dir)
}
