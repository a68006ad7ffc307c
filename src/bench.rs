//! `reproduce bench`: training-step time of majority kernels against the plain small model on
//! the same data, batch and backend, for every model family and several k, measured in one
//! process and reported as ratios; the rows go to parquet for the overhead figure.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use indicatif::ProgressBar;
use polars::prelude::*;

use crate::backend::{BackendKind, machine_description};
use crate::data::{self, Examples, TextOptions};
use crate::error::{Error, Result};
use crate::methods::mk::MkHooks;
use crate::mk::{Mixing, MkInit};
use crate::models::{EncoderSpec, Model, ModelSpec};
use crate::results::provenance;
use crate::train::{
    MixingDraw, OptimizerSpec, ScheduleSpec, Stream, TrainData, TrainSettings, stream_rng, train,
};
use crate::with_backend;

/// A model family as `bench` times it: model, dataset and optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// MLP on MNIST, SGD with momentum.
    Mlp,
    /// CIFAR ResNet on CIFAR-10, SGD with momentum and weight decay.
    Resnet,
    /// Transformer encoder on SST-2, AdamW.
    Transformer,
}

impl std::str::FromStr for Family {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "mlp" => Ok(Family::Mlp),
            "resnet" => Ok(Family::Resnet),
            "transformer" => Ok(Family::Transformer),
            other => Err(Error::Usage(format!(
                "bench --family `{other}`: expected mlp, resnet or transformer"
            ))),
        }
    }
}

impl Family {
    pub fn name(&self) -> &'static str {
        match self {
            Family::Mlp => "mlp",
            Family::Resnet => "resnet",
            Family::Transformer => "transformer",
        }
    }

    /// Timed steps per measurement when not given: about a second of work on the 2-core CPU.
    pub fn default_steps(&self) -> usize {
        match self {
            Family::Mlp => 200,
            Family::Resnet => 4,
            Family::Transformer => 4,
        }
    }
}

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub backend: BackendKind,
    pub data_dir: Option<PathBuf>,
    pub families: Vec<Family>,
    /// Hidden widths of the MLP.
    pub mlp_hidden: Vec<usize>,
    /// Blocks and widths of the ResNet.
    pub resnet_blocks: Vec<usize>,
    pub resnet_widths: Vec<usize>,
    pub batch_size: usize,
    pub ks: Vec<usize>,
    /// Timed steps per measurement (`None`: the family's default).
    pub steps: Option<usize>,
    /// Alternating repeats; the median is reported.
    pub repeats: usize,
    /// Folder of the parquet file (`None`: not written).
    pub out_dir: Option<PathBuf>,
    /// Folder of the overhead figure (`None`: not drawn).
    pub plots_dir: Option<PathBuf>,
    /// CSV written by `benches/reference/pytorch_step.py` on the same machine: printed beside
    /// this run as framework ratios.
    pub reference: Option<PathBuf>,
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

/// The ResNet that `bench --family resnet` times (ResNet-20 with the default options).
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
    pub family: String,
    pub model: String,
    pub dataset: String,
    pub optimizer: String,
    pub batch: usize,
    pub k: usize,
    pub baseline_ms: f64,
    pub mk_ms: f64,
    /// Seconds from a fresh model to the end of its first training step (upload, kernel
    /// compilation and tuning included), per family.
    pub first_step_s: f64,
    pub steps: usize,
    pub repeats: usize,
}

impl BenchRow {
    pub fn ratio(&self) -> f64 {
        self.mk_ms / self.baseline_ms
    }
}

/// Times baseline and MK training steps on real data and returns a printable report.
pub fn run(options: &BenchOptions) -> Result<String> {
    if options.steps == Some(0) || options.repeats == 0 || options.batch_size == 0 {
        return Err(Error::Usage(
            "bench: --steps, --repeats and --batch must be at least 1".into(),
        ));
    }
    if options.ks.is_empty() || options.ks.contains(&0) {
        return Err(Error::Usage("bench: --k needs one or more k >= 1".into()));
    }
    crate::backend::prepare(options.backend, &data::cache::default_dir())?;
    let machine = machine_description();
    let threads = rayon::current_num_threads();
    let mut rows = Vec::new();
    for &family in &options.families {
        rows.extend(bench_family(options, family)?);
    }
    let mut out = format!(
        "MK (k copies) vs baseline training step, batch {}, median of {} alternating repeats; backend {}, {machine}, {threads} worker threads\n\n\
         | family | model | optimizer | k | baseline ms/step | mk ms/step | ratio | baseline examples/s | mk examples/s | first step s |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        options.batch_size, options.repeats, options.backend,
    );
    for row in &rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} | {:.2} |\n",
            row.family,
            row.model,
            row.optimizer,
            row.k,
            row.baseline_ms,
            row.mk_ms,
            row.ratio(),
            1e3 * row.batch as f64 / row.baseline_ms,
            1e3 * row.batch as f64 / row.mk_ms,
            row.first_step_s,
        ));
    }
    if let Some(path) = &options.reference {
        out.push_str(&reference_table(path, &rows)?);
    }
    if let Some(dir) = &options.out_dir {
        let path = dir.join(format!("{}-{}.parquet", options.backend, slug(&machine)));
        write_rows(&path, &rows, options.backend, &machine, threads)?;
        out.push_str(&format!("\nwritten: {}\n", path.display()));
        if let Some(plots) = &options.plots_dir {
            for file in crate::report::plots::overhead_figure(dir, plots)? {
                out.push_str(&format!("figure: {}\n", file.display()));
            }
        }
    }
    Ok(out)
}

/// The rows of a reference CSV (`family`, `k`, `baseline_ms`, `mk_ms`, `dtype`, `torch`) beside
/// this run's: ours / reference step time, and both MK ratios.
fn reference_table(path: &Path, rows: &[BenchRow]) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            Error::data(
                path,
                format!("reference CSV has no `{name}` column (expected the output of benches/reference/pytorch_step.py)"),
            )
        })
    };
    let (family, k, baseline, mk) = (
        column("family")?,
        column("k")?,
        column("baseline_ms")?,
        column("mk_ms")?,
    );
    let (dtype, torch) = (column("dtype")?, column("torch")?);
    let mut out = String::from(
        "\nAgainst the reference (same machine, separate process):\n\n\
         | family | k | ours baseline ms | reference baseline ms | ours / reference | ours MK ratio | reference MK ratio | reference |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (n, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        let number = |i: usize| -> Result<f64> {
            fields.get(i).and_then(|v| v.parse().ok()).ok_or_else(|| {
                Error::data(
                    path,
                    format!("line {}: expected a number in column {}", n + 2, i + 1),
                )
            })
        };
        let (ref_base, ref_mk) = (number(baseline)?, number(mk)?);
        let ref_k = number(k)? as usize;
        let Some(ours) = rows
            .iter()
            .find(|r| Some(r.family.as_str()) == fields.get(family).copied() && r.k == ref_k)
        else {
            continue;
        };
        out.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | PyTorch {} {} |\n",
            ours.family,
            ours.k,
            ours.baseline_ms,
            ref_base,
            ours.baseline_ms / ref_base,
            ours.ratio(),
            ref_mk / ref_base,
            fields.get(torch).unwrap_or(&"?"),
            fields.get(dtype).unwrap_or(&"?"),
        ));
    }
    Ok(out)
}

/// A file-name-safe form of a machine description.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').chars().take(60).collect()
}

fn bench_family(options: &BenchOptions, family: Family) -> Result<Vec<BenchRow>> {
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
            "cifar10",
            bench_resnet(options.resnet_blocks.clone(), options.resnet_widths.clone()),
            None,
            OptimizerSpec::Sgd {
                lr: 0.05,
                momentum: 0.9,
                nesterov: false,
                weight_decay: 5e-4,
            },
        ),
        Family::Transformer => {
            let model = bench_encoder();
            let max_len = match &model {
                ModelSpec::Transformer(spec) => spec.max_len,
                _ => unreachable!("bench_encoder is a transformer"),
            };
            (
                "sst2",
                model,
                Some(TextOptions {
                    tokenizer: "bert-base-uncased".into(),
                    max_len,
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
    Ok(times
        .into_iter()
        .map(|(k, baseline_ms, mk_ms)| BenchRow {
            family: family.name().into(),
            model: model.label(&train_set),
            dataset: dataset.into(),
            optimizer: optimizer_label.into(),
            batch: options.batch_size,
            k,
            baseline_ms,
            mk_ms,
            first_step_s,
            steps,
            repeats: options.repeats,
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
        test: &tiny,
    };
    let settings = TrainSettings {
        optimizer: optimizer.clone(),
        schedule: ScheduleSpec::default(),
        epochs: 1,
        batch_size: options.batch_size,
        augment: None,
        label_smoothing: 0.0,
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

/// Writes the rows (with backend, machine and code version) atomically to `path`.
fn write_rows(
    path: &Path,
    rows: &[BenchRow],
    backend: BackendKind,
    machine: &str,
    threads: usize,
) -> Result<()> {
    let n = rows.len();
    let s = |f: fn(&BenchRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let x = |f: fn(&BenchRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    let i = |f: fn(&BenchRow) -> usize| rows.iter().map(|r| f(r) as i64).collect::<Vec<i64>>();
    let backend = backend.to_string();
    let commit = provenance::git_commit();
    let mut frame = df!(
        "family" => s(|r| &r.family),
        "model" => s(|r| &r.model),
        "dataset" => s(|r| &r.dataset),
        "optimizer" => s(|r| &r.optimizer),
        "batch" => i(|r| r.batch),
        "k" => i(|r| r.k),
        "baseline_ms" => x(|r| r.baseline_ms),
        "mk_ms" => x(|r| r.mk_ms),
        "ratio" => x(BenchRow::ratio),
        "first_step_s" => x(|r| r.first_step_s),
        "steps" => i(|r| r.steps),
        "repeats" => i(|r| r.repeats),
        "backend" => vec![backend.as_str(); n],
        "device" => vec![machine; n],
        "threads" => vec![threads as i64; n],
        "git_commit" => vec![commit.as_str(); n],
        "finished_at" => vec![provenance::unix_now(); n],
    )
    .map_err(|source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    })?;
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .finish(&mut frame)
        .map_err(|source| Error::Parquet {
            path: path.to_path_buf(),
            source,
        })?;
    crate::results::ResultsDir::write_bytes(path, &bytes)
}

/// Every bench row stored in `dir` (`*.parquet`), as `(label, k, ratio)` with the label
/// naming family, model, backend and machine.
pub fn stored_ratios(dir: &Path) -> Result<Vec<(String, i64, f64)>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    for path in files {
        let bad = |source| Error::Parquet {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let frame = ParquetReader::new(file).finish().map_err(bad)?;
        let text = |name: &str| -> Result<Vec<String>> {
            Ok(frame
                .column(name)
                .and_then(|c| c.str().cloned())
                .map_err(bad)?
                .iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect())
        };
        let (family, model, backend, device) = (
            text("family")?,
            text("model")?,
            text("backend")?,
            text("device")?,
        );
        let ks: Vec<i64> = frame
            .column("k")
            .and_then(|c| c.i64().cloned())
            .map_err(bad)?
            .iter()
            .map(Option::unwrap_or_default)
            .collect();
        let ratios: Vec<f64> = frame
            .column("ratio")
            .and_then(|c| c.f64().cloned())
            .map_err(bad)?
            .iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect();
        for r in 0..frame.height() {
            let host = device[r].split(" (").next().unwrap_or_default();
            out.push((
                format!("{} {} ({}, {host})", family[r], model[r], backend[r]),
                ks[r],
                ratios[r],
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_rows_round_trip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<BenchRow> = [1, 4]
            .into_iter()
            .map(|k| BenchRow {
                family: "mlp".into(),
                model: "mlp-784-8-10".into(),
                dataset: "mnist".into(),
                optimizer: "sgd-momentum".into(),
                batch: 32,
                k,
                baseline_ms: 2.0,
                mk_ms: 2.0 + k as f64,
                first_step_s: 0.1,
                steps: 3,
                repeats: 1,
            })
            .collect();
        write_rows(
            &dir.path().join("flex-test.parquet"),
            &rows,
            BackendKind::Flex,
            "testhost (cpu, 2 threads)",
            2,
        )
        .unwrap();
        let stored = stored_ratios(dir.path()).unwrap();
        assert_eq!(
            stored,
            vec![
                ("mlp mlp-784-8-10 (flex, testhost)".to_string(), 1, 1.5),
                ("mlp mlp-784-8-10 (flex, testhost)".to_string(), 4, 3.0),
            ]
        );
        assert_eq!(slug("vm (AMD EPYC, 2 threads)"), "vm-amd-epyc-2-threads");
    }

    #[test]
    fn reference_rows_are_matched_by_family_and_k() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("ref.csv");
        std::fs::write(
            &csv,
            "family,batch,k,dtype,device,threads,baseline_ms,mk_ms,ratio,torch,host,cpu\n\
             mlp,128,4,fp32,cpu,2,4.0,6.0,1.5,2.11.0,vm,x86_64\n\
             resnet,128,4,fp32,cpu,2,100.0,101.0,1.01,2.11.0,vm,x86_64\n",
        )
        .unwrap();
        let row = BenchRow {
            family: "mlp".into(),
            model: "mlp-784-512-512-10".into(),
            dataset: "mnist".into(),
            optimizer: "sgd-momentum".into(),
            batch: 128,
            k: 4,
            baseline_ms: 2.0,
            mk_ms: 2.5,
            first_step_s: 0.0,
            steps: 1,
            repeats: 1,
        };
        let table = reference_table(&csv, &[row]).unwrap();
        assert!(
            table.contains(
                "| mlp | 4 | 2.000 | 4.000 | 0.500 | 1.250 | 1.500 | PyTorch 2.11.0 fp32 |"
            ),
            "{table}"
        );
        assert!(
            !table.contains("| resnet"),
            "no row of ours to compare: {table}"
        );
        std::fs::write(&csv, "family,k\nmlp,4\n").unwrap();
        let err = reference_table(&csv, &[]).unwrap_err().to_string();
        assert!(
            err.contains("baseline_ms") && err.contains("ref.csv"),
            "{err}"
        );
    }
}
