//! MNIST from the canonical IDX files (gzipped or not) or, failing that, from the Hugging Face
//! Hub (`ylecun/mnist`, parquet with PNG-encoded images).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::dataset::{
    DataSplits, Examples, Fingerprint, ImageDataset, Label, Metric, Normalization, sha256_hex,
};
use super::hub::{self, HubAccess};
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
pub fn load(dirs: &[PathBuf], hub: &HubAccess) -> Result<DataSplits> {
    for dir in dirs {
        for candidate in [dir.join("mnist"), dir.clone()] {
            if let Some(found) = find_idx(&candidate) {
                return load_idx(&found);
            }
        }
    }
    let hint = super::not_found_in("MNIST IDX files (train-images-idx3-ubyte.gz, ...)", dirs);
    let train = hub::dataset_file(hub, HUB_REPO, HUB_FILES[0], &hint)?;
    let test = hub::dataset_file(hub, HUB_REPO, HUB_FILES[1], &hint)?;
    let mut fingerprint = Fingerprint::default();
    let train = load_hub_parquet(&train, &mut fingerprint)?;
    let test = load_hub_parquet(&test, &mut fingerprint)?;
    Ok(splits(train, test, fingerprint))
}

/// The directory holds the training images file (gzipped or not).
fn find_idx(dir: &Path) -> Option<PathBuf> {
    let stem = FILES[0].0;
    [format!("{stem}.gz"), stem.to_string()]
        .iter()
        .any(|f| dir.join(f).is_file())
        .then(|| dir.to_path_buf())
}

/// sha256 of the canonical (decompressed) IDX files; the loader refuses other content unless
/// `MK_SKIP_CHECKSUMS=1` (e.g. for another dataset in the MNIST format).
const CANONICAL_SHA256: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

/// sha256 of the test fixtures' IDX files (`tests/fixtures/data/mnist`: the first examples of
/// each class, cut from the canonical files by `scripts/make_fixtures.py`), also accepted.
const FIXTURE_SHA256: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "7a74a8ab5f68427a871c362ece24c065db2dd19b84a3d688f01f233255ad9d64",
    ),
    (
        "train-labels-idx1-ubyte",
        "81ed0a4439aa1dd4d35933225307ffb955fcc201c8633f811480ab3c106c635c",
    ),
    (
        "t10k-images-idx3-ubyte",
        "09db4b26a4407812da836eea90bdbcf878705ee7c3452ab3eeafbeee73784e4b",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "b6f6a5c4d2879172835a1d24f55e8682e3d1298a25b64f8e7cb2b56f10e11ce9",
    ),
];

fn verify_checksum(stem: &str, path: &Path, bytes: &[u8]) -> Result<()> {
    if std::env::var("MK_SKIP_CHECKSUMS").is_ok_and(|v| v == "1") {
        return Ok(());
    }
    let Some((_, expected)) = CANONICAL_SHA256.iter().find(|(s, _)| *s == stem) else {
        return Ok(());
    };
    let actual = sha256_hex(bytes);
    let fixture = FIXTURE_SHA256
        .iter()
        .any(|(s, f)| *s == stem && actual == *f);
    if actual != *expected && !fixture {
        return Err(Error::data(
            path,
            format!(
                "checksum mismatch: content sha256 is {actual}, expected {expected} (the canonical \
                 MNIST release); set MK_SKIP_CHECKSUMS=1 to use other data in this format"
            ),
        ));
    }
    Ok(())
}

/// Loads both splits from a directory of IDX files.
pub fn load_idx(dir: &Path) -> Result<DataSplits> {
    let mut fingerprint = Fingerprint::default();
    let mut split = |(image_stem, label_stem): (&str, &str)| -> Result<ImageDataset> {
        let (images_path, image_bytes) = read_maybe_gz(dir, image_stem)?;
        let (labels_path, label_bytes) = read_maybe_gz(dir, label_stem)?;
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
        verify_checksum(image_stem, &images_path, &image_bytes)?;
        verify_checksum(label_stem, &labels_path, &label_bytes)?;
        let labels: Vec<Label> = labels.into_iter().map(Label::from).collect();
        fingerprint.add(&pixels, &labels);
        Ok(dataset(pixels, labels))
    };
    let (train, test) = (split(FILES[0])?, split(FILES[1])?);
    Ok(splits(train, test, fingerprint))
}

fn splits(train: ImageDataset, test: ImageDataset, fingerprint: Fingerprint) -> DataSplits {
    DataSplits {
        name: "mnist".into(),
        train: Examples::Images(train),
        test: Examples::Images(test),
        metric: Metric::Accuracy,
        fingerprint: fingerprint.finish(),
    }
}

fn dataset(pixels: Vec<u8>, labels: Vec<Label>) -> ImageDataset {
    ImageDataset {
        pixels: pixels.into(),
        labels,
        image_shape: [1, SIDE, SIDE],
        num_classes: 10,
        normalization: Normalization {
            mean: vec![MEAN],
            std: vec![STD],
        },
    }
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

/// Parses an IDX3 image file (magic 0x00000803) of 28x28 images into its pixel bytes.
pub fn parse_idx_images(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
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
    Ok(bytes[16..].to_vec())
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
fn load_hub_parquet(path: &Path, fingerprint: &mut Fingerprint) -> Result<ImageDataset> {
    let (images, labels) = hub::read_image_parquet(path, "image")?;
    let mut raw = Vec::with_capacity(images.len() * SIDE * SIDE);
    for (i, png) in images.iter().enumerate() {
        let gray =
            hub::decode_png_gray(png).map_err(|e| Error::data(path, format!("row {i}: {e}")))?;
        if gray.len() != SIDE * SIDE {
            return Err(Error::data(
                path,
                format!("row {i}: image has {} pixels, expected 784", gray.len()),
            ));
        }
        raw.extend(gray);
    }
    let labels = labels
        .into_iter()
        .map(|l| Label::try_from(l).ok().filter(|l| *l <= 9))
        .collect::<Option<Vec<Label>>>()
        .ok_or_else(|| Error::data(path, "label column has values outside 0..=9"))?;
    fingerprint.add(&raw, &labels);
    Ok(dataset(raw, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ImageDataset;
    use crate::data::{full_data, test_data};

    /// Checks the split sizes, the canonical first labels (train 5, test 7) and the class
    /// balance (each class's share of the training set within `per_class`).
    fn check_real_mnist(dir: PathBuf, sizes: (usize, usize), per_class: std::ops::Range<usize>) {
        let data = load(&[dir], &HubAccess::from_env()).unwrap();
        assert_eq!((data.train.len(), data.test.len()), sizes);
        let (train, test) = (data.train.images().unwrap(), data.test.images().unwrap());
        assert_eq!(train.pixels.len(), sizes.0 * 784);
        // The canonical first training label is 5, first test label 7.
        assert_eq!(train.labels[0], 5);
        assert_eq!(test.labels[0], 7);
        let counts = (0..10).map(|c| train.labels.iter().filter(|&&l| l == c).count());
        assert!(counts.into_iter().all(|n| per_class.contains(&n)));
    }

    #[test]
    fn loads_the_mnist_fixture() {
        // The first 50 training and 20 test images of each class, checksums accepted.
        check_real_mnist(test_data(), (500, 200), 50..51);
    }

    #[test]
    fn loads_the_real_mnist_files() {
        let test = "data::mnist::tests::loads_the_real_mnist_files";
        if let Some(dir) = full_data(test, "MNIST", "mnist/train-images-idx3-ubyte.gz") {
            check_real_mnist(dir, (60_000, 10_000), 5_000..7_000);
        }
    }

    #[test]
    fn changed_content_fails_the_checksum() {
        let dir = test_data();
        let tmp = tempfile::tempdir().unwrap();
        for (images, labels) in FILES {
            for stem in [images, labels] {
                let (_, mut bytes) = read_maybe_gz(&dir.join("mnist"), stem).unwrap();
                if stem == "train-images-idx3-ubyte" {
                    bytes[1000] ^= 0xff; // one pixel: header and size still valid
                }
                fs::write(tmp.path().join(stem), &bytes).unwrap();
            }
        }
        let err = load_idx(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("train-images-idx3-ubyte") && err.contains("checksum mismatch"),
            "{err}"
        );
    }

    #[test]
    fn wrong_image_size_is_named() {
        let mut bytes = vec![0u8; 16 + 32 * 32];
        bytes[..4].copy_from_slice(&0x0803u32.to_be_bytes());
        bytes[4..8].copy_from_slice(&1u32.to_be_bytes());
        bytes[8..12].copy_from_slice(&32u32.to_be_bytes());
        bytes[12..16].copy_from_slice(&32u32.to_be_bytes());
        let err = parse_idx_images(Path::new("cifar-ish"), &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("32x32") && err.contains("expected 28x28"),
            "{err}"
        );
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
        let dir = test_data();
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
        let err = load(&[tmp.path().to_path_buf()], &HubAccess::from_env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("t10k-labels-idx1-ubyte.gz"), "{err}");
    }

    /// Encodes real MNIST images as the Hub's parquet (PNG bytes in an `image` struct).
    fn hub_parquet(data: &ImageDataset, path: &Path) {
        use polars::prelude::*;
        let pngs: Vec<Vec<u8>> = (0..data.len())
            .map(|i| {
                let gray = &data.pixels[i * 784..(i + 1) * 784];
                let mut out = Vec::new();
                let mut encoder = png::Encoder::new(&mut out, 28, 28);
                encoder.set_color(png::ColorType::Grayscale);
                encoder.set_depth(png::BitDepth::Eight);
                encoder
                    .write_header()
                    .unwrap()
                    .write_image_data(gray)
                    .unwrap();
                out
            })
            .collect();
        let bytes = Series::new(
            "bytes".into(),
            pngs.iter().map(|p| p.as_slice()).collect::<Vec<&[u8]>>(),
        );
        let names = Series::new("path".into(), vec![None::<&str>; data.len()]);
        let image =
            StructChunked::from_series("image".into(), data.len(), [bytes, names].iter()).unwrap();
        let labels: Vec<i64> = data.labels.iter().map(|&l| l as i64).collect();
        let mut frame = DataFrame::new(
            data.len(),
            vec![
                image.into_series().into(),
                Series::new("label".into(), labels).into(),
            ],
        )
        .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        ParquetWriter::new(fs::File::create(path).unwrap())
            .finish(&mut frame)
            .unwrap();
    }

    #[test]
    fn falls_back_to_the_hub_cache_offline() {
        let dir = test_data();
        let real = load_idx(&dir.join("mnist")).unwrap();
        let (train, test) = (
            real.train.images().unwrap().subset(40, 0),
            real.test.images().unwrap().subset(20, 0),
        );
        let cache_dir = tempfile::tempdir().unwrap();
        let snapshot = cache_dir
            .path()
            .join("datasets--ylecun--mnist/snapshots/abc123");
        hub_parquet(&train, &snapshot.join(HUB_FILES[0]));
        hub_parquet(&test, &snapshot.join(HUB_FILES[1]));
        let hub = HubAccess {
            cache: hf_hub::Cache::new(cache_dir.path().to_path_buf()),
            offline: true,
        };
        let empty = tempfile::tempdir().unwrap();

        // No cache ref yet: offline, nothing local, so the error says what to do.
        let err = load(&[empty.path().to_path_buf()], &hub)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--data-dir")
                && err.contains("ylecun/mnist")
                && err.contains("HF_HUB_OFFLINE"),
            "{err}"
        );

        fs::create_dir_all(cache_dir.path().join("datasets--ylecun--mnist/refs")).unwrap();
        fs::write(
            cache_dir.path().join("datasets--ylecun--mnist/refs/main"),
            "abc123",
        )
        .unwrap();
        let from_hub = load(&[empty.path().to_path_buf()], &hub).unwrap();
        assert_eq!(from_hub.train.labels(), train.labels);
        assert_eq!(from_hub.test.labels(), test.labels);
        assert_eq!(
            from_hub.train.images().unwrap().pixels,
            train.pixels,
            "PNG round trip is lossless"
        );
        let mut expected = Fingerprint::default();
        for split in [&train, &test] {
            split.fingerprint_into(&mut expected);
        }
        assert_eq!(
            from_hub.fingerprint,
            expected.finish(),
            "same content, same fingerprint"
        );
    }
}
