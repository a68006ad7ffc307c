//! Multi-head scaled dot-product attention on host slices, forward and backward, one task per
//! sequence of the batch. Queries, keys and values stay in the projections' `[batch, len,
//! heads * head_dim]` layout: each head is a strided view the gemm reads directly, so the
//! head split and merge copies of the composed version disappear, and the key bias (0 for
//! tokens, a large negative number for padding), the scaling and the softmax are applied to
//! each head's score block while it is in cache.

use rayon::prelude::*;

use super::gelu::exp_nonpositive;
use super::linalg::{Dst, Operand, matmul, written_by};

/// Geometry: `batch` sequences of `len` tokens, `heads` heads of `head_dim` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub len: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Values of one sequence in `[len, width]`.
    fn sequence(&self) -> usize {
        self.len * self.width()
    }

    /// Values of one sequence's attention weights, `[heads, len, len]`.
    fn weights(&self) -> usize {
        self.heads * self.len * self.len
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// One head of one sequence, `[len, head_dim]`, in a `[len, width]` block.
fn head<'a>(block: &'a [f32], s: &AttentionShape, h: usize) -> Operand<'a> {
    Operand::rows(&block[h * s.head_dim..], s.width())
}

/// The context `[batch, len, width]` and the attention weights `[batch, heads, len, len]`
/// (kept for the backward pass), for `key_bias` `[batch, len]`.
pub fn forward(
    s: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    key_bias: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (t, dh) = (s.len, s.head_dim);
    let mut weights = vec![0.0f32; s.batch * s.weights()];
    let context = written_by(s.batch * s.sequence(), |context| {
        context
            .par_chunks_mut(s.sequence())
            .zip(weights.par_chunks_mut(s.weights()))
            .enumerate()
            .for_each(|(b, (context, weights))| {
                let at = b * s.sequence();
                let (q, k, v) = (
                    &q[at..at + s.sequence()],
                    &k[at..at + s.sequence()],
                    &v[at..at + s.sequence()],
                );
                let bias = &key_bias[b * t..(b + 1) * t];
                for h in 0..s.heads {
                    let p = &mut weights[h * t * t..(h + 1) * t * t];
                    // Scores: Q K^T, then scale, bias and softmax per row.
                    matmul(
                        [t, t, dh],
                        Dst::Overwrite(p),
                        head(q, s, h),
                        head(k, s, h).transposed_view(),
                    );
                    for row in p.chunks_mut(t) {
                        let mut max = f32::NEG_INFINITY;
                        for (x, b) in row.iter_mut().zip(bias) {
                            *x = *x * s.scale() + b;
                            max = max.max(*x);
                        }
                        let mut sum = 0.0f32;
                        for x in row.iter_mut() {
                            *x = exp_nonpositive(*x - max);
                            sum += *x;
                        }
                        let inv = 1.0 / sum;
                        row.iter_mut().for_each(|x| *x *= inv);
                    }
                }
                for h in 0..s.heads {
                    let p = &weights[h * t * t..(h + 1) * t * t];
                    matmul(
                        [t, dh, t],
                        Dst::WriteStrided(&mut context[h * dh..], s.width()),
                        Operand::rows(p, t),
                        head(v, s, h),
                    );
                }
            });
    });
    (context, weights)
}

/// Gradients of the queries, keys and values for the context's gradient `dc`.
pub fn backward(
    s: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    weights: &[f32],
    dc: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (t, dh) = (s.len, s.head_dim);
    let n = s.batch * s.sequence();
    let mut dq = vec![0.0f32; n];
    let mut dk = vec![0.0f32; n];
    let mut dv = vec![0.0f32; n];
    dq.par_chunks_mut(s.sequence())
        .zip(dk.par_chunks_mut(s.sequence()))
        .zip(dv.par_chunks_mut(s.sequence()))
        .enumerate()
        .for_each_init(
            || vec![0.0f32; t * t],
            |dp, (b, ((dq, dk), dv))| {
                let at = b * s.sequence();
                let (q, k, v, dc) = (
                    &q[at..at + s.sequence()],
                    &k[at..at + s.sequence()],
                    &v[at..at + s.sequence()],
                    &dc[at..at + s.sequence()],
                );
                for h in 0..s.heads {
                    let p = &weights[(b * s.heads + h) * t * t..(b * s.heads + h + 1) * t * t];
                    // dV = P^T dC
                    matmul(
                        [t, dh, t],
                        Dst::OverwriteStrided(&mut dv[h * dh..], s.width()),
                        Operand::rows(p, t).transposed_view(),
                        head(dc, s, h),
                    );
                    // dP = dC V^T, then dS = P * (dP - rowsum(dP * P)) * scale.
                    matmul(
                        [t, t, dh],
                        Dst::Overwrite(dp),
                        head(dc, s, h),
                        head(v, s, h).transposed_view(),
                    );
                    for (dp_row, p_row) in dp.chunks_mut(t).zip(p.chunks(t)) {
                        let dot: f32 = dp_row.iter().zip(p_row).map(|(a, b)| a * b).sum();
                        for (d, p) in dp_row.iter_mut().zip(p_row) {
                            *d = p * (*d - dot) * s.scale();
                        }
                    }
                    // dQ = dS K, dK = dS^T Q
                    matmul(
                        [t, dh, t],
                        Dst::OverwriteStrided(&mut dq[h * dh..], s.width()),
                        Operand::rows(dp, t),
                        head(k, s, h),
                    );
                    matmul(
                        [t, dh, t],
                        Dst::OverwriteStrided(&mut dk[h * dh..], s.width()),
                        Operand::rows(dp, t).transposed_view(),
                        head(q, s, h),
                    );
                }
            },
        );
    (dq, dk, dv)
}
