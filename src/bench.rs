//! `reproduce bench`: training-step time of majority kernels against the plain small model on
//! the same data, batch and backend, measured in one process and reported as a ratio.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use indicatif::ProgressBar;

use crate::backend::{BackendKind, machine_description};
use crate::data::{self, Examples};
use crate::error::{Error, Result};
use crate::mk::{Mixing, MkInit};
use crate::models::{Classifier, MkMlp, Mlp};
use crate::train::{
    OptimizerSpec, ScheduleSpec, Stream, TrainData, TrainSettings, stream_rng, train,
};
use crate::with_backend;

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub backend: BackendKind,
    pub data_dir: Option<std::path::PathBuf>,
    pub hidden: Vec<usize>,
    pub batch_size: usize,
    pub ks: Vec<usize>,
    /// Timed steps per measurement.
    pub steps: usize,
    /// Alternating repeats; the median is reported.
    pub repeats: usize,
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

/// Times baseline and MK steps on real MNIST and returns a printable report.
pub fn run(options: &BenchOptions) -> Result<String> {
    if options.steps == 0 || options.repeats == 0 || options.batch_size == 0 {
        return Err(Error::Usage(
            "bench: --steps, --repeats and --batch must be at least 1".into(),
        ));
    }
    let splits = data::load("mnist", &data::search_dirs(options.data_dir.clone()), None)?;
    let train = splits.train.subset(options.steps * options.batch_size, 0);
    let tiny = train.subset(1, 0);
    let rows = with_backend!(options.backend, B => Ok(measure::<B>(options, &train, &tiny)))?;
    let mut out = format!(
        "MLP 784-{}-10 on MNIST, batch {}, {} steps x {} repeats (median), SGD momentum, backend {}, {}\n\n| k | baseline ms/step | mk ms/step | ratio |\n|---:|---:|---:|---:|\n",
        options
            .hidden
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join("-"),
        options.batch_size,
        options.steps,
        options.repeats,
        options.backend,
        machine_description()
    );
    for row in &rows {
        out.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} |\n",
            row.k,
            row.baseline_ms,
            row.mk_ms,
            row.ratio()
        ));
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Mean step time of one training pass of `model`.
fn step_ms<B: AutodiffBackend, M>(
    model: M,
    data: &TrainData<'_>,
    settings: &TrainSettings,
    device: &B::Device,
) -> f64
where
    M: Classifier<B> + AutodiffModule<B>,
    M::InnerModule: Classifier<B::InnerBackend>,
{
    train(model, data, settings, device, &ProgressBar::hidden(), None)
        .expect("training without checkpoints does no I/O")
        .1
        .step_ms()
}

fn measure<B: AutodiffBackend>(
    options: &BenchOptions,
    train: &Examples,
    tiny: &Examples,
) -> Vec<BenchRow> {
    let device = B::Device::default();
    let data = TrainData {
        train,
        train_eval: tiny,
        test: tiny,
    };
    let settings = TrainSettings {
        optimizer: OptimizerSpec::Sgd {
            lr: 0.01,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        },
        schedule: ScheduleSpec::default(),
        epochs: 1,
        batch_size: options.batch_size,
        mixing: Some(Mixing::default()),
        mk_grad_scale: 1.0,
        seed: 0,
    };
    let small = || {
        Mlp::<B>::new(
            784,
            &options.hidden,
            10,
            true,
            &mut stream_rng(0, Stream::Init),
            &device,
        )
    };
    let time = |model_ms: &mut dyn FnMut() -> f64| -> f64 {
        median((0..options.repeats).map(|_| model_ms()).collect())
    };
    // Warm-up: allocator and kernel caches.
    step_ms(small(), &data, &settings, &device);
    options
        .ks
        .iter()
        .map(|&k| {
            let mut baseline = || step_ms(small(), &data, &settings, &device);
            let baseline_ms = time(&mut baseline);
            let mut mk = || {
                let model = MkMlp::from_small(
                    &small(),
                    k,
                    MkInit::Identical,
                    &mut stream_rng(0, Stream::MkCopies),
                );
                step_ms(model, &data, &settings, &device)
            };
            let mk_ms = time(&mut mk);
            BenchRow {
                k,
                baseline_ms,
                mk_ms,
            }
        })
        .collect()
}
