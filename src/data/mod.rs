//! Datasets: where they are found, how they are decoded, and how batches are made.

pub mod cache;
pub mod cifar;
pub mod dataset;
pub mod files;
pub mod glue;
pub mod hub;
pub mod imagenet;
pub mod mnist;
pub mod rows;
pub mod text;
pub mod tokenize;
pub mod vision;

use std::path::PathBuf;

pub use dataset::{
    Augmentation, DataSplits, Examples, ImageDataset, Inputs, Label, Metric, Normalization,
};
pub use text::TextDataset;

use crate::error::{Error, Result};
use dataset::Fingerprint;
use hub::HubAccess;

/// Names of the datasets this build can load: image datasets, then GLUE text tasks.
pub const DATASETS: [&str; 7] = [
    "mnist",
    "cifar10",
    "tiny_imagenet",
    "imagenet",
    "cola",
    "sst2",
    "mrpc",
];

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

/// How a dataset is loaded, beyond its name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadOptions {
    /// Tokenisation, for text datasets (required there).
    pub text: Option<TextOptions>,
    /// Side in pixels images are resized to (ImageNet; default: the dataset's usual size).
    pub image_size: Option<usize>,
    /// Keep only the first `classes` classes (labels `0..classes`), for small profiles.
    pub classes: Option<usize>,
    /// Folder of decoded-image caches (default: [`cache::default_dir`]).
    pub cache_dir: Option<PathBuf>,
}

/// Loads the dataset `name` from the first directory holding it, else from the Hub.
pub fn load(name: &str, dirs: &[PathBuf], options: &LoadOptions) -> Result<DataSplits> {
    let splits = load_all_classes(name, dirs, options)?;
    let Some(classes) = options.classes else {
        return Ok(splits);
    };
    match (&splits.train, &splits.test) {
        (Examples::Images(train), Examples::Images(test)) => {
            if classes == 0 || classes > train.num_classes {
                return Err(Error::Usage(format!(
                    "classes = {classes} for `{name}`: expected 1..={}",
                    train.num_classes
                )));
            }
            let mut subset = vision::splits(
                name,
                train.first_classes(classes),
                test.first_classes(classes),
            );
            subset.metric = splits.metric;
            Ok(subset)
        }
        _ => Err(Error::Usage(format!(
            "`classes` applies to image datasets, not `{name}`"
        ))),
    }
}

fn load_all_classes(name: &str, dirs: &[PathBuf], options: &LoadOptions) -> Result<DataSplits> {
    let hub = HubAccess::from_env();
    let cache_dir = options.cache_dir.clone().unwrap_or_else(cache::default_dir);
    if options.image_size.is_some() && !name.contains("imagenet") {
        return Err(Error::Usage(format!(
            "`image_size` applies to the ImageNet datasets, not `{name}` (its images have one size)"
        )));
    }
    match name {
        "mnist" => return mnist::load(dirs, &hub),
        "cifar10" => return cifar::load(dirs, &hub, &cache_dir),
        "tiny_imagenet" => {
            return imagenet::load(
                imagenet::Variant::Tiny,
                dirs,
                options.image_size,
                &cache_dir,
            );
        }
        "imagenet" => {
            return imagenet::load(
                imagenet::Variant::Full,
                dirs,
                options.image_size,
                &cache_dir,
            );
        }
        _ => {}
    }
    let Some(task) = glue::Task::from_name(name) else {
        return Err(Error::Usage(format!(
            "unknown dataset `{name}`: expected one of {}",
            DATASETS.join(", ")
        )));
    };
    let options = options.text.as_ref().ok_or_else(|| {
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

/// "`what` not found in <the searched folders>", for the error when local data is missing.
pub fn not_found_in(what: &str, dirs: &[PathBuf]) -> String {
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!(
        "{what} not found in {}",
        if searched.is_empty() {
            "any data directory".to_string()
        } else {
            searched.join(", ")
        }
    )
}

/// The small real datasets committed under `tests/fixtures/data`, a data directory in the usual
/// layout cut from the real files by `scripts/make_fixtures.py`: the ordinary tests read them,
/// so a fresh clone tests offline and every machine gets the same numbers.
#[doc(hidden)]
pub fn test_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

/// For a test that needs a full dataset: the first folder of the binary's own lookup
/// ([`search_dirs`] without `--data-dir`; the fixtures excepted) holding `file`, a path inside
/// a data directory such as `mnist/train-images-idx3-ubyte.gz`. Otherwise the test is skipped:
/// this prints `skipped: <test> needs the full <dataset> (...)` and returns `None`. The Hub is
/// not asked, so tests stay offline.
#[doc(hidden)]
pub fn full_data(test: &str, dataset: &str, file: &str) -> Option<PathBuf> {
    let fixtures = test_data().canonicalize().ok();
    let dirs = search_dirs(None);
    let found = dirs.iter().find(|dir| {
        dir.join(file).is_file() && (fixtures.is_none() || dir.canonicalize().ok() != fixtures)
    });
    if let Some(dir) = found {
        return Some(dir.canonicalize().unwrap_or_else(|_| dir.clone()));
    }
    let env = std::env::var_os("MK_DATA_DIR")
        .map_or("unset".to_string(), |d| d.to_string_lossy().into_owned());
    // Written past the test harness's capture, so the skip shows in a plain `cargo test`.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "skipped: {test} needs the full {dataset} ({file} not found in $MK_DATA_DIR ({env}), \
         ../shared/data, ./data)"
    );
    None
}
