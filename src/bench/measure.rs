//! Timing training steps: the baseline and its MK twins on the same batches, alternated, and
//! the time to a fresh model's first step.

use burn::tensor::backend::AutodiffBackend;
use indicatif::ProgressBar;

use super::{BenchOptions, Family, Stamp};
use crate::data::{self, Examples, TextOptions};
use crate::error::Result;
use crate::methods::mk::MkHooks;
use crate::mk::{Mixing, MkInit};
use crate::models::{EncoderSpec, Model, ModelSpec, Stem};
use crate::results::bench::BenchRecord;
use crate::results::provenance;
use crate::train::{
    MixingDraw, OptimizerSpec, ScheduleSpec, Stream, TrainData, TrainSettings, stream_rng, train,
};
use crate::with_backend;

/// The Transformer that `bench --family transformer` times: `[layers, hidden, heads, ffn]`
/// (`[2, 128, 4, 512]` is table4's `scratch` encoder) at `max_len` tokens, or the pre-trained
/// checkpoint `pretrained` (its own sizes) when given.
pub fn bench_encoder(size: &[usize], max_len: usize, pretrained: Option<&str>) -> ModelSpec {
    let size = if pretrained.is_some() {
        &[0; 4][..]
    } else {
        size
    };
    ModelSpec::Transformer(EncoderSpec {
        layers: size[0],
        hidden: size[1],
        heads: size[2],
        ffn: size[3],
        max_len,
        pre_norm: false,
        dropout: 0.0,
        pretrained: pretrained.map(str::to_string),
    })
}

/// The ResNet that `bench --family resnet` times (ResNet-20 with the default options).
pub fn bench_resnet(blocks: Vec<usize>, widths: Vec<usize>, stem: Stem) -> ModelSpec {
    ModelSpec::Resnet(crate::models::ResNetSpec {
        arch: None,
        blocks: Some(blocks),
        widths: Some(widths),
        stem,
    })
}

/// Measures one family at every k of `options`: its rows, stamped with `stamp`.
pub(super) fn family(
    options: &BenchOptions,
    family: Family,
    stamp: &Stamp,
) -> Result<Vec<BenchRecord>> {
    let (dataset, model, text, optimizer) = match family {
        Family::Mlp => (
            "mnist",
            ModelSpec::Mlp {
                hidden: options.mlp_hidden.clone(),
                bias: true,
            },
            None,
            OptimizerSpec::Sgd {
                lr: 0.01,
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.0,
            },
        ),
        Family::Resnet => (
            match options.resnet_stem {
                Stem::Cifar => "cifar10",
                Stem::Imagenet => "tiny_imagenet",
            },
            bench_resnet(
                options.resnet_blocks.clone(),
                options.resnet_widths.clone(),
                options.resnet_stem,
            ),
            None,
            OptimizerSpec::Sgd {
                lr: 0.05,
                momentum: 0.9,
                nesterov: false,
                weight_decay: 5e-4,
            },
        ),
        Family::Transformer => {
            let pretrained = options.pretrained.as_deref();
            let model = bench_encoder(&options.encoder, options.max_len, pretrained);
            // A checkpoint is read (and checked) before anything is timed; it tokenises with
            // its own vocabulary, as in fine-tuning.
            model.prepare(&data::search_dirs(options.data_dir.clone()))?;
            (
                "sst2",
                model,
                Some(TextOptions {
                    tokenizer: pretrained.unwrap_or("bert-base-uncased").into(),
                    max_len: options.max_len,
                }),
                OptimizerSpec::AdamW {
                    lr: 1e-4,
                    beta1: 0.9,
                    beta2: 0.999,
                    epsilon: 1e-8,
                    weight_decay: 0.01,
                },
            )
        }
    };
    let steps = options.steps.unwrap_or(family.default_steps());
    let load = data::LoadOptions {
        text,
        ..Default::default()
    };
    let splits = data::load(dataset, &data::search_dirs(options.data_dir.clone()), &load)?;
    let train_set = splits.train.subset(steps * options.batch_size, 0);
    let (first_step_s, times) = with_backend!(options.backend, B => Ok(measure::<B>(options, &model, &optimizer, &train_set)))?;
    let optimizer_label = match optimizer {
        OptimizerSpec::Sgd { .. } => "sgd-momentum",
        OptimizerSpec::Adam { .. } => "adam",
        OptimizerSpec::AdamW { .. } => "adamw",
    };
    let model_label = model.label(&train_set);
    Ok(times
        .into_iter()
        .map(|(k, baseline_ms, mk_ms)| BenchRecord {
            family: family.name().into(),
            model: model_label.clone(),
            dataset: dataset.into(),
            optimizer: optimizer_label.into(),
            batch: options.batch_size as i64,
            k: k as i64,
            baseline_ms,
            mk_ms,
            ratio: mk_ms / baseline_ms,
            first_step_s,
            steps: steps as i64,
            repeats: options.repeats as i64,
            backend: stamp.backend.clone(),
            device: stamp.machine.clone(),
            threads: stamp.threads as i64,
            git_commit: stamp.commit.clone(),
            finished_at: provenance::unix_now(),
        })
        .collect())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Time to the first step, then `(k, baseline ms, mk ms)` per k: in every repeat the
/// baseline and each k run back to back, so slow drifts of the machine hit all alike.
fn measure<B: AutodiffBackend>(
    options: &BenchOptions,
    model: &ModelSpec,
    optimizer: &OptimizerSpec,
    train_set: &Examples,
) -> (f64, Vec<(usize, f64, f64)>) {
    let tiny = train_set.subset(1, 0);
    let first_batch = train_set.subset(options.batch_size.min(train_set.len()), 0);
    let device = B::Device::default();
    let data = TrainData {
        train: train_set,
        train_eval: &tiny,
        validation: None,
        test: &tiny,
    };
    let settings = TrainSettings {
        optimizer: optimizer.clone(),
        schedule: ScheduleSpec::default(),
        epochs: 1,
        batch_size: options.batch_size,
        augment: None,
        label_smoothing: 0.0,
        eval_every: 1,
        seed: 0,
    };
    let small =
        || -> Model<B> { model.build(train_set, &mut stream_rng(0, Stream::Init), &device) };
    let mk = |k: usize| small().to_mk(k, MkInit::Identical, &mut stream_rng(0, Stream::MkCopies));
    let step_ms = |model: Model<B>, data: &TrainData<'_>| {
        // MK's own step (default mixing, no compensation); a plain model is never mixed.
        let mut hooks = MkHooks {
            draw: |d: MixingDraw<'_>| Mixing::default().draw_all(d.layers, d.k, d.rng),
            copy_grad_scale: 1.0,
            draws_ahead: true,
        };
        let (_, log) = train(
            model,
            data,
            &settings,
            &mut hooks,
            &device,
            &ProgressBar::hidden(),
            None,
        )
        .expect("training without checkpoints does no I/O");
        (log.step_ms(), log.steps)
    };
    // Time to the first step on a fresh device: model upload, kernel compilation (or cache
    // loading) and autotuning included; then warm-up passes for allocator and kernel caches.
    let started = std::time::Instant::now();
    let first = TrainData {
        train: &first_batch,
        ..TrainData { ..data }
    };
    step_ms(small(), &first);
    let first_step_s = started.elapsed().as_secs_f64();
    step_ms(small(), &first);
    for &k in &options.ks {
        step_ms(mk(k), &first);
    }
    let mut baseline = Vec::new();
    let mut per_k: Vec<Vec<f64>> = vec![Vec::new(); options.ks.len()];
    for _ in 0..options.repeats {
        baseline.push(step_ms(small(), &data).0);
        for (times, &k) in per_k.iter_mut().zip(&options.ks) {
            times.push(step_ms(mk(k), &data).0);
        }
    }
    let baseline_ms = median(baseline);
    let rows = options
        .ks
        .iter()
        .zip(per_k)
        .map(|(&k, times)| (k, baseline_ms, median(times)))
        .collect();
    (first_step_s, rows)
}
