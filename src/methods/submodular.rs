//! `submodular` (docs/METHODS.md, "Submodular selection"): train the `wide` model, then in each
//! hidden layer keep n of its
//! k·n units, chosen by lazy-greedy maximisation of a facility-location score over the units'
//! activations on a calibration batch; refit the next layer on the kept units by (ridge) least
//! squares so it reproduces the wide model's pre-activations; fine-tune the small model.
//!
//! ResNets (the project's reading for residual networks): channels are selected per channel
//! group. A block's inner channels (its first convolution's outputs) are one group; a stage's
//! residual stream (stem or projection, and every second convolution of the stage, which add
//! into the same channels) is another, so shapes stay consistent across the skip connections.
//! Each group keeps n of its k·n channels by the same facility-location selection over channel
//! activations (spatially pooled to at most 4x4) on the calibration batch. Convolutions and
//! BatchNorms are sliced to the kept channels; the BatchNorm statistics are re-estimated on
//! training batches (the convolutional analogue of refitting the next layer: the kept channels'
//! consumers see re-normalised inputs), and the classifier is refitted by least squares to the
//! wide model's logits; then fine-tuning.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use burn::module::{AutodiffModule, Module, Param};
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::Deserialize;

use super::baseline::plain_settings;
use super::{Method, MethodContext, MethodOutput};
use crate::error::{Error, Result};
use crate::models::resnet::{BasicBlock, Conv, ConvBn};
use crate::models::{Dense, Inputs, Mlp, Model, ModelSpec, ResNet};
use crate::train::{EvalPoint, evaluate, recalibrate_batchnorm, subset_seed};

fn default_calibration() -> usize {
    512
}

fn default_finetune_epochs() -> usize {
    1
}

fn default_ridge() -> f64 {
    1e-3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submodular {
    /// Training examples whose activations score the units.
    #[serde(default = "default_calibration")]
    pub calibration: usize,
    /// Epochs of fine-tuning after selection (0: none).
    #[serde(default = "default_finetune_epochs")]
    pub finetune_epochs: usize,
    /// Ridge term of the least-squares refit, relative to the mean diagonal.
    #[serde(default = "default_ridge")]
    pub ridge: f64,
}

/// Facility location `f(S) = sum_j max_{i in S} sim[i][j]` (`sim` non-negative, `m x m`).
pub fn facility_location(sim: &[f64], m: usize, selected: &[usize]) -> f64 {
    (0..m)
        .map(|j| selected.iter().map(|&i| sim[i * m + j]).fold(0.0, f64::max))
        .sum()
}

#[derive(PartialEq)]
struct Candidate {
    gain: f64,
    unit: usize,
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    // Largest gain first; ties to the smaller index, so the result is deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        self.gain
            .total_cmp(&other.gain)
            .then(other.unit.cmp(&self.unit))
    }
}

/// Lazy greedy maximisation of facility location: `n` of the `m` units, in selection order.
/// Marginal gains only shrink as the set grows (submodularity), so a stale gain is an upper
/// bound and most candidates are never re-evaluated.
pub fn lazy_greedy(sim: &[f64], m: usize, n: usize) -> Vec<usize> {
    let mut best = vec![0.0f64; m]; // max similarity of each point to the selected set
    let gain_of = |unit: usize, best: &[f64]| -> f64 {
        (0..m).map(|j| (sim[unit * m + j] - best[j]).max(0.0)).sum()
    };
    let mut heap: BinaryHeap<Candidate> = (0..m)
        .map(|unit| Candidate {
            gain: gain_of(unit, &best),
            unit,
        })
        .collect();
    let mut selected = Vec::with_capacity(n);
    while selected.len() < n.min(m) {
        let Some(top) = heap.pop() else { break };
        let fresh = gain_of(top.unit, &best);
        if heap.peek().is_none_or(|next| fresh >= next.gain) {
            selected.push(top.unit);
            for (j, b) in best.iter_mut().enumerate() {
                *b = b.max(sim[top.unit * m + j]);
            }
        } else {
            heap.push(Candidate {
                gain: fresh,
                unit: top.unit,
            });
        }
    }
    selected
}

/// Cosine similarity of the columns of `acts` (`rows x m`), mapped to [0, 1].
fn unit_similarity(acts: &[f32], rows: usize, m: usize) -> Vec<f64> {
    let norms: Vec<f64> = (0..m)
        .map(|u| {
            (0..rows)
                .map(|r| (acts[r * m + u] as f64).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-12)
        })
        .collect();
    let mut sim = vec![0.0; m * m];
    for a in 0..m {
        for b in a..m {
            let dot: f64 = (0..rows)
                .map(|r| acts[r * m + a] as f64 * acts[r * m + b] as f64)
                .sum();
            let s = 0.5 * (1.0 + dot / (norms[a] * norms[b]));
            sim[a * m + b] = s;
            sim[b * m + a] = s;
        }
    }
    sim
}

/// Solves `(A + lambda I) x = b` for a symmetric positive semi-definite `A` (`n x n`) with
/// several right-hand sides (`b` is `n x c`), by Cholesky.
fn ridge_solve(a: &[f64], b: &[f64], n: usize, c: usize, lambda: f64) -> Vec<f64> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i * n + j] + if i == j { lambda } else { 0.0 };
            for k in 0..j {
                sum -= l[i * n + k] * l[j * n + k];
            }
            l[i * n + j] = if i == j {
                sum.max(1e-12).sqrt()
            } else {
                sum / l[j * n + j]
            };
        }
    }
    let mut x = b.to_vec();
    for col in 0..c {
        for i in 0..n {
            let mut sum = x[i * c + col];
            for k in 0..i {
                sum -= l[i * n + k] * x[k * c + col];
            }
            x[i * c + col] = sum / l[i * n + i];
        }
        for i in (0..n).rev() {
            let mut sum = x[i * c + col];
            for k in i + 1..n {
                sum -= l[k * n + i] * x[k * c + col];
            }
            x[i * c + col] = sum / l[i * n + i];
        }
    }
    x
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 tensor")
}

fn linear<B: Backend>(
    weight: Vec<f32>,
    bias: Vec<f32>,
    d_in: usize,
    d_out: usize,
    device: &B::Device,
) -> Linear<B> {
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(weight, [d_in, d_out]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [d_out]),
            device,
        ))),
    }
}

impl Submodular {
    /// Prunes the wide MLP to the small widths `hidden`, layer by layer.
    fn prune<B: Backend>(
        &self,
        wide: &Mlp<B>,
        hidden: &[usize],
        calibration: Tensor<B, 2>,
        device: &B::Device,
    ) -> Mlp<B> {
        let rows = calibration.dims()[0];
        let mut layers: Vec<(Vec<f32>, Vec<f32>, usize, usize)> = wide
            .layers
            .iter()
            .map(|l| {
                let [d_in, d_out] = l.weight.dims();
                let bias = l
                    .bias
                    .as_ref()
                    .map(|b| host(b.val()))
                    .unwrap_or_else(|| vec![0.0; d_out]);
                (host(l.weight.val()), bias, d_in, d_out)
            })
            .collect();
        let mut x = calibration; // input of the current layer, in the pruned model
        for (l, &keep) in hidden.iter().enumerate() {
            let (w, b, d_in, m) = layers[l].clone();
            let act = burn::tensor::activation::relu(
                x.clone().matmul(Tensor::from_data(
                    TensorData::new(w.clone(), [d_in, m]),
                    device,
                )) + Tensor::<B, 1>::from_data(TensorData::new(b.clone(), [m]), device)
                    .unsqueeze::<2>(),
            );
            let acts = host(act.clone());
            let selected = lazy_greedy(&unit_similarity(&acts, rows, m), m, keep);
            // Layer l keeps the selected columns.
            let w_kept: Vec<f32> = (0..d_in)
                .flat_map(|r| selected.iter().map(|&u| w[r * m + u]).collect::<Vec<_>>())
                .collect();
            let b_kept: Vec<f32> = selected.iter().map(|&u| b[u]).collect();
            layers[l] = (w_kept, b_kept, d_in, keep);
            // Layer l+1 is refitted on the kept units to reproduce its wide pre-activations.
            let (w_next, b_next, _, out) = layers[l + 1].clone();
            let target = host(
                act.matmul(Tensor::from_data(TensorData::new(w_next, [m, out]), device))
                    + Tensor::<B, 1>::from_data(TensorData::new(b_next, [out]), device)
                        .unsqueeze::<2>(),
            );
            let kept_act: Vec<f32> = (0..rows)
                .flat_map(|r| {
                    selected
                        .iter()
                        .map(|&u| acts[r * m + u])
                        .collect::<Vec<_>>()
                })
                .collect();
            let (w_fit, b_fit) = self.least_squares(&kept_act, &target, rows, keep, out);
            layers[l + 1] = (w_fit, b_fit, keep, out);
            x = Tensor::from_data(TensorData::new(kept_act, [rows, keep]), device);
        }
        Mlp {
            layers: layers
                .into_iter()
                .map(|(w, b, d_in, d_out)| linear(w, b, d_in, d_out, device))
                .collect(),
        }
    }
}

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
    fn prune_resnet<B: AutodiffBackend>(
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
        let (w, b) = self.least_squares(&features, &target, rows, keep, out);
        let head = linear::<B::InnerBackend>(w, b, keep, out, &device);
        Model::ResNet(ResNet {
            head: Dense::Plain(head),
            ..pruned
        })
    }

    /// Ridge least squares `[x, 1] @ [w; b] ~ target` (`x`: `rows x d`, `target`: `rows x out`).
    fn least_squares(
        &self,
        x: &[f32],
        target: &[f32],
        rows: usize,
        d: usize,
        out: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let p = d + 1;
        let design = |r: usize, i: usize| if i < d { x[r * d + i] as f64 } else { 1.0 };
        let mut gram = vec![0.0; p * p];
        let mut rhs = vec![0.0; p * out];
        for r in 0..rows {
            for i in 0..p {
                let a = design(r, i);
                for j in 0..p {
                    gram[i * p + j] += a * design(r, j);
                }
                for o in 0..out {
                    rhs[i * out + o] += a * target[r * out + o] as f64;
                }
            }
        }
        let mean_diagonal = (0..p).map(|i| gram[i * p + i]).sum::<f64>() / p as f64;
        let solution = ridge_solve(&gram, &rhs, p, out, self.ridge * mean_diagonal.max(1e-12));
        (
            solution[..d * out].iter().map(|&v| v as f32).collect(),
            solution[d * out..].iter().map(|&v| v as f32).collect(),
        )
    }
}

impl<B: AutodiffBackend> Method<B> for Submodular {
    fn name(&self) -> &'static str {
        "submodular"
    }

    fn uses_k(&self) -> bool {
        true
    }

    fn options(&self) -> serde_json::Value {
        serde_json::json!({ "calibration": self.calibration, "finetune_epochs": self.finetune_epochs, "ridge": self.ridge })
    }

    fn validate(&self, _k: usize) -> std::result::Result<(), String> {
        if self.calibration == 0 {
            return Err("calibration must be at least 1".into());
        }
        Ok(())
    }

    fn run(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        if ctx.model.reads_text() {
            return Err(Error::Usage(
                "method submodular: supports MLPs and ResNets, not Transformers".into(),
            ));
        }
        let (wide, teacher_steps) =
            ctx.trained_model(&ctx.model.widened(ctx.k), ctx.seed, "wide")?;
        let calibration = ctx
            .data
            .train
            .subset(self.calibration, subset_seed(ctx.seed, 0x5b));
        let indices: Vec<usize> = (0..calibration.len()).collect();
        let (Inputs::Images(images), _) =
            calibration.batch::<B::InnerBackend>(&indices, ctx.device)
        else {
            unreachable!("MLP and ResNet data are images")
        };
        let pruned = match (ctx.model, wide) {
            (ModelSpec::Mlp { hidden, .. }, Model::Mlp(wide)) => {
                Model::Mlp(self.prune(&wide, hidden, images.flatten(1, 3), ctx.device))
            }
            (ModelSpec::Resnet(spec), Model::ResNet(wide)) => {
                let (blocks, widths) = spec.stages();
                self.prune_resnet(ctx, &wide, &blocks, &widths, images)
            }
            _ => unreachable!("a widened model has the small model's family"),
        };
        let before = EvalPoint {
            epoch: 0,
            step: 0,
            lr: 0.0,
            train: evaluate(&pruned, ctx.data.train_eval, 1000, ctx.device),
            test: evaluate(&pruned, ctx.data.test, 1000, ctx.device),
            train_seconds: 0.0,
        };
        let mut settings = plain_settings(ctx);
        settings.epochs = self.finetune_epochs;
        let small = Model::<B>::from_inner(pruned.clone());
        let trained_params = small.num_params();
        let (deployed, mut log) = if self.finetune_epochs > 0 {
            let (model, log) = ctx.train(small, &settings, "finetune")?;
            (model.valid(), log)
        } else {
            (pruned, Default::default())
        };
        // The curve starts with the pruned model before fine-tuning (epoch 0).
        log.points.insert(0, before);
        log.teacher_steps = teacher_steps;
        Ok(MethodOutput {
            deployed,
            log,
            trained_params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn subsets(m: usize, n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        (0..m)
            .flat_map(|last| {
                subsets(last, n - 1).into_iter().map(move |mut s| {
                    s.push(last);
                    s
                })
            })
            .collect()
    }

    #[test]
    fn lazy_greedy_is_greedy_and_near_the_brute_force_optimum() {
        let mut rng = StdRng::seed_from_u64(9);
        for trial in 0..30 {
            let m = 6 + trial % 4;
            let n = 1 + trial % 4;
            let mut sim = vec![0.0; m * m];
            for a in 0..m {
                for b in a..m {
                    let s = if a == b { 1.0 } else { rng.random::<f64>() };
                    sim[a * m + b] = s;
                    sim[b * m + a] = s;
                }
            }
            let lazy = lazy_greedy(&sim, m, n);
            // Plain greedy: re-evaluate every candidate every round.
            let mut plain: Vec<usize> = Vec::new();
            for _ in 0..n {
                let base = facility_location(&sim, m, &plain);
                let next = (0..m)
                    .filter(|u| !plain.contains(u))
                    .max_by(|&a, &b| {
                        let ga =
                            facility_location(&sim, m, &[plain.clone(), vec![a]].concat()) - base;
                        let gb =
                            facility_location(&sim, m, &[plain.clone(), vec![b]].concat()) - base;
                        ga.total_cmp(&gb).then(b.cmp(&a))
                    })
                    .unwrap();
                plain.push(next);
            }
            // Same choices up to exact ties (gains rounded differently pick either).
            let (f_lazy, f_plain) = (
                facility_location(&sim, m, &lazy),
                facility_location(&sim, m, &plain),
            );
            assert!(
                (f_lazy - f_plain).abs() < 1e-9,
                "lazy {lazy:?} ({f_lazy}) vs greedy {plain:?} ({f_plain})"
            );
            assert_eq!(lazy.len(), n);
            let optimum = subsets(m, n)
                .iter()
                .map(|s| facility_location(&sim, m, s))
                .fold(0.0, f64::max);
            let value = facility_location(&sim, m, &lazy);
            assert!(
                value >= (1.0 - 1.0 / std::f64::consts::E) * optimum - 1e-12,
                "{value} vs {optimum}"
            );
        }
    }

    #[test]
    fn ridge_solve_recovers_a_linear_map() {
        // A = X^T X for a well-conditioned X, b = A w.
        let (n, c) = (4, 2);
        let x: Vec<f64> = (0..8 * n).map(|i| ((i * 7 % 11) as f64) - 5.0).collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..8).map(|r| x[r * n + i] * x[r * n + j]).sum();
            }
        }
        let w = [1.0, -2.0, 0.5, 3.0, 0.0, 1.0, -1.0, 2.0];
        let b: Vec<f64> = (0..n)
            .flat_map(|i| (0..c).map(move |o| (i, o)))
            .map(|(i, o)| (0..n).map(|k| a[i * n + k] * w[k * c + o]).sum())
            .collect();
        let solved = ridge_solve(&a, &b, n, c, 0.0);
        for (s, t) in solved.iter().zip(w) {
            assert!((s - t).abs() < 1e-6, "{solved:?}");
        }
    }
}
