//! Datasets: where they are found, how they are decoded, and how batches are made.

pub mod dataset;
pub mod glue;
pub mod hub;
pub mod mnist;
pub mod text;
pub mod tokenize;

use std::path::PathBuf;

pub use dataset::{DataSplits, Examples, ImageDataset, Inputs, Metric};
pub use text::TextDataset;

use crate::error::{Error, Result};
use dataset::Fingerprint;
use hub::HubAccess;

/// Names of the datasets this build can load: image datasets, then GLUE text tasks.
pub const DATASETS: [&str; 4] = ["mnist", "cola", "sst2", "mrpc"];

/// Whether `name` is a text dataset (needs a tokenizer and a Transformer).
pub fn is_text(name: &str) -> bool {
    glue::Task::from_name(name).is_some()
}

/// How text is turned into ids.
#[derive(Debug, Clone, PartialEq)]
pub struct TextOptions {
    /// `tokenizer.json` / `vocab.txt` path, folder name under a data dir, or Hub model name.
    pub tokenizer: String,
    pub max_len: usize,
}

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
/// Text datasets need `text` (tokenizer and maximum length).
pub fn load(name: &str, dirs: &[PathBuf], text: Option<&TextOptions>) -> Result<DataSplits> {
    let hub = HubAccess::from_env();
    if name == "mnist" {
        return mnist::load(dirs, &hub);
    }
    let Some(task) = glue::Task::from_name(name) else {
        return Err(Error::Usage(format!(
            "unknown dataset `{name}`: expected one of {}",
            DATASETS.join(", ")
        )));
    };
    let options = text.ok_or_else(|| {
        Error::Usage(format!(
            "dataset `{name}` is text: it needs a transformer model"
        ))
    })?;
    let tokenizer = tokenize::load(&options.tokenizer, dirs, &hub)?;
    let (train, dev) = glue::read(task, dirs, &hub)?;
    let mut fingerprint = Fingerprint::default();
    let train = glue::tokenize(&train, &tokenizer, options.max_len, &mut fingerprint)?;
    let dev = glue::tokenize(&dev, &tokenizer, options.max_len, &mut fingerprint)?;
    Ok(DataSplits {
        name: name.to_string(),
        train: Examples::Text(train),
        test: Examples::Text(dev),
        metric: match task {
            glue::Task::Cola => Metric::Mcc,
            glue::Task::Sst2 => Metric::Accuracy,
            glue::Task::Mrpc => Metric::F1,
        },
        fingerprint: fingerprint.finish(),
    })
}

/// The shared real-data folder beside the project, when present (tests use it).
pub fn shared_data_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    dir.is_dir().then_some(dir)
}
