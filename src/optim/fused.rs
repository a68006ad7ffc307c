//! The training loop's optimiser, driven for majority kernels by the kernel gradient.
//!
//! With `W = sum_i p_i theta_i`, the gradient of copy i is `p_i G` (`G = dL/dW`). Instead of
//! materialising those k gradients and running a generic optimiser over them (one pass over k
//! copies per elementary operation), [`CopyOptimizer`] applies burn's SGD / Adam / AdamW
//! formulas to every copy in one fused pass from `G` and `p`: read each copy and its state
//! once, write them once. On the CPU backend the pass runs in place on the host buffers; on
//! other backends it is the same formulas as tensor operations. Tested against burn's own
//! optimisers differentiating through the mixture (`crate::train::step`'s tests).
//!
//! Every other parameter (plain layers, biases, norms, embeddings; the whole baseline model)
//! is one copy with `p = [1]`, so MK and the baseline are updated by the same code and a step
//! time ratio measures MK, not two optimiser implementations.

use burn::module::ParamId;
use burn::prelude::*;
use std::path::Path;

use super::adam::{Adam, AdamW};
use super::sgd::Sgd;
use super::spec::OptimizerSpec;
use super::state::{self, Buffers, ParamState, States};
use crate::error::Result;
use crate::host;

/// The update rule, with burn's semantics (`burn::optim::{Sgd, Adam, AdamW}`, dampening 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CopyRule {
    Sgd(Sgd),
    Adam(Adam),
    AdamW(AdamW),
}

impl CopyRule {
    pub fn new(spec: &OptimizerSpec) -> Self {
        match *spec {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => CopyRule::Sgd(Sgd {
                momentum: momentum as f32,
                nesterov,
                weight_decay: weight_decay as f32,
            }),
            OptimizerSpec::Adam {
                beta1,
                beta2,
                epsilon,
                weight_decay,
                ..
            } => CopyRule::Adam(Adam {
                beta1: beta1 as f32,
                beta2: beta2 as f32,
                epsilon: epsilon as f32,
                weight_decay: weight_decay as f32,
            }),
            OptimizerSpec::AdamW {
                beta1,
                beta2,
                epsilon,
                weight_decay,
                ..
            } => CopyRule::AdamW(AdamW {
                beta1: beta1 as f32,
                beta2: beta2 as f32,
                epsilon: epsilon as f32,
                weight_decay: weight_decay as f32,
            }),
        }
    }

    /// The fused pass on host buffers; `p` is already multiplied by the gradient scale.
    #[allow(clippy::too_many_arguments)]
    fn host(
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
        match self {
            CopyRule::Sgd(rule) => rule.host(lr, p, theta, gradient, buffers, n, mix_ahead),
            CopyRule::Adam(rule) => rule.host(lr, steps, p, theta, gradient, buffers, n, mix_ahead),
            CopyRule::AdamW(rule) => {
                rule.host(lr, steps, p, theta, gradient, buffers, n, mix_ahead)
            }
        }
    }

    /// The same formulas as tensor operations (`gradient` is `p_i G`, already scaled).
    fn tensor<B: Backend>(
        &self,
        lr: f64,
        steps: u64,
        theta: Tensor<B, 2>,
        gradient: Tensor<B, 2>,
        buffers: &mut [Tensor<B, 2>],
    ) -> Tensor<B, 2> {
        match self {
            CopyRule::Sgd(rule) => rule.tensor(lr, theta, gradient, buffers),
            CopyRule::Adam(rule) => rule.tensor(lr, steps, theta, gradient, buffers),
            CopyRule::AdamW(rule) => rule.tensor(lr, steps, theta, gradient, buffers),
        }
    }
}

/// Updates every parameter's copies from its kernel gradient and mixing coefficients.
pub struct CopyOptimizer<B: Backend> {
    rule: CopyRule,
    /// State buffers per copy element (momentum; Adam's two moments).
    buffers: usize,
    states: States<B>,
    /// Skip the host fast path (tests of the tensor path on the CPU backend).
    tensor_path_only: bool,
}

impl<B: Backend> CopyOptimizer<B> {
    pub fn new(spec: &OptimizerSpec) -> Self {
        Self {
            rule: CopyRule::new(spec),
            buffers: spec.state_buffers(),
            states: States::new(),
            tensor_path_only: false,
        }
    }

    /// Always uses tensor operations, as on a GPU backend.
    pub fn tensor_path_only(mut self) -> Self {
        self.tensor_path_only = true;
        self
    }

    /// One update of the copies `theta` (`[k, n]`) of parameter `id`, given `grad = dL/dW`
    /// (`[1, n]`) for the kernel mixed with `p`, the copies' gradients multiplied by
    /// `grad_scale` (MK's learning-rate compensation; weight decay is not scaled, exactly as
    /// scaling the gradient before a generic optimiser). A plain parameter is `k = 1`,
    /// `p = [1]`, `grad_scale = 1`. Returns the updated copies (in place on the CPU backend
    /// when `theta` is not shared).
    pub fn step(
        &mut self,
        lr: f64,
        id: ParamId,
        theta: Tensor<B, 2>,
        grad: Tensor<B, 2>,
        p: &[f32],
        grad_scale: f32,
    ) -> Tensor<B, 2> {
        self.step_mixing_ahead(lr, id, theta, grad, p, grad_scale, None)
            .0
    }

    /// [`CopyOptimizer::step`], which also mixes the updated copies with `next` (the next
    /// step's coefficients of this kernel) while they are in cache, on the CPU backend: the
    /// next step's kernel, `sum_i next_i theta_i`, the very values `host::mix` computes; `None`
    /// on other backends or without `next`.
    #[allow(clippy::too_many_arguments)]
    pub fn step_mixing_ahead(
        &mut self,
        lr: f64,
        id: ParamId,
        theta: Tensor<B, 2>,
        grad: Tensor<B, 2>,
        p: &[f32],
        grad_scale: f32,
        next: Option<&[f32]>,
    ) -> (Tensor<B, 2>, Option<Vec<f32>>) {
        let [k, n] = theta.dims();
        if let Some(next) = next {
            assert_eq!(next.len(), k, "one next coefficient per copy");
        }
        assert_eq!(p.len(), k, "one coefficient per copy");
        let rule = self.rule;
        let scaled: Vec<f32> = p.iter().map(|&p_i| p_i * grad_scale).collect();
        let state = self
            .states
            .entry(id)
            .or_insert_with(|| ParamState::new(self.buffers));
        state.steps += 1;
        let steps = state.steps;
        let host_state = match &mut state.buffers {
            Buffers::Host(buffers) if !self.tensor_path_only => Some(buffers),
            _ => None,
        };
        let theta = match host_state {
            Some(buffers) => {
                let mut mixed = Vec::new();
                match host::update_in_place(theta, grad, |copies, gradient| {
                    for b in buffers.iter_mut() {
                        b.resize(k * n, 0.0);
                    }
                    let mix_ahead = next.map(|p| host::MixAhead { p, out: &mut mixed });
                    rule.host(
                        lr as f32, steps, &scaled, copies, gradient, buffers, n, mix_ahead,
                    );
                }) {
                    Ok(theta) => return (theta, next.map(|_| mixed)),
                    Err(back) => back,
                }
            }
            None => (theta, grad),
        };
        // Tensor path (GPU backends): the state lives on the device.
        let (theta, grad) = theta;
        let device = theta.device();
        if let Buffers::Host(on_host) = &state.buffers {
            let buffers = on_host
                .iter()
                .map(|b| {
                    if b.is_empty() {
                        Tensor::zeros([k, n], &device)
                    } else {
                        Tensor::from_data(TensorData::new(b.clone(), [k, n]), &device)
                    }
                })
                .collect();
            state.buffers = Buffers::Device(buffers);
        }
        let Buffers::Device(buffers) = &mut state.buffers else {
            unreachable!("moved to the device above")
        };
        let gradient = if k == 1 && scaled[0] == 1.0 {
            grad
        } else {
            Tensor::<B, 2>::from_data(TensorData::new(scaled, [k, 1]), &device).matmul(grad)
        };
        (rule.tensor(lr, steps, theta, gradient, buffers), None)
    }

    /// Saves every parameter's state to `path` (written whole or not at all; see
    /// `optim::state`).
    pub fn save(&self, path: &Path) -> Result<()> {
        state::save(&self.states, path)
    }

    /// Loads the state [`CopyOptimizer::save`] wrote; the error names the file.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        self.states = state::load(path, self.buffers)?;
        Ok(())
    }
}
