//! Model surgery for ResNets: channels are kept per channel group (see the parent module),
//! convolutions and BatchNorms sliced to them, BatchNorm re-estimated and the classifier
//! refitted.

use burn::module::{AutodiffModule, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::ridge::least_squares;
use super::selection::{lazy_greedy, unit_similarity};
use super::{Submodular, host, linear};
use crate::methods::MethodContext;
use crate::models::resnet::{BasicBlock, Conv, ConvBn};
use crate::models::{Dense, Model, ResNet};
use crate::train::recalibrate_batchnorm;

/// `len` indices as an index tensor.
fn index_tensor<B: Backend>(indices: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let values: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}

/// A plain convolution restricted to output channels `out` and input channels `inp`.
fn slice_conv<B: Backend>(conv: &Conv<B>, out: &[usize], inp: &[usize]) -> Conv<B> {
    let Conv::Plain(conv) = conv else {
        unreachable!("the wide reference is a plain network")
    };
    let device = conv.weight.device();
    let weight = conv
        .weight
        .val()
        .select(0, index_tensor(out, &device))
        .select(1, index_tensor(inp, &device));
    let mut sliced = conv.clone();
    sliced.weight = Param::from_tensor(weight);
    Conv::Plain(sliced)
}

/// Convolution and BatchNorm restricted to the given output and input channels.
fn slice_conv_bn<B: Backend>(layer: &ConvBn<B>, out: &[usize], inp: &[usize]) -> ConvBn<B> {
    let device = layer.bn.gamma.device();
    let pick = |t: Tensor<B, 1>| t.select(0, index_tensor(out, &device));
    let bn = &layer.bn;
    ConvBn {
        conv: slice_conv(&layer.conv, out, inp),
        bn: burn::nn::BatchNorm {
            gamma: Param::from_tensor(pick(bn.gamma.val())),
            beta: Param::from_tensor(pick(bn.beta.val())),
            running_mean: burn::module::RunningState::new(pick(bn.running_mean.value_sync())),
            running_var: burn::module::RunningState::new(pick(bn.running_var.value_sync())),
            momentum: bn.momentum,
            epsilon: bn.epsilon,
        },
    }
}

/// Facility-location selection of `keep` channels from `[N, C, H, W]` activations (pooled to
/// at most 4x4 per channel); sorted indices.
fn select_channels<B: Backend>(acts: Tensor<B, 4>, keep: usize) -> Vec<usize> {
    let [_, c, h, w] = acts.dims();
    let pooled = if h > 4 || w > 4 {
        burn::tensor::module::adaptive_avg_pool2d(acts, [h.min(4), w.min(4)])
    } else {
        acts
    };
    let features = pooled.swap_dims(0, 1).reshape([c as i32, -1]);
    let [_, d] = features.dims();
    let values = host(features.swap_dims(0, 1));
    let mut selected = lazy_greedy(&unit_similarity(&values, d, c), c, keep);
    selected.sort_unstable();
    selected
}

impl Submodular {
    /// Prunes the wide ResNet to the small `widths`, channel group by channel group (see the
    /// module documentation), then re-estimates BatchNorm and refits the classifier.
    pub(super) fn prune_resnet<B: AutodiffBackend>(
        &self,
        ctx: &MethodContext<'_, B>,
        wide: &ResNet<B::InnerBackend>,
        blocks_per_stage: &[usize],
        widths: &[usize],
        calibration: Tensor<B::InnerBackend, 4>,
    ) -> Model<B::InnerBackend> {
        let mut record = Vec::new();
        let wide_features = wide.features(calibration.clone(), None, Some(&mut record));
        let wide_logits = wide.head.forward(wide_features, None);
        // Stage of every block, and the stream selection of every stage (from its last block).
        let stage_of: Vec<usize> = blocks_per_stage
            .iter()
            .enumerate()
            .flat_map(|(s, &n)| std::iter::repeat_n(s, n))
            .collect();
        let mut streams: Vec<Vec<usize>> = Vec::new();
        let mut last = 0;
        for (s, &n) in blocks_per_stage.iter().enumerate() {
            last += n;
            streams.push(select_channels(record[last - 1].1.clone(), widths[s]));
        }
        let input_channels: Vec<usize> = (0..calibration.dims()[1]).collect();
        let stem = slice_conv_bn(&wide.stem, &streams[0], &input_channels);
        let blocks: Vec<BasicBlock<B::InnerBackend>> = wide
            .blocks
            .iter()
            .enumerate()
            .map(|(b, block)| {
                let stage = stage_of[b];
                // A stage's first block reads the previous stage's stream.
                let input = if b == 0 || stage_of[b - 1] == stage {
                    &streams[stage]
                } else {
                    &streams[stage - 1]
                };
                let inner = select_channels(record[b].0.clone(), widths[stage]);
                BasicBlock {
                    first: slice_conv_bn(&block.first, &inner, input),
                    second: slice_conv_bn(&block.second, &streams[stage], &inner),
                    shortcut: block
                        .shortcut
                        .as_ref()
                        .map(|s| slice_conv_bn(s, &streams[stage], input)),
                }
            })
            .collect();
        let last_stream = streams.last().expect("at least one stage");
        let Dense::Plain(head) = &wide.head else {
            unreachable!("the wide reference is a plain network")
        };
        let device = head.weight.device();
        let mut head = head.clone();
        head.weight = Param::from_tensor(
            head.weight
                .val()
                .select(0, index_tensor(last_stream, &device)),
        );
        let pruned = ResNet {
            stem,
            stem_pool: wide.stem_pool,
            blocks,
            head: Dense::Plain(head),
        };

        // BatchNorm statistics of the pruned network, on training batches.
        let mut model = Model::<B>::from_inner(Model::ResNet(pruned));
        recalibrate_batchnorm(
            &mut model,
            ctx.data.train,
            20,
            ctx.recipe.batch_size,
            ctx.seed,
            ctx.device,
        );
        let Model::ResNet(pruned) = model.valid() else {
            unreachable!()
        };
        // Classifier refitted to the wide model's logits from the pruned features.
        let features = pruned.features(calibration, None, None);
        let [rows, keep] = features.dims();
        let out = wide_logits.dims()[1];
        let (features, target) = (host(features), host(wide_logits));
        let (w, b) = least_squares(&features, &target, rows, keep, out, self.ridge);
        let head = linear::<B::InnerBackend>(w, b, keep, out, &device);
        Model::ResNet(ResNet {
            head: Dense::Plain(head),
            ..pruned
        })
    }
}
