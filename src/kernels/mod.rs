//! Project-side CPU kernels where burn's CPU backend is slow: operations with their own
//! backward pass, used by the models through generic functions ([`conv2d`]).
//!
//! On the `flex` backend (plain, or under `Autodiff` with the default checkpointing) each
//! function runs the kernel in this module on the tensors' host buffers and, when autodiff is
//! on, registers its own backward step. On every other backend (GPU, `ndarray`) it calls
//! burn's operation, so numerics there are burn's. Every kernel is tested against burn's own
//! operation (`tests` below).

#[cfg(feature = "flex")]
pub mod attention;
#[cfg(feature = "flex")]
pub mod batch_norm;
#[cfg(feature = "flex")]
pub mod conv;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
pub mod gelu;
#[cfg(feature = "flex")]
pub mod layer_norm;
#[cfg(feature = "flex")]
mod linalg;
#[cfg(feature = "flex")]
pub mod linear;
#[cfg(feature = "flex")]
pub mod max_pool;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

/// `burn::tensor::module::conv2d`, through [`conv`]'s kernels on the CPU backend.
pub fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let (x, weight, bias) = {
        let shape = conv::ConvShape::new(
            x.dims(),
            weight.dims(),
            options.stride,
            options.padding,
            options.dilation,
            options.groups,
        );
        match shape {
            Some(shape) => match flex::conv2d(x, weight, bias, shape) {
                Ok(y) => return y,
                Err(inputs) => inputs,
            },
            None => (x, weight, bias),
        }
    };
    burn::tensor::module::conv2d(x, weight, bias, options)
}

/// `Conv2d::forward` through [`conv2d`] (explicit symmetric padding; other paddings go to
/// burn's layer).
pub fn conv2d_layer<B: Backend>(layer: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let padding = match layer.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return layer.forward(x),
    };
    let options = ConvOptions::new(layer.stride, padding, layer.dilation, layer.groups);
    conv2d(
        x,
        layer.weight.val(),
        layer.bias.as_ref().map(|b| b.val()),
        options,
    )
}

/// `x @ weight + bias` for `x` `[..., d_in]`, as one 2-D product over all leading dimensions.
/// burn's `linear` keeps them as a batch: its weight gradient is then a batched product
/// `[batch, d_in, d_out]` summed over the batch afterwards (32 MB per FFN layer of the bench
/// encoder, against one `[d_in, d_out]` product here). On every backend; on the CPU backend
/// through [`linear`]'s kernels (burn's products, bit for bit, without its zeroed and
/// re-copied output buffers).
pub fn linear<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    let dims = x.dims();
    if D < 2 {
        return burn::tensor::module::linear(x, weight, bias);
    }
    let rows: usize = dims[..D - 1].iter().product();
    let d_out = weight.dims()[1];
    let flat: Tensor<B, 2> = x.reshape([rows, dims[D - 1]]);
    let mut out_dims = dims;
    out_dims[D - 1] = d_out;
    #[cfg(feature = "flex")]
    let (flat, weight, bias) = match flex::linear(flat, weight, bias) {
        Ok(y) => return y.reshape(out_dims),
        Err(inputs) => inputs,
    };
    burn::tensor::module::linear(flat, weight, bias).reshape(out_dims)
}

/// GELU, exact (erf) form: [`gelu`]'s kernel on the CPU backend, burn's elsewhere.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::gelu(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::gelu(x)
}

/// `burn::tensor::module::max_pool2d` with dilation 1 and floor mode, through
/// [`max_pool`]'s kernel on the CPU backend (the same values and gradients, bit for bit).
pub fn max_pool2d<B: Backend>(
    x: Tensor<B, 4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let x = match max_pool::PoolShape::new(x.dims(), kernel, stride, padding) {
        Some(shape) => match flex::max_pool2d(x, shape) {
            Ok(y) => return y,
            Err(x) => x,
        },
        None => x,
    };
    burn::tensor::module::max_pool2d(x, kernel, stride, padding, [1, 1], false)
}

/// `layer_norm(x + residual?)` over the last dimension (the post-norm Transformer block's
/// tail), as one operation on the CPU backend; burn's `layer_norm` elsewhere.
pub fn layer_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    residual: Option<Tensor<B, D>>,
    gamma: Tensor<B, 1>,
    beta: Option<Tensor<B, 1>>,
    epsilon: f64,
) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let (x, residual, gamma, beta) = match flex::layer_norm((x, residual, gamma, beta), epsilon) {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    let x = match residual {
        Some(r) => x + r,
        None => x,
    };
    Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(B::layer_norm(
        x.into_primitive().tensor(),
        gamma.into_primitive().tensor(),
        beta.map(|b| b.into_primitive().tensor()),
        epsilon,
    )))
}

/// Multi-head scaled dot-product attention (no dropout) of queries, keys and values
/// `[batch, len, heads * head_dim]` with an additive key bias `[batch, len]` (0 for tokens, a
/// large negative number for padding): the context `[batch, len, heads * head_dim]`. One
/// fused operation on the CPU backend; burn's operations elsewhere.
pub fn attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    key_bias: Tensor<B, 2>,
    heads: usize,
) -> Tensor<B, 3> {
    #[cfg(feature = "flex")]
    let (q, k, v, key_bias) = match flex::attention((q, k, v, key_bias), heads) {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    attention_composed(q, k, v, key_bias, heads, |weights| weights)
}

/// [`attention`] as burn's operations, with `on_weights` applied to the attention weights
/// (dropout, which the fused kernel does not do).
pub fn attention_composed<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    key_bias: Tensor<B, 2>,
    heads: usize,
    on_weights: impl FnOnce(Tensor<B, 4>) -> Tensor<B, 4>,
) -> Tensor<B, 3> {
    let [b, t, d] = q.dims();
    let (h, dh) = (heads, d / heads);
    let split = |y: Tensor<B, 3>| y.reshape([b, t, h, dh]).swap_dims(1, 2);
    // The bias of every (head, query) row, `[b, heads, t, t]`, as one outer product (a
    // broadcast over a middle dimension is 20-40x slower on flex).
    let bias: Tensor<B, 4> = Tensor::<B, 3>::ones([b, h * t, 1], &key_bias.device())
        .matmul(key_bias.reshape([b, 1, t]))
        .reshape([b, h, t, t]);
    let scores = split(q)
        .matmul(split(k).swap_dims(2, 3))
        .div_scalar((dh as f64).sqrt())
        + bias;
    let weights = on_weights(burn::tensor::activation::softmax(scores, 3));
    weights.matmul(split(v)).swap_dims(1, 2).reshape([b, t, d])
}

/// How a BatchNorm normalises: with the batch's own statistics (training) or given ones.
pub enum Statistics<B: Backend> {
    Batch,
    Running {
        mean: Tensor<B, 1>,
        var: Tensor<B, 1>,
    },
}

/// What [`batch_norm`] returns.
pub struct Normalized<B: Backend> {
    pub output: Tensor<B, 4>,
    /// With [`Statistics::Batch`]: the batch's per-channel mean and biased variance
    /// (detached), for the running averages.
    pub batch: Option<(Tensor<B, 1>, Tensor<B, 1>)>,
}

/// `relu?(batch_norm(x) + skip?)` for `[N, C, H, W]`, as one operation on the CPU backend
/// (one pass for the statistics, one for the output; two backward); burn's operations
/// elsewhere, on the `[N*C, H*W]` view with per-row operands (on flex, a `[N, C, H, W] -
/// [1, C, 1, 1]` broadcast takes 40x the time of the same subtraction with a `[N*C, 1]`
/// column).
pub fn batch_norm<B: Backend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
    statistics: Statistics<B>,
    skip: Option<Tensor<B, 4>>,
    relu: bool,
) -> Normalized<B> {
    let running = match statistics {
        Statistics::Batch => None,
        Statistics::Running { mean, var } => Some((mean, var)),
    };
    #[cfg(feature = "flex")]
    let ((x, gamma, beta, skip), running) =
        match flex::batch_norm((x, gamma, beta, skip), epsilon, running, relu) {
            Ok((output, batch)) => return Normalized { output, batch },
            Err(inputs) => inputs,
        };
    let [n, channels, h, w] = x.dims();
    let rows = x.reshape([n * channels, h * w]);
    // A per-channel `[C]` value as a `[N*C, 1]` column matching `rows`.
    let per_row = |v: Tensor<B, 1>| {
        v.reshape([1, channels])
            .repeat_dim(0, n)
            .reshape([n * channels, 1])
    };
    // Mean over the batch then the pixels of each channel: `[C]`.
    let channel_mean = |t: Tensor<B, 2>| {
        t.reshape([n, channels * h * w])
            .mean_dim(0)
            .reshape([channels, h * w])
            .mean_dim(1)
            .reshape([channels])
    };
    let (centered, var, batch) = match running {
        None => {
            let mean = channel_mean(rows.clone());
            let centered = rows - per_row(mean.clone());
            let var = channel_mean(centered.clone().square());
            let batch = Some((mean.detach(), var.clone().detach()));
            (centered, var, batch)
        }
        Some((mean, var)) => (rows - per_row(mean), var, None),
    };
    let scale = gamma / var.add_scalar(epsilon).sqrt();
    let mut output = (centered * per_row(scale) + per_row(beta)).reshape([n, channels, h, w]);
    if let Some(skip) = skip {
        output = output + skip;
    }
    if relu {
        output = burn::tensor::activation::relu(output);
    }
    Normalized { output, batch }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{TestAutodiffBackend, TestBackend};
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    type Ad = TestAutodiffBackend;

    fn random(len: usize, rng: &mut StdRng) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// Largest element-wise difference relative to the reference's largest magnitude.
    fn relative_error(ours: &Tensor<TestBackend, 4>, reference: &Tensor<TestBackend, 4>) -> f32 {
        let a: Vec<f32> = ours.to_data().to_vec().unwrap();
        let b: Vec<f32> = reference.to_data().to_vec().unwrap();
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.iter()
            .zip(&b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// Forward and every gradient of our conv2d against burn's, with a loss that weights
    /// each output element differently (so a wrong gradient layout cannot cancel out).
    fn check(x_shape: [usize; 4], w_shape: [usize; 4], options: ConvOptions<2>, bias: bool) {
        let mut rng = StdRng::seed_from_u64(x_shape.iter().sum::<usize>() as u64);
        let device = Default::default();
        let x_data = random(x_shape.iter().product(), &mut rng);
        let w_data = random(w_shape.iter().product(), &mut rng);
        let b_data = random(w_shape[0], &mut rng);
        let run = |ours: bool| {
            let (x, w) = (leaf(&x_data, x_shape), leaf(&w_data, w_shape));
            let b = bias.then(|| leaf(&b_data, [w_shape[0]]));
            let y = if ours {
                conv2d(x.clone(), w.clone(), b.clone(), options.clone())
            } else {
                burn::tensor::module::conv2d(x.clone(), w.clone(), b.clone(), options.clone())
            };
            let weights = Tensor::<Ad, 4>::from_data(
                TensorData::new(
                    (0..y.dims().iter().product::<usize>())
                        .map(|i| ((i % 7) as f32 - 3.0) * 0.25)
                        .collect::<Vec<f32>>(),
                    y.dims(),
                ),
                &device,
            );
            let grads = (y.clone() * weights).sum().backward();
            let dx = x.grad(&grads).unwrap();
            let dw = w.grad(&grads).unwrap();
            let db = b.map(|b| b.grad(&grads).unwrap().reshape([1, 1, 1, w_shape[0]]));
            (y.inner(), dx, dw, db)
        };
        let (y, dx, dw, db) = run(true);
        let (y_ref, dx_ref, dw_ref, db_ref) = run(false);
        let label = format!("x {x_shape:?}, w {w_shape:?}, {options:?}");
        for (name, ours, reference) in [("output", &y, &y_ref), ("input grad", &dx, &dx_ref)]
            .into_iter()
            .chain([("weight grad", &dw, &dw_ref)])
        {
            let err = relative_error(ours, reference);
            assert!(err <= 1e-4, "{label}: {name} relative error {err}");
        }
        if let (Some(db), Some(db_ref)) = (db, db_ref) {
            let err = relative_error(&db, &db_ref);
            assert!(err <= 1e-4, "{label}: bias grad relative error {err}");
        }
        // The plain backend (no autodiff) runs the same forward kernel.
        let x = Tensor::<TestBackend, 4>::from_data(TensorData::new(x_data, x_shape), &device);
        let w = Tensor::<TestBackend, 4>::from_data(TensorData::new(w_data, w_shape), &device);
        let b = bias.then(|| {
            Tensor::<TestBackend, 1>::from_data(TensorData::new(b_data, [w_shape[0]]), &device)
        });
        let plain = conv2d(x, w, b, options);
        assert!(
            relative_error(&plain, &y_ref) <= 1e-4,
            "{label}: plain forward"
        );
    }

    fn options(stride: usize, padding: usize) -> ConvOptions<2> {
        ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1)
    }

    #[test]
    fn conv2d_matches_burn_for_3x3_strides_and_paddings() {
        for stride in [1, 2] {
            for padding in [0, 1] {
                check([3, 5, 9, 7], [4, 5, 3, 3], options(stride, padding), false);
                check([2, 3, 8, 8], [6, 3, 3, 3], options(stride, padding), true);
            }
        }
    }

    #[test]
    fn conv2d_matches_burn_for_1x1_and_the_7x7_stem() {
        // 1x1 stride 1 (the image is the patch matrix) and stride 2 (projection shortcut).
        check([2, 8, 6, 5], [4, 8, 1, 1], options(1, 0), false);
        check([3, 8, 7, 7], [16, 8, 1, 1], options(2, 0), true);
        // ImageNet stem: 7x7, stride 2, padding 3, on an odd-sized image.
        check([2, 3, 19, 17], [8, 3, 7, 7], options(2, 3), false);
    }

    #[test]
    fn conv2d_matches_burn_for_batch_one_dilation_and_rectangles() {
        check([1, 4, 11, 13], [5, 4, 3, 3], options(1, 1), true);
        check(
            [2, 3, 10, 9],
            [4, 3, 3, 2],
            ConvOptions::new([2, 1], [1, 0], [2, 1], 1),
            true,
        );
    }

    #[test]
    fn conv2d_matches_burn_on_planes_of_at_most_16_pixels() {
        // ResNet-18's last stages at 64x64 (4x4 and 2x2 images, whose patch rows are built
        // by table lookups), stride 1 and 2, 3x3 and 1x1; 17 images make two groups of images
        // side by side in one product, the second one short.
        check([3, 6, 4, 4], [5, 6, 3, 3], options(1, 1), true);
        check([2, 6, 4, 4], [5, 6, 3, 3], options(2, 1), false);
        check([2, 6, 4, 4], [5, 6, 1, 1], options(2, 0), false);
        check([2, 5, 2, 2], [4, 5, 3, 3], options(1, 1), true);
        check([17, 2, 4, 4], [3, 2, 3, 3], options(1, 1), false);
        check([1, 3, 3, 5], [2, 3, 3, 3], options(1, 0), true);
    }

    #[test]
    fn conv2d_without_input_gradient_leaves_the_input_untracked() {
        // The stem's input (an image) needs no gradient: only the kernel's is computed.
        let device = Default::default();
        let mut rng = StdRng::seed_from_u64(3);
        let x = Tensor::<Ad, 4>::from_data(
            TensorData::new(random(2 * 3 * 5 * 5, &mut rng), [2, 3, 5, 5]),
            &device,
        );
        let w = Tensor::<Ad, 4>::from_data(
            TensorData::new(random(4 * 3 * 9, &mut rng), [4, 3, 3, 3]),
            &device,
        )
        .require_grad();
        let grads = conv2d(x.clone(), w.clone(), None, options(1, 1))
            .sum()
            .backward();
        assert!(x.grad(&grads).is_none());
        assert_eq!(w.grad(&grads).unwrap().dims(), [4, 3, 3, 3]);
    }

    /// burn's operations for `relu?(batch_norm(x) + skip?)` with batch statistics.
    fn reference_batch_norm(
        x: Tensor<Ad, 4>,
        gamma: Tensor<Ad, 1>,
        beta: Tensor<Ad, 1>,
        skip: Option<Tensor<Ad, 4>>,
        relu: bool,
    ) -> Tensor<Ad, 4> {
        let [n, c, h, w] = x.dims();
        let per_channel = |t: Tensor<Ad, 4>| {
            t.swap_dims(0, 1)
                .reshape([c, n * h * w])
                .mean_dim(1)
                .reshape([1, c, 1, 1])
        };
        let centered = x.clone() - per_channel(x);
        let var = per_channel(centered.clone().powi_scalar(2));
        let mut y = centered / var.add_scalar(1e-5).sqrt() * gamma.reshape([1, c, 1, 1])
            + beta.reshape([1, c, 1, 1]);
        if let Some(skip) = skip {
            y = y + skip;
        }
        if relu {
            y = burn::tensor::activation::relu(y);
        }
        y
    }

    #[test]
    fn batch_norm_with_skip_and_relu_matches_burns_operations() {
        let device = Default::default();
        let shape = [3, 5, 6, 7];
        let numel: usize = shape.iter().product();
        let mut rng = StdRng::seed_from_u64(11);
        let x_data: Vec<f32> = random(numel, &mut rng)
            .iter()
            .map(|v| 3.0 * v + 0.5)
            .collect();
        let skip_data = random(numel, &mut rng);
        let gamma_data = random(5, &mut rng);
        let beta_data = random(5, &mut rng);
        for (with_skip, relu) in [(false, false), (false, true), (true, true)] {
            let run = |ours: bool| {
                let (x, skip) = (leaf(&x_data, shape), leaf(&skip_data, shape));
                let (gamma, beta) = (leaf(&gamma_data, [5]), leaf(&beta_data, [5]));
                let skip_in = with_skip.then(|| skip.clone());
                let y = if ours {
                    let out = batch_norm(
                        x.clone(),
                        gamma.clone(),
                        beta.clone(),
                        1e-5,
                        Statistics::Batch,
                        skip_in,
                        relu,
                    );
                    let (mean, var) = out.batch.expect("training mode returns the statistics");
                    assert_eq!((mean.dims(), var.dims()), ([5], [5]));
                    out.output
                } else {
                    reference_batch_norm(x.clone(), gamma.clone(), beta.clone(), skip_in, relu)
                };
                let weights = Tensor::<Ad, 4>::from_data(
                    TensorData::new(
                        (0..numel)
                            .map(|i| ((i % 5) as f32 - 2.0) * 0.5)
                            .collect::<Vec<f32>>(),
                        shape,
                    ),
                    &device,
                );
                let grads = (y.clone() * weights).sum().backward();
                let as4 = |t: Tensor<TestBackend, 1>| t.reshape([1, 1, 1, 5]);
                let mut out = vec![
                    y.inner(),
                    x.grad(&grads).unwrap(),
                    as4(gamma.grad(&grads).unwrap()),
                    as4(beta.grad(&grads).unwrap()),
                ];
                if with_skip {
                    out.push(skip.grad(&grads).unwrap());
                }
                out
            };
            let (ours, reference) = (run(true), run(false));
            let names = [
                "output",
                "input grad",
                "gamma grad",
                "beta grad",
                "skip grad",
            ];
            for ((name, a), b) in names.iter().zip(&ours).zip(&reference) {
                let err = relative_error(a, b);
                assert!(
                    err <= 1e-4,
                    "skip {with_skip}, relu {relu}: {name} error {err}"
                );
            }
        }
    }

    /// Our max pooling and burn's, values and input gradient bit for bit, on data full of ties
    /// (a ReLU's zeros and values rounded to quarters) and NaN-free windows.
    #[test]
    fn max_pool2d_matches_burn_bit_for_bit() {
        let mut rng = StdRng::seed_from_u64(21);
        for (shape, kernel, stride, padding) in [
            ([2, 3, 9, 11], [3, 3], [2, 2], [1, 1]),
            ([1, 2, 8, 8], [2, 2], [2, 2], [0, 0]),
            ([2, 2, 7, 5], [3, 3], [1, 1], [1, 1]),
            ([1, 1, 5, 6], [3, 2], [2, 1], [0, 1]),
            ([3, 4, 32, 32], [3, 3], [2, 2], [1, 1]),
        ] {
            let data: Vec<f32> = random(shape.iter().product(), &mut rng)
                .iter()
                .map(|v| (v * 4.0).round().max(0.0) / 4.0)
                .collect();
            let run = |ours: bool| {
                let x = leaf(&data, shape);
                let y = if ours {
                    max_pool2d(x.clone(), kernel, stride, padding)
                } else {
                    burn::tensor::module::max_pool2d(
                        x.clone(),
                        kernel,
                        stride,
                        padding,
                        [1, 1],
                        false,
                    )
                };
                let grads = weighted_sum(y.clone()).backward();
                let bits = |t: Tensor<TestBackend, 4>| -> Vec<u32> {
                    let v: Vec<f32> = t.into_data().to_vec().unwrap();
                    v.iter().map(|x| x.to_bits()).collect()
                };
                (bits(y.inner()), bits(x.grad(&grads).unwrap()))
            };
            let (ours, reference) = (run(true), run(false));
            assert!(ours.0 == reference.0, "{shape:?} {kernel:?}: values");
            assert!(
                ours.1 == reference.1,
                "{shape:?} {kernel:?}: input gradient"
            );
        }
    }

    #[test]
    fn gelu_gradient_matches_burns() {
        let device = Default::default();
        let mut rng = StdRng::seed_from_u64(12);
        let data: Vec<f32> = random(3 * 50, &mut rng).iter().map(|v| v * 6.0).collect();
        let run = |ours: bool| {
            let x = Tensor::<Ad, 2>::from_data(TensorData::new(data.clone(), [3, 50]), &device)
                .require_grad();
            let y = if ours {
                gelu(x.clone())
            } else {
                burn::tensor::activation::gelu(x.clone())
            };
            let grads = (y.clone() * y.clone()).sum().backward();
            let as4 = |t: Tensor<TestBackend, 2>| t.reshape([1, 1, 3, 50]);
            (as4(y.inner()), as4(x.grad(&grads).unwrap()))
        };
        let ((y, dx), (y_ref, dx_ref)) = (run(true), run(false));
        assert!(relative_error(&y, &y_ref) <= 1e-6);
        assert!(relative_error(&dx, &dx_ref) <= 1e-5);
    }

    /// Our dense layer and burn's, forward and every gradient, on `x` `[rows, d_in]`: the same
    /// bits (the same products, the bias added after them, burn's own bias reduction).
    fn check_linear(rows: usize, d_in: usize, d_out: usize, bias: bool, x_grad: bool) {
        let mut rng = StdRng::seed_from_u64((rows * 31 + d_in * 7 + d_out) as u64);
        let x_data = random(rows * d_in, &mut rng);
        let w_data = random(d_in * d_out, &mut rng);
        let b_data = random(d_out, &mut rng);
        let run = |ours: bool| {
            let x = Tensor::<Ad, 2>::from_data(
                TensorData::new(x_data.clone(), [rows, d_in]),
                &Default::default(),
            );
            let x = if x_grad { x.require_grad() } else { x };
            let w = leaf(&w_data, [d_in, d_out]);
            let b = bias.then(|| leaf(&b_data, [d_out]));
            let y = if ours {
                linear(x.clone(), w.clone(), b.clone())
            } else {
                burn::tensor::module::linear(x.clone(), w.clone(), b.clone())
            };
            let grads = weighted_sum(y.clone()).backward();
            let values = |t: Option<Tensor<TestBackend, 2>>| -> Option<Vec<f32>> {
                t.map(|t| t.to_data().to_vec().unwrap())
            };
            [
                values(Some(y.inner())),
                values(x.grad(&grads)),
                values(w.grad(&grads)),
                values(b.map(|b| b.grad(&grads).unwrap().reshape([1, d_out]))),
            ]
        };
        let (ours, reference) = (run(true), run(false));
        for (name, a, b) in ["output", "input grad", "weight grad", "bias grad"]
            .into_iter()
            .zip(ours)
            .zip(reference)
            .map(|((n, a), b)| (n, a, b))
        {
            assert_eq!(a.is_some(), b.is_some(), "{name}: presence");
            assert!(
                a == b,
                "[{rows}, {d_in}] x [{d_in}, {d_out}]: {name} differs from burn's"
            );
        }
    }

    #[test]
    fn linear_matches_burn_bit_for_bit() {
        // The bench MLP's first layer (parallel products), odd sizes, one row, no bias, and an
        // input without a gradient (the first layer's images).
        check_linear(128, 784, 512, true, false);
        check_linear(128, 512, 512, true, true);
        check_linear(7, 13, 5, true, true);
        check_linear(1, 9, 4, false, true);
        check_linear(33, 20, 10, false, false);
    }

    #[test]
    fn linear_with_mismatched_shapes_fails_as_burn_does() {
        use std::panic::{AssertUnwindSafe, catch_unwind};
        // An input narrower than the kernel's rows would read only part of the kernel.
        let x = Tensor::<TestBackend, 2>::zeros([4, 4], &Default::default());
        let w = Tensor::<TestBackend, 2>::zeros([5, 3], &Default::default());
        let ours = catch_unwind(AssertUnwindSafe(|| linear(x.clone(), w.clone(), None)));
        let burns = catch_unwind(AssertUnwindSafe(|| {
            burn::tensor::module::linear(x, w, None)
        }));
        assert!(
            ours.is_err() && burns.is_err(),
            "a 4-wide input against 5 rows"
        );
        let x = Tensor::<TestBackend, 2>::zeros([4, 5], &Default::default());
        let w = Tensor::<TestBackend, 2>::zeros([5, 3], &Default::default());
        let short_bias = Tensor::<TestBackend, 1>::zeros([2], &Default::default());
        let ours = catch_unwind(AssertUnwindSafe(|| linear(x, w, Some(short_bias))));
        assert!(ours.is_err(), "a bias of 2 for 3 outputs");
    }

    #[test]
    fn linear_over_leading_dimensions_matches_burn() {
        let mut rng = StdRng::seed_from_u64(21);
        let (x_data, w_data) = (random(2 * 3 * 8, &mut rng), random(8 * 5, &mut rng));
        let x = Tensor::<TestBackend, 3>::from_data(
            TensorData::new(x_data, [2, 3, 8]),
            &Default::default(),
        );
        let w = Tensor::<TestBackend, 2>::from_data(
            TensorData::new(w_data, [8, 5]),
            &Default::default(),
        );
        let ours = linear(x.clone(), w.clone(), None);
        assert_eq!(ours.dims(), [2, 3, 5]);
        let reference = burn::tensor::module::linear(x, w, None);
        let err = relative_error(
            &ours.reshape([1, 2, 3, 5]),
            &reference.reshape([1, 2, 3, 5]),
        );
        assert!(err <= 1e-6, "relative error {err}");
    }

    fn leaf<const D: usize>(data: &[f32], shape: [usize; D]) -> Tensor<Ad, D> {
        Tensor::<Ad, D>::from_data(TensorData::new(data.to_vec(), shape), &Default::default())
            .require_grad()
    }

    /// `sum(y * w)` with fixed, varied weights `w` (so no gradient layout error cancels).
    fn weighted_sum<const D: usize>(y: Tensor<Ad, D>) -> Tensor<Ad, 1> {
        let n = y.dims().iter().product::<usize>();
        let w = Tensor::<Ad, D>::from_data(
            TensorData::new(
                (0..n)
                    .map(|i| ((i % 11) as f32 - 5.0) * 0.2)
                    .collect::<Vec<f32>>(),
                y.dims(),
            ),
            &Default::default(),
        );
        (y * w).sum()
    }

    fn as4<const D: usize>(t: Tensor<TestBackend, D>) -> Tensor<TestBackend, 4> {
        let n = t.dims().iter().product::<usize>();
        t.reshape([1, 1, 1, n])
    }

    #[test]
    fn layer_norm_with_residual_matches_burns() {
        let mut rng = StdRng::seed_from_u64(13);
        let shape = [3, 5, 24];
        let n = 3 * 5 * 24;
        let x = random(n, &mut rng)
            .iter()
            .map(|v| 2.0 * v + 0.3)
            .collect::<Vec<f32>>();
        let r = random(n, &mut rng);
        let gamma = random(24, &mut rng);
        let beta = random(24, &mut rng);
        for with_residual in [false, true] {
            let run = |ours: bool| {
                let (xt, rt) = (leaf(&x, shape), leaf(&r, shape));
                let (gt, bt) = (leaf(&gamma, [24]), leaf(&beta, [24]));
                let res = with_residual.then(|| rt.clone());
                let y = if ours {
                    layer_norm(xt.clone(), res, gt.clone(), Some(bt.clone()), 1e-12)
                } else {
                    let input = match res {
                        Some(res) => xt.clone() + res,
                        None => xt.clone(),
                    };
                    let mut ln = burn::nn::LayerNormConfig::new(24)
                        .with_epsilon(1e-12)
                        .init(&Default::default());
                    ln.gamma = burn::module::Param::from_tensor(gt.clone());
                    ln.beta = Some(burn::module::Param::from_tensor(bt.clone()));
                    ln.forward(input)
                };
                let grads = weighted_sum(y.clone()).backward();
                let mut out = vec![
                    as4(y.inner()),
                    as4(xt.grad(&grads).unwrap()),
                    as4(gt.grad(&grads).unwrap()),
                    as4(bt.grad(&grads).unwrap()),
                ];
                if with_residual {
                    out.push(as4(rt.grad(&grads).unwrap()));
                }
                out
            };
            let (ours, reference) = (run(true), run(false));
            for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
                let err = relative_error(a, b);
                assert!(
                    err <= 1e-4,
                    "residual {with_residual}: tensor {i} error {err}"
                );
            }
        }
    }

    #[test]
    fn attention_matches_burns_operations() {
        let mut rng = StdRng::seed_from_u64(14);
        let (b, t, heads, dh) = (3, 7, 2, 5);
        let shape = [b, t, heads * dh];
        let n = b * t * heads * dh;
        let (q, k, v) = (
            random(n, &mut rng),
            random(n, &mut rng),
            random(n, &mut rng),
        );
        // Padding: the last two keys of the second sequence.
        let mut bias = vec![0.0f32; b * t];
        bias[t + t - 2..2 * t].fill(-10_000.0);
        let run = |ours: bool| {
            let (qt, kt, vt) = (leaf(&q, shape), leaf(&k, shape), leaf(&v, shape));
            let bias = Tensor::<Ad, 2>::from_data(
                TensorData::new(bias.clone(), [b, t]),
                &Default::default(),
            );
            let y = if ours {
                attention(qt.clone(), kt.clone(), vt.clone(), bias, heads)
            } else {
                // burn's operations, written out.
                let split = |y: Tensor<Ad, 3>| y.reshape([b, t, heads, dh]).swap_dims(1, 2);
                let scores = split(qt.clone())
                    .matmul(split(kt.clone()).swap_dims(2, 3))
                    .div_scalar((dh as f64).sqrt())
                    + bias.reshape([b, 1, 1, t]);
                burn::tensor::activation::softmax(scores, 3)
                    .matmul(split(vt.clone()))
                    .swap_dims(1, 2)
                    .reshape([b, t, heads * dh])
            };
            let grads = weighted_sum(y.clone()).backward();
            vec![
                as4(y.inner()),
                as4(qt.grad(&grads).unwrap()),
                as4(kt.grad(&grads).unwrap()),
                as4(vt.grad(&grads).unwrap()),
            ]
        };
        let (ours, reference) = (run(true), run(false));
        for (name, (a, c)) in ["context", "dq", "dk", "dv"]
            .iter()
            .zip(ours.iter().zip(&reference))
        {
            let err = relative_error(a, c);
            assert!(err <= 1e-4, "{name}: relative error {err}");
        }
    }
}
