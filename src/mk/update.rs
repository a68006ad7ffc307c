//! The training loop's optimiser, driven for majority kernels by the kernel gradient.
//!
//! With `W = sum_i p_i theta_i`, the gradient of copy i is `p_i G` (`G = dL/dW`). Instead of
//! materialising those k gradients and running a generic optimiser over them (one pass over k
//! copies per elementary operation), [`CopyOptimizer`] applies burn's SGD / Adam / AdamW
//! formulas to every copy in one fused pass from `G` and `p`: read each copy and its state
//! once, write them once. On the CPU backend the pass runs in place on the host buffers; on
//! other backends it is the same formulas as tensor operations. Tested against burn's own
//! optimisers differentiating through the mixture.
//!
//! Every other parameter (plain layers, biases, norms, embeddings; the whole baseline model)
//! is one copy with `p = [1]`, so MK and the baseline are updated by the same code and a step
//! time ratio measures MK, not two optimiser implementations.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use burn::module::ParamId;
use burn::prelude::*;

use super::fast;
use crate::train::OptimizerSpec;

/// The update rule, with burn's semantics (`burn::optim::{Sgd, Adam, AdamW}`, dampening 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CopyRule {
    /// `g += wd theta; v = mu v + g; theta -= lr (nesterov ? g + mu v : v)` (no `v` when
    /// `mu = 0`).
    Sgd {
        momentum: f32,
        nesterov: bool,
        weight_decay: f32,
    },
    /// Adam with L2 weight decay (`g += wd theta`), bias-corrected moments.
    Adam {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        weight_decay: f32,
    },
    /// AdamW: `theta = theta (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps)`.
    AdamW {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        weight_decay: f32,
    },
}

impl CopyRule {
    pub fn new(spec: &OptimizerSpec) -> Self {
        match *spec {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => CopyRule::Sgd {
                momentum: momentum as f32,
                nesterov,
                weight_decay: weight_decay as f32,
            },
            OptimizerSpec::Adam {
                beta1,
                beta2,
                epsilon,
                weight_decay,
                ..
            } => CopyRule::Adam {
                beta1: beta1 as f32,
                beta2: beta2 as f32,
                epsilon: epsilon as f32,
                weight_decay: weight_decay as f32,
            },
            OptimizerSpec::AdamW {
                beta1,
                beta2,
                epsilon,
                weight_decay,
                ..
            } => CopyRule::AdamW {
                beta1: beta1 as f32,
                beta2: beta2 as f32,
                epsilon: epsilon as f32,
                weight_decay: weight_decay as f32,
            },
        }
    }
}

/// One layer's optimiser state: on the host (CPU fast path) or as device tensors.
enum Buffers<B: Backend> {
    Host(Vec<Vec<f32>>),
    Device(Vec<Tensor<B, 2>>),
}

struct CopyState<B: Backend> {
    /// Updates applied so far (Adam's bias correction).
    steps: u64,
    buffers: Buffers<B>,
}

/// Updates every MK layer's copies from its kernel gradient and mixing coefficients.
pub struct CopyOptimizer<B: Backend> {
    rule: CopyRule,
    /// State buffers per copy element (momentum; Adam's two moments).
    buffers: usize,
    states: HashMap<ParamId, CopyState<B>>,
    /// Skip the host fast path (tests of the tensor path on the CPU backend).
    tensor_path_only: bool,
}

impl<B: Backend> CopyOptimizer<B> {
    pub fn new(spec: &OptimizerSpec) -> Self {
        Self {
            rule: CopyRule::new(spec),
            buffers: spec.state_buffers(),
            states: HashMap::new(),
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
        let [k, n] = theta.dims();
        assert_eq!(p.len(), k, "one coefficient per copy");
        let rule = self.rule;
        let scaled: Vec<f32> = p.iter().map(|&p_i| p_i * grad_scale).collect();
        let state = self.states.entry(id).or_insert_with(|| CopyState {
            steps: 0,
            buffers: Buffers::Host(vec![Vec::new(); self.buffers]),
        });
        state.steps += 1;
        let steps = state.steps;
        let host_state = match &mut state.buffers {
            Buffers::Host(buffers) if !self.tensor_path_only => Some(buffers),
            _ => None,
        };
        let theta = match host_state {
            Some(buffers) => {
                match fast::update_in_place(theta, grad, |copies, gradient| {
                    for b in buffers.iter_mut() {
                        b.resize(k * n, 0.0);
                    }
                    host_update(
                        rule, lr as f32, steps, &scaled, copies, gradient, buffers, n,
                    );
                }) {
                    Ok(theta) => return theta,
                    Err(back) => back,
                }
            }
            None => (theta, grad),
        };
        // Tensor path (GPU backends): the state lives on the device.
        let (theta, grad) = theta;
        let device = theta.device();
        if let Buffers::Host(host) = &state.buffers {
            let buffers = host
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
        tensor_update(rule, lr, steps, theta, gradient, buffers)
    }

    /// Saves every layer's state to `path` (written whole or not at all).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.states.len() as u64).to_le_bytes());
        let mut ids: Vec<&ParamId> = self.states.keys().collect();
        ids.sort_by_key(|id| id.val());
        for id in ids {
            let state = &self.states[id];
            let buffers: Vec<Vec<f32>> = match &state.buffers {
                Buffers::Host(b) => b.clone(),
                Buffers::Device(b) => b
                    .iter()
                    .map(|t| t.to_data().convert::<f32>().to_vec().expect("f32 state"))
                    .collect(),
            };
            out.extend_from_slice(&id.val().to_le_bytes());
            out.extend_from_slice(&state.steps.to_le_bytes());
            out.extend_from_slice(&(buffers.len() as u64).to_le_bytes());
            for b in &buffers {
                out.extend_from_slice(&(b.len() as u64).to_le_bytes());
                for x in b {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        crate::atomic::write(path, &out).map_err(std::io::Error::other)
    }

    /// Loads the state [`CopyOptimizer::save`] wrote; the message says what is wrong.
    pub fn load(&mut self, path: &Path) -> Result<(), String> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read MK optimiser state: {e}"))?;
        let mut reader = Reader(&bytes);
        if reader.take(MAGIC.len())? != MAGIC {
            return Err("not an MK optimiser state file (bad magic)".into());
        }
        let mut states = HashMap::new();
        for _ in 0..reader.u64()? {
            let id = ParamId::from(reader.u64()?);
            let steps = reader.u64()?;
            let count = reader.u64()? as usize;
            if count != self.buffers {
                return Err(format!(
                    "MK optimiser state has {count} buffers per layer, the optimiser needs {}",
                    self.buffers
                ));
            }
            let mut buffers = Vec::with_capacity(count);
            for _ in 0..count {
                let len = reader.u64()? as usize;
                let raw = reader.take(len.checked_mul(4).ok_or("corrupt length")?)?;
                buffers.push(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                );
            }
            states.insert(
                id,
                CopyState {
                    steps,
                    buffers: Buffers::Host(buffers),
                },
            );
        }
        self.states = states;
        Ok(())
    }
}

const MAGIC: &[u8] = b"MKOPT001";

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if self.0.len() < len {
            return Err("MK optimiser state file is truncated".into());
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        let raw = self.take(8)?;
        Ok(u64::from_le_bytes(raw.try_into().expect("8 bytes")))
    }
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

/// The fused pass on host buffers; `p` is already multiplied by the gradient scale.
#[allow(clippy::too_many_arguments)]
fn host_update(
    rule: CopyRule,
    lr: f32,
    steps: u64,
    p: &[f32],
    theta: &mut [f32],
    gradient: &[f32],
    buffers: &mut [Vec<f32>],
    n: usize,
) {
    match (rule, buffers) {
        (
            CopyRule::Sgd {
                weight_decay: wd, ..
            },
            [],
        ) => fast::for_each_chunk(theta, [], n, |i, j0, t, []| {
            let g_row = &gradient[j0..j0 + t.len()];
            for (w, &g) in t.iter_mut().zip(g_row) {
                *w -= lr * (p[i] * g + wd * *w);
            }
        }),
        (
            CopyRule::Sgd {
                momentum: mu,
                nesterov,
                weight_decay: wd,
            },
            [velocity],
        ) => fast::for_each_chunk(theta, [velocity], n, |i, j0, t, [v]| {
            let g_row = &gradient[j0..j0 + t.len()];
            for ((w, v), &g) in t.iter_mut().zip(v.iter_mut()).zip(g_row) {
                let g = p[i] * g + wd * *w;
                *v = *v * mu + g;
                let update = if nesterov { *v * mu + g } else { *v };
                *w -= lr * update;
            }
        }),
        (
            CopyRule::Adam {
                beta1,
                beta2,
                epsilon,
                weight_decay: wd,
            },
            [m1, m2],
        ) => {
            let (c1, c2) = bias_corrections(beta1, beta2, steps);
            let c2_sqrt = c2.sqrt();
            let factor = c2_sqrt / c1;
            let eps = epsilon * c2_sqrt;
            fast::for_each_chunk(theta, [m1, m2], n, |i, j0, t, [m, v]| {
                let g_row = &gradient[j0..j0 + t.len()];
                for (((w, m), v), &g) in t.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g_row)
                {
                    let g = p[i] * g + wd * *w;
                    update_moments(m, v, g, beta1, beta2);
                    *w -= lr * (*m * factor / (v.sqrt() + eps));
                }
            })
        }
        (
            CopyRule::AdamW {
                beta1,
                beta2,
                epsilon,
                weight_decay: wd,
            },
            [m1, m2],
        ) => {
            let (c1, c2) = bias_corrections(beta1, beta2, steps);
            let keep = 1.0 - lr * wd;
            fast::for_each_chunk(theta, [m1, m2], n, |i, j0, t, [m, v]| {
                let g_row = &gradient[j0..j0 + t.len()];
                for (((w, m), v), &g) in t.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g_row)
                {
                    let g = p[i] * g;
                    update_moments(m, v, g, beta1, beta2);
                    let update = (*m / c1) / ((*v / c2).sqrt() + epsilon);
                    *w = *w * keep - lr * update;
                }
            })
        }
        (rule, buffers) => unreachable!(
            "{rule:?} with {} state buffers: CopyState is built from the rule",
            buffers.len()
        ),
    }
}

/// The same formulas as tensor operations (`gradient` is `p_i G`, already scaled).
fn tensor_update<B: Backend>(
    rule: CopyRule,
    lr: f64,
    steps: u64,
    theta: Tensor<B, 2>,
    gradient: Tensor<B, 2>,
    buffers: &mut [Tensor<B, 2>],
) -> Tensor<B, 2> {
    match (rule, buffers) {
        (
            CopyRule::Sgd {
                weight_decay: wd, ..
            },
            [],
        ) => {
            let g = gradient + theta.clone().mul_scalar(wd);
            theta - g.mul_scalar(lr)
        }
        (
            CopyRule::Sgd {
                momentum: mu,
                nesterov,
                weight_decay: wd,
            },
            [velocity],
        ) => {
            let g = gradient + theta.clone().mul_scalar(wd);
            *velocity = velocity.clone().mul_scalar(mu) + g.clone();
            let update = if nesterov {
                velocity.clone().mul_scalar(mu) + g
            } else {
                velocity.clone()
            };
            theta - update.mul_scalar(lr)
        }
        (
            CopyRule::Adam {
                beta1,
                beta2,
                epsilon,
                weight_decay: wd,
            },
            [m, v],
        ) => {
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
        (
            CopyRule::AdamW {
                beta1,
                beta2,
                epsilon,
                weight_decay: wd,
            },
            [m, v],
        ) => {
            let (c1, c2) = bias_corrections(beta1, beta2, steps);
            update_moment_tensors(m, v, gradient, beta1, beta2);
            let update = m
                .clone()
                .div_scalar(c1)
                .div(v.clone().div_scalar(c2).sqrt().add_scalar(epsilon));
            theta.mul_scalar(1.0 - lr * wd as f64) - update.mul_scalar(lr)
        }
        (rule, buffers) => unreachable!(
            "{rule:?} with {} state buffers: CopyState is built from the rule",
            buffers.len()
        ),
    }
}
