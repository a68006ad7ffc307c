//! Adam and AdamW with burn's semantics (`burn::optim::{Adam, AdamW}`), applied to k copies at
//! once. Both keep two moments per element, updated by the one [`update_moments`].

use burn::prelude::*;

use crate::host;

/// Adam with L2 weight decay (`g += wd theta`), bias-corrected moments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
}

/// AdamW: `theta = theta (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
}

/// Adam's bias corrections at update `steps`: `(1 - beta1^t, 1 - beta2^t)`.
fn bias_corrections(beta1: f32, beta2: f32, steps: u64) -> (f32, f32) {
    let t = steps.min(i32::MAX as u64) as i32;
    (1.0 - beta1.powi(t), 1.0 - beta2.powi(t))
}

/// Adam's moment estimates after gradient `g` (burn's order of operations).
#[inline]
fn update_moments(m: &mut f32, v: &mut f32, g: f32, beta1: f32, beta2: f32) {
    *m = *m * beta1 + g * (1.0 - beta1);
    *v = *v * beta2 + g * g * (1.0 - beta2);
}

/// [`update_moments`] as tensor operations.
fn update_moment_tensors<B: Backend>(
    m: &mut Tensor<B, 2>,
    v: &mut Tensor<B, 2>,
    g: Tensor<B, 2>,
    beta1: f32,
    beta2: f32,
) {
    *m = m.clone().mul_scalar(beta1) + g.clone().mul_scalar(1.0 - beta1);
    *v = v.clone().mul_scalar(beta2) + g.square().mul_scalar(1.0 - beta2);
}

/// The two moment buffers, which the state always holds for Adam and AdamW.
fn moments<T>(buffers: &mut [T]) -> (&mut T, &mut T) {
    match buffers {
        [m, v] => (m, v),
        _ => unreachable!(
            "Adam with {} state buffers: the state is built from the rule",
            buffers.len()
        ),
    }
}

impl Adam {
    /// The fused pass on host buffers (`[k, n]`); `p` is already multiplied by the gradient
    /// scale.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn host(
        &self,
        lr: f32,
        steps: u64,
        p: &[f32],
        theta: &mut [f32],
        gradient: &[f32],
        buffers: &mut [Vec<f32>],
        n: usize,
        mix_ahead: Option<host::MixAhead<'_>>,
    ) {
        let &Adam {
            beta1,
            beta2,
            epsilon,
            weight_decay: wd,
        } = self;
        let (m1, m2) = moments(buffers);
        let (c1, c2) = bias_corrections(beta1, beta2, steps);
        let c2_sqrt = c2.sqrt();
        let factor = c2_sqrt / c1;
        let eps = epsilon * c2_sqrt;
        host::for_each_chunk(theta, [m1, m2], n, mix_ahead, |i, j0, t, [m, v]| {
            let (g_row, p_i) = (&gradient[j0..j0 + t.len()], p[i]);
            host::vectorized(
                #[inline(always)]
                move || {
                    let rows = t.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g_row);
                    for (((w, m), v), &g) in rows {
                        let g = p_i * g + wd * *w;
                        update_moments(m, v, g, beta1, beta2);
                        *w -= lr * (*m * factor / (v.sqrt() + eps));
                    }
                },
            )
        })
    }

    /// The same formulas as tensor operations (`gradient` is `p_i G`, already scaled).
    pub(super) fn tensor<B: Backend>(
        &self,
        lr: f64,
        steps: u64,
        theta: Tensor<B, 2>,
        gradient: Tensor<B, 2>,
        buffers: &mut [Tensor<B, 2>],
    ) -> Tensor<B, 2> {
        let &Adam {
            beta1,
            beta2,
            epsilon,
            weight_decay: wd,
        } = self;
        let (m, v) = moments(buffers);
        let g = gradient + theta.clone().mul_scalar(wd);
        let (c1, c2) = bias_corrections(beta1, beta2, steps);
        let c2_sqrt = c2.sqrt();
        update_moment_tensors(m, v, g, beta1, beta2);
        let update = m
            .clone()
            .mul_scalar(c2_sqrt / c1)
            .div(v.clone().sqrt().add_scalar(epsilon * c2_sqrt));
        theta - update.mul_scalar(lr)
    }
}

impl AdamW {
    /// The fused pass on host buffers (`[k, n]`); `p` is already multiplied by the gradient
    /// scale (weight decay is decoupled: never scaled).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn host(
        &self,
        lr: f32,
        steps: u64,
        p: &[f32],
        theta: &mut [f32],
        gradient: &[f32],
        buffers: &mut [Vec<f32>],
        n: usize,
        mix_ahead: Option<host::MixAhead<'_>>,
    ) {
        let &AdamW {
            beta1,
            beta2,
            epsilon,
            weight_decay: wd,
        } = self;
        let (m1, m2) = moments(buffers);
        let (c1, c2) = bias_corrections(beta1, beta2, steps);
        let keep = 1.0 - lr * wd;
        host::for_each_chunk(theta, [m1, m2], n, mix_ahead, |i, j0, t, [m, v]| {
            let (g_row, p_i) = (&gradient[j0..j0 + t.len()], p[i]);
            host::vectorized(
                #[inline(always)]
                move || {
                    let rows = t.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g_row);
                    for (((w, m), v), &g) in rows {
                        let g = p_i * g;
                        update_moments(m, v, g, beta1, beta2);
                        let update = (*m / c1) / ((*v / c2).sqrt() + epsilon);
                        *w = *w * keep - lr * update;
                    }
                },
            )
        })
    }

    /// The same formulas as tensor operations (`gradient` is `p_i G`, already scaled).
    pub(super) fn tensor<B: Backend>(
        &self,
        lr: f64,
        steps: u64,
        theta: Tensor<B, 2>,
        gradient: Tensor<B, 2>,
        buffers: &mut [Tensor<B, 2>],
    ) -> Tensor<B, 2> {
        let &AdamW {
            beta1,
            beta2,
            epsilon,
            weight_decay: wd,
        } = self;
        let (m, v) = moments(buffers);
        let (c1, c2) = bias_corrections(beta1, beta2, steps);
        update_moment_tensors(m, v, gradient, beta1, beta2);
        let update = m
            .clone()
            .div_scalar(c1)
            .div(v.clone().div_scalar(c2).sqrt().add_scalar(epsilon));
        theta.mul_scalar(1.0 - lr * wd as f64) - update.mul_scalar(lr)
    }
}
