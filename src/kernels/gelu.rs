//! Exact (erf-based) GELU on host slices, forward and backward, vectorised and on every core:
//! burn's CPU backend calls a scalar `erf` on one core. `erf` here is Abramowitz & Stegun
//! 7.1.26 (absolute error <= 1.5e-7) with `erfc` kept as a product, so no cancellation for
//! negative inputs; `exp` is Cephes' `expf` polynomial. Not the tanh approximation.

use std::f32::consts::{FRAC_1_SQRT_2, LOG2_E};

use rayon::prelude::*;

use super::linalg::written_by;
use crate::host::vectorized;

/// Elements per parallel task.
const CHUNK: usize = 1 << 13;

/// `e^y` for `y <= 0` (Cephes `expf`: relative error about 1e-7), and exactly 0 below -86
/// (where `e^y` would be a denormal, whose arithmetic is about 100x slower: a softmax over
/// padded keys is mostly such values).
#[inline(always)]
pub(super) fn exp_nonpositive(y: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let underflow = y < -86.0;
    let y = y.max(-86.0);
    // Round to nearest by adding and subtracting 1.5 * 2^23 (|y * log2 e| < 2^22): plain
    // SSE2 arithmetic, where `round` is a libm call the loop cannot vectorize.
    const ROUND: f32 = 12_582_912.0;
    let n = (y * LOG2_E + ROUND) - ROUND;
    let r = y - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let value = e * f32::from_bits(((n as i32 + 127) << 23) as u32);
    if underflow { 0.0 } else { value }
}

/// `(Phi(x), e^(-x^2/2))`: the standard normal CDF and the unnormalised density.
#[inline(always)]
fn cdf_and_density(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let z = x.abs() * FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let density = exp_nonpositive(-z * z);
    // erfc(|x| / sqrt 2) = poly * e^(-x^2/2); Phi(x) = erfc(-x / sqrt 2) / 2.
    let tail = 0.5 * poly * density;
    let cdf = if x >= 0.0 { 1.0 - tail } else { tail };
    (cdf, density)
}

/// `x * Phi(x)` element-wise.
pub fn forward(x: &[f32]) -> Vec<f32> {
    written_by(x.len(), |out| {
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(out, x)| {
                vectorized(
                    #[inline(always)]
                    move || {
                        for (o, &v) in out.iter_mut().zip(x) {
                            o.write(v * cdf_and_density(v).0);
                        }
                    },
                )
            })
    })
}

/// `dy * (Phi(x) + x * phi(x))` element-wise.
pub fn backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    written_by(x.len(), |out| {
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
            .for_each(|(out, (x, dy))| {
                vectorized(
                    #[inline(always)]
                    move || {
                        for ((o, &v), &g) in out.iter_mut().zip(x).zip(dy) {
                            let (cdf, density) = cdf_and_density(v);
                            o.write(g * (cdf + v * INV_SQRT_2PI * density));
                        }
                    },
                )
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scalar formulas in f64 (`erf` from statrs).
    fn reference(x: f64) -> (f64, f64) {
        let cdf = 0.5 * (1.0 + statrs::function::erf::erf(x / std::f64::consts::SQRT_2));
        let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        (x * cdf, cdf + x * pdf)
    }

    /// GELU one element at a time, in a function of its own: compiled for the baseline
    /// (SSE2) whatever SIMD level the dispatch picks for [`forward`].
    #[inline(never)]
    fn forward_baseline(xs: &[f32]) -> Vec<f32> {
        xs.iter().map(|&v| v * cdf_and_density(v).0).collect()
    }

    /// The SIMD copy the dispatch runs on this CPU (AVX-512 or AVX2 where it has them) gives
    /// the baseline's bits: a division, a float-to-int conversion, comparisons and a long
    /// chain of products and sums, so stored results do not depend on the CPU's SIMD level.
    #[test]
    fn every_simd_level_gives_the_baseline_bits() {
        let xs: Vec<f32> = (-20_000..=20_000)
            .map(|i| i as f32 / 997.0)
            .chain([-100.0, 100.0, 1e-7, -1e-7, 0.0, -0.0])
            .collect();
        let (wide, baseline) = (forward(&xs), forward_baseline(&xs));
        for ((x, a), b) in xs.iter().zip(&wide).zip(&baseline) {
            assert_eq!(a.to_bits(), b.to_bits(), "gelu({x}): {a} vs {b}");
        }
    }

    #[test]
    fn gelu_and_its_derivative_are_the_erf_formula_within_1e_6() {
        // Every 1/1000 from -12 to 12, plus the extremes.
        let xs: Vec<f32> = (-12_000..=12_000)
            .map(|i| i as f32 / 1000.0)
            .chain([-100.0, -30.0, 30.0, 100.0, 1e-7, -1e-7])
            .collect();
        let ones = vec![1.0f32; xs.len()];
        let (y, dy) = (forward(&xs), backward(&xs, &ones));
        for ((&x, &y), &d) in xs.iter().zip(&y).zip(&dy) {
            let (want_y, want_d) = reference(x as f64);
            // Absolute 1e-6 up to |value| 1, then relative (f32 spacing at 30 is 2e-6).
            let tolerance = |v: f64| 1e-6 * v.abs().max(1.0);
            assert!(
                (y as f64 - want_y).abs() <= tolerance(want_y),
                "gelu({x}) = {y}, want {want_y}"
            );
            assert!(
                (d as f64 - want_d).abs() <= tolerance(want_d),
                "gelu'({x}) = {d}, want {want_d}"
            );
        }
    }
}
