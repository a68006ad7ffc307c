//! In-memory image classification data and batching.

use std::sync::Arc;

use burn::prelude::*;
use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use super::rows::Label;
use super::rows::subset_indices;
use super::text::TextDataset;

/// Images as raw 8-bit pixels, `[N, C, H, W]` row-major, with integer labels. Pixels are
/// normalised per channel when a batch is made: a compact store (a quarter of `f32`) that
/// augmentation can crop and flip in pixel space, as the standard recipes do.
#[derive(Debug, Clone)]
pub struct ImageDataset {
    pub pixels: Pixels,
    pub labels: Vec<Label>,
    /// `[channels, height, width]` of one image.
    pub image_shape: [usize; 3],
    pub num_classes: usize,
    pub normalization: Normalization,
}

/// Raw pixel bytes, in memory or mapped from a cache file (datasets larger than memory are
/// then paged in as batches touch them). Clones share the bytes.
#[derive(Clone)]
pub struct Pixels(Arc<PixelStorage>);

enum PixelStorage {
    Owned(Vec<u8>),
    Mapped {
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
    },
}

impl Pixels {
    /// `len` bytes at `start` of a mapped file.
    pub fn mapped(map: Arc<memmap2::Mmap>, start: usize, len: usize) -> Self {
        assert!(start + len <= map.len(), "mapped range inside the file");
        Pixels(Arc::new(PixelStorage::Mapped { map, start, len }))
    }
}

impl std::ops::Deref for Pixels {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &*self.0 {
            PixelStorage::Owned(bytes) => bytes,
            PixelStorage::Mapped { map, start, len } => &map[*start..*start + *len],
        }
    }
}

impl From<Vec<u8>> for Pixels {
    fn from(bytes: Vec<u8>) -> Self {
        Pixels(Arc::new(PixelStorage::Owned(bytes)))
    }
}

impl PartialEq for Pixels {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &*self.0 {
            PixelStorage::Owned(_) => "in memory",
            PixelStorage::Mapped { .. } => "mapped",
        };
        write!(f, "Pixels({} bytes, {kind})", self.len())
    }
}

/// Per-channel normalisation `(pixel / 255 - mean) / std`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// The normalised value of `byte` in `channel`.
    #[inline]
    pub fn apply(&self, byte: u8, channel: usize) -> f32 {
        (byte as f32 / 255.0 - self.mean[channel]) / self.std[channel]
    }
}

/// Standard-recipe augmentation of training images: a random crop of the image zero-padded
/// by `crop_padding` pixels on each side, and a horizontal flip with probability 1/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augmentation {
    #[serde(default)]
    pub crop_padding: usize,
    #[serde(default)]
    pub flip: bool,
}

impl ImageDataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn image_len(&self) -> usize {
        self.image_shape.iter().product()
    }

    /// A seeded random subset of `n` examples (all of them when `n >= len`), so that slices used
    /// by quick profiles and tests keep the class balance of the full set in expectation.
    pub fn subset(&self, n: usize, seed: u64) -> ImageDataset {
        match subset_indices(self.len(), n, seed) {
            Some(indices) => self.select(&indices),
            None => self.clone(),
        }
    }

    /// The examples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ImageDataset {
        let len = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * len);
        for &i in indices {
            pixels.extend_from_slice(&self.pixels[i * len..(i + 1) * len]);
        }
        ImageDataset {
            pixels: pixels.into(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            image_shape: self.image_shape,
            num_classes: self.num_classes,
            normalization: self.normalization.clone(),
        }
    }

    /// Only the examples of the first `classes` classes (labels `0..classes`).
    pub fn first_classes(&self, classes: usize) -> ImageDataset {
        let keep: Vec<usize> = (0..self.len())
            .filter(|&i| (self.labels[i] as usize) < classes)
            .collect();
        ImageDataset {
            num_classes: classes.min(self.num_classes),
            ..self.select(&keep)
        }
    }

    /// The batch at `indices` as `([B, C, H, W] images, [B] labels)` tensors on `device`,
    /// augmented with draws from `augment`'s generator when given.
    pub fn batch<B: Backend>(
        &self,
        indices: &[usize],
        augment: Option<(&Augmentation, &mut StdRng)>,
        device: &B::Device,
    ) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
        let len = self.image_len();
        let [c, h, w] = self.image_shape;
        let mut pixels = Vec::with_capacity(indices.len() * len);
        let mut labels = Vec::with_capacity(indices.len());
        // Every byte's normalised value per channel, computed by `apply` itself (so the batch
        // is bit-identical): a table lookup instead of two divisions per pixel.
        let table: Vec<[f32; 256]> = (0..c)
            .map(|channel| std::array::from_fn(|b| self.normalization.apply(b as u8, channel)))
            .collect();
        let norm = |byte: u8, channel: usize| table[channel][byte as usize];
        match augment {
            None => {
                for &i in indices {
                    let image = &self.pixels[i * len..(i + 1) * len];
                    for (channel, plane) in image.chunks_exact(h * w).enumerate() {
                        let lookup = &table[channel];
                        pixels.extend(plane.iter().map(|&b| lookup[b as usize]));
                    }
                    labels.push(self.labels[i] as i64);
                }
            }
            Some((augmentation, rng)) => {
                let pad = augmentation.crop_padding as isize;
                for &i in indices {
                    let image = &self.pixels[i * len..(i + 1) * len];
                    // Offsets of the crop window in the padded image, relative to the original.
                    let dy = rng.random_range(-pad as i64..=pad as i64) as isize;
                    let dx = rng.random_range(-pad as i64..=pad as i64) as isize;
                    let flip = augmentation.flip && rng.random_bool(0.5);
                    for (channel, plane) in image.chunks_exact(h * w).enumerate() {
                        let padding = norm(0, channel);
                        for y in 0..h as isize {
                            let sy = y + dy;
                            for x in 0..w as isize {
                                let sx = if flip { w as isize - 1 - x } else { x } + dx;
                                let inside =
                                    (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                                pixels.push(if inside {
                                    norm(plane[(sy * w as isize + sx) as usize], channel)
                                } else {
                                    padding
                                });
                            }
                        }
                    }
                    labels.push(self.labels[i] as i64);
                }
            }
        }
        let images = Tensor::from_data(TensorData::new(pixels, [indices.len(), c, h, w]), device);
        let labels = Tensor::from_data(TensorData::new(labels, [indices.len()]), device);
        (images, labels)
    }

    /// Adds this split's raw pixels and labels to a content fingerprint.
    pub fn fingerprint_into(&self, fingerprint: &mut Fingerprint) {
        fingerprint.add(&self.pixels, &self.labels);
    }
}

/// The inputs of a batch, as the model families take them.
#[derive(Debug, Clone)]
pub enum Inputs<B: Backend> {
    /// `[batch, channels, height, width]`.
    Images(Tensor<B, 4>),
    /// Token ids `[batch, len]`, their token types (segment ids, `[batch, len]`; `None`: all
    /// 0, as in every batch of single sentences) and the additive attention bias `[batch, len]`.
    Tokens {
        ids: Tensor<B, 2, Int>,
        token_types: Option<Tensor<B, 2, Int>>,
        attention_bias: Tensor<B, 2>,
    },
}

/// A split of any dataset the harness knows.
#[derive(Debug, Clone)]
pub enum Examples {
    Images(ImageDataset),
    Text(TextDataset),
}

impl Examples {
    pub fn len(&self) -> usize {
        self.labels().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn labels(&self) -> &[Label] {
        match self {
            Examples::Images(d) => &d.labels,
            Examples::Text(d) => &d.labels,
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            Examples::Images(d) => d.num_classes,
            Examples::Text(d) => d.num_classes,
        }
    }

    /// The image data, for image datasets.
    pub fn images(&self) -> Option<&ImageDataset> {
        match self {
            Examples::Images(d) => Some(d),
            Examples::Text(_) => None,
        }
    }

    /// The text data, for text datasets.
    pub fn text(&self) -> Option<&TextDataset> {
        match self {
            Examples::Text(d) => Some(d),
            Examples::Images(_) => None,
        }
    }

    /// A seeded random subset of `n` examples (all when `n >= len`).
    pub fn subset(&self, n: usize, seed: u64) -> Examples {
        match self {
            Examples::Images(d) => Examples::Images(d.subset(n, seed)),
            Examples::Text(d) => Examples::Text(d.subset(n, seed)),
        }
    }

    /// Holds out a seeded random slice of `n` examples: `(held_out, rest)`, each in the
    /// original order. With `n >= len` everything is held out and the rest is empty.
    pub fn hold_out(&self, n: usize, seed: u64) -> (Examples, Examples) {
        let held: Vec<usize> =
            subset_indices(self.len(), n, seed).unwrap_or_else(|| (0..self.len()).collect());
        let mut in_held = vec![false; self.len()];
        for &i in &held {
            in_held[i] = true;
        }
        let rest: Vec<usize> = (0..self.len()).filter(|&i| !in_held[i]).collect();
        (self.select(&held), self.select(&rest))
    }

    /// The examples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Examples {
        match self {
            Examples::Images(d) => Examples::Images(d.select(indices)),
            Examples::Text(d) => Examples::Text(d.select(indices)),
        }
    }

    /// The batch at `indices` on `device`: inputs and labels.
    pub fn batch<B: Backend>(
        &self,
        indices: &[usize],
        device: &B::Device,
    ) -> (Inputs<B>, Tensor<B, 1, Int>) {
        self.batch_augmented(indices, None, device)
    }

    /// [`Examples::batch`], with image augmentation drawn from the generator when given
    /// (text is never augmented).
    pub fn batch_augmented<B: Backend>(
        &self,
        indices: &[usize],
        augment: Option<(&Augmentation, &mut StdRng)>,
        device: &B::Device,
    ) -> (Inputs<B>, Tensor<B, 1, Int>) {
        match self {
            Examples::Images(d) => {
                let (images, labels) = d.batch(indices, augment, device);
                (Inputs::Images(images), labels)
            }
            Examples::Text(d) => {
                let (ids, attention_bias, labels) = d.batch(indices, device);
                (
                    Inputs::Tokens {
                        ids,
                        token_types: d.token_types(indices, device),
                        attention_bias,
                    },
                    labels,
                )
            }
        }
    }
}

/// The headline metric of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Accuracy,
    /// Matthews correlation (CoLA).
    Mcc,
    /// F1 of the positive class (MRPC).
    F1,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Mcc => "mcc",
            Metric::F1 => "f1",
        }
    }
}

/// Train and test splits of one dataset.
#[derive(Debug, Clone)]
pub struct DataSplits {
    pub name: String,
    pub train: Examples,
    pub test: Examples,
    /// The task's headline metric.
    pub metric: Metric,
    /// sha256 of the content (raw pixels and labels of both splits), whatever the source
    /// format: part of every run id, so a run on other data is another run.
    pub fingerprint: String,
}

/// Incremental content hash of a dataset's splits.
#[derive(Default)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    /// Adds one split: its raw 8-bit pixels and its labels.
    pub fn add(&mut self, pixels: &[u8], labels: &[Label]) {
        self.0.update((pixels.len() as u64).to_le_bytes());
        self.0.update(pixels);
        hash_labels(&mut self.0, labels);
    }

    /// Starts a split whose pixels (`pixel_len` bytes) arrive in chunks; the result hashes
    /// exactly as [`Fingerprint::add`] of the whole split.
    pub fn split(&mut self, pixel_len: usize) -> SplitFingerprint<'_> {
        self.0.update((pixel_len as u64).to_le_bytes());
        SplitFingerprint(&mut self.0)
    }

    /// The hex digest.
    pub fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}

/// A split being fingerprinted chunk by chunk.
pub struct SplitFingerprint<'a>(&'a mut Sha256);

impl SplitFingerprint<'_> {
    /// The next pixel bytes.
    pub fn update(&mut self, pixels: &[u8]) {
        self.0.update(pixels);
    }

    /// The split's labels, after all its pixels.
    pub fn labels(self, labels: &[Label]) {
        hash_labels(self.0, labels);
    }
}

/// Labels as one byte each when they all fit (every dataset of up to 256 classes hashes as it
/// did when labels were bytes), else as little-endian u16.
fn hash_labels(hasher: &mut Sha256, labels: &[Label]) {
    hasher.update((labels.len() as u64).to_le_bytes());
    if labels.iter().all(|&l| l < 256) {
        hasher.update(labels.iter().map(|&l| l as u8).collect::<Vec<u8>>());
    } else {
        hasher.update(
            labels
                .iter()
                .flat_map(|l| l.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn toy(n: usize) -> ImageDataset {
        ImageDataset {
            pixels: (0..n * 4)
                .map(|v| (v / 4) as u8)
                .collect::<Vec<u8>>()
                .into(),
            labels: (0..n).map(|i| (i % 3) as Label).collect(),
            image_shape: [1, 2, 2],
            num_classes: 3,
            normalization: Normalization {
                mean: vec![0.0],
                std: vec![1.0 / 255.0],
            },
        }
    }

    #[test]
    fn subset_is_seeded_and_keeps_images_with_their_labels() {
        let data = toy(50);
        let a = data.subset(10, 4);
        assert_eq!(a.len(), 10);
        assert_eq!(a.labels, data.subset(10, 4).labels);
        for (i, label) in a.labels.iter().enumerate() {
            let original = a.pixels[i * 4] as usize;
            assert_eq!(*label, data.labels[original]);
        }
        assert_eq!(data.subset(500, 0).len(), 50);
    }

    #[test]
    fn the_validation_slice_is_seeded_and_disjoint_from_the_rest() {
        let data = Examples::Images(toy(50));
        let ids = |e: &Examples| -> Vec<u8> {
            let d = e.images().unwrap();
            (0..d.len()).map(|i| d.pixels[i * 4]).collect()
        };
        let (held, rest) = data.hold_out(12, 7);
        let (again, _) = data.hold_out(12, 7);
        assert_eq!(ids(&held), ids(&again), "the same slice for every caller");
        assert_eq!((held.len(), rest.len()), (12, 38));
        let (held, rest) = (ids(&held), ids(&rest));
        assert!(held.iter().all(|i| !rest.contains(i)), "never trained on");
        let mut all: Vec<u8> = held.iter().chain(&rest).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<u8>>(), "every example once");
        assert_ne!(
            ids(&data.hold_out(12, 8).0),
            held,
            "the seed chooses the slice"
        );
    }

    #[test]
    fn a_batch_holds_exactly_the_normalised_bytes() {
        // Every byte value in each of three channels, with CIFAR's statistics.
        let normalization = Normalization {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
        };
        let pixels: Vec<u8> = (0..3 * 256).map(|i| (i % 256) as u8).collect();
        let data = ImageDataset {
            pixels: pixels.clone().into(),
            labels: vec![0],
            image_shape: [3, 16, 16],
            num_classes: 1,
            normalization: normalization.clone(),
        };
        let (images, _) =
            data.batch::<crate::backend::TestBackend>(&[0], None, &Default::default());
        let got = images.into_data().to_vec::<f32>().unwrap();
        for (i, (&byte, value)) in pixels.iter().zip(got).enumerate() {
            let expected = normalization.apply(byte, i / 256);
            assert_eq!(value.to_bits(), expected.to_bits(), "pixel {i}");
        }
    }

    /// `cargo test --release --lib batch_assembly_speed -- --ignored --nocapture`: an MNIST
    /// batch (128 x 784 bytes) normalised by the per-channel table against `apply` per pixel,
    /// interleaved in one process, median of 21.
    #[test]
    #[ignore]
    fn batch_assembly_speed() {
        use std::time::Instant;
        let norm = Normalization {
            mean: vec![0.1307],
            std: vec![0.3081],
        };
        let bytes: Vec<u8> = (0..128 * 784).map(|i| (i * 7 % 251) as u8).collect();
        let table: [f32; 256] = std::array::from_fn(|b| norm.apply(b as u8, 0));
        let (mut direct, mut lookup) = (Vec::new(), Vec::new());
        for _ in 0..21 {
            let t = Instant::now();
            let a: Vec<f32> = bytes.iter().map(|&b| norm.apply(b, 0)).collect();
            direct.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let b: Vec<f32> = bytes.iter().map(|&b| table[b as usize]).collect();
            lookup.push(t.elapsed().as_secs_f64());
            assert_eq!(a, b);
        }
        direct.sort_by(f64::total_cmp);
        lookup.sort_by(f64::total_cmp);
        eprintln!(
            "apply per pixel {:.1} us, table {:.1} us",
            1e6 * direct[10],
            1e6 * lookup[10]
        );
    }

    #[test]
    fn augmentation_crops_with_zero_padding_and_flips() {
        // One 1x3x3 image with distinct pixels; the normalisation is the identity on bytes.
        let data = ImageDataset {
            pixels: (1..=9).collect::<Vec<u8>>().into(),
            labels: vec![0],
            image_shape: [1, 3, 3],
            num_classes: 1,
            normalization: Normalization {
                mean: vec![0.0],
                std: vec![1.0 / 255.0],
            },
        };
        let batch = |augmentation: Augmentation, seed: u64| -> Vec<f32> {
            let mut rng = StdRng::seed_from_u64(seed);
            let (images, _) = data.batch::<crate::backend::TestBackend>(
                &[0],
                Some((&augmentation, &mut rng)),
                &Default::default(),
            );
            images.into_data().to_vec::<f32>().unwrap()
        };
        let round = |v: Vec<f32>| v.iter().map(|x| x.round() as i32).collect::<Vec<_>>();
        let flip_only = Augmentation {
            crop_padding: 0,
            flip: true,
        };
        let outputs: std::collections::HashSet<Vec<i32>> =
            (0..20).map(|s| round(batch(flip_only, s))).collect();
        let expected: std::collections::HashSet<Vec<i32>> = [
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9],
            vec![3, 2, 1, 6, 5, 4, 9, 8, 7],
        ]
        .into_iter()
        .collect();
        assert_eq!(
            outputs, expected,
            "flip: the image or its mirror, both seen"
        );
        let crop = Augmentation {
            crop_padding: 1,
            flip: false,
        };
        for seed in 0..30 {
            let out = round(batch(crop, seed));
            // A shifted window: every kept pixel keeps its row/column neighbours, padding is 0.
            let nonzero: Vec<i32> = out.iter().copied().filter(|&v| v != 0).collect();
            assert!(nonzero.len() >= 4, "{out:?}");
            assert!(out.iter().all(|&v| (0..=9).contains(&v)), "{out:?}");
            assert_eq!(round(batch(crop, seed)), out, "seeded");
        }
        let shifted: std::collections::HashSet<Vec<i32>> =
            (0..60).map(|s| round(batch(crop, s))).collect();
        assert_eq!(shifted.len(), 9, "all 3x3 offsets occur");
        assert!(shifted.contains(&vec![0, 0, 0, 0, 1, 2, 0, 4, 5]));
    }
}
