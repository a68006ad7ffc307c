//! `reproduce bench`: training-step time of majority kernels against the plain small model on
//! the same data, batch and backend, measured in one process and reported as a ratio.

use burn::tensor::backend::AutodiffBackend;
use indicatif::ProgressBar;

use crate::backend::{BackendKind, machine_description};
use crate::data::{self, Examples, TextOptions};
use crate::error::{Error, Result};
use crate::mk::{Mixing, MkInit};
use crate::models::{EncoderSpec, Model, ModelSpec};
use crate::train::{
    OptimizerSpec, ScheduleSpec, Stream, TrainData, TrainSettings, stream_rng, train,
};
use crate::with_backend;

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub backend: BackendKind,
    pub data_dir: Option<std::path::PathBuf>,
    /// The model family: an MLP on MNIST, a ResNet on CIFAR-10, or a Transformer encoder on
    /// SST-2.
    pub model: ModelSpec,
    pub batch_size: usize,
    pub ks: Vec<usize>,
    /// Timed steps per measurement.
    pub steps: usize,
    /// Alternating repeats; the median is reported.
    pub repeats: usize,
}

/// The Transformer that `bench --family transformer` times (table4's quick encoder).
pub fn bench_encoder() -> ModelSpec {
    ModelSpec::Transformer(EncoderSpec {
        layers: 2,
        hidden: 128,
        heads: 4,
        ffn: 512,
        max_len: 64,
        pre_norm: false,
        dropout: 0.0,
    })
}

/// The ResNet that `bench --family resnet` times (ResNet-20 unless `arch`/`widths` say
/// otherwise).
pub fn bench_resnet(blocks: Vec<usize>, widths: Vec<usize>) -> ModelSpec {
    ModelSpec::Resnet(crate::models::ResNetSpec {
        arch: None,
        blocks: Some(blocks),
        widths: Some(widths),
        stem: Default::default(),
    })
}

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct BenchRow {
    pub k: usize,
    pub baseline_ms: f64,
    pub mk_ms: f64,
}

impl BenchRow {
    pub fn ratio(&self) -> f64 {
        self.mk_ms / self.baseline_ms
    }
}

/// Times baseline and MK training steps on real data and returns a printable report.
pub fn run(options: &BenchOptions) -> Result<String> {
    if options.steps == 0 || options.repeats == 0 || options.batch_size == 0 {
        return Err(Error::Usage(
            "bench: --steps, --repeats and --batch must be at least 1".into(),
        ));
    }
    let (dataset, text, optimizer) = match &options.model {
        ModelSpec::Mlp { .. } => (
            "mnist",
            None,
            OptimizerSpec::Sgd {
                lr: 0.01,
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.0,
            },
        ),
        ModelSpec::Resnet(_) => (
            "cifar10",
            None,
            OptimizerSpec::Sgd {
                lr: 0.05,
                momentum: 0.9,
                nesterov: false,
                weight_decay: 5e-4,
            },
        ),
        ModelSpec::Transformer(spec) => (
            "sst2",
            Some(TextOptions {
                tokenizer: "bert-base-uncased".into(),
                max_len: spec.max_len,
            }),
            OptimizerSpec::AdamW {
                lr: 1e-4,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.01,
            },
        ),
    };
    let load = data::LoadOptions {
        text,
        ..Default::default()
    };
    let splits = data::load(dataset, &data::search_dirs(options.data_dir.clone()), &load)?;
    let train_set = splits.train.subset(options.steps * options.batch_size, 0);
    let tiny = train_set.subset(1, 0);
    crate::backend::prepare(options.backend, &data::cache::default_dir())?;
    let (first_step_s, rows) = with_backend!(options.backend, B => Ok(measure::<B>(options, &optimizer, &train_set, &tiny)))?;
    let mut out = format!(
        "{} on {dataset}, batch {}, {} steps x {} repeats (median), {}, backend {}, {}\n\
         time to the first training step (model upload, kernel compilation and tuning included): {first_step_s:.2} s\n\n\
         | k | baseline ms/step | mk ms/step | ratio | baseline examples/s | mk examples/s |\n|---:|---:|---:|---:|---:|---:|\n",
        options.model.label(&train_set),
        options.batch_size,
        options.steps,
        options.repeats,
        if optimizer.is_sgd() {
            "SGD momentum"
        } else {
            "AdamW"
        },
        options.backend,
        machine_description()
    );
    for row in &rows {
        out.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} |\n",
            row.k,
            row.baseline_ms,
            row.mk_ms,
            row.ratio(),
            1e3 * options.batch_size as f64 / row.baseline_ms,
            1e3 * options.batch_size as f64 / row.mk_ms,
        ));
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn measure<B: AutodiffBackend>(
    options: &BenchOptions,
    optimizer: &OptimizerSpec,
    train_set: &Examples,
    tiny: &Examples,
) -> (f64, Vec<BenchRow>) {
    let first_batch = train_set.subset(options.batch_size, 0);
    let device = B::Device::default();
    let data = TrainData {
        train: train_set,
        train_eval: tiny,
        test: tiny,
        soft_targets: None,
    };
    let settings = TrainSettings {
        optimizer: optimizer.clone(),
        schedule: ScheduleSpec::default(),
        epochs: 1,
        batch_size: options.batch_size,
        mixing: Some(Mixing::default()),
        mk_grad_scale: 1.0,
        adversary: None,
        distillation: None,
        augment: None,
        label_smoothing: 0.0,
        seed: 0,
    };
    let small = || -> Model<B> {
        options
            .model
            .build(train_set, &mut stream_rng(0, Stream::Init), &device)
    };
    let step_ms = |model: Model<B>| {
        train(
            model,
            &data,
            &settings,
            &device,
            &ProgressBar::hidden(),
            None,
        )
        .expect("training without checkpoints does no I/O")
        .1
        .step_ms()
    };
    // Time to the first step on a fresh device: model upload, kernel compilation (or cache
    // loading) and autotuning included; then a warm-up epoch for allocator and kernel caches.
    let started = std::time::Instant::now();
    let first = TrainData {
        train: &first_batch,
        ..TrainData { ..data }
    };
    train(
        small(),
        &first,
        &settings,
        &device,
        &ProgressBar::hidden(),
        None,
    )
    .expect("training without checkpoints does no I/O");
    let first_step_s = started.elapsed().as_secs_f64();
    step_ms(small());
    let rows = options
        .ks
        .iter()
        .map(|&k| {
            let baseline_ms = median((0..options.repeats).map(|_| step_ms(small())).collect());
            let mk_ms = median(
                (0..options.repeats)
                    .map(|_| {
                        step_ms(small().to_mk(
                            k,
                            MkInit::Identical,
                            &mut stream_rng(0, Stream::MkCopies),
                        ))
                    })
                    .collect(),
            );
            BenchRow {
                k,
                baseline_ms,
                mk_ms,
            }
        })
        .collect();
    (first_step_s, rows)
}
