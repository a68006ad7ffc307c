//! In-memory image classification data and batching.

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use sha2::{Digest, Sha256};

use super::text::TextDataset;

/// Images as normalised `f32` pixels, `[N, C, H, W]` row-major, with integer labels.
#[derive(Debug, Clone)]
pub struct ImageDataset {
    pub pixels: Vec<f32>,
    pub labels: Vec<u8>,
    /// `[channels, height, width]` of one image.
    pub image_shape: [usize; 3],
    pub num_classes: usize,
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
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            image_shape: self.image_shape,
            num_classes: self.num_classes,
        }
    }

    /// The batch at `indices` as `([B, C, H, W] images, [B] labels)` tensors on `device`.
    pub fn batch<B: Backend>(
        &self,
        indices: &[usize],
        device: &B::Device,
    ) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
        let len = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * len);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend_from_slice(&self.pixels[i * len..(i + 1) * len]);
            labels.push(self.labels[i] as i64);
        }
        let [c, h, w] = self.image_shape;
        let images = Tensor::from_data(TensorData::new(pixels, [indices.len(), c, h, w]), device);
        let labels = Tensor::from_data(TensorData::new(labels, [indices.len()]), device);
        (images, labels)
    }
}

/// Sorted indices of a seeded random subset of `n` of `len` examples; `None` when `n >= len`
/// (the whole set).
pub fn subset_indices(len: usize, n: usize, seed: u64) -> Option<Vec<usize>> {
    if n >= len {
        return None;
    }
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    order.truncate(n);
    order.sort_unstable();
    Some(order)
}

/// The inputs of a batch, as the model families take them.
#[derive(Debug, Clone)]
pub enum Inputs<B: Backend> {
    /// `[batch, channels, height, width]`.
    Images(Tensor<B, 4>),
    /// Token ids `[batch, len]` and the additive attention bias `[batch, len]`.
    Tokens {
        ids: Tensor<B, 2, Int>,
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

    pub fn labels(&self) -> &[u8] {
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

    /// The batch at `indices` on `device`: inputs and labels.
    pub fn batch<B: Backend>(
        &self,
        indices: &[usize],
        device: &B::Device,
    ) -> (Inputs<B>, Tensor<B, 1, Int>) {
        match self {
            Examples::Images(d) => {
                let (images, labels) = d.batch(indices, device);
                (Inputs::Images(images), labels)
            }
            Examples::Text(d) => {
                let (ids, attention_bias, labels) = d.batch(indices, device);
                (
                    Inputs::Tokens {
                        ids,
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
    pub fn add(&mut self, pixels: &[u8], labels: &[u8]) {
        self.0.update((pixels.len() as u64).to_le_bytes());
        self.0.update(pixels);
        self.0.update((labels.len() as u64).to_le_bytes());
        self.0.update(labels);
    }

    /// The hex digest.
    pub fn finish(self) -> String {
        hex(&self.0.finalize())
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

    fn toy(n: usize) -> ImageDataset {
        ImageDataset {
            pixels: (0..n * 4).map(|v| v as f32).collect(),
            labels: (0..n).map(|i| (i % 3) as u8).collect(),
            image_shape: [1, 2, 2],
            num_classes: 3,
        }
    }

    #[test]
    fn subset_is_seeded_and_keeps_images_with_their_labels() {
        let data = toy(50);
        let a = data.subset(10, 4);
        assert_eq!(a.len(), 10);
        assert_eq!(a.labels, data.subset(10, 4).labels);
        for (i, label) in a.labels.iter().enumerate() {
            let original = a.pixels[i * 4] as usize / 4;
            assert_eq!(*label, data.labels[original]);
        }
        assert_eq!(data.subset(500, 0).len(), 50);
    }
}
