//! LayerNorm over the last dimension on host slices, fused with the residual addition of a
//! post-norm Transformer block (`layer_norm(x + residual)`), forward and backward, rows split
//! across the cores. burn's autodiff composes it from ten broadcast operations, each a pass
//! over the activations on one core.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::linalg::written_by;

/// Rows per parallel task.
const ROWS: usize = 64;

/// What the backward pass needs from the forward pass: the normalised input and each row's
/// `1 / sqrt(var + epsilon)`.
#[derive(Debug, Clone)]
pub struct Saved {
    pub x_hat: Vec<f32>,
    pub inv_std: Vec<f32>,
}

/// `(x + residual?) normalised per row of `width`, times `gamma`, plus `beta?`.
pub fn forward(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: Option<&[f32]>,
    width: usize,
    epsilon: f64,
) -> (Vec<f32>, Saved) {
    let rows = x.len() / width;
    let mut inv_std = vec![0.0f32; rows];
    let mut x_hat = Vec::with_capacity(x.len());
    let y = written_by(x.len(), |y| {
        let x_hat = &mut x_hat.spare_capacity_mut()[..x.len()];
        y.par_chunks_mut(ROWS * width)
            .zip(x_hat.par_chunks_mut(ROWS * width))
            .zip(inv_std.par_chunks_mut(ROWS))
            .enumerate()
            .for_each(|(task, ((y, x_hat), inv_std))| {
                let first = task * ROWS * width;
                for (r, ((y, x_hat), inv)) in y
                    .chunks_mut(width)
                    .zip(x_hat.chunks_mut(width))
                    .zip(inv_std.iter_mut())
                    .enumerate()
                {
                    let at = first + r * width;
                    let input = &x[at..at + width];
                    // The summed input goes to `x_hat` first, then is normalised in place.
                    match residual {
                        Some(res) => {
                            for ((h, a), b) in x_hat.iter_mut().zip(input).zip(&res[at..at + width])
                            {
                                h.write(a + b);
                            }
                        }
                        None => x_hat.iter_mut().zip(input).for_each(|(h, a)| {
                            h.write(*a);
                        }),
                    }
                    // SAFETY: every value of this row was written just above.
                    let row = unsafe { &mut *(x_hat as *mut [MaybeUninit<f32>] as *mut [f32]) };
                    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / width as f64;
                    let var = row
                        .iter()
                        .map(|&v| (v as f64 - mean) * (v as f64 - mean))
                        .sum::<f64>()
                        / width as f64;
                    let inv_f64 = 1.0 / (var + epsilon).sqrt();
                    *inv = inv_f64 as f32;
                    let (mean, inv_f32) = (mean as f32, inv_f64 as f32);
                    for (j, (h, o)) in row.iter_mut().zip(y.iter_mut()).enumerate() {
                        *h = (*h - mean) * inv_f32;
                        o.write(*h * gamma[j] + beta.map_or(0.0, |b| b[j]));
                    }
                }
            });
    });
    // SAFETY: the tasks above wrote every value of `x_hat` (one per input value).
    unsafe { x_hat.set_len(x.len()) };
    (y, Saved { x_hat, inv_std })
}

/// Gradients of [`forward`]: the summed input's (also the residual's), `gamma`'s and `beta`'s.
pub fn backward(
    saved: &Saved,
    gamma: &[f32],
    dy: &[f32],
    width: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let parts: Vec<(Vec<f32>, Vec<f32>)> = (0..saved.inv_std.len().div_ceil(ROWS))
        .into_par_iter()
        .map(|task| {
            let (mut dgamma, mut dbeta) = (vec![0.0f32; width], vec![0.0f32; width]);
            let rows = task * ROWS..((task + 1) * ROWS).min(saved.inv_std.len());
            for r in rows {
                let x_hat = &saved.x_hat[r * width..(r + 1) * width];
                let g = &dy[r * width..(r + 1) * width];
                for j in 0..width {
                    dgamma[j] += g[j] * x_hat[j];
                    dbeta[j] += g[j];
                }
            }
            (dgamma, dbeta)
        })
        .collect();
    let mut dgamma = vec![0.0f32; width];
    let mut dbeta = vec![0.0f32; width];
    for (pg, pb) in &parts {
        dgamma.iter_mut().zip(pg).for_each(|(a, b)| *a += b);
        dbeta.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    let dx = written_by(dy.len(), |dx| {
        dx.par_chunks_mut(width).enumerate().for_each(|(r, dx)| {
            let x_hat = &saved.x_hat[r * width..(r + 1) * width];
            let g = &dy[r * width..(r + 1) * width];
            // With d = g * gamma: dx = inv / n * (n d - sum d - x_hat sum(d x_hat)).
            let (mut sum_d, mut sum_dx) = (0.0f64, 0.0f64);
            for j in 0..width {
                let d = (g[j] * gamma[j]) as f64;
                sum_d += d;
                sum_dx += d * x_hat[j] as f64;
            }
            let (mean_d, mean_dx) = (
                (sum_d / width as f64) as f32,
                (sum_dx / width as f64) as f32,
            );
            let inv = saved.inv_std[r];
            for j in 0..width {
                let d = g[j] * gamma[j];
                dx[j].write(inv * (d - mean_d - x_hat[j] * mean_dx));
            }
        })
    });
    (dx, dgamma, dbeta)
}
