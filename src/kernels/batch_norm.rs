//! BatchNorm over `[n, c, h*w]` on host slices, fused with an optional residual addition and
//! ReLU (`relu(bn(x) + skip)`, the tail of a ResNet basic block), forward and backward, both
//! cores busy. Statistics are per channel over the batch and the pixels, the variance biased
//! (burn's and PyTorch's training-mode normalisation); sums are accumulated in f64.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::linalg::written_by;
use crate::host::vectorized;

/// Geometry: `n` images of `c` channels of `pixels` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BnShape {
    pub n: usize,
    pub c: usize,
    pub pixels: usize,
}

impl BnShape {
    /// Values per channel.
    fn count(&self) -> usize {
        self.n * self.pixels
    }

    /// The rows (`pixels` values each) of channel `c`, in batch order.
    fn rows<'a>(&self, data: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> {
        let (pixels, stride) = (self.pixels, self.c * self.pixels);
        (0..self.n).map(move |i| &data[i * stride + c * pixels..i * stride + (c + 1) * pixels])
    }
}

/// Lanes of the partial sums below: independent accumulators let the compiler vectorize a
/// floating-point sum (a single running sum must be added in order, one value at a time).
const LANES: usize = 16;

/// `(sum f(a, b, c).0, sum f(a, b, c).1)` over three equally long rows.
fn sum_pairs(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(f32, f32, f32) -> (f32, f32),
) -> (f32, f32) {
    vectorized(
        #[inline(always)]
        move || {
            let whole = a.len() / LANES * LANES;
            let (mut p, mut q) = ([0.0f32; LANES], [0.0f32; LANES]);
            for ((a, b), c) in a[..whole]
                .chunks_exact(LANES)
                .zip(b[..whole].chunks_exact(LANES))
                .zip(c[..whole].chunks_exact(LANES))
            {
                for l in 0..LANES {
                    let (u, v) = f(a[l], b[l], c[l]);
                    p[l] += u;
                    q[l] += v;
                }
            }
            let (mut u, mut v) = (p.iter().sum::<f32>(), q.iter().sum::<f32>());
            for ((a, b), c) in a[whole..].iter().zip(&b[whole..]).zip(&c[whole..]) {
                let (du, dv) = f(*a, *b, *c);
                u += du;
                v += dv;
            }
            (u, v)
        },
    )
}

/// Per-channel statistics of a training-mode forward pass.
#[derive(Debug, Clone)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    /// Biased variance.
    pub var: Vec<f32>,
    /// `1 / sqrt(var + epsilon)`.
    pub inv_std: Vec<f32>,
}

/// Mean and biased variance of every channel of `x` (two passes, f64 sums).
pub fn batch_stats(s: &BnShape, x: &[f32], epsilon: f64) -> BatchStats {
    let count = s.count() as f64;
    let per_channel: Vec<(f32, f32, f32)> = (0..s.c)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = s
                .rows(x, c)
                .map(|r| sum_pairs(r, r, r, |v, _, _| (v, 0.0)).0 as f64)
                .sum();
            let mean = sum / count;
            let m = mean as f32;
            let sq: f64 = s
                .rows(x, c)
                .map(|r| sum_pairs(r, r, r, |v, _, _| ((v - m) * (v - m), 0.0)).0 as f64)
                .sum();
            let var = sq / count;
            (m, var as f32, (1.0 / (var + epsilon).sqrt()) as f32)
        })
        .collect();
    BatchStats {
        mean: per_channel.iter().map(|v| v.0).collect(),
        var: per_channel.iter().map(|v| v.1).collect(),
        inv_std: per_channel.iter().map(|v| v.2).collect(),
    }
}

/// `relu?((x - mean) * inv_std * gamma + beta + skip?)`.
pub fn normalize(
    s: &BnShape,
    x: &[f32],
    stats: &BatchStats,
    gamma: &[f32],
    beta: &[f32],
    skip: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    // burn's ReLU is `max(v, 0)` (NaN becomes 0); without ReLU values pass unchanged.
    let activate = move |v: f32| if relu { v.max(0.0) } else { v };
    written_by(x.len(), |y| {
        y.par_chunks_mut(s.pixels)
            .zip(x.par_chunks(s.pixels))
            .enumerate()
            .for_each(|(row, (y, x))| {
                let c = row % s.c;
                let scale = stats.inv_std[c] * gamma[c];
                let shift = beta[c] - stats.mean[c] * scale;
                let skip = skip.map(|skip| &skip[row * s.pixels..(row + 1) * s.pixels]);
                vectorized(
                    #[inline(always)]
                    move || match skip {
                        Some(skip) => {
                            for ((y, x), k) in y.iter_mut().zip(x).zip(skip) {
                                y.write(activate(x * scale + shift + k));
                            }
                        }
                        None => y.iter_mut().zip(x).for_each(|(y, x)| {
                            y.write(activate(x * scale + shift));
                        }),
                    },
                )
            });
    })
}

/// Which gradients to compute.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub input: bool,
    pub gamma: bool,
    pub beta: bool,
    pub skip: bool,
}

/// Gradients of [`normalize`] with batch statistics.
#[derive(Debug, Default)]
pub struct BnGrads {
    pub input: Option<Vec<f32>>,
    pub gamma: Option<Vec<f32>>,
    pub beta: Option<Vec<f32>>,
    pub skip: Option<Vec<f32>>,
}

/// Backward pass of the training-mode forward: `y` is the forward output (its sign is the
/// ReLU's mask; unused without ReLU), `dy` the output's gradient.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    s: &BnShape,
    x: &[f32],
    y: &[f32],
    stats: &BatchStats,
    gamma: &[f32],
    dy: &[f32],
    relu: bool,
    wanted: Wanted,
) -> BnGrads {
    // The gradient after the ReLU's mask.
    let masked = move |y: f32, g: f32| if !relu || y > 0.0 { g } else { 0.0 };
    // Per channel: sum(dz) and sum(dz * x_hat).
    let sums: Vec<(f64, f64)> = (0..s.c)
        .into_par_iter()
        .map(|c| {
            let (m, inv) = (stats.mean[c], stats.inv_std[c]);
            let mut sum_dz = 0.0f64;
            let mut sum_dz_xhat = 0.0f64;
            for ((x, y), g) in s.rows(x, c).zip(s.rows(y, c)).zip(s.rows(dy, c)) {
                let (a, b) = sum_pairs(x, y, g, |x, y, g| {
                    let dz = masked(y, g);
                    (dz, dz * (x - m) * inv)
                });
                sum_dz += a as f64;
                sum_dz_xhat += b as f64;
            }
            (sum_dz, sum_dz_xhat)
        })
        .collect();
    let count = s.count() as f64;
    let row_grad = |row: usize, x: &[f32], y: &[f32], g: &[f32], out: &mut [MaybeUninit<f32>]| {
        let c = row % s.c;
        let (m, inv) = (stats.mean[c], stats.inv_std[c]);
        let mean_dz = (sums[c].0 / count) as f32;
        let mean_dz_xhat = (sums[c].1 / count) as f32;
        let scale = gamma[c] * inv;
        vectorized(
            #[inline(always)]
            move || {
                for (((d, x), y), g) in out.iter_mut().zip(x).zip(y).zip(g) {
                    let x_hat = (x - m) * inv;
                    d.write(scale * (masked(*y, *g) - mean_dz - x_hat * mean_dz_xhat));
                }
            },
        )
    };
    fn rows(values: &[f32], row: usize, pixels: usize) -> &[f32] {
        &values[row * pixels..(row + 1) * pixels]
    }
    let p = s.pixels;
    let dx = wanted.input.then(|| {
        written_by(x.len(), |out| {
            out.par_chunks_mut(s.pixels)
                .enumerate()
                .for_each(|(row, out)| {
                    row_grad(row, rows(x, row, p), rows(y, row, p), rows(dy, row, p), out)
                })
        })
    });
    let dskip = wanted.skip.then(|| {
        written_by(x.len(), |out| {
            out.par_chunks_mut(s.pixels)
                .enumerate()
                .for_each(|(row, out)| {
                    let (y, dy) = (rows(y, row, p), rows(dy, row, p));
                    vectorized(
                        #[inline(always)]
                        move || {
                            for ((d, y), g) in out.iter_mut().zip(y).zip(dy) {
                                d.write(masked(*y, *g));
                            }
                        },
                    )
                })
        })
    });
    BnGrads {
        input: dx,
        gamma: wanted
            .gamma
            .then(|| sums.iter().map(|s| s.1 as f32).collect()),
        beta: wanted
            .beta
            .then(|| sums.iter().map(|s| s.0 as f32).collect()),
        skip: dskip,
    }
}
