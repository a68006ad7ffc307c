//! The project's compact cache of decoded image datasets: one file per (dataset, source,
//! size), holding raw 8-bit pixels and labels. Decoding JPEGs takes minutes; loading the cache
//! maps the file (well under a second) and pages pixels in as batches touch them, so datasets
//! larger than memory train from it too. Files are written to a temporary name and renamed:
//! an interrupted build leaves no half cache.
//!
//! Layout: `MKIMG002`, header length (u64 LE), JSON header, train labels, test labels (u16
//! LE each), train pixels, test pixels.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::dataset::{Fingerprint, ImageDataset, Label, Normalization, Pixels};
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"MKIMG002";
/// Bump when the decoding changes (resizing filter, channel order...): old caches are ignored.
const CACHE_VERSION: u32 = 2;

/// What the cache file says about its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheHeader {
    pub dataset: String,
    /// `[channels, height, width]`.
    pub image_shape: [usize; 3],
    /// Class names, in label order.
    pub classes: Vec<String>,
    pub train: usize,
    pub test: usize,
    /// Content fingerprint of both splits (see `Fingerprint`).
    pub fingerprint: String,
    /// Where the data was decoded from.
    pub source: String,
}

/// The folder for caches: `MK_CACHE_DIR`, else `$XDG_CACHE_HOME/majority-kernels`, else
/// `~/.cache/majority-kernels`, else `.mk-cache` in the working directory.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MK_CACHE_DIR") {
        return dir.into();
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("majority-kernels");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".cache/majority-kernels");
    }
    PathBuf::from(".mk-cache")
}

/// The cache file for `dataset` decoded from `source` with `variant` (e.g. the image size):
/// the name hashes the source's path, size and modification time, so a changed source gets a
/// new cache.
pub fn path_for(cache_dir: &Path, dataset: &str, source: &Path, variant: &str) -> PathBuf {
    let meta = fs::metadata(source).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let canonical = fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
    let key = format!(
        "v{CACHE_VERSION}|{dataset}|{}|{}|{modified}|{variant}",
        canonical.display(),
        meta.map_or(0, |m| m.len()),
    );
    let hash: String = Sha256::digest(key.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    cache_dir.join(format!("{dataset}-{variant}-{hash}.mkimg"))
}

/// Writes a cache file; `pixels` is called once per split (train, then test) and must append
/// exactly that split's bytes, in chunks, through the given sink.
pub fn write(
    path: &Path,
    mut header: CacheHeader,
    train_labels: &[Label],
    test_labels: &[Label],
    mut pixels: impl FnMut(Split, &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
) -> Result<CacheHeader> {
    crate::atomic::write_with(path, |file| {
        write_into(
            file,
            path,
            &mut header,
            train_labels,
            test_labels,
            &mut pixels,
        )
    })?;
    Ok(header)
}

/// [`write`]'s content, into the open temporary file; fills in the header's fingerprint.
fn write_into(
    file: &mut fs::File,
    path: &Path,
    header: &mut CacheHeader,
    train_labels: &[Label],
    test_labels: &[Label],
    pixels: &mut impl FnMut(Split, &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
) -> Result<()> {
    let image_len: usize = header.image_shape.iter().product();
    // The fingerprint is not known until every pixel is seen: reserve its width.
    header.fingerprint = "0".repeat(64);
    let json = serde_json::to_vec(&*header).expect("headers serialise");
    let fingerprint_at = 16 + find(&json, header.fingerprint.as_bytes()).expect("in the json");
    let mut out = std::io::BufWriter::new(file);
    let failed = |e: std::io::Error| Error::io(path, e);
    out.write_all(MAGIC).map_err(failed)?;
    out.write_all(&(json.len() as u64).to_le_bytes())
        .map_err(failed)?;
    out.write_all(&json).map_err(failed)?;
    for label in train_labels.iter().chain(test_labels) {
        out.write_all(&label.to_le_bytes()).map_err(failed)?;
    }

    let mut fingerprint = Fingerprint::default();
    for (split, labels) in [(Split::Train, train_labels), (Split::Test, test_labels)] {
        let expected = labels.len() * image_len;
        let mut stream = fingerprint.split(expected);
        let mut written = 0usize;
        pixels(split, &mut |chunk: &[u8]| {
            written += chunk.len();
            stream.update(chunk);
            out.write_all(chunk).map_err(failed)
        })?;
        if written != expected {
            return Err(Error::data(
                path,
                format!("{split:?} split: {written} pixel bytes decoded, expected {expected}"),
            ));
        }
        stream.labels(labels);
    }
    let file = out.into_inner().map_err(|e| failed(e.into_error()))?;
    header.fingerprint = fingerprint.finish();
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(fingerprint_at as u64))
        .and_then(|_| file.write_all(header.fingerprint.as_bytes()))
        .map_err(failed)
}

/// Which split a pixel stream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads a cache file: `None` when it does not exist; an error names a damaged one (delete it
/// to rebuild).
pub fn read(
    path: &Path,
    normalization: &Normalization,
) -> Result<Option<(CacheHeader, ImageDataset, ImageDataset)>> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    // Safety: cache files are only ever replaced by rename, never modified in place.
    let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?);
    let damaged = |why: &str| {
        Error::data(
            path,
            format!("damaged dataset cache ({why}); delete it to rebuild"),
        )
    };
    if map.len() < 16 || &map[..8] != MAGIC {
        return Err(damaged("wrong magic"));
    }
    let json_len = u64::from_le_bytes(map[8..16].try_into().expect("8 bytes")) as usize;
    let header: CacheHeader = map
        .get(16..16 + json_len)
        .and_then(|json| serde_json::from_slice(json).ok())
        .ok_or_else(|| damaged("unreadable header"))?;
    let image_len: usize = header.image_shape.iter().product();
    let labels_at = 16 + json_len;
    let pixels_at = labels_at + 2 * (header.train + header.test);
    let end = pixels_at + (header.train + header.test) * image_len;
    if map.len() != end {
        return Err(damaged(&format!(
            "{} bytes, the header promises {end}",
            map.len()
        )));
    }
    let split = |labels_start: usize, n: usize, pixels_start: usize| ImageDataset {
        pixels: Pixels::mapped(map.clone(), pixels_start, n * image_len),
        labels: map[labels_start..labels_start + 2 * n]
            .chunks_exact(2)
            .map(|b| Label::from_le_bytes([b[0], b[1]]))
            .collect(),
        image_shape: header.image_shape,
        num_classes: header.classes.len(),
        normalization: normalization.clone(),
    };
    let train = split(labels_at, header.train, pixels_at);
    let test = split(
        labels_at + 2 * header.train,
        header.test,
        pixels_at + header.train * image_len,
    );
    if let Some(bad) = train
        .labels
        .iter()
        .chain(&test.labels)
        .find(|&&l| l as usize >= header.classes.len())
    {
        return Err(damaged(&format!("label {bad} out of range")));
    }
    Ok(Some((header, train, test)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_fingerprints_like_in_memory_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toy.mkimg");
        let header = CacheHeader {
            dataset: "toy".into(),
            image_shape: [1, 2, 2],
            classes: vec!["a".into(), "b".into()],
            train: 3,
            test: 1,
            fingerprint: String::new(),
            source: "memory".into(),
        };
        let train_pixels: Vec<u8> = (0..12).collect();
        let test_pixels: Vec<u8> = vec![9, 8, 7, 6];
        let written = write(&path, header, &[0, 1, 1], &[1], |split, sink| {
            let bytes = match split {
                Split::Train => &train_pixels,
                Split::Test => &test_pixels,
            };
            for chunk in bytes.chunks(5) {
                sink(chunk)?;
            }
            Ok(())
        })
        .unwrap();
        let norm = Normalization {
            mean: vec![0.5],
            std: vec![0.25],
        };
        let (header, train, test) = read(&path, &norm).unwrap().unwrap();
        assert_eq!(header, written);
        assert_eq!(&*train.pixels, &train_pixels[..]);
        assert_eq!(&*test.pixels, &test_pixels[..]);
        assert_eq!(
            (train.labels.clone(), test.labels.clone()),
            (vec![0, 1, 1], vec![1])
        );
        let mut expected = Fingerprint::default();
        expected.add(&train_pixels, &[0, 1, 1]);
        expected.add(&test_pixels, &[1]);
        assert_eq!(header.fingerprint, expected.finish());
        assert!(
            read(&dir.path().join("absent.mkimg"), &norm)
                .unwrap()
                .is_none()
        );

        // A truncated cache is named, not misread.
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = read(&path, &norm).unwrap_err().to_string();
        assert!(
            err.contains("toy.mkimg") && err.contains("delete it"),
            "{err}"
        );
    }
}
