//! The one operation every majority-kernel layer shares: mixing its k copies into one kernel.
//!
//! A training step mixes every layer's copies *outside* the autodiff graph and hands the model
//! the mixed kernels as graph leaves ([`MixedKernels`]). The backward pass then produces
//! `G = dL/dW`, one kernel's size, instead of k copies' gradients `p_i G`; the copies are
//! updated from `G` and `p` by one fused pass (the optimiser, `crate::optim`). Same
//! mathematics as differentiating through the mixture (tested against it), a fraction of the
//! memory traffic.
//! [`KernelMixer`] does this for every majority kernel of a model.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData, backend::Backend};

use crate::host;

/// Mixes `theta` (`[k, ...kernel]`) into one kernel of `shape`.
///
/// With `mix = Some(m)` the step's kernel for these copies is taken from `m`. With `None`
/// it is the mean of the copies: the eval-mode kernel, and the very same computation
/// `collapse()` uses, so eval-mode MK and the collapsed model agree bit for bit.
pub fn mixed_kernel<B: Backend, const K: usize, const D: usize>(
    theta: &Param<Tensor<B, K>>,
    mix: Option<&MixedKernels<B>>,
    shape: [usize; D],
) -> Tensor<B, D> {
    match mix {
        Some(kernels) => kernels.get(theta.id).reshape(shape),
        None => {
            let k = theta.dims()[0];
            let flat: Tensor<B, 2> = theta.val().reshape([k as i64, -1]);
            flat.mean_dim(0).reshape(shape)
        }
    }
}

/// `sum_i p_i theta_i` for copies `theta` (`[k, n]`) and coefficients `p` (length k): `[1, n]`.
///
/// On the CPU backend the sum is one parallel pass over the copies; elsewhere it is a
/// `[1, k] x [k, n]` product on the device with the row of `p` that `row` makes (only then).
/// `host: false` skips the CPU fast path (tests of the device path).
fn mix_copies<B: Backend>(
    theta: Tensor<B, 2>,
    p: &[f32],
    host: bool,
    row: impl FnOnce() -> Tensor<B, 2>,
) -> Tensor<B, 2> {
    let n = theta.dims()[1];
    let device = theta.device();
    let fast = if host {
        host::mix(theta, p)
    } else {
        Err(theta)
    };
    match fast {
        Ok(mixed) => Tensor::from_data(TensorData::new(mixed, [1, n]), &device),
        Err(theta) => row().matmul(theta),
    }
}

/// The copies of one majority kernel flattened to `[k, n]`, with the id of their parameter.
pub struct KernelCopies<B: Backend> {
    pub id: ParamId,
    pub copies: Tensor<B, 2>,
}

/// The kernels of one training step, keyed by the id of the copies they were mixed from.
pub struct MixedKernels<B: Backend> {
    kernels: HashMap<ParamId, Tensor<B, 2>>,
}

impl<B: Backend> MixedKernels<B> {
    /// Kernels computed elsewhere (e.g. inside the graph, as a reference), keyed by copies id.
    pub fn from_map(kernels: HashMap<ParamId, Tensor<B, 2>>) -> Self {
        Self { kernels }
    }

    /// The kernel of the copies `id`, flat `[1, n]`.
    ///
    /// # Panics
    /// If `id` was not mixed: every MK layer of a model is mixed before its forward pass.
    pub fn get(&self, id: ParamId) -> Tensor<B, 2> {
        self.kernels
            .get(&id)
            .cloned()
            .unwrap_or_else(|| panic!("no mixed kernel for MK parameter {id}"))
    }
}

impl<B: AutodiffBackend> MixedKernels<B> {
    /// Kernels already mixed on the host (`[1, n]` values per id), as graph leaves.
    pub fn from_host(
        ids: &[ParamId],
        kernels: Vec<Vec<f32>>,
        device: &burn::tensor::Device<B::InnerBackend>,
    ) -> Self {
        assert_eq!(ids.len(), kernels.len(), "one kernel per id");
        let kernels = ids
            .iter()
            .zip(kernels)
            .map(|(id, values)| {
                let n = values.len();
                let kernel = Tensor::<B::InnerBackend, 2>::from_data(
                    TensorData::new(values, [1, n]),
                    device,
                );
                (*id, Tensor::<B, 2>::from_inner(kernel).require_grad())
            })
            .collect();
        Self { kernels }
    }

    /// Mixes every layer's copies with its row of `p` (`[layers, k]`, row-major, in the order
    /// of `copies`). The kernels are leaves of the autodiff graph. `host: false` forces the
    /// device path the GPU backends take (for tests on the CPU).
    pub fn mix(copies: &[KernelCopies<B::InnerBackend>], p: &[f32], host: bool) -> Self {
        let k = copies.first().map_or(1, |c| c.copies.dims()[0]);
        assert_eq!(p.len(), copies.len() * k, "one row of p per layer");
        // Off the CPU fast path, all rows go to the device in one upload per step.
        let mut uploaded: Option<Tensor<B::InnerBackend, 2>> = None;
        let kernels = copies
            .iter()
            .zip(p.chunks(k))
            .enumerate()
            .map(|(layer, (c, row))| {
                let mixed = mix_copies(c.copies.clone(), row, host, || {
                    uploaded
                        .get_or_insert_with(|| {
                            Tensor::from_data(
                                TensorData::new(p.to_vec(), [copies.len(), k]),
                                &c.copies.device(),
                            )
                        })
                        .clone()
                        .slice(layer..layer + 1)
                });
                (c.id, Tensor::<B, 2>::from_inner(mixed).require_grad())
            })
            .collect();
        Self { kernels }
    }

    /// `dL/dW` of every kernel, in the order of `ids` (zeros for a kernel the loss did not
    /// reach).
    pub fn gradients(
        &self,
        ids: &[ParamId],
        grads: &B::Gradients,
    ) -> Vec<Tensor<B::InnerBackend, 2>> {
        ids.iter()
            .map(|id| {
                let kernel = self.get(*id);
                kernel
                    .grad(grads)
                    .unwrap_or_else(|| kernel.inner().zeros_like())
            })
            .collect()
    }
}

type Inner<B> = <B as AutodiffBackend>::InnerBackend;

/// The majority kernels of one model, by the ids of their copies in the order of the rows of
/// every step's coefficients `p` (`[layers, k]`): mixes them before the forward pass and reads
/// their gradients after the backward pass.
pub struct KernelMixer {
    ids: Vec<ParamId>,
    /// Mix with tensor operations even on the CPU backend (tests of the GPU path).
    tensor_path_only: bool,
}

impl KernelMixer {
    /// For the copies `ids`, in row order (empty for a plain model).
    pub fn new(ids: Vec<ParamId>) -> Self {
        Self {
            ids,
            tensor_path_only: false,
        }
    }

    /// Always mixes with tensor operations, as on a GPU backend.
    pub fn tensor_path_only(mut self) -> Self {
        self.tensor_path_only = true;
        self
    }

    /// The ids this mixer mixes, in row order.
    pub fn ids(&self) -> &[ParamId] {
        &self.ids
    }

    /// Every MK parameter's copies as `[k, n]` (shared with the model, not copied).
    pub fn copies<B: AutodiffBackend, M: Module<B>>(
        &self,
        model: &M,
    ) -> Vec<KernelCopies<Inner<B>>> {
        struct Collect<'a, B: AutodiffBackend> {
            ids: &'a [ParamId],
            found: Vec<Option<KernelCopies<Inner<B>>>>,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if let Some(row) = self.ids.iter().position(|id| *id == param.id) {
                    let copies = param.val().inner();
                    let k = copies.dims()[0] as i64;
                    self.found[row] = Some(KernelCopies {
                        id: param.id,
                        copies: copies.reshape([k, -1]),
                    });
                }
            }
        }
        let mut collect = Collect::<B> {
            ids: &self.ids,
            found: self.ids.iter().map(|_| None).collect(),
        };
        model.visit(&mut collect);
        collect
            .found
            .into_iter()
            .zip(&self.ids)
            .map(|(c, id)| c.unwrap_or_else(|| panic!("MK parameter {id} is not in the model")))
            .collect()
    }

    /// The step's kernels: row l of `p` (`[layers, k]`) mixes the copies `ids[l]`.
    pub fn mix<B: AutodiffBackend, M: Module<B>>(&self, model: &M, p: &[f32]) -> MixedKernels<B> {
        MixedKernels::mix(&self.copies(model), p, !self.tensor_path_only)
    }

    /// `dL/dp` (`[layers, k]`, row-major) for the kernels of a backward pass:
    /// `dL/dp_i = <theta_i, dL/dW>`.
    pub fn mixing_gradient<B: AutodiffBackend, M: Module<B>>(
        &self,
        model: &M,
        kernels: &MixedKernels<B>,
        grads: &B::Gradients,
    ) -> Vec<f32> {
        self.copies(model)
            .into_iter()
            .zip(kernels.gradients(&self.ids, grads))
            .flat_map(|(c, g)| {
                c.copies
                    .matmul(g.transpose())
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .expect("f32 gradient")
            })
            .collect()
    }

    /// The kernel gradients `dL/dW` of a backward pass, in row order, taken before the
    /// gradients are handed to the optimiser.
    pub fn kernel_gradients<B: AutodiffBackend>(
        &self,
        kernels: &MixedKernels<B>,
        grads: &B::Gradients,
    ) -> Vec<Tensor<Inner<B>, 2>> {
        kernels.gradients(&self.ids, grads)
    }
}
