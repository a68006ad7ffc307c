//! A dense layer that is either plain (`Linear`) or a majority kernel (`MkLinear`), so one
//! model definition serves as both the small model and its MK twin.

use burn::module::{Param, ParamId};
use burn::nn::Linear;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

use crate::mk::{MixedKernels, MkInit, MkLinear};

/// A plain or majority-kernel dense layer.
#[derive(Module, Debug)]
pub enum Dense<B: Backend> {
    Plain(Linear<B>),
    Mk(MkLinear<B>),
}

impl<B: Backend> Dense<B> {
    /// A plain layer with weights `N(0, std^2)` and zero bias, drawn from `rng` (BERT's init).
    pub fn normal(
        d_in: usize,
        d_out: usize,
        std: f64,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Self {
        Dense::Plain(Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(normal_values(d_in * d_out, std, rng), [d_in, d_out]),
                device,
            )),
            bias: Some(Param::from_tensor(Tensor::zeros([d_out], device))),
        })
    }

    /// Applies the layer; `mix` is used by majority kernels only.
    pub fn forward<const D: usize>(
        &self,
        x: Tensor<B, D>,
        mix: Option<&MixedKernels<B>>,
    ) -> Tensor<B, D> {
        match self {
            Dense::Plain(linear) => crate::kernels::linear(
                x,
                linear.weight.val(),
                linear.bias.as_ref().map(|b| b.val()),
            ),
            Dense::Mk(mk) => mk.forward(x, mix),
        }
    }

    /// The MK twin of a plain layer (an MK layer is returned as is).
    pub fn to_mk(&self, k: usize, init: MkInit, rng: &mut StdRng) -> Self {
        match self {
            Dense::Plain(linear) => Dense::Mk(MkLinear::from_linear(linear, k, init, rng)),
            Dense::Mk(mk) => Dense::Mk(mk.clone()),
        }
    }

    /// The deployed layer: MK layers collapse to their mean kernel.
    pub fn collapse(&self) -> Self {
        match self {
            Dense::Plain(linear) => Dense::Plain(linear.clone()),
            Dense::Mk(mk) => Dense::Plain(mk.collapse()),
        }
    }

    /// Id of the MK copies, for MK layers.
    pub fn mk_id(&self) -> Option<ParamId> {
        match self {
            Dense::Plain(_) => None,
            Dense::Mk(mk) => Some(mk.theta_id()),
        }
    }

    /// Copies per kernel (1 for a plain layer).
    pub fn k(&self) -> usize {
        match self {
            Dense::Plain(_) => 1,
            Dense::Mk(mk) => mk.k(),
        }
    }
}

/// `len` draws of `N(0, std^2)`.
pub fn normal_values(len: usize, std: f64, rng: &mut StdRng) -> Vec<f32> {
    let normal = Normal::new(0.0, std).expect("std is positive");
    (0..len).map(|_| normal.sample(rng) as f32).collect()
}
