//! Evaluation of a classifier on a dataset: mean cross-entropy and accuracy.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;

use crate::data::ImageDataset;
use crate::models::Classifier;

/// Loss and accuracy of a model on a dataset.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    pub loss: f64,
    pub accuracy: f64,
}

/// Evaluates `model` in eval mode (mean kernels) on all of `data`, `batch` examples at a time.
pub fn evaluate<B: Backend, M: Classifier<B>>(
    model: &M,
    data: &ImageDataset,
    batch: usize,
    device: &B::Device,
) -> Metrics {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let indices: Vec<usize> = (0..data.len()).collect();
    let (mut loss_sum, mut correct) = (0.0f64, 0i64);
    for chunk in indices.chunks(batch.max(1)) {
        let (images, labels) = data.batch::<B>(chunk, device);
        let logits = model.forward(images, None);
        let loss: f32 = loss_fn
            .forward(logits.clone(), labels.clone())
            .into_scalar()
            .elem();
        loss_sum += loss as f64 * chunk.len() as f64;
        let hits: i64 = logits
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(labels)
            .int()
            .sum()
            .into_scalar()
            .elem();
        correct += hits;
    }
    let n = data.len().max(1) as f64;
    Metrics {
        loss: loss_sum / n,
        accuracy: correct as f64 / n,
    }
}
