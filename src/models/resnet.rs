//! Residual networks of basic blocks: the CIFAR ResNets (ResNet-20/56: three stages of
//! 16/32/64 channels) and ResNet-18 (four stages of 64..512), with a CIFAR stem (3x3 conv,
//! stride 1, for 32x32 inputs) or the ImageNet stem (7x7 conv stride 2 and 3x3 max-pool, for
//! 64x64 and 224x224). Every convolution and the classifier are majority-kernel capable
//! ([`Conv`], [`Dense`]); BatchNorm stays single (docs/METHODS.md, "Majority kernels").
//!
//! Choices (documented, configurable where it matters): shortcuts that change shape are 1x1
//! projection convolutions with BatchNorm ("option B") for every depth; convolutions have no
//! bias; weights are drawn as burn's default Conv2d/Linear init (Kaiming-uniform, gain
//! 1/sqrt(3)) on the host from the run's seed.

use burn::module::{Param, ParamId};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, PaddingConfig2d};
use burn::prelude::*;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::dense::Dense;
use super::{Classifier, Inputs};
use crate::kernels::{self, Statistics};
use crate::mk::init::kaiming_uniform;
use crate::mk::{MixedKernels, MkConv2d, MkInit};

/// The input stem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// 3x3 convolution, stride 1 (32x32 inputs).
    #[default]
    Cifar,
    /// 7x7 convolution, stride 2, then 3x3 max-pool stride 2 (64x64 and larger).
    Imagenet,
}

impl std::str::FromStr for Stem {
    type Err = crate::error::Error;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "cifar" => Ok(Stem::Cifar),
            "imagenet" => Ok(Stem::Imagenet),
            other => Err(crate::error::Error::Usage(format!(
                "stem `{other}`: expected cifar or imagenet"
            ))),
        }
    }
}

/// Named architectures; `blocks`/`widths` given beside `arch` override it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResNetArch {
    Resnet20,
    Resnet56,
    Resnet18,
}

/// Architecture of a ResNet as written in experiment files: `{family: resnet, arch: resnet20}`
/// or `{family: resnet, blocks: [1, 1, 1], widths: [16, 32, 64], stem: cifar}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<ResNetArch>,
    /// Basic blocks per stage (e.g. `[3, 3, 3]` is ResNet-20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<usize>>,
    /// Channels per stage; stages after the first halve the resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widths: Option<Vec<usize>>,
    #[serde(default)]
    pub stem: Stem,
}

impl ResNetSpec {
    /// Blocks and widths per stage, the preset filled in.
    pub fn stages(&self) -> (Vec<usize>, Vec<usize>) {
        let (blocks, widths) = match self.arch {
            Some(ResNetArch::Resnet20) => (vec![3, 3, 3], vec![16, 32, 64]),
            Some(ResNetArch::Resnet56) => (vec![9, 9, 9], vec![16, 32, 64]),
            Some(ResNetArch::Resnet18) => (vec![2, 2, 2, 2], vec![64, 128, 256, 512]),
            None => (Vec::new(), Vec::new()),
        };
        (
            self.blocks.clone().unwrap_or(blocks),
            self.widths.clone().unwrap_or(widths),
        )
    }

    /// Checks the values; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let (blocks, widths) = self.stages();
        if blocks.is_empty() || widths.is_empty() {
            return Err(
                "model: a resnet needs `arch` (resnet20, resnet56, resnet18) or `blocks` and `widths`"
                    .into(),
            );
        }
        if blocks.len() != widths.len() {
            return Err(format!(
                "model.blocks ({blocks:?}) and model.widths ({widths:?}) must have one entry per stage"
            ));
        }
        if blocks.contains(&0) || widths.contains(&0) {
            return Err(format!(
                "model.blocks and model.widths must be positive, got {blocks:?} and {widths:?}"
            ));
        }
        Ok(())
    }

    /// Label such as `resnet20-w16.32.64-cifar`: depth counts convolutions on the main path
    /// plus the classifier, as the ResNet papers do.
    pub fn label(&self) -> String {
        let (blocks, widths) = self.stages();
        let depth = 2 * blocks.iter().sum::<usize>() + 2;
        let widths: Vec<String> = widths.iter().map(|w| w.to_string()).collect();
        let stem = match self.stem {
            Stem::Cifar => "cifar",
            Stem::Imagenet => "imagenet",
        };
        format!("resnet{depth}-w{}-{stem}", widths.join("."))
    }

    /// Every stage `factor` times wider.
    pub fn widened(&self, factor: usize) -> ResNetSpec {
        let (blocks, widths) = self.stages();
        ResNetSpec {
            arch: None,
            blocks: Some(blocks),
            widths: Some(widths.iter().map(|w| w * factor).collect()),
            stem: self.stem,
        }
    }
}

/// A convolution that is plain or a majority kernel.
#[derive(Module, Debug)]
pub enum Conv<B: Backend> {
    Plain(Conv2d<B>),
    Mk(MkConv2d<B>),
}

impl<B: Backend> Conv<B> {
    /// A bias-free square convolution, weights drawn from `rng`.
    pub fn new(
        [c_in, c_out]: [usize; 2],
        kernel: usize,
        stride: usize,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Self {
        let fan_in = c_in * kernel * kernel;
        let weight = kaiming_uniform(c_out * fan_in, fan_in, rng);
        let pad = kernel / 2;
        Conv::Plain(Conv2d {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(weight, [c_out, c_in, kernel, kernel]),
                device,
            )),
            bias: None,
            stride: [stride, stride],
            kernel_size: [kernel, kernel],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(pad, pad, pad, pad),
        })
    }

    pub fn forward(&self, x: Tensor<B, 4>, mix: Option<&MixedKernels<B>>) -> Tensor<B, 4> {
        match self {
            Conv::Plain(conv) => crate::kernels::conv2d_layer(conv, x),
            Conv::Mk(mk) => mk.forward(x, mix),
        }
    }

    pub fn to_mk(&self, k: usize, init: MkInit, rng: &mut StdRng) -> Self {
        match self {
            Conv::Plain(conv) => Conv::Mk(MkConv2d::from_conv(conv, k, init, rng)),
            Conv::Mk(mk) => Conv::Mk(mk.clone()),
        }
    }

    pub fn collapse(&self) -> Self {
        match self {
            Conv::Plain(conv) => Conv::Plain(conv.clone()),
            Conv::Mk(mk) => Conv::Plain(mk.collapse()),
        }
    }

    pub fn mk_id(&self) -> Option<ParamId> {
        match self {
            Conv::Plain(_) => None,
            Conv::Mk(mk) => Some(mk.theta_id()),
        }
    }
}

/// Convolution followed by BatchNorm.
#[derive(Module, Debug)]
pub struct ConvBn<B: Backend> {
    pub conv: Conv<B>,
    pub bn: BatchNorm<B>,
}

impl<B: Backend> ConvBn<B> {
    fn new(
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Self {
        Self {
            conv: Conv::new(channels, kernel, stride, rng, device),
            bn: BatchNormConfig::new(channels[1]).init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>, mix: Option<&MixedKernels<B>>) -> Tensor<B, 4> {
        batch_norm(&self.bn, self.conv.forward(x, mix))
    }

    /// `relu(bn(conv(x)) + skip?)`, fused on the CPU backend.
    fn forward_relu(
        &self,
        x: Tensor<B, 4>,
        mix: Option<&MixedKernels<B>>,
        skip: Option<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        batch_norm_fused(&self.bn, self.conv.forward(x, mix), skip, true)
    }

    fn map_convs(&self, f: &mut impl FnMut(&Conv<B>) -> Conv<B>) -> Self {
        Self {
            conv: f(&self.conv),
            bn: self.bn.clone(),
        }
    }
}

/// burn's `BatchNorm::forward` for `[N, C, H, W]` (same statistics, biased variance, running
/// averages with the layer's momentum; training mode exactly when autodiff is on), followed
/// by `+ skip` and a ReLU when asked: one fused operation on the CPU backend
/// ([`crate::kernels::batch_norm`]).
pub fn batch_norm<B: Backend>(bn: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    batch_norm_fused(bn, x, None, false)
}

/// [`batch_norm`], then `+ skip`, then ReLU when `relu`.
pub fn batch_norm_fused<B: Backend>(
    bn: &BatchNorm<B>,
    x: Tensor<B, 4>,
    skip: Option<Tensor<B, 4>>,
    relu: bool,
) -> Tensor<B, 4> {
    let statistics = if B::ad_enabled(&x.device()) {
        Statistics::Batch
    } else {
        Statistics::Running {
            mean: bn.running_mean.value_sync(),
            var: bn.running_var.value_sync(),
        }
    };
    let normalized = kernels::batch_norm(
        x,
        bn.gamma.val(),
        bn.beta.val(),
        bn.epsilon,
        statistics,
        skip,
        relu,
    );
    if let Some((mean, var)) = normalized.batch {
        let m = bn.momentum;
        let update = |state: &burn::module::RunningState<Tensor<B, 1>>, batch: Tensor<B, 1>| {
            let running = state.value_sync().to_device(&batch.device());
            state.update(
                running
                    .mul_scalar(1.0 - m)
                    .add(batch.mul_scalar(m))
                    .detach(),
            );
        };
        update(&bn.running_mean, mean);
        update(&bn.running_var, var);
    }
    normalized.output
}

/// Two 3x3 convolutions with a residual connection (a projection when the shape changes).
#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    pub first: ConvBn<B>,
    pub second: ConvBn<B>,
    pub shortcut: Option<ConvBn<B>>,
}

impl<B: Backend> BasicBlock<B> {
    /// The block's inner activation (after its first BatchNorm and ReLU) and its output.
    fn forward(
        &self,
        x: Tensor<B, 4>,
        mix: Option<&MixedKernels<B>>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let inner = self.first.forward_relu(x.clone(), mix, None);
        let skip = match &self.shortcut {
            Some(projection) => projection.forward(x, mix),
            None => x,
        };
        let y = self.second.forward_relu(inner.clone(), mix, Some(skip));
        (inner, y)
    }
}

/// A ResNet classifier, small or MK twin.
#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    pub stem: ConvBn<B>,
    /// Max-pool after the stem (ImageNet stem).
    pub stem_pool: bool,
    pub blocks: Vec<BasicBlock<B>>,
    pub head: Dense<B>,
}

impl<B: Backend> ResNet<B> {
    /// A freshly initialised ResNet for `channels`-channel images and `classes` classes.
    pub fn new(
        spec: &ResNetSpec,
        channels: usize,
        classes: usize,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Self {
        let (blocks_per_stage, widths) = spec.stages();
        let (stem_kernel, stem_stride) = match spec.stem {
            Stem::Cifar => (3, 1),
            Stem::Imagenet => (7, 2),
        };
        let stem = ConvBn::new([channels, widths[0]], stem_kernel, stem_stride, rng, device);
        let mut blocks = Vec::new();
        let mut c_in = widths[0];
        for (stage, (&n, &width)) in blocks_per_stage.iter().zip(&widths).enumerate() {
            for b in 0..n {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let first = ConvBn::new([c_in, width], 3, stride, rng, device);
                let second = ConvBn::new([width, width], 3, 1, rng, device);
                let shortcut = (stride != 1 || c_in != width)
                    .then(|| ConvBn::new([c_in, width], 1, stride, rng, device));
                blocks.push(BasicBlock {
                    first,
                    second,
                    shortcut,
                });
                c_in = width;
            }
        }
        let weight = kaiming_uniform(c_in * classes, c_in, rng);
        let bias = kaiming_uniform(classes, c_in, rng);
        let head = Dense::Plain(Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(weight, [c_in, classes]),
                device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(bias, [classes]),
                device,
            ))),
        });
        Self {
            stem,
            stem_pool: spec.stem == Stem::Imagenet,
            blocks,
            head,
        }
    }

    /// The same network with every convolution replaced by `f` of it (head by `head`).
    fn map_layers(
        &self,
        mut f: impl FnMut(&Conv<B>) -> Conv<B>,
        head: impl FnOnce(&Dense<B>) -> Dense<B>,
    ) -> Self {
        let blocks = self
            .blocks
            .iter()
            .map(|block| BasicBlock {
                first: block.first.map_convs(&mut f),
                second: block.second.map_convs(&mut f),
                shortcut: block.shortcut.as_ref().map(|s| s.map_convs(&mut f)),
            })
            .collect();
        Self {
            stem: self.stem.map_convs(&mut f),
            stem_pool: self.stem_pool,
            blocks,
            head: head(&self.head),
        }
    }

    /// The MK twin: k copies of every convolution kernel and of the classifier.
    pub fn to_mk(&self, k: usize, init: MkInit, rng: &mut StdRng) -> Self {
        // Copies are drawn in forward order: convolutions, then the classifier.
        let mut mapped = self.map_layers(|conv| conv.to_mk(k, init, rng), Dense::clone);
        mapped.head = self.head.to_mk(k, init, rng);
        mapped
    }

    /// The deployed network: every majority kernel collapsed to its mean.
    pub fn collapse(&self) -> Self {
        self.map_layers(|conv| conv.collapse(), |head| head.collapse())
    }

    /// Every BatchNorm, in forward order.
    pub fn batchnorms_mut(&mut self) -> Vec<&mut BatchNorm<B>> {
        let mut out = vec![&mut self.stem.bn];
        for block in &mut self.blocks {
            out.push(&mut block.first.bn);
            out.push(&mut block.second.bn);
            if let Some(shortcut) = &mut block.shortcut {
                out.push(&mut shortcut.bn);
            }
        }
        out
    }

    fn convs(&self) -> Vec<&Conv<B>> {
        let mut out = vec![&self.stem.conv];
        for block in &self.blocks {
            out.push(&block.first.conv);
            out.push(&block.second.conv);
            if let Some(shortcut) = &block.shortcut {
                out.push(&shortcut.conv);
            }
        }
        out
    }
}

impl<B: Backend> ResNet<B> {
    /// Runs the network up to the global average pool: `[batch, channels]` features. With
    /// `record`, also returns every block's inner activation (after its first BatchNorm and
    /// ReLU) and every block's output, in forward order (for channel selection).
    pub fn features(
        &self,
        x: Tensor<B, 4>,
        mix: Option<&MixedKernels<B>>,
        mut record: Option<&mut Vec<(Tensor<B, 4>, Tensor<B, 4>)>>,
    ) -> Tensor<B, 2> {
        let mut x = self.stem.forward_relu(x, mix, None);
        if self.stem_pool {
            x = crate::kernels::max_pool2d(x, [3, 3], [2, 2], [1, 1]);
        }
        for block in &self.blocks {
            let (inner, y) = block.forward(x, mix);
            if let Some(out) = record.as_deref_mut() {
                out.push((inner, y.clone()));
            }
            x = y;
        }
        let [batch, channels, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([batch, channels])
    }
}

impl<B: Backend> Classifier<B> for ResNet<B> {
    fn forward(&self, inputs: Inputs<B>, mix: Option<&MixedKernels<B>>) -> Tensor<B, 2> {
        let Inputs::Images(x) = inputs else {
            panic!("a ResNet takes images, not token ids");
        };
        let pooled = self.features(x, mix, None);
        self.head.forward(pooled, mix)
    }

    fn mk_layers(&self) -> usize {
        if matches!(self.head, Dense::Mk(_)) {
            self.convs().len() + 1
        } else {
            0
        }
    }

    fn mk_copies(&self) -> usize {
        self.head.k()
    }

    fn mk_kernel_ids(&self) -> Vec<ParamId> {
        self.convs()
            .into_iter()
            .filter_map(Conv::mk_id)
            .chain(self.head.mk_id())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{TestAutodiffBackend, TestBackend};
    use burn::module::AutodiffModule;
    use rand::SeedableRng;

    fn spec(stem: Stem) -> ResNetSpec {
        ResNetSpec {
            arch: None,
            blocks: Some(vec![1, 1]),
            widths: Some(vec![4, 8]),
            stem,
        }
    }

    fn images<B: Backend>(side: usize, rng: &mut StdRng) -> Inputs<B> {
        Inputs::Images(Tensor::from_data(
            TensorData::new(
                kaiming_uniform(2 * 3 * side * side, 1, rng),
                [2, 3, side, side],
            ),
            &Default::default(),
        ))
    }

    #[test]
    fn presets_and_labels() {
        let r20 = ResNetSpec {
            arch: Some(ResNetArch::Resnet20),
            blocks: None,
            widths: None,
            stem: Stem::Cifar,
        };
        assert_eq!(r20.label(), "resnet20-w16.32.64-cifar");
        let r18 = ResNetSpec {
            arch: Some(ResNetArch::Resnet18),
            stem: Stem::Imagenet,
            ..r20.clone()
        };
        assert_eq!(r18.label(), "resnet18-w64.128.256.512-imagenet");
        assert_eq!(r20.widened(4).label(), "resnet20-w64.128.256-cifar");
        let bad = ResNetSpec {
            widths: Some(vec![16, 32]),
            ..r20
        };
        assert!(bad.validate().unwrap_err().contains("one entry per stage"));
    }

    #[test]
    fn eval_mode_mk_resnet_equals_its_collapse_exactly() {
        // Trained a few steps so BatchNorm statistics and copies differ from their init.
        type AB = TestAutodiffBackend;
        for stem in [Stem::Cifar, Stem::Imagenet] {
            let mut rng = StdRng::seed_from_u64(3);
            let side = if stem == Stem::Cifar { 8 } else { 16 };
            let small = ResNet::<AB>::new(&spec(stem), 3, 5, &mut rng, &Default::default());
            let mk = small.to_mk(3, MkInit::Independent, &mut rng);
            assert_eq!(
                mk.mk_layers(),
                1 + 2 + 2 + 1 + 1,
                "stem, 2 blocks, 1 projection, head"
            );
            let step = crate::mk::KernelMixer::new(mk.mk_kernel_ids());
            let mix = step.mix(&mk, &[0.2f32, 0.5, 0.3].repeat(7));
            // Training-mode passes update the running statistics.
            let _ = mk.forward(images(side, &mut rng), Some(&mix));
            let mk = mk.valid();
            let x = images::<TestBackend>(side, &mut rng);
            let eval: Vec<f32> = mk.forward(x.clone(), None).into_data().to_vec().unwrap();
            let deployed = mk.collapse();
            assert_eq!(deployed.mk_layers(), 0);
            assert_eq!(deployed.num_params(), small.valid().num_params());
            let out: Vec<f32> = deployed.forward(x, None).into_data().to_vec().unwrap();
            assert_eq!(eval, out, "{stem:?}");
        }
    }

    #[test]
    fn batch_norm_matches_burns_in_both_modes() {
        type AB = TestAutodiffBackend;
        let mut rng = StdRng::seed_from_u64(9);
        let device = Default::default();
        let ours = BatchNormConfig::new(3).init::<AB>(&device);
        let reference = ours.clone();
        let gamma: Vec<f32> = kaiming_uniform(3, 1, &mut rng);
        let ours = BatchNorm {
            gamma: Param::from_tensor(Tensor::from_data(TensorData::new(gamma, [3]), &device)),
            ..ours
        };
        let reference = BatchNorm {
            gamma: ours.gamma.clone(),
            ..reference
        };
        let close = |a: Tensor<AB, 4>, b: Tensor<AB, 4>| {
            let (a, b): (Vec<f32>, Vec<f32>) = (
                a.into_data().to_vec().unwrap(),
                b.into_data().to_vec().unwrap(),
            );
            a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4)
        };
        for _ in 0..3 {
            let Inputs::Images(x) = images::<AB>(4, &mut rng) else {
                unreachable!()
            };
            let x = x.mul_scalar(3.0).add_scalar(0.5);
            assert!(close(batch_norm(&ours, x.clone()), reference.forward(x)));
        }
        let running = |bn: &BatchNorm<AB>| -> Vec<f32> {
            let mut v: Vec<f32> = bn.running_mean.value_sync().into_data().to_vec().unwrap();
            v.extend(
                bn.running_var
                    .value_sync()
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap(),
            );
            v
        };
        let (a, b) = (running(&ours), running(&reference));
        assert!(
            a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5),
            "{a:?} {b:?}"
        );
        let (ours, reference) = (ours.valid(), reference.valid());
        let Inputs::Images(x) = images::<TestBackend>(4, &mut rng) else {
            unreachable!()
        };
        let (a, b): (Vec<f32>, Vec<f32>) = (
            batch_norm(&ours, x.clone()).into_data().to_vec().unwrap(),
            reference.forward(x).into_data().to_vec().unwrap(),
        );
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
    }
}
