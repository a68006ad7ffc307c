//! Majority-kernel dense layer: k copies of a `Linear` kernel.

use burn::module::{Param, ParamId};
use burn::nn::Linear;
use burn::prelude::*;
use rand::rngs::StdRng;

use super::init::{MkInit, copies};
use super::kernel::{MixedKernels, mixed_kernel};

/// A dense layer trained as k copies of its kernel; the bias stays single.
#[derive(Module, Debug)]
pub struct MkLinear<B: Backend> {
    /// The copies, `[k, d_input, d_output]` (burn's row layout for `Linear`).
    pub theta: Param<Tensor<B, 3>>,
    /// The single bias, `[d_output]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> MkLinear<B> {
    /// Builds k copies around a small-model layer, initialised as `init` says.
    pub fn from_linear(base: &Linear<B>, k: usize, init: MkInit, rng: &mut StdRng) -> Self {
        let [d_in, d_out] = base.weight.dims();
        let weights: Vec<f32> = base.weight.val().into_data().to_vec().expect("f32 weights");
        let theta = copies(&weights, k, d_in, init, rng);
        let device = base.weight.device();
        let theta = Tensor::from_data(TensorData::new(theta, [k, d_in, d_out]), &device);
        Self {
            theta: Param::from_tensor(theta),
            bias: base.bias.as_ref().map(|b| Param::from_tensor(b.val())),
        }
    }

    /// Number of copies.
    pub fn k(&self) -> usize {
        self.theta.dims()[0]
    }

    /// The kernel used for a step: this layer's kernel in `mix`, or the mean when `None`.
    pub fn kernel(&self, mix: Option<&MixedKernels<B>>) -> Tensor<B, 2> {
        let [_, d_in, d_out] = self.theta.dims();
        mixed_kernel(&self.theta, mix, [d_in, d_out])
    }

    /// Applies the layer with mixing coefficients `mix`, or in eval mode (`None`).
    pub fn forward<const D: usize>(
        &self,
        x: Tensor<B, D>,
        mix: Option<&MixedKernels<B>>,
    ) -> Tensor<B, D> {
        crate::kernels::linear(x, self.kernel(mix), self.bias.as_ref().map(|b| b.val()))
    }

    /// The deployed layer: one `Linear` whose kernel is the mean of the copies.
    pub fn collapse(&self) -> Linear<B> {
        Linear {
            weight: Param::from_tensor(self.kernel(None).detach()),
            bias: self
                .bias
                .as_ref()
                .map(|b| Param::from_tensor(b.val().detach())),
        }
    }

    /// Id of the copies' parameter (learning-rate compensation scales its gradient).
    pub fn theta_id(&self) -> ParamId {
        self.theta.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{TestAutodiffBackend, TestBackend};
    use crate::mk::init::kaiming_uniform;
    use rand::SeedableRng;

    fn small_linear<B: Backend>(d_in: usize, d_out: usize, rng: &mut StdRng) -> Linear<B> {
        let device = Default::default();
        Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(kaiming_uniform(d_in * d_out, d_in, rng), [d_in, d_out]),
                &device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(kaiming_uniform(d_out, d_in, rng), [d_out]),
                &device,
            ))),
        }
    }

    #[test]
    fn a_step_applies_the_coefficient_weighted_kernel() {
        type B = TestAutodiffBackend;
        let device = Default::default();
        let mut rng = StdRng::seed_from_u64(0);
        let base = small_linear::<B>(6, 3, &mut rng);
        let layer = MkLinear::from_linear(&base, 4, MkInit::Independent, &mut rng);
        let x = Tensor::<B, 2>::from_data(
            TensorData::new(kaiming_uniform(5 * 6, 1, &mut rng), [5, 6]),
            &device,
        );
        let p = [0.1f32, 0.2, 0.3, 0.4];
        let step = crate::mk::KernelMixer::new(vec![layer.theta_id()]);
        let kernels = step.mix(&layer, &p);
        // The expected kernel, summed on the host.
        let theta: Vec<f32> = layer.theta.val().into_data().to_vec().unwrap();
        let n = 6 * 3;
        let expected: Vec<f32> = (0..n)
            .map(|j| (0..4).map(|i| p[i] * theta[i * n + j]).sum())
            .collect();
        let w = Tensor::<B, 2>::from_data(TensorData::new(expected, [6, 3]), &device);
        let want: Vec<f32> =
            burn::tensor::module::linear(x.clone(), w, layer.bias.as_ref().map(|b| b.val()))
                .into_data()
                .to_vec()
                .unwrap();
        let got: Vec<f32> = layer
            .forward(x, Some(&kernels))
            .into_data()
            .to_vec()
            .unwrap();
        for (a, b) in want.iter().zip(&got) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn eval_mode_equals_the_collapsed_layer_exactly() {
        type B = TestBackend;
        let mut rng = StdRng::seed_from_u64(1);
        let base = small_linear::<B>(8, 5, &mut rng);
        let layer = MkLinear::from_linear(&base, 3, MkInit::IndependentScaled, &mut rng);
        let x = Tensor::<B, 2>::from_data(
            TensorData::new(kaiming_uniform(4 * 8, 1, &mut rng), [4, 8]),
            &Default::default(),
        );
        let eval: Vec<f32> = layer.forward(x.clone(), None).into_data().to_vec().unwrap();
        let collapsed = layer.collapse();
        let deployed: Vec<f32> = collapsed.forward(x).into_data().to_vec().unwrap();
        assert_eq!(eval, deployed, "collapse must be exact");
        assert_eq!(
            collapsed.weight.dims(),
            [8, 5],
            "collapsed to the small layer's shape"
        );
    }

    #[test]
    fn init_options_shape_the_copies() {
        type B = TestBackend;
        let mut rng = StdRng::seed_from_u64(2);
        let base = small_linear::<B>(64, 64, &mut rng);
        let base_w: Vec<f32> = base.weight.val().into_data().to_vec().unwrap();
        let variance = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32;

        let identical = MkLinear::from_linear(&base, 4, MkInit::Identical, &mut rng);
        let theta: Vec<f32> = identical.theta.val().into_data().to_vec().unwrap();
        for copy in theta.chunks(base_w.len()) {
            assert_eq!(copy, &base_w[..]);
        }

        let standard = variance(&base_w);
        for (init, expected_mean_var) in [
            (MkInit::Independent, standard / 4.0),
            (MkInit::IndependentScaled, standard),
        ] {
            let layer = MkLinear::from_linear(&base, 4, init, &mut rng);
            let mean: Vec<f32> = layer.kernel(None).into_data().to_vec().unwrap();
            let ratio = variance(&mean) / expected_mean_var;
            assert!(
                (ratio - 1.0).abs() < 0.1,
                "{init:?}: mean-kernel variance ratio {ratio}"
            );
        }
    }
}
