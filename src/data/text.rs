//! Tokenised text classification data: fixed-length id rows (padded with 0) and labels.

use burn::prelude::*;

use super::rows::{Label, subset_indices};

/// Additive attention bias for padding positions (exp(-1e4) is 0 in f32).
pub const PAD_BIAS: f32 = -1e4;

/// Token ids `[N, max_len]` (row-major, 0-padded) with each row's length and label.
#[derive(Debug, Clone)]
pub struct TextDataset {
    pub ids: Vec<u32>,
    pub lengths: Vec<u16>,
    pub max_len: usize,
    pub labels: Vec<Label>,
    pub num_classes: usize,
    /// Size of the tokenizer's vocabulary (the embedding table's rows).
    pub vocab: usize,
}

impl TextDataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The examples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> TextDataset {
        let mut ids = Vec::with_capacity(indices.len() * self.max_len);
        for &i in indices {
            ids.extend_from_slice(&self.ids[i * self.max_len..(i + 1) * self.max_len]);
        }
        TextDataset {
            ids,
            lengths: indices.iter().map(|&i| self.lengths[i]).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..self.clone_empty()
        }
    }

    fn clone_empty(&self) -> TextDataset {
        TextDataset {
            ids: Vec::new(),
            lengths: Vec::new(),
            max_len: self.max_len,
            labels: Vec::new(),
            num_classes: self.num_classes,
            vocab: self.vocab,
        }
    }

    /// A seeded random subset of `n` examples (all when `n >= len`).
    pub fn subset(&self, n: usize, seed: u64) -> TextDataset {
        match subset_indices(self.len(), n, seed) {
            Some(indices) => self.select(&indices),
            None => self.clone(),
        }
    }

    /// The batch at `indices`: ids `[B, T]` and attention bias `[B, T]` (0 for tokens,
    /// [`PAD_BIAS`] for padding), padded only to the batch's longest row, and labels `[B]`.
    pub fn batch<B: Backend>(
        &self,
        indices: &[usize],
        device: &B::Device,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 2>, Tensor<B, 1, Int>) {
        let t = indices
            .iter()
            .map(|&i| self.lengths[i] as usize)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut ids = Vec::with_capacity(indices.len() * t);
        let mut bias = Vec::with_capacity(indices.len() * t);
        for &i in indices {
            let row = &self.ids[i * self.max_len..i * self.max_len + t];
            ids.extend(row.iter().map(|&id| id as i64));
            let len = self.lengths[i] as usize;
            bias.extend((0..t).map(|j| if j < len { 0.0 } else { PAD_BIAS }));
        }
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        (
            Tensor::from_data(TensorData::new(ids, [indices.len(), t]), device),
            Tensor::from_data(TensorData::new(bias, [indices.len(), t]), device),
            Tensor::from_data(TensorData::new(labels, [indices.len()]), device),
        )
    }
}
