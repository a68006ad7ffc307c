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
                let g_row = &gradient[j0..j0 + t.len()];
                for (w, &g) in t.iter_mut().zip(g_row) {
                    *w -= lr * (p[i] * g + wd * *w);
                }
            }),
            [velocity] => host::for_each_chunk(theta, [velocity], n, mix_ahead, |i, j0, t, [v]| {
                let g_row = &gradient[j0..j0 + t.len()];
                for ((w, v), &g) in t.iter_mut().zip(v.iter_mut()).zip(g_row) {
                    let g = p[i] * g + wd * *w;
                    *v = *v * mu + g;
                    let update = if nesterov { *v * mu + g } else { *v };
                    *w -= lr * update;
                }
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
