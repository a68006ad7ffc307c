//! Multi-layer perceptron (flattened input, ReLU between layers): the small model, or its MK
//! twin when its dense layers are majority kernels ([`Dense`]).

use burn::module::{Param, ParamId};
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::relu;
use rand::rngs::StdRng;

use super::{Classifier, Dense, Inputs};
use crate::mk::init::kaiming_uniform;
use crate::mk::{MixedKernels, MkInit};

/// An MLP whose dense layers are plain (the small, deployable model) or majority kernels.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub layers: Vec<Dense<B>>,
}

impl<B: Backend> Mlp<B> {
    /// A freshly initialised plain MLP `input -> hidden... -> classes`, drawn from `rng`
    /// (burn's default Linear init, reproduced on the host so seeds are backend-independent).
    pub fn new(
        input: usize,
        hidden: &[usize],
        classes: usize,
        bias: bool,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Self {
        let widths: Vec<usize> = std::iter::once(input)
            .chain(hidden.iter().copied())
            .chain(std::iter::once(classes))
            .collect();
        let layers = widths
            .windows(2)
            .map(|w| {
                let (d_in, d_out) = (w[0], w[1]);
                let weight = kaiming_uniform(d_in * d_out, d_in, rng);
                let bias = bias.then(|| {
                    let values = kaiming_uniform(d_out, d_in, rng);
                    Param::from_tensor(Tensor::from_data(TensorData::new(values, [d_out]), device))
                });
                Dense::Plain(Linear {
                    weight: Param::from_tensor(Tensor::from_data(
                        TensorData::new(weight, [d_in, d_out]),
                        device,
                    )),
                    bias,
                })
            })
            .collect();
        Self { layers }
    }

    /// The MK twin: k copies of every layer's kernel, initialised as `init` says, layer by
    /// layer (MK layers are kept as they are).
    pub fn to_mk(&self, k: usize, init: MkInit, rng: &mut StdRng) -> Self {
        Self {
            layers: self.layers.iter().map(|l| l.to_mk(k, init, rng)).collect(),
        }
    }

    /// The deployed small model: every MK layer collapsed to its mean kernel.
    pub fn collapse(&self) -> Self {
        Self {
            layers: self.layers.iter().map(Dense::collapse).collect(),
        }
    }
}

fn flatten<B: Backend>(inputs: Inputs<B>) -> Tensor<B, 2> {
    match inputs {
        Inputs::Images(images) => images.flatten(1, 3),
        Inputs::Tokens { .. } => panic!("the MLP takes images, not token ids"),
    }
}

impl<B: Backend> Classifier<B> for Mlp<B> {
    fn forward(&self, inputs: Inputs<B>, mix: Option<&MixedKernels<B>>) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        self.layers
            .iter()
            .enumerate()
            .fold(flatten(inputs), |x, (i, layer)| {
                let y = layer.forward(x, mix);
                if i < last { relu(y) } else { y }
            })
    }

    fn mk_layers(&self) -> usize {
        self.layers.iter().filter_map(Dense::mk_id).count()
    }

    fn mk_copies(&self) -> usize {
        self.layers.first().map_or(1, Dense::k)
    }

    fn mk_kernel_ids(&self) -> Vec<ParamId> {
        self.layers.iter().filter_map(Dense::mk_id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestBackend;
    use rand::SeedableRng;

    #[test]
    fn collapsed_mk_mlp_has_the_small_models_size_and_outputs() {
        let device = Default::default();
        let mut rng = StdRng::seed_from_u64(0);
        let small = Mlp::<TestBackend>::new(12, &[16, 8], 3, true, &mut rng, &device);
        let mk = small.to_mk(4, MkInit::Independent, &mut rng);
        assert_eq!(mk.num_params(), 4 * (12 * 16 + 16 * 8 + 8 * 3) + 16 + 8 + 3);
        let deployed = mk.collapse();
        assert_eq!(deployed.num_params(), small.num_params());
        let x = Tensor::<TestBackend, 4>::from_data(
            TensorData::new(kaiming_uniform(5 * 12, 1, &mut rng), [5, 1, 3, 4]),
            &device,
        );
        let eval: Vec<f32> = mk
            .forward(Inputs::Images(x.clone()), None)
            .into_data()
            .to_vec()
            .unwrap();
        let out: Vec<f32> = deployed
            .forward(Inputs::Images(x), None)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(eval, out);
    }

    #[test]
    fn same_seed_same_model() {
        let device = Default::default();
        let a = Mlp::<TestBackend>::new(4, &[3], 2, true, &mut StdRng::seed_from_u64(9), &device);
        let b = Mlp::<TestBackend>::new(4, &[3], 2, true, &mut StdRng::seed_from_u64(9), &device);
        let weights = |m: &Mlp<TestBackend>| -> Vec<f32> {
            let Dense::Plain(layer) = &m.layers[0] else {
                panic!("a new MLP is plain")
            };
            layer.weight.val().into_data().to_vec().unwrap()
        };
        assert_eq!(weights(&a), weights(&b));
    }
}
