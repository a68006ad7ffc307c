//! Shared machinery of the image datasets: build-once caches from file trees, splits.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::cache::{self, CacheHeader, Split};
use super::dataset::{
    DataSplits, Examples, Fingerprint, ImageDataset, Label, Metric, Normalization,
};
use super::files::{FileTree, Sizing, decode_rgb};
use crate::error::Result;

/// Files of one split: tree index and label of each image, in a fixed order.
pub type SplitFiles = Vec<(usize, Label)>;

/// Images decoded per parallel batch while a cache is built (bounds the memory in flight).
const DECODE_CHUNK: usize = 2048;

/// The cached dataset at `path`, built first by `build` when absent. Says on stderr when it
/// decodes, and how long that took: the first run on a machine pays it once.
pub fn cached(
    path: &Path,
    normalization: &Normalization,
    build: impl FnOnce(&Path) -> Result<CacheHeader>,
) -> Result<(CacheHeader, ImageDataset, ImageDataset)> {
    if let Some(found) = cache::read(path, normalization)? {
        return Ok(found);
    }
    eprintln!("decoding into the dataset cache {} (once)", path.display());
    let started = Instant::now();
    build(path)?;
    eprintln!(
        "built {} in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(cache::read(path, normalization)?.expect("just written"))
}

/// Decodes the images of `train` and `test` from `tree` in parallel into the cache at `path`.
pub fn build_from_tree(
    path: &Path,
    dataset: &str,
    tree: &FileTree,
    train: &SplitFiles,
    test: &SplitFiles,
    classes: Vec<String>,
    sizing: Sizing,
) -> Result<CacheHeader> {
    let side = sizing.side();
    let header = CacheHeader {
        dataset: dataset.to_string(),
        image_shape: [3, side, side],
        classes,
        train: train.len(),
        test: test.len(),
        fingerprint: String::new(),
        source: tree.location().display().to_string(),
    };
    let labels = |files: &SplitFiles| files.iter().map(|&(_, l)| l).collect::<Vec<Label>>();
    cache::write(
        path,
        header,
        &labels(train),
        &labels(test),
        |split, sink| {
            let files = match split {
                Split::Train => train,
                Split::Test => test,
            };
            let mut buffer = Vec::new();
            for chunk in files.chunks(DECODE_CHUNK) {
                let indices: Vec<usize> = chunk.iter().map(|&(i, _)| i).collect();
                buffer.clear();
                decode_rgb(tree, &indices, sizing, &mut buffer)?;
                sink(&buffer)?;
            }
            Ok(())
        },
    )
}

/// Train and test splits of an image dataset, the content fingerprint computed from them.
pub fn splits(name: &str, train: ImageDataset, test: ImageDataset) -> DataSplits {
    let mut fingerprint = Fingerprint::default();
    train.fingerprint_into(&mut fingerprint);
    test.fingerprint_into(&mut fingerprint);
    DataSplits {
        name: name.to_string(),
        train: Examples::Images(train),
        test: Examples::Images(test),
        metric: Metric::Accuracy,
        fingerprint: fingerprint.finish(),
    }
}

/// Splits from a cache read, its stored fingerprint reused (no second pass over the pixels).
pub fn splits_from_cache(
    name: &str,
    (header, train, test): (CacheHeader, ImageDataset, ImageDataset),
) -> DataSplits {
    DataSplits {
        name: name.to_string(),
        train: Examples::Images(train),
        test: Examples::Images(test),
        metric: Metric::Accuracy,
        fingerprint: header.fingerprint,
    }
}

/// `dir`, then `dir/<sub>` for each of `subs`, that exist.
pub fn candidates(dirs: &[PathBuf], subs: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        for sub in subs {
            let path = if sub.is_empty() {
                dir.clone()
            } else {
                dir.join(sub)
            };
            if path.exists() {
                out.push(path);
            }
        }
    }
    out
}
