//! Majority-kernel layers against the plain layers they replace, on real inputs (the committed
//! fixtures, `tests/fixtures/data`: layer times depend on the shapes, not on how many examples
//! the dataset holds).
//!
//! `cargo bench --bench mk_layers` (add `-- dense` etc. to filter). Groups:
//! - `dense`: 784 -> 512 on flattened MNIST images;
//! - `conv`: 3x3, 16 -> 16 channels on CIFAR-10 images after a fixed 3 -> 16 stem, both
//!   gradients (input and kernel), through the project's convolution (`kernels::conv2d`);
//! - `attention_projection`: 128 -> 128 over 64 tokens of SST-2 sentences embedded by a fixed
//!   random table (the Q/K/V/O shape of the bench encoder);
//! - `update`: the optimiser step of one 512x512 kernel (SGD, momentum 0.9): burn's optimiser
//!   and the harness's fused one on the plain kernel, and the fused update of k copies.
//! - `mlp_products`: the matrix products of the MLP's dense layers at batch 128
//!   (`kernels::linear`: forward, input and kernel gradients), one line per product;
//!   `benches/reference/mlp_products.py` times the same products in PyTorch.
//! - `resnet18_convs`: every distinct convolution of ResNet-18 with the ImageNet stem on
//!   64x64 images at batch 128 (`kernels::conv`, forward and backward apart, the backward
//!   with the input gradient except for the stem); `benches/reference/conv_layers.py` times
//!   the same convolutions in PyTorch.
//!
//! `fwd_bwd` is forward, sum loss and backward; for MK it includes mixing the copies before the
//! forward pass and taking the kernel gradient after. Plain and MK run at batch 32 and 128 and
//! k in {2, 4, 8}; the ratio of an `mk_k*` line to the `plain` line of the same batch is the
//! layer's overhead (`reproduce bench` prints whole-step ratios).

use burn::backend::Autodiff;
use burn::module::{Module, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{GradientsParams, Optimizer, SgdConfig, momentum::MomentumConfig};
use burn::prelude::*;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

use majority_kernels::backend::DefaultCpu;
use majority_kernels::data::{self, Inputs, LoadOptions, TextOptions, test_data};
use majority_kernels::kernels;
use majority_kernels::mk::{MixedKernels, Mixing, MkConv2d, MkInit, MkLinear};
use majority_kernels::optim::OptimizerSpec;
use majority_kernels::train::MkStep;

type B = Autodiff<DefaultCpu>;

/// The allocator `reproduce` runs with, so layer times match its steps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCHES: [usize; 2] = [32, 128];
const KS: [usize; 3] = [2, 4, 8];

fn sgd() -> OptimizerSpec {
    OptimizerSpec::Sgd {
        lr: 0.01,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
    }
}

fn images(dataset: &str, n: usize) -> Tensor<B, 4> {
    let splits =
        data::load(dataset, &[test_data()], &LoadOptions::default()).expect("dataset loads");
    let indices: Vec<usize> = (0..n).collect();
    match splits.train.batch::<B>(&indices, &Default::default()).0 {
        Inputs::Images(x) => x,
        Inputs::Tokens { .. } => unreachable!("image dataset"),
    }
}

/// Operand values of any length, the pixels of the first `n` MNIST images repeated: for
/// kernels whose time does not depend on the values.
fn stand_in_values(n: usize) -> impl Fn(usize) -> Vec<f32> {
    let pixels: Vec<f32> = images("mnist", n).into_data().to_vec().expect("f32 pixels");
    move |len| pixels.iter().copied().cycle().take(len).collect()
}

/// Plain vs MK forward/backward of one layer type at every batch and k: `plain(batch)` runs
/// the plain layer to a loss; `make_mk(k)` builds the MK layer (and its copies' id), which
/// `mk(layer, batch, kernels)` runs to a loss. The MK side includes mixing the copies before
/// the forward pass and taking the kernel gradient after.
fn compare<L: Module<B>>(
    c: &mut Criterion,
    group: &str,
    plain: impl Fn(usize) -> Tensor<B, 1>,
    make_mk: impl Fn(usize) -> (L, ParamId),
    mk: impl Fn(&L, usize, &MixedKernels<B>) -> Tensor<B, 1>,
) {
    let layers: Vec<(L, MkStep<B>)> = KS
        .iter()
        .map(|&k| {
            let (layer, id) = make_mk(k);
            (layer, MkStep::new(vec![id], &sgd(), 1.0))
        })
        .collect();
    let mut g = c.benchmark_group(group);
    g.sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    for batch in BATCHES {
        g.bench_with_input(BenchmarkId::new("plain", batch), &batch, |b, &batch| {
            b.iter(|| plain(batch).backward())
        });
        for (&k, (layer, step)) in KS.iter().zip(&layers) {
            let p = Mixing::default().draw_all(1, k, &mut StdRng::seed_from_u64(k as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("mk_k{k}"), batch),
                &batch,
                |b, &batch| {
                    b.iter(|| {
                        let kernels = step.mix_now(layer, &p);
                        let grads = mk(layer, batch, &kernels).backward();
                        std::hint::black_box(step.kernel_gradients(&kernels, &grads))
                    })
                },
            );
        }
    }
    g.finish();
}

fn dense(c: &mut Criterion) {
    let x: Tensor<B, 2> = images("mnist", 128).flatten(1, 3);
    let base: Linear<B> = LinearConfig::new(784, 512).init(&Default::default());
    let input = |batch: usize| x.clone().slice(0..batch);
    compare(
        c,
        "dense",
        |batch| base.forward(input(batch)).sum(),
        |k| mk_linear(&base, k),
        |layer, batch, m| layer.forward(input(batch), Some(m)).sum(),
    );
}

fn mk_linear(base: &Linear<B>, k: usize) -> (MkLinear<B>, ParamId) {
    let layer = MkLinear::from_linear(base, k, MkInit::Identical, &mut StdRng::seed_from_u64(0));
    let id = layer.theta_id();
    (layer, id)
}

fn conv(c: &mut Criterion) {
    let device = Default::default();
    let stem: Conv2d<B> = Conv2dConfig::new([3, 16], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&device);
    let x = stem.forward(images("cifar10", 128)).detach();
    let base: Conv2d<B> = Conv2dConfig::new([16, 16], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(&device);
    // The input needs its gradient, as every layer but the stem does in training.
    let input = |batch: usize| x.clone().slice(0..batch).require_grad();
    compare(
        c,
        "conv",
        |batch| kernels::conv2d_layer(&base, input(batch)).sum(),
        |k| {
            let layer =
                MkConv2d::from_conv(&base, k, MkInit::Identical, &mut StdRng::seed_from_u64(0));
            let id = layer.theta_id();
            (layer, id)
        },
        |layer, batch, m| layer.forward(input(batch), Some(m)).sum(),
    );
}

fn attention_projection(c: &mut Criterion) {
    let device = Default::default();
    let options = LoadOptions {
        text: Some(TextOptions {
            tokenizer: "bert-base-uncased".into(),
            max_len: 64,
        }),
        ..Default::default()
    };
    let splits = data::load("sst2", &[test_data()], &options).expect("SST-2 loads");
    let indices: Vec<usize> = (0..128).collect();
    let ids = match splits.train.batch::<B>(&indices, &device).0 {
        Inputs::Tokens { ids, .. } => ids,
        Inputs::Images(_) => unreachable!("text dataset"),
    };
    let table: Embedding<B> = EmbeddingConfig::new(30522, 128).init(&device);
    let x = table.forward(ids).detach();
    let base: Linear<B> = LinearConfig::new(128, 128).init(&device);
    let input = |batch: usize| x.clone().slice(0..batch);
    compare(
        c,
        "attention_projection",
        |batch| base.forward(input(batch)).sum(),
        |k| mk_linear(&base, k),
        |layer, batch, m| layer.forward(input(batch), Some(m)).sum(),
    );
}

/// One optimiser step of a 512x512 kernel: burn's SGD with momentum on the plain kernel, or
/// the fused update of k copies.
fn update(c: &mut Criterion) {
    let device = Default::default();
    let x: Tensor<B, 2> = images("mnist", 32).flatten(1, 3).slice([0..32, 0..512]);
    let mut g = c.benchmark_group("update");
    g.sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    let plain: Linear<B> = LinearConfig::new(512, 512).with_bias(false).init(&device);
    let mut optimizer = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init::<B, Linear<B>>();
    let grads = plain.forward(x.clone()).sum().backward();
    let weight_id = plain.weight.id;
    let gradient = plain
        .weight
        .val()
        .grad(&grads)
        .expect("the kernel has a gradient");
    let mut model = Some(plain);
    g.bench_function("plain_burn_sgd_momentum", |b| {
        b.iter(|| {
            let m = model.take().unwrap();
            let mut grads = GradientsParams::new();
            grads.register(weight_id, gradient.clone());
            model = Some(optimizer.step(0.01, m, grads));
        })
    });
    // The harness's optimiser on the same plain kernel (one copy, p = [1]).
    let plain: Linear<B> = LinearConfig::new(512, 512).with_bias(false).init(&device);
    let mut fused = MkStep::<B>::new(Vec::new(), &sgd(), 1.0);
    let mut current = Some(plain);
    g.bench_function("plain_fused_sgd_momentum", |b| {
        b.iter(|| {
            let layer = current.take().unwrap();
            let mut grads = GradientsParams::new();
            grads.register(layer.weight.id, gradient.clone());
            current = Some(fused.update(layer, Vec::new(), &[], grads, 0.01));
        })
    });
    for k in KS {
        let base: Linear<B> = LinearConfig::new(512, 512).with_bias(false).init(&device);
        let layer =
            MkLinear::from_linear(&base, k, MkInit::Identical, &mut StdRng::seed_from_u64(0));
        let mut step = MkStep::new(vec![layer.theta_id()], &sgd(), 1.0);
        let p = vec![1.0 / k as f32; k];
        let kernels = step.mix(&layer, &p);
        let grads = layer.forward(x.clone(), Some(&kernels)).sum().backward();
        let kernel_gradient = step.kernel_gradients(&kernels, &grads);
        let mut current = Some(layer);
        g.bench_function(BenchmarkId::new("mk_fused_sgd_momentum", k), |b| {
            b.iter(|| {
                let layer = current.take().unwrap();
                current = Some(step.update(
                    layer,
                    kernel_gradient.clone(),
                    &p,
                    GradientsParams::new(),
                    0.01,
                ));
            })
        });
    }
    g.finish();
}

/// The MLP 784-512-512-10's five large products at batch 128, as its training step makes
/// them (the 512 -> 10 layer's are too small to matter). Values do not change a product's time;
/// the MNIST images stand in for every operand.
fn mlp_products(c: &mut Criterion) {
    use kernels::linear::{forward, input_gradient, weight_gradient};
    let values = stand_in_values(128);
    let (x, h, w1, w2) = (
        values(128 * 784),
        values(128 * 512),
        values(784 * 512),
        values(512 * 512),
    );
    let mut g = c.benchmark_group("mlp_products");
    g.sample_size(50)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    g.bench_function("forward_784x512", |b| {
        b.iter(|| forward([128, 784, 512], &x, &w1, None))
    });
    g.bench_function("forward_512x512", |b| {
        b.iter(|| forward([128, 512, 512], &h, &w2, None))
    });
    g.bench_function("input_gradient_512x512", |b| {
        b.iter(|| input_gradient([128, 512, 512], &w2, &h))
    });
    g.bench_function("weight_gradient_784x512", |b| {
        b.iter(|| weight_gradient([128, 784, 512], &x, &h))
    });
    g.bench_function("weight_gradient_512x512", |b| {
        b.iter(|| weight_gradient([128, 512, 512], &h, &h))
    });
    g.finish();
}

/// One convolution of [`RESNET18_CONVS`]: input `[128, channels, side, side]`, `out` kernels
/// of `kernel x kernel`.
struct BenchConv {
    name: &'static str,
    channels: usize,
    side: usize,
    out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
}

const fn bench_conv(
    name: &'static str,
    [channels, side, out]: [usize; 3],
    [kernel, stride, padding]: [usize; 3],
) -> BenchConv {
    BenchConv {
        name,
        channels,
        side,
        out,
        kernel,
        stride,
        padding,
    }
}

/// The distinct convolutions of ResNet-18 with the ImageNet stem on 64x64 images at batch 128
/// (`benches/reference/conv_layers.py` holds the same list, and how many times a step runs
/// each): `[channels, side, out]`, `[kernel, stride, padding]`.
const RESNET18_CONVS: [BenchConv; 11] = [
    bench_conv("stem_7x7_3to64_64px", [3, 64, 64], [7, 2, 3]),
    bench_conv("3x3_64to64_16px", [64, 16, 64], [3, 1, 1]),
    bench_conv("3x3s2_64to128_16px", [64, 16, 128], [3, 2, 1]),
    bench_conv("1x1s2_64to128_16px", [64, 16, 128], [1, 2, 0]),
    bench_conv("3x3_128to128_8px", [128, 8, 128], [3, 1, 1]),
    bench_conv("3x3s2_128to256_8px", [128, 8, 256], [3, 2, 1]),
    bench_conv("1x1s2_128to256_8px", [128, 8, 256], [1, 2, 0]),
    bench_conv("3x3_256to256_4px", [256, 4, 256], [3, 1, 1]),
    bench_conv("3x3s2_256to512_4px", [256, 4, 512], [3, 2, 1]),
    bench_conv("1x1s2_256to512_4px", [256, 4, 512], [1, 2, 0]),
    bench_conv("3x3_512to512_2px", [512, 2, 512], [3, 1, 1]),
];

/// Forward and backward of each of [`RESNET18_CONVS`] through `kernels::conv` on the host
/// buffers (no autodiff graph), with MNIST's pixels standing in for every value.
fn resnet18_convs(c: &mut Criterion) {
    use kernels::conv::{ConvShape, Wanted, backward, forward};
    let values = stand_in_values(16);
    let mut g = c.benchmark_group("resnet18_convs");
    g.sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    for conv in RESNET18_CONVS {
        let (ci, side, co, kernel) = (conv.channels, conv.side, conv.out, conv.kernel);
        let s = ConvShape::new(
            [128, ci, side, side],
            [co, ci, kernel, kernel],
            [conv.stride; 2],
            [conv.padding; 2],
            [1, 1],
            1,
        )
        .expect("a valid convolution");
        let (x, w) = (
            values(128 * ci * side * side),
            values(co * ci * kernel * kernel),
        );
        let dy = values(128 * co * s.oh * s.ow);
        let wanted = Wanted {
            input: !conv.name.starts_with("stem"),
            weight: true,
            bias: false,
        };
        let name = conv.name;
        g.bench_function(format!("{name}_forward"), |b| {
            b.iter(|| forward(&s, &x, &w, None))
        });
        g.bench_function(format!("{name}_backward"), |b| {
            b.iter(|| backward(&s, &x, &w, &dy, wanted))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    dense,
    conv,
    attention_projection,
    update,
    mlp_products,
    resnet18_convs
);
criterion_main!(benches);
