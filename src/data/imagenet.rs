//! ImageNet in its class-folder layout: `train/<wnid>/*.JPEG` (or `train/<wnid>/images/`, as
//! Tiny ImageNet has it) and a validation split given as `val/<wnid>/` folders, as
//! `val/images/` with `val/val_annotations.txt` (Tiny ImageNet), or as flat `val/*.JPEG` with
//! `LOC_val_solution.csv` (the ImageNet-1k Kaggle release). Two dataset names use it:
//! `tiny_imagenet` (200 classes, 64x64; `../shared/data/tiny-imagenet` holds a `.tar.gz`) and
//! `imagenet` (ImageNet-1k, extracted, resized to `image_size`).
//!
//! Images are decoded in parallel once into the project's cache at the training size; the
//! cache is memory-mapped, so a set larger than memory streams from disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::cache;
use super::dataset::{DataSplits, Label, Normalization};
use super::files::{FileTree, Sizing, is_image};
use super::vision::{self, SplitFiles};
use crate::error::{Error, Result};

/// Which of the two ImageNet datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Tiny,
    Full,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Tiny => "tiny_imagenet",
            Variant::Full => "imagenet",
        }
    }

    /// Native (Tiny: 64) or conventional (ImageNet-1k: 224) side when none is configured.
    pub fn default_side(self) -> usize {
        match self {
            Variant::Tiny => 64,
            Variant::Full => 224,
        }
    }

    /// Where the data is looked for under a data directory: folders holding `train/` and
    /// `val/`, then archives.
    fn folders(self) -> &'static [&'static str] {
        match self {
            Variant::Tiny => &[
                "tiny-imagenet/tiny-imagenet-200",
                "tiny-imagenet-200",
                "tiny-imagenet",
            ],
            Variant::Full => &[
                "imagenet",
                "ILSVRC/Data/CLS-LOC",
                "imagenet/ILSVRC/Data/CLS-LOC",
            ],
        }
    }

    fn archives(self) -> &'static [&'static str] {
        match self {
            Variant::Tiny => &[
                "tiny-imagenet/tiny-imagenet-200-subset100.tar.gz",
                "tiny-imagenet/tiny-imagenet-200.tar.gz",
                "tiny-imagenet-200.tar.gz",
            ],
            Variant::Full => &[],
        }
    }
}

/// The usual ImageNet per-channel statistics.
pub fn normalization() -> Normalization {
    Normalization {
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
    }
}

/// Loads the dataset from the first location in `dirs` that holds it, at `side` x `side`
/// pixels (default: [`Variant::default_side`]).
pub fn load(
    variant: Variant,
    dirs: &[PathBuf],
    side: Option<usize>,
    cache_dir: &Path,
) -> Result<DataSplits> {
    let side = side.unwrap_or(variant.default_side());
    let sizing = if variant == Variant::Tiny && side == 64 {
        Sizing::Exact(64)
    } else {
        Sizing::ResizeCrop(side)
    };
    for root in vision::candidates(dirs, variant.folders()) {
        if root.join("train").is_dir() && root.join("val").is_dir() {
            return load_tree(variant, cache_dir, &root, FileTree::directory, sizing);
        }
    }
    for archive in vision::candidates(dirs, variant.archives()) {
        if archive.is_file() {
            return load_tree(variant, cache_dir, &archive, FileTree::archive, sizing);
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(Error::MissingData(format!(
        "{} not found: looked for folders {} (with train/ and val/){} under {}. Put the \
         class-folder layout (train/<wnid>/*.JPEG, val/...) there or pass `--data-dir DIR`",
        variant.name(),
        variant.folders().join(", "),
        if variant.archives().is_empty() {
            String::new()
        } else {
            format!(" and archives {}", variant.archives().join(", "))
        },
        if searched.is_empty() {
            "no data directory".into()
        } else {
            searched.join(", ")
        }
    )))
}

fn load_tree(
    variant: Variant,
    cache_dir: &Path,
    source: &Path,
    open: fn(&Path) -> Result<FileTree>,
    sizing: Sizing,
) -> Result<DataSplits> {
    let side = sizing.side();
    let path = cache::path_for(cache_dir, variant.name(), source, &side.to_string());
    let found = vision::cached(&path, &normalization(), |path| {
        let tree = open(source)?;
        let (train, val, classes) = layout(&tree)?;
        vision::build_from_tree(path, variant.name(), &tree, &train, &val, classes, sizing)
    })?;
    Ok(vision::splits_from_cache(variant.name(), found))
}

/// Train and validation files of an ImageNet-layout tree, and the sorted class ids.
pub fn layout(tree: &FileTree) -> Result<(SplitFiles, SplitFiles, Vec<String>)> {
    let mut train_files: Vec<(String, usize)> = Vec::new();
    // Validation images: (class folder if any, file stem, index).
    let mut val_files: Vec<(Option<String>, String, usize)> = Vec::new();
    for index in 0..tree.len() {
        let name = tree.name(index);
        let parts: Vec<&str> = name.split('/').collect();
        let file = parts[parts.len() - 1];
        if !is_image(file) {
            continue;
        }
        let stem = file.rsplit_once('.').map_or(file, |(s, _)| s).to_string();
        if let Some(at) = parts.iter().rposition(|p| *p == "train") {
            let rest = &parts[at + 1..];
            if rest.len() == 2 || (rest.len() == 3 && rest[1] == "images") {
                train_files.push((rest[0].to_string(), index));
            }
        } else if let Some(at) = parts.iter().rposition(|p| *p == "val") {
            match &parts[at + 1..] {
                [_file] => val_files.push((None, stem, index)),
                ["images", _file] => val_files.push((None, stem, index)),
                [class, _file] => val_files.push((Some(class.to_string()), stem, index)),
                _ => {}
            }
        }
    }
    let mut classes: Vec<String> = train_files.iter().map(|(c, _)| c.clone()).collect();
    classes.sort_unstable();
    classes.dedup();
    if classes.is_empty() {
        return Err(Error::data(
            tree.location(),
            "no images under train/<class>/ (ImageNet layout expected)",
        ));
    }
    let label_of = |class: &str| classes.binary_search_by(|c| c.as_str().cmp(class)).ok();
    let train: SplitFiles = train_files
        .iter()
        .map(|(c, i)| (*i, label_of(c).expect("a train class") as Label))
        .collect();

    let annotations = if val_files.iter().any(|(class, _, _)| class.is_none()) {
        Some(val_annotations(tree)?)
    } else {
        None
    };
    let mut val = SplitFiles::new();
    for (class, stem, index) in val_files {
        let class = match class {
            Some(class) => class,
            None => annotations
                .as_ref()
                .and_then(|a| a.get(&stem).cloned())
                .ok_or_else(|| {
                    Error::data(
                        tree.display(index),
                        "validation image missing from the annotation file",
                    )
                })?,
        };
        let label = label_of(&class).ok_or_else(|| {
            Error::data(
                tree.display(index),
                format!("validation class `{class}` has no train folder"),
            )
        })?;
        val.push((index, label as Label));
    }
    if val.is_empty() {
        return Err(Error::data(
            tree.location(),
            "no validation images under val/",
        ));
    }
    Ok((train, val, classes))
}

/// Validation labels by image stem, from `val_annotations.txt` (Tiny ImageNet: file, wnid,
/// box) or `LOC_val_solution.csv` (ImageNet-1k: ImageId, "wnid x y x y ...").
fn val_annotations(tree: &FileTree) -> Result<HashMap<String, String>> {
    let found = (0..tree.len()).find(|&i| {
        let name = tree.name(i);
        name.ends_with("val/val_annotations.txt") || name.ends_with("LOC_val_solution.csv")
    });
    let Some(index) = found else {
        return Err(Error::data(
            tree.location(),
            "flat val/ images need val/val_annotations.txt or LOC_val_solution.csv for their labels",
        ));
    };
    let bytes = tree.read(index)?;
    let text = String::from_utf8_lossy(&bytes);
    let csv = tree.name(index).ends_with(".csv");
    let mut labels = HashMap::new();
    for (line_no, line) in text.lines().enumerate() {
        if line.trim().is_empty() || (csv && line_no == 0) {
            continue;
        }
        let (file, class) = if csv {
            let (id, prediction) = line.split_once(',').unwrap_or((line, ""));
            (id, prediction.split_whitespace().next().unwrap_or(""))
        } else {
            let mut fields = line.split('\t');
            (fields.next().unwrap_or(""), fields.next().unwrap_or(""))
        };
        if file.is_empty() || class.is_empty() {
            return Err(Error::data(
                tree.display(index),
                format!(
                    "line {}: expected an image name and a class id",
                    line_no + 1
                ),
            ));
        }
        let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
        labels.insert(stem.to_string(), class.to_string());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{full_data, test_data};

    /// Loads Tiny ImageNet from `dir`: `sizes` images at 64x64 in `classes` classes, the first
    /// and last class with `per_class` training and validation images.
    fn check_tiny_imagenet(
        dir: PathBuf,
        sizes: (usize, usize),
        classes: usize,
        per_class: (usize, usize),
    ) {
        let cache_dir = tempfile::tempdir().unwrap();
        let data = load(Variant::Tiny, &[dir], None, cache_dir.path()).unwrap();
        assert_eq!((data.train.len(), data.test.len()), sizes);
        let train = data.train.images().unwrap();
        assert_eq!(
            (train.image_shape, train.num_classes),
            ([3, 64, 64], classes)
        );
        for class in [0, classes as Label - 1] {
            let count = |labels: &[Label]| labels.iter().filter(|&&l| l == class).count();
            assert_eq!((count(&train.labels), count(data.test.labels())), per_class);
        }
    }

    #[test]
    fn tiny_imagenet_fixture_loads_with_its_validation_labels() {
        // The first 5 classes: 20 training and 10 validation images each.
        check_tiny_imagenet(test_data(), (100, 50), 5, (20, 10));
    }

    #[test]
    fn tiny_imagenet_subset_loads_with_its_validation_labels() {
        let test = "data::imagenet::tests::tiny_imagenet_subset_loads_with_its_validation_labels";
        let file = "tiny-imagenet/tiny-imagenet-200-subset100.tar.gz";
        if let Some(dir) = full_data(test, "Tiny ImageNet subset", file) {
            check_tiny_imagenet(dir, (20_000, 10_000), 200, (100, 50));
        }
    }

    #[test]
    fn imagenet_1k_layouts_resize_and_label_validation_images() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("imagenet");
        let png = |path: &Path, w: u32, h: u32, value: u8| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            image::RgbImage::from_pixel(w, h, image::Rgb([value, 0, 0]))
                .save(path)
                .unwrap();
        };
        png(&root.join("train/n02/a.png"), 40, 30, 20);
        png(&root.join("train/n01/b.png"), 30, 30, 10);
        png(&root.join("val/v1.png"), 50, 20, 30);
        png(&root.join("val/v2.png"), 20, 50, 40);
        std::fs::write(
            root.join("LOC_val_solution.csv"),
            "ImageId,PredictionString\nv1,n02 1 2 3 4\nv2,n01 0 0 1 1\n",
        )
        .unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        let data = load(
            Variant::Full,
            &[work.path().to_path_buf()],
            Some(8),
            cache_dir.path(),
        )
        .unwrap();
        assert_eq!(
            data.train.labels(),
            &[0, 1],
            "sorted wnids, files in path order"
        );
        assert_eq!(data.test.labels(), &[1, 0]);
        let train = data.train.images().unwrap();
        assert_eq!(train.image_shape, [3, 8, 8]);
        assert!(train.pixels[..64].iter().all(|&v| v == 10), "n01/b: red 10");

        // A validation image without a label is named.
        png(&root.join("val/v3.png"), 8, 8, 1);
        let err = load(
            Variant::Full,
            &[work.path().to_path_buf()],
            Some(16),
            cache_dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("v3.png") && err.contains("annotation"),
            "{err}"
        );
    }
}
