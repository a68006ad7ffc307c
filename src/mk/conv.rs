//! Majority-kernel 2-D convolution: k copies of a `Conv2d` kernel (symmetric padding).

use burn::module::{Param, ParamId};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;
use rand::rngs::StdRng;

use super::init::{MkInit, copies};
use super::kernel::{MixedKernels, mixed_kernel};

/// A convolution trained as k copies of its kernel; bias, stride and padding stay single.
#[derive(Module, Debug)]
pub struct MkConv2d<B: Backend> {
    /// The copies, `[k, channels_out, channels_in / groups, kernel_h, kernel_w]`.
    pub theta: Param<Tensor<B, 5>>,
    /// The single bias, `[channels_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl<B: Backend> MkConv2d<B> {
    /// Builds k copies around a small-model convolution with symmetric explicit padding.
    ///
    /// # Panics
    /// If `base` uses `Same` or asymmetric padding (resolve it to explicit padding first).
    pub fn from_conv(base: &Conv2d<B>, k: usize, init: MkInit, rng: &mut StdRng) -> Self {
        let padding = match base.padding {
            PaddingConfig2d::Valid => [0, 0],
            PaddingConfig2d::Explicit(top, left, bottom, right)
                if top == bottom && left == right =>
            {
                [top, left]
            }
            ref other => panic!("MkConv2d needs symmetric explicit padding, got {other:?}"),
        };
        let dims = base.weight.dims();
        let fan_in = dims[1] * dims[2] * dims[3];
        let weights: Vec<f32> = base.weight.val().into_data().to_vec().expect("f32 weights");
        let theta = copies(&weights, k, fan_in, init, rng);
        let device = base.weight.device();
        let shape = [k, dims[0], dims[1], dims[2], dims[3]];
        Self {
            theta: Param::from_tensor(Tensor::from_data(TensorData::new(theta, shape), &device)),
            bias: base.bias.as_ref().map(|b| Param::from_tensor(b.val())),
            stride: base.stride,
            padding,
            dilation: base.dilation,
            groups: base.groups,
        }
    }

    /// Number of copies.
    pub fn k(&self) -> usize {
        self.theta.dims()[0]
    }

    /// The kernel used for a step: this layer's kernel in `mix`, or the mean when `None`.
    pub fn kernel(&self, mix: Option<&MixedKernels<B>>) -> Tensor<B, 4> {
        let [_, o, i, h, w] = self.theta.dims();
        mixed_kernel(&self.theta, mix, [o, i, h, w])
    }

    /// Applies the convolution with mixing coefficients `mix`, or in eval mode (`None`).
    pub fn forward(&self, x: Tensor<B, 4>, mix: Option<&MixedKernels<B>>) -> Tensor<B, 4> {
        let options = ConvOptions::new(self.stride, self.padding, self.dilation, self.groups);
        crate::kernels::conv2d(
            x,
            self.kernel(mix),
            self.bias.as_ref().map(|b| b.val()),
            options,
        )
    }

    /// The deployed layer: one `Conv2d` whose kernel is the mean of the copies.
    pub fn collapse(&self) -> Conv2d<B> {
        let kernel = self.kernel(None).detach();
        let [_, _, h, w] = kernel.dims();
        let [pad_h, pad_w] = self.padding;
        Conv2d {
            weight: Param::from_tensor(kernel),
            bias: self
                .bias
                .as_ref()
                .map(|b| Param::from_tensor(b.val().detach())),
            stride: self.stride,
            kernel_size: [h, w],
            dilation: self.dilation,
            groups: self.groups,
            padding: PaddingConfig2d::Explicit(pad_h, pad_w, pad_h, pad_w),
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
    use burn::nn::conv::Conv2dConfig;
    use rand::SeedableRng;

    fn input<B: Backend>(rng: &mut StdRng) -> Tensor<B, 4> {
        Tensor::from_data(
            TensorData::new(kaiming_uniform(2 * 3 * 8 * 8, 1, rng), [2, 3, 8, 8]),
            &Default::default(),
        )
    }

    fn base<B: Backend>() -> Conv2d<B> {
        Conv2dConfig::new([3, 4], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&Default::default())
    }

    #[test]
    fn eval_mode_equals_the_collapsed_conv_exactly() {
        let mut rng = StdRng::seed_from_u64(5);
        let layer = MkConv2d::from_conv(&base::<TestBackend>(), 4, MkInit::Independent, &mut rng);
        let x = input::<TestBackend>(&mut rng);
        let eval: Vec<f32> = layer.forward(x.clone(), None).into_data().to_vec().unwrap();
        let deployed: Vec<f32> = crate::kernels::conv2d_layer(&layer.collapse(), x)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(eval, deployed);
    }

    #[test]
    fn mixing_gradient_is_each_copys_own_contribution() {
        // L(p) = sum(conv(x, sum_i p_i theta_i) + bias) is linear in p, so
        // dL/dp_i = L(e_i) - L(0) exactly.
        type B = TestAutodiffBackend;
        let mut rng = StdRng::seed_from_u64(6);
        let layer = MkConv2d::from_conv(&base::<B>(), 3, MkInit::Independent, &mut rng);
        let x = input::<B>(&mut rng);
        let step = crate::mk::KernelMixer::new(vec![layer.theta_id()]);
        let loss = |p: &[f32]| -> f32 {
            let kernels = step.mix(&layer, p);
            layer
                .forward(x.clone(), Some(&kernels))
                .sum()
                .into_scalar()
                .elem()
        };
        let p = [0.5f32, 0.0, 0.5];
        let kernels = step.mix(&layer, &p);
        let grads = layer.forward(x.clone(), Some(&kernels)).sum().backward();
        let gradient = step.mixing_gradient(&layer, &kernels, &grads);
        let zero = loss(&[0.0; 3]);
        for (i, g) in gradient.iter().enumerate() {
            let mut e = [0.0f32; 3];
            e[i] = 1.0;
            let expected = loss(&e) - zero;
            assert!(
                (g - expected).abs() <= 1e-3 * (1.0 + expected.abs()),
                "copy {i}: {g} vs {expected}"
            );
        }
    }
}
