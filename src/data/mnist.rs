//! MNIST from the canonical IDX files (gzipped or not) or, failing that, from the Hugging Face
//! Hub (`ylecun/mnist`, parquet with PNG-encoded images).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::dataset::{DataSplits, ImageDataset};
use super::hub;
use crate::error::{Error, Result};

/// Per-pixel normalisation used by the usual MNIST recipes.
const MEAN: f32 = 0.1307;
const STD: f32 = 0.3081;
const SIDE: usize = 28;

const FILES: [(&str, &str); 2] = [
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
];

/// Hub repository and files used when no local copy is found.
pub const HUB_REPO: &str = "ylecun/mnist";
const HUB_FILES: [&str; 2] = [
    "mnist/train-00000-of-00001.parquet",
    "mnist/test-00000-of-00001.parquet",
];

/// Loads MNIST from the first of `dirs` that holds the IDX files (directly or in `mnist/`),
/// else from the Hub (cache first, network if allowed).
pub fn load(dirs: &[PathBuf]) -> Result<DataSplits> {
    for dir in dirs {
        for candidate in [dir.join("mnist"), dir.clone()] {
            if let Some(found) = find_idx(&candidate) {
                return load_idx(&found);
            }
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let hint = format!(
        "MNIST IDX files (train-images-idx3-ubyte.gz, ...) not found in {}",
        if searched.is_empty() {
            "any data directory".to_string()
        } else {
            searched.join(", ")
        }
    );
    let train = hub::dataset_file(HUB_REPO, HUB_FILES[0], &hint)?;
    let test = hub::dataset_file(HUB_REPO, HUB_FILES[1], &hint)?;
    Ok(DataSplits {
        name: "mnist".into(),
        train: load_hub_parquet(&train)?,
        test: load_hub_parquet(&test)?,
    })
}

/// The directory holds the training images file (gzipped or not).
fn find_idx(dir: &Path) -> Option<PathBuf> {
    let stem = FILES[0].0;
    [format!("{stem}.gz"), stem.to_string()]
        .iter()
        .any(|f| dir.join(f).is_file())
        .then(|| dir.to_path_buf())
}

/// Loads both splits from a directory of IDX files.
pub fn load_idx(dir: &Path) -> Result<DataSplits> {
    let split = |(images, labels): (&str, &str)| -> Result<ImageDataset> {
        let (images_path, image_bytes) = read_maybe_gz(dir, images)?;
        let (labels_path, label_bytes) = read_maybe_gz(dir, labels)?;
        let pixels = parse_idx_images(&images_path, &image_bytes)?;
        let labels = parse_idx_labels(&labels_path, &label_bytes)?;
        if pixels.len() != labels.len() * SIDE * SIDE {
            return Err(Error::data(
                &labels_path,
                format!(
                    "has {} labels but {} has {} images",
                    labels.len(),
                    images_path.display(),
                    pixels.len() / (SIDE * SIDE)
                ),
            ));
        }
        Ok(dataset(pixels, labels))
    };
    Ok(DataSplits {
        name: "mnist".into(),
        train: split(FILES[0])?,
        test: split(FILES[1])?,
    })
}

fn dataset(pixels: Vec<f32>, labels: Vec<u8>) -> ImageDataset {
    ImageDataset {
        pixels,
        labels,
        image_shape: [1, SIDE, SIDE],
        num_classes: 10,
    }
}

fn normalise(byte: u8) -> f32 {
    (byte as f32 / 255.0 - MEAN) / STD
}

/// Reads `stem.gz` (decompressing it) or `stem`, returning the path actually read.
fn read_maybe_gz(dir: &Path, stem: &str) -> Result<(PathBuf, Vec<u8>)> {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.is_file() {
        let file = fs::File::open(&gz).map_err(|e| Error::io(&gz, e))?;
        let mut bytes = Vec::new();
        GzDecoder::new(file)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::data(&gz, format!("corrupt or truncated gzip stream: {e}")))?;
        return Ok((gz, bytes));
    }
    let plain = dir.join(stem);
    let bytes = fs::read(&plain).map_err(|e| Error::io(&plain, e))?;
    Ok((plain, bytes))
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Parses an IDX3 image file (magic 0x00000803) of 28x28 images into normalised pixels.
pub fn parse_idx_images(path: &Path, bytes: &[u8]) -> Result<Vec<f32>> {
    if bytes.len() < 16 {
        return Err(Error::data(
            path,
            format!("too short for an IDX3 header ({} bytes)", bytes.len()),
        ));
    }
    let magic = be_u32(bytes, 0);
    if magic != 0x0803 {
        return Err(Error::data(
            path,
            format!("wrong magic number {magic:#010x}: expected 0x00000803 (IDX3 images)"),
        ));
    }
    let (n, rows, cols) = (
        be_u32(bytes, 4) as usize,
        be_u32(bytes, 8) as usize,
        be_u32(bytes, 12) as usize,
    );
    if rows != SIDE || cols != SIDE {
        return Err(Error::data(
            path,
            format!("images are {rows}x{cols}: expected 28x28"),
        ));
    }
    let expected = 16 + n * rows * cols;
    if bytes.len() != expected {
        return Err(Error::data(
            path,
            format!(
                "header promises {n} images ({expected} bytes) but the file has {} bytes (truncated?)",
                bytes.len()
            ),
        ));
    }
    Ok(bytes[16..].iter().map(|&b| normalise(b)).collect())
}

/// Parses an IDX1 label file (magic 0x00000801) of digits 0..=9.
pub fn parse_idx_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    if bytes.len() < 8 {
        return Err(Error::data(
            path,
            format!("too short for an IDX1 header ({} bytes)", bytes.len()),
        ));
    }
    let magic = be_u32(bytes, 0);
    if magic != 0x0801 {
        return Err(Error::data(
            path,
            format!("wrong magic number {magic:#010x}: expected 0x00000801 (IDX1 labels)"),
        ));
    }
    let n = be_u32(bytes, 4) as usize;
    if bytes.len() != 8 + n {
        return Err(Error::data(
            path,
            format!(
                "header promises {n} labels but the file has {} label bytes (truncated?)",
                bytes.len().saturating_sub(8)
            ),
        ));
    }
    let labels = bytes[8..].to_vec();
    if let Some(bad) = labels.iter().find(|&&l| l > 9) {
        return Err(Error::data(path, format!("label {bad} out of range 0..=9")));
    }
    Ok(labels)
}

/// Loads a `ylecun/mnist` parquet split (`image.bytes` PNG, `label`).
fn load_hub_parquet(path: &Path) -> Result<ImageDataset> {
    let (images, labels) = hub::read_image_parquet(path)?;
    let mut pixels = Vec::with_capacity(images.len() * SIDE * SIDE);
    for (i, png) in images.iter().enumerate() {
        let gray =
            hub::decode_png_gray(png).map_err(|e| Error::data(path, format!("row {i}: {e}")))?;
        if gray.len() != SIDE * SIDE {
            return Err(Error::data(
                path,
                format!("row {i}: image has {} pixels, expected 784", gray.len()),
            ));
        }
        pixels.extend(gray.into_iter().map(normalise));
    }
    let labels = labels
        .into_iter()
        .map(|l| u8::try_from(l).ok().filter(|l| *l <= 9))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| Error::data(path, "label column has values outside 0..=9"))?;
    Ok(dataset(pixels, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shared_data_dir;

    #[test]
    fn loads_the_real_mnist_files() {
        let Some(dir) = shared_data_dir() else { return };
        let data = load(&[dir]).unwrap();
        assert_eq!(data.train.len(), 60_000);
        assert_eq!(data.test.len(), 10_000);
        assert_eq!(data.train.pixels.len(), 60_000 * 784);
        // The canonical first training label is 5, first test label 7.
        assert_eq!(data.train.labels[0], 5);
        assert_eq!(data.test.labels[0], 7);
        let counts = (0..10).map(|c| data.train.labels.iter().filter(|&&l| l == c).count());
        assert!(counts.into_iter().all(|n| (5_000..7_000).contains(&n)));
    }

    #[test]
    fn corrupt_headers_are_named_errors() {
        let path = Path::new("bad-images");
        let mut bytes = vec![0u8; 16 + 784];
        bytes[..4].copy_from_slice(&0x0801u32.to_be_bytes());
        let err = parse_idx_images(path, &bytes).unwrap_err().to_string();
        assert!(err.contains("bad-images") && err.contains("magic"), "{err}");

        bytes[..4].copy_from_slice(&0x0803u32.to_be_bytes());
        bytes[4..8].copy_from_slice(&2u32.to_be_bytes());
        bytes[8..12].copy_from_slice(&28u32.to_be_bytes());
        bytes[12..16].copy_from_slice(&28u32.to_be_bytes());
        let err = parse_idx_images(path, &bytes).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        bytes[4..8].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(parse_idx_images(path, &bytes).unwrap().len(), 784);
    }

    #[test]
    fn truncated_gzip_is_reported_with_its_path() {
        let Some(dir) = shared_data_dir() else { return };
        let tmp = tempfile::tempdir().unwrap();
        for (images, labels) in FILES {
            for stem in [images, labels] {
                let src = dir.join("mnist").join(format!("{stem}.gz"));
                let bytes = fs::read(&src).unwrap();
                let keep = if stem == "t10k-labels-idx1-ubyte" {
                    bytes.len() / 2
                } else {
                    bytes.len()
                };
                fs::write(tmp.path().join(format!("{stem}.gz")), &bytes[..keep]).unwrap();
            }
        }
        let err = load(&[tmp.path().to_path_buf()]).unwrap_err().to_string();
        assert!(err.contains("t10k-labels-idx1-ubyte.gz"), "{err}");
    }
}
