//! Tokenised text classification data: fixed-length id rows (padded with 0), where each
//! row's second segment starts (sentence pairs), and labels.

use burn::prelude::*;

use super::rows::{Label, subset_indices};

/// Additive attention bias for padding positions (exp(-1e4) is 0 in f32).
pub const PAD_BIAS: f32 = -1e4;

/// Token ids `[N, max_len]` (row-major, 0-padded) with each row's length, segment start and
/// label.
#[derive(Debug, Clone)]
pub struct TextDataset {
    pub ids: Vec<u32>,
    pub lengths: Vec<u16>,
    /// Where each row's second segment (token type 1) starts: tokens `second[i]..lengths[i]`
    /// of a sentence pair (`[CLS] a [SEP] b [SEP]`: from `b`) have type 1, the rest type 0. A
    /// single sentence has `second[i] == lengths[i]`.
    pub second: Vec<u16>,
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
            second: indices.iter().map(|&i| self.second[i]).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..self.clone_empty()
        }
    }

    fn clone_empty(&self) -> TextDataset {
        TextDataset {
            ids: Vec::new(),
            lengths: Vec::new(),
            second: Vec::new(),
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
        let t = self.batch_width(indices);
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

    /// Width of the batch at `indices`: its longest row (at least 1), so batches are padded
    /// only as far as they need.
    fn batch_width(&self, indices: &[usize]) -> usize {
        indices
            .iter()
            .map(|&i| self.lengths[i] as usize)
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// The token types of the batch at `indices` (`[B, T]`, T as in [`TextDataset::batch`]):
    /// 1 on each row's second segment, 0 elsewhere (padding included); `None` when no row of
    /// the batch is a pair (every type 0).
    pub fn token_types<B: Backend>(
        &self,
        indices: &[usize],
        device: &B::Device,
    ) -> Option<Tensor<B, 2, Int>> {
        if indices.iter().all(|&i| self.second[i] >= self.lengths[i]) {
            return None;
        }
        let t = self.batch_width(indices);
        let mut types = Vec::with_capacity(indices.len() * t);
        for &i in indices {
            let (second, len) = (self.second[i] as usize, self.lengths[i] as usize);
            types.extend((0..t).map(|j| i64::from(j >= second && j < len)));
        }
        Some(Tensor::from_data(
            TensorData::new(types, [indices.len(), t]),
            device,
        ))
    }
}
