//! CIFAR-10 from, in order of preference: the canonical binary release
//! (`cifar-10-batches-bin/`), class-folder images (`{train,test}/<class>/*.jpg|png`, extracted
//! or as a `.tar.gz`, e.g. `../shared/data/cifar10/cifar10-jpg.tar.gz`), or the Hugging Face
//! Hub (`uoft-cs/cifar10` parquet). Decoded images go to the project's cache once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::cache::{self, CacheHeader, Split};
use super::dataset::{DataSplits, ImageDataset, Label, Normalization};
use super::files::{FileTree, Sizing, decode_one, is_image};
use super::hub::{self, HubAccess};
use super::vision::{self, SplitFiles};
use crate::error::{Error, Result};

pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
const SIDE: usize = 32;
const IMAGE_BYTES: usize = 3 * SIDE * SIDE;
/// The binary release's files.
const BINARY_TRAIN: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const BINARY_TEST: &str = "test_batch.bin";
pub const HUB_REPO: &str = "uoft-cs/cifar10";
const HUB_FILES: [&str; 2] = [
    "plain_text/train-00000-of-00001.parquet",
    "plain_text/test-00000-of-00001.parquet",
];
/// Archives looked for in a data directory (and its `cifar10/` folder).
const ARCHIVES: [&str; 2] = ["cifar10-jpg.tar.gz", "cifar10.tar.gz"];

/// The usual per-channel statistics of the CIFAR-10 training set.
pub fn normalization() -> Normalization {
    Normalization {
        mean: vec![0.4914, 0.4822, 0.4465],
        std: vec![0.2470, 0.2435, 0.2616],
    }
}

/// Loads CIFAR-10 from the first source found in `dirs`, else the Hub.
pub fn load(dirs: &[PathBuf], hub: &HubAccess, cache_dir: &Path) -> Result<DataSplits> {
    for root in vision::candidates(dirs, &["cifar10", ""]) {
        let binary = root.join("cifar-10-batches-bin");
        if binary.join(BINARY_TEST).is_file() {
            return load_binary(&binary);
        }
        if root.join(BINARY_TEST).is_file() {
            return load_binary(&root);
        }
        if root.join("train").is_dir() && root.join("test").is_dir() {
            return load_tree(cache_dir, &root, FileTree::directory);
        }
        for archive in ARCHIVES {
            let path = root.join(archive);
            if path.is_file() {
                return load_tree(cache_dir, &path, FileTree::archive);
            }
        }
    }
    let hint = super::not_found_in(
        &format!(
            "CIFAR-10 (cifar-10-batches-bin/, {{train,test}}/<class>/ image folders, or {})",
            ARCHIVES.join(" / ")
        ),
        dirs,
    );
    let train = hub::dataset_file(hub, HUB_REPO, HUB_FILES[0], &hint)?;
    let test = hub::dataset_file(hub, HUB_REPO, HUB_FILES[1], &hint)?;
    load_hub(cache_dir, &train, &test)
}

/// The canonical binary release: records of one label byte and 3072 channel-major pixels.
pub fn load_binary(dir: &Path) -> Result<DataSplits> {
    let read = |files: &[&str]| -> Result<ImageDataset> {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for name in files {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            if bytes.len() % (IMAGE_BYTES + 1) != 0 {
                return Err(Error::data(
                    &path,
                    format!(
                        "{} bytes is not a whole number of 3073-byte records (truncated?)",
                        bytes.len()
                    ),
                ));
            }
            for (i, record) in bytes.chunks_exact(IMAGE_BYTES + 1).enumerate() {
                if record[0] > 9 {
                    return Err(Error::data(
                        &path,
                        format!("record {i}: label {} out of range 0..=9", record[0]),
                    ));
                }
                labels.push(record[0] as Label);
                pixels.extend_from_slice(&record[1..]);
            }
        }
        Ok(dataset(pixels, labels))
    };
    let train = read(&BINARY_TRAIN)?;
    let test = read(&[BINARY_TEST])?;
    Ok(vision::splits("cifar10", train, test))
}

fn dataset(pixels: Vec<u8>, labels: Vec<Label>) -> ImageDataset {
    ImageDataset {
        pixels: pixels.into(),
        labels,
        image_shape: [3, SIDE, SIDE],
        num_classes: CLASSES.len(),
        normalization: normalization(),
    }
}

/// Class-folder images (a folder or a `.tar.gz`), through the cache.
fn load_tree(
    cache_dir: &Path,
    source: &Path,
    open: fn(&Path) -> Result<FileTree>,
) -> Result<DataSplits> {
    let path = cache::path_for(cache_dir, "cifar10", source, "32");
    let found = vision::cached(&path, &normalization(), |path| {
        let tree = open(source)?;
        let (train, test, classes) = class_folders(&tree)?;
        vision::build_from_tree(
            path,
            "cifar10",
            &tree,
            &train,
            &test,
            classes,
            Sizing::Exact(SIDE),
        )
    })?;
    Ok(vision::splits_from_cache("cifar10", found))
}

/// Splits a tree laid out as `.../{train,test}/<class>/<image>`; classes are the train
/// folders, sorted (for CIFAR-10 that is the canonical label order).
pub fn class_folders(tree: &FileTree) -> Result<(SplitFiles, SplitFiles, Vec<String>)> {
    let mut found: Vec<(Split, String, usize)> = Vec::new();
    for index in 0..tree.len() {
        let parts: Vec<&str> = tree.name(index).split('/').collect();
        if parts.len() < 3 || !is_image(parts[parts.len() - 1]) {
            continue;
        }
        let split = match parts[parts.len() - 3] {
            "train" => Split::Train,
            "test" => Split::Test,
            _ => continue,
        };
        found.push((split, parts[parts.len() - 2].to_string(), index));
    }
    let classes: Vec<String> = found
        .iter()
        .filter(|(s, _, _)| *s == Split::Train)
        .map(|(_, c, _)| c.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if classes.is_empty() {
        return Err(Error::data(
            tree.location(),
            "no images in train/<class>/ folders",
        ));
    }
    let mut train = Vec::new();
    let mut test = Vec::new();
    for (split, class, index) in found {
        let Ok(label) = classes.binary_search(&class) else {
            return Err(Error::data(
                tree.display(index),
                format!("test class `{class}` has no train folder"),
            ));
        };
        match split {
            Split::Train => train.push((index, label as Label)),
            Split::Test => test.push((index, label as Label)),
        }
    }
    if test.is_empty() {
        return Err(Error::data(
            tree.location(),
            "no images in test/<class>/ folders",
        ));
    }
    Ok((train, test, classes))
}

/// The Hub's parquet splits (`img.bytes` PNG, `label`), through the cache.
fn load_hub(cache_dir: &Path, train: &Path, test: &Path) -> Result<DataSplits> {
    let path = cache::path_for(cache_dir, "cifar10", train, "32-hub");
    let found = vision::cached(&path, &normalization(), |path| {
        let (train_images, train_labels) = read_hub(train)?;
        let (test_images, test_labels) = read_hub(test)?;
        let header = CacheHeader {
            dataset: "cifar10".into(),
            image_shape: [3, SIDE, SIDE],
            classes: CLASSES.iter().map(|c| c.to_string()).collect(),
            train: train_labels.len(),
            test: test_labels.len(),
            fingerprint: String::new(),
            source: format!("hub:{HUB_REPO}"),
        };
        cache::write(path, header, &train_labels, &test_labels, |split, sink| {
            let (file, images) = match split {
                Split::Train => (train, &train_images),
                Split::Test => (test, &test_images),
            };
            for (i, bytes) in images.iter().enumerate() {
                let pixels = decode_one(bytes, Sizing::Exact(SIDE))
                    .map_err(|e| Error::data(file, format!("row {i}: {e}")))?;
                sink(&pixels)?;
            }
            Ok(())
        })
    })?;
    Ok(vision::splits_from_cache("cifar10", found))
}

fn read_hub(path: &Path) -> Result<(Vec<Vec<u8>>, Vec<Label>)> {
    let (images, labels) = hub::read_image_parquet(path, "img")?;
    let labels = labels
        .into_iter()
        .map(|l| Label::try_from(l).ok().filter(|l| *l <= 9))
        .collect::<Option<Vec<Label>>>()
        .ok_or_else(|| Error::data(path, "label column has values outside 0..=9"))?;
    Ok((images, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{full_data, test_data};
    use std::time::Instant;

    /// Loads the archive in `dir` twice: it decodes once, then comes from the cache (with the
    /// content's fingerprint, in under a second) with `sizes` images, `per_class` of each class.
    fn decodes_once_then_loads_from_the_cache(
        dir: PathBuf,
        sizes: (usize, usize),
        per_class: usize,
    ) {
        let cache_dir = tempfile::tempdir().unwrap();
        let hub = HubAccess::from_env();
        let started = Instant::now();
        let data = load(std::slice::from_ref(&dir), &hub, cache_dir.path()).unwrap();
        let built = started.elapsed();
        assert_eq!((data.train.len(), data.test.len()), sizes);
        let train = data.train.images().unwrap();
        assert_eq!(train.image_shape, [3, 32, 32]);
        for class in 0..10 {
            assert_eq!(
                train.labels.iter().filter(|&&l| l == class).count(),
                per_class
            );
        }
        let started = Instant::now();
        let again = load(&[dir], &hub, cache_dir.path()).unwrap();
        let reloaded = started.elapsed();
        assert_eq!(again.fingerprint, data.fingerprint);
        assert_eq!(again.train.images().unwrap().pixels, train.pixels);
        // The cache's stored fingerprint is the content's.
        let recomputed = vision::splits(
            "cifar10",
            train.clone(),
            data.test.images().unwrap().clone(),
        );
        assert_eq!(recomputed.fingerprint, data.fingerprint);
        assert!(
            reloaded.as_secs_f64() < 1.0,
            "cache load took {reloaded:?} (build {built:?})"
        );
        eprintln!("CIFAR-10 cache: built in {built:?}, loaded in {reloaded:?}");
    }

    #[test]
    fn the_fixture_archive_decodes_once_then_loads_from_the_cache() {
        // The first 30 training and 20 test JPEGs of each class.
        decodes_once_then_loads_from_the_cache(test_data(), (300, 200), 30);
    }

    #[test]
    fn the_real_archive_decodes_once_then_loads_from_the_cache() {
        let test = "data::cifar::tests::the_real_archive_decodes_once_then_loads_from_the_cache";
        if let Some(dir) = full_data(test, "CIFAR-10", "cifar10/cifar10-jpg.tar.gz") {
            decodes_once_then_loads_from_the_cache(dir, (50_000, 10_000), 5000);
        }
    }

    /// Writes `data` as the binary release.
    fn write_binary(dir: &Path, train: &ImageDataset, test: &ImageDataset) {
        std::fs::create_dir_all(dir).unwrap();
        let record = |d: &ImageDataset, i: usize| {
            let mut r = vec![d.labels[i] as u8];
            r.extend_from_slice(&d.pixels[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]);
            r
        };
        let per = train.len().div_ceil(5);
        for (b, name) in BINARY_TRAIN.iter().enumerate() {
            let bytes: Vec<u8> = (b * per..((b + 1) * per).min(train.len()))
                .flat_map(|i| record(train, i))
                .collect();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        let bytes: Vec<u8> = (0..test.len()).flat_map(|i| record(test, i)).collect();
        std::fs::write(dir.join(BINARY_TEST), bytes).unwrap();
    }

    #[test]
    fn binary_release_and_class_folders_give_the_same_content() {
        let dir = test_data();
        let cache_dir = tempfile::tempdir().unwrap();
        let real = load(&[dir], &HubAccess::from_env(), cache_dir.path()).unwrap();
        let train = real.train.images().unwrap().subset(50, 1);
        let test = real.test.images().unwrap().subset(20, 1);
        let work = tempfile::tempdir().unwrap();

        // Binary release.
        let binary = work.path().join("bin/cifar-10-batches-bin");
        write_binary(&binary, &train, &test);
        let from_binary = load(
            &[work.path().join("bin")],
            &HubAccess::from_env(),
            cache_dir.path(),
        )
        .unwrap();
        assert_eq!(from_binary.train.images().unwrap().pixels, train.pixels);
        assert_eq!(from_binary.test.labels(), test.labels);
        assert_eq!(
            from_binary.fingerprint,
            vision::splits("cifar10", train.clone(), test.clone()).fingerprint
        );

        // Extracted class folders of lossless PNGs: same pixels, same fingerprint.
        let folders = work.path().join("folders/cifar10");
        for (split, data) in [("train", &train), ("test", &test)] {
            for i in 0..data.len() {
                let class = CLASSES[data.labels[i] as usize];
                let folder = folders.join(split).join(class);
                std::fs::create_dir_all(&folder).unwrap();
                let chw = &data.pixels[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES];
                let image = image::RgbImage::from_fn(32, 32, |x, y| {
                    let at = (y * 32 + x) as usize;
                    image::Rgb([chw[at], chw[1024 + at], chw[2048 + at]])
                });
                image.save(folder.join(format!("{i:05}.png"))).unwrap();
            }
        }
        let from_folders = load(
            &[work.path().join("folders")],
            &HubAccess::from_env(),
            cache_dir.path(),
        )
        .unwrap();
        // Folders are read in path order (class, then file name): compare as multisets.
        let mut a: Vec<(Label, Vec<u8>)> = (0..train.len())
            .map(|i| {
                (
                    train.labels[i],
                    train.pixels[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES].to_vec(),
                )
            })
            .collect();
        let folder_train = from_folders.train.images().unwrap();
        let mut b: Vec<(Label, Vec<u8>)> = (0..folder_train.len())
            .map(|i| {
                (
                    folder_train.labels[i],
                    folder_train.pixels[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES].to_vec(),
                )
            })
            .collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);

        // A truncated binary file is named.
        let bad = binary.join(BINARY_TEST);
        let bytes = std::fs::read(&bad).unwrap();
        std::fs::write(&bad, &bytes[..bytes.len() - 7]).unwrap();
        let err = load_binary(&binary).unwrap_err().to_string();
        assert!(
            err.contains("test_batch.bin") && err.contains("3073"),
            "{err}"
        );
    }

    #[test]
    fn falls_back_to_the_hub_parquet_offline() {
        use polars::prelude::*;
        let dir = test_data();
        let cache_dir = tempfile::tempdir().unwrap();
        let real = load(&[dir], &HubAccess::from_env(), cache_dir.path()).unwrap();
        let (train, test) = (
            real.train.images().unwrap().subset(30, 2),
            real.test.images().unwrap().subset(10, 2),
        );
        // The Hub's layout: an `img` struct column of PNG bytes and an integer `label`.
        let hub_dir = tempfile::tempdir().unwrap();
        let snapshot = hub_dir
            .path()
            .join("datasets--uoft-cs--cifar10/snapshots/abc");
        for (data, file) in [(&train, HUB_FILES[0]), (&test, HUB_FILES[1])] {
            let pngs: Vec<Vec<u8>> = (0..data.len())
                .map(|i| {
                    let chw = &data.pixels[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES];
                    let image = image::RgbImage::from_fn(32, 32, |x, y| {
                        let at = (y * 32 + x) as usize;
                        image::Rgb([chw[at], chw[1024 + at], chw[2048 + at]])
                    });
                    let mut out = std::io::Cursor::new(Vec::new());
                    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
                    out.into_inner()
                })
                .collect();
            let bytes = Series::new(
                "bytes".into(),
                pngs.iter().map(|p| p.as_slice()).collect::<Vec<&[u8]>>(),
            );
            let names = Series::new("path".into(), vec![None::<&str>; data.len()]);
            let img = StructChunked::from_series("img".into(), data.len(), [bytes, names].iter())
                .unwrap();
            let labels: Vec<i64> = data.labels.iter().map(|&l| l as i64).collect();
            let mut frame = DataFrame::new(
                data.len(),
                vec![
                    img.into_series().into(),
                    Series::new("label".into(), labels).into(),
                ],
            )
            .unwrap();
            let path = snapshot.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            ParquetWriter::new(std::fs::File::create(&path).unwrap())
                .finish(&mut frame)
                .unwrap();
        }
        let refs = hub_dir.path().join("datasets--uoft-cs--cifar10/refs");
        std::fs::create_dir_all(&refs).unwrap();
        std::fs::write(refs.join("main"), "abc").unwrap();
        let hub = HubAccess {
            cache: hf_hub::Cache::new(hub_dir.path().to_path_buf()),
            offline: true,
        };
        let empty = tempfile::tempdir().unwrap();
        let from_hub = load(&[empty.path().to_path_buf()], &hub, cache_dir.path()).unwrap();
        assert_eq!(from_hub.train.images().unwrap().pixels, train.pixels);
        assert_eq!(from_hub.test.labels(), test.labels);
        assert_eq!(
            from_hub.fingerprint,
            vision::splits("cifar10", train.clone(), test.clone()).fingerprint,
            "same content, same fingerprint, whatever the source"
        );
    }
}
