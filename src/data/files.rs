//! Image files in a folder tree or a `.tar.gz` archive of one, decoded in parallel.
//!
//! Layouts (CIFAR class folders, ImageNet) are matched on the files' relative paths, so the
//! same loader serves an archive and its extracted copy.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use image::imageops::FilterType;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// A tree of files: a directory on disk, or the regular files of a `.tar.gz` archive read
/// into memory (archives are the small datasets; large ones are used extracted).
pub enum FileTree {
    Directory {
        root: PathBuf,
        /// Paths relative to `root`, `/`-separated, sorted.
        files: Vec<String>,
    },
    Archive {
        path: PathBuf,
        /// `(path inside the archive, content)`, sorted by path.
        files: Vec<(String, Vec<u8>)>,
    },
}

impl FileTree {
    /// Lists `root` recursively.
    pub fn directory(root: &Path) -> Result<FileTree> {
        let mut files = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
                if kind.is_dir() {
                    stack.push(path);
                } else if let Ok(relative) = path.strip_prefix(root) {
                    let parts: Vec<String> = relative
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    files.push(parts.join("/"));
                }
            }
        }
        files.sort_unstable();
        Ok(FileTree::Directory {
            root: root.to_path_buf(),
            files,
        })
    }

    /// Reads every regular file of a gzipped tar archive into memory.
    pub fn archive(path: &Path) -> Result<FileTree> {
        let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let corrupt = |e: std::io::Error| {
            Error::data(path, format!("corrupt or truncated tar.gz archive: {e}"))
        };
        let mut archive = tar::Archive::new(GzDecoder::new(std::io::BufReader::new(file)));
        let mut files = Vec::new();
        for entry in archive.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map_err(corrupt)?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(corrupt)?;
            files.push((name, bytes));
        }
        files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(FileTree::Archive {
            path: path.to_path_buf(),
            files,
        })
    }

    /// Where the tree is, for messages and cache keys.
    pub fn location(&self) -> &Path {
        match self {
            FileTree::Directory { root, .. } => root,
            FileTree::Archive { path, .. } => path,
        }
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        match self {
            FileTree::Directory { files, .. } => files.len(),
            FileTree::Archive { files, .. } => files.len(),
        }
    }

    /// Whether the tree holds no file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Relative path of file `index`.
    pub fn name(&self, index: usize) -> &str {
        match self {
            FileTree::Directory { files, .. } => &files[index],
            FileTree::Archive { files, .. } => &files[index].0,
        }
    }

    /// Index of the file whose relative path is `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        (0..self.len()).find(|&i| self.name(i) == name)
    }

    /// Content of file `index`.
    pub fn read(&self, index: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
        match self {
            FileTree::Directory { root, files } => {
                let path = root.join(&files[index]);
                fs::read(&path)
                    .map(std::borrow::Cow::Owned)
                    .map_err(|e| Error::io(&path, e))
            }
            FileTree::Archive { files, .. } => Ok(std::borrow::Cow::Borrowed(&files[index].1)),
        }
    }

    /// Human-readable name of file `index` (the archive member or the full path).
    pub fn display(&self, index: usize) -> PathBuf {
        match self {
            FileTree::Directory { root, files } => root.join(&files[index]),
            FileTree::Archive { path, files } => path.join(&files[index].0),
        }
    }
}

/// Whether `name` looks like an image file.
pub fn is_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// How decoded images are brought to one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizing {
    /// Every image must already be `side x side` (an error names the first that is not).
    Exact(usize),
    /// Shorter side resized to `side` (bilinear), then the central `side x side` crop.
    ResizeCrop(usize),
}

impl Sizing {
    pub fn side(self) -> usize {
        match self {
            Sizing::Exact(side) | Sizing::ResizeCrop(side) => side,
        }
    }
}

/// Decodes files `indices` of `tree` into RGB `[3, side, side]` bytes each (channel-major),
/// in parallel, appending them to `out` in order.
pub fn decode_rgb(
    tree: &FileTree,
    indices: &[usize],
    sizing: Sizing,
    out: &mut Vec<u8>,
) -> Result<()> {
    let images: Vec<Vec<u8>> = indices
        .par_iter()
        .map(|&index| {
            let bytes = tree.read(index)?;
            decode_one(&bytes, sizing).map_err(|e| Error::data(tree.display(index), e))
        })
        .collect::<Result<_>>()?;
    for image in images {
        out.extend_from_slice(&image);
    }
    Ok(())
}

/// One encoded image to channel-major RGB bytes of `sizing`'s size.
pub fn decode_one(bytes: &[u8], sizing: Sizing) -> std::result::Result<Vec<u8>, String> {
    let decoded =
        image::load_from_memory(bytes).map_err(|e| format!("cannot decode image: {e}"))?;
    let mut rgb = decoded.to_rgb8();
    let side = sizing.side() as u32;
    match sizing {
        Sizing::Exact(_) => {
            if rgb.dimensions() != (side, side) {
                let (w, h) = rgb.dimensions();
                return Err(format!("image is {w}x{h}, expected {side}x{side}"));
            }
        }
        Sizing::ResizeCrop(_) => {
            let (w, h) = rgb.dimensions();
            if (w, h) != (side, side) {
                let scale = side as f64 / w.min(h) as f64;
                let (nw, nh) = (
                    ((w as f64 * scale).round() as u32).max(side),
                    ((h as f64 * scale).round() as u32).max(side),
                );
                let resized = image::imageops::resize(&rgb, nw, nh, FilterType::Triangle);
                let (x, y) = ((nw - side) / 2, (nh - side) / 2);
                rgb = image::imageops::crop_imm(&resized, x, y, side, side).to_image();
            }
        }
    }
    let plane = (side * side) as usize;
    let mut chw = vec![0u8; 3 * plane];
    for (i, pixel) in rgb.pixels().enumerate() {
        for c in 0..3 {
            chw[c * plane + i] = pixel.0[c];
        }
    }
    Ok(chw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let image =
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, 128]));
        let mut out = std::io::Cursor::new(Vec::new());
        image.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_channel_major_and_resizes_the_shorter_side() {
        let exact = decode_one(&jpeg(4, 4), Sizing::Exact(4)).unwrap();
        assert_eq!(exact.len(), 48);
        // Pixel (x = 1, y = 2): red 8, green 16, blue 128, one plane per channel.
        assert_eq!(
            (exact[2 * 4 + 1], exact[16 + 2 * 4 + 1], exact[32 + 9]),
            (8, 16, 128)
        );
        let err = decode_one(&jpeg(6, 4), Sizing::Exact(4)).unwrap_err();
        assert!(err.contains("6x4"), "{err}");
        let resized = decode_one(&jpeg(16, 8), Sizing::ResizeCrop(4)).unwrap();
        assert_eq!(resized.len(), 48);
        assert!(decode_one(b"not an image", Sizing::Exact(4)).is_err());
    }
}
