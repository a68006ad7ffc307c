//! SGD with burn's semantics (`burn::optim::Sgd`, dampening 0), applied to k copies at once.

use burn::prelude::*;

use crate::host;

/// `g += wd theta; v = mu v + g; theta -= lr (nesterov ? g + mu v : v)` (no `v` when
/// `mu = 0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
}

impl Sgd {
    /// The fused pass on host buffers (`[k, n]`): `p` is already multiplied by the gradient
    /// scale; `buffers` is empty without momentum, else the velocity.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn host(
        &self,
        lr: f32,
        p: &[f32],
        theta: &mut [f32],
        gradient: &[f32],
        buffers: &mut [Vec<f32>],
        n: usize,
        mix_ahead: Option<host::MixAhead<'_>>,
    ) {
        let &Sgd {
            momentum: mu,
            nesterov,
            weight_decay: wd,
        } = self;
        match buffers {
            [] => host::for_each_chunk(theta, [], n, mix_ahead, |i, j0, t, []| {
                let (g_row, p_i) = (&gradient[j0..j0 + t.len()], p[i]);
                host::vectorized(
                    #[inline(always)]
                    move || {
                        for (w, &g) in t.iter_mut().zip(g_row) {
                            *w -= lr * (p_i * g + wd * *w);
                        }
                    },
                )
            }),
            [velocity] => host::for_each_chunk(theta, [velocity], n, mix_ahead, |i, j0, t, [v]| {
                let (g_row, p_i) = (&gradient[j0..j0 + t.len()], p[i]);
                host::vectorized(
                    #[inline(always)]
                    move || {
                        for ((w, v), &g) in t.iter_mut().zip(v.iter_mut()).zip(g_row) {
                            let g = p_i * g + wd * *w;
                            *v = *v * mu + g;
                            let update = if nesterov { *v * mu + g } else { *v };
                            *w -= lr * update;
                        }
                    },
                )
            }),
            _ => unreachable!(
                "SGD with {} state buffers: the state is built from the rule",
                buffers.len()
            ),
        }
    }

    /// The same formulas as tensor operations (`gradient` is `p_i G`, already scaled).
    pub(super) fn tensor<B: Backend>(
        &self,
        lr: f64,
        theta: Tensor<B, 2>,
        gradient: Tensor<B, 2>,
        buffers: &mut [Tensor<B, 2>],
    ) -> Tensor<B, 2> {
        let &Sgd {
            momentum: mu,
            nesterov,
            weight_decay: wd,
        } = self;
        match buffers {
            [] => {
                let g = gradient + theta.clone().mul_scalar(wd);
                theta - g.mul_scalar(lr)
            }
            [velocity] => {
                let g = gradient + theta.clone().mul_scalar(wd);
                *velocity = velocity.clone().mul_scalar(mu) + g.clone();
                let update = if nesterov {
                    velocity.clone().mul_scalar(mu) + g
                } else {
                    velocity.clone()
                };
                theta - update.mul_scalar(lr)
            }
            _ => unreachable!(
                "SGD with {} state buffers: the state is built from the rule",
                buffers.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule of [`Sgd::host`] one element at a time, in a function of its own: compiled
    /// for the baseline (SSE2) whatever SIMD level the dispatch picks for the fused pass.
    #[inline(never)]
    fn baseline(sgd: Sgd, lr: f32, p: &[f32], theta: &mut [f32], g: &[f32], v: &mut [f32]) {
        let n = g.len();
        for (j, (w, v)) in theta.iter_mut().zip(v.iter_mut()).enumerate() {
            let g = p[j / n] * g[j % n] + sgd.weight_decay * *w;
            *v = *v * sgd.momentum + g;
            *w -= lr
                * if sgd.nesterov {
                    *v * sgd.momentum + g
                } else {
                    *v
                };
        }
    }

    /// The fused pass, on the SIMD level this CPU has, gives the baseline's bits (so stored
    /// results do not depend on the machine's SIMD level), with and without mixing ahead.
    #[test]
    fn the_fused_pass_gives_the_baseline_bits() {
        let (k, n) = (3, 40_003);
        let value = |i: usize, scale: f32| ((i * 7919 % 2003) as f32 - 1001.0) * scale;
        let theta0: Vec<f32> = (0..k * n).map(|i| value(i, 1e-3)).collect();
        let g: Vec<f32> = (0..n).map(|i| value(i + 5, 3e-4)).collect();
        let p = [0.5f32, 0.3, 0.2];
        for nesterov in [false, true] {
            let sgd = Sgd {
                momentum: 0.9,
                nesterov,
                weight_decay: 5e-4,
            };
            let (mut want, mut v_want) = (theta0.clone(), vec![0.1f32; k * n]);
            baseline(sgd, 0.05, &p, &mut want, &g, &mut v_want);
            for ahead in [false, true] {
                let (mut theta, mut buffers) = (theta0.clone(), vec![vec![0.1f32; k * n]]);
                let mut mixed = Vec::new();
                let mix_ahead = ahead.then_some(host::MixAhead {
                    p: &p,
                    out: &mut mixed,
                });
                sgd.host(0.05, &p, &mut theta, &g, &mut buffers, n, mix_ahead);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert!(bits(&theta) == bits(&want), "copies, nesterov {nesterov}");
                assert!(bits(&buffers[0]) == bits(&v_want), "velocity");
            }
        }
    }
}
