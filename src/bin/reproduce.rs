//! `reproduce`: trains and reports the paper's experiments. Argument parsing only; the work
//! is done by the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use majority_kernels::backend::BackendKind;
use majority_kernels::bench::{self, BenchOptions};
use majority_kernels::report::docs;
use majority_kernels::runner::{self, Mode, RunOptions};
use majority_kernels::{Error, methods};

/// Tensor buffers are freed and reallocated every step; mimalloc reuses them where glibc's
/// malloc returned them to the OS and faulted fresh zeroed pages in (about a third of a
/// Transformer step on the CPU backend; README, Measurements).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reproduce the Majority Kernels paper's tables: `reproduce table1 --profile quick`.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render an experiment's table from stored runs only (trains nothing).
    Report(ExperimentArgs),
    /// List every run of an experiment with its stable id and whether it is stored (`--cost`:
    /// and the training arithmetic of its runs).
    Plan(PlanArgs),
    /// Time training steps of majority kernels against the plain model (ratios from one run).
    Bench(BenchArgs),
    /// List the experiments and methods.
    List(ListArgs),
    /// Check the paper's claims on stored runs: paired tests over seeds, with verdicts.
    Claims(StoredArgs),
    /// Rewrite the generated parts of docs/RESULTS.md and docs/MEASUREMENTS.md from the stored
    /// runs and bench rows (trains nothing, needs no data); `--check` only compares.
    Docs(DocsArgs),
    /// Render the figures (PNG and SVG) from stored runs into `plots/`.
    Plots(PlotArgs),
    /// Copy an experiment's stored runs into `baselines/<experiment>/<profile>/`.
    Baselines(BaselineArgs),
    /// Train a new method on a stored experiment's recipe and seeds; print it beside the
    /// stored baselines with paired statistics.
    Compare(CompareArgs),
    /// Run (or resume) an experiment by name, e.g. `reproduce table1 --profile quick`.
    #[command(external_subcommand)]
    Experiment(Vec<String>),
}

#[derive(Args, Clone)]
struct ExperimentArgs {
    /// Experiment name (`experiments/<name>.yaml`) or path to an experiment file.
    experiment: String,
    /// Profile of the experiment file: smoke, quick or paper.
    #[arg(long, default_value = "quick")]
    profile: String,
    /// Override any field of the experiment file, e.g. `--set datasets.0.recipe.epochs=3`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    overrides: Vec<String>,
    #[command(flatten)]
    common: CommonArgs,
    /// No progress bars (implied when stderr is not a terminal).
    #[arg(long, short)]
    quiet: bool,
    /// Only these datasets of the experiment (repeat or comma-separate), e.g. `--dataset cifar10`.
    #[arg(long = "dataset", value_delimiter = ',', value_name = "NAME")]
    datasets: Vec<String>,
    /// Only the runs of shard INDEX/COUNT (0-based), for parallel sweeps sharing one results folder.
    #[arg(long, value_name = "INDEX/COUNT")]
    shard: Option<String>,
    /// Train only the tuning runs (`tune`) or only the final runs (`final`; those whose tuning
    /// is stored). Default: tuning, then the final runs it chose for. For two-phase sweeps.
    #[arg(long, value_name = "tune|final")]
    phase: Option<String>,
    /// Save a training checkpoint every N epochs (0: never); a killed run resumes from it.
    #[arg(long, default_value_t = 1, value_name = "N")]
    checkpoint_every: usize,
}

#[derive(Args, Clone)]
struct PlanArgs {
    #[command(flatten)]
    experiment: ExperimentArgs,
    /// Estimate each run's training arithmetic (FLOPs, from the architectures: an estimate,
    /// not a measurement).
    #[arg(long)]
    cost: bool,
    /// With the estimate, hours at this sustained rate in TFLOP/s (one measured on the
    /// hardware that will run it, or an assumption); implies `--cost`.
    #[arg(long, value_name = "R")]
    tflops: Option<f64>,
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Backend: flex (default CPU), ndarray (CPU, `--features ndarray`), cuda (`--features cuda`).
    #[arg(long)]
    backend: Option<String>,
    /// Directory holding the datasets (default: $MK_DATA_DIR, ../shared/data, ./data, then the Hub).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Folder for decoded-image caches (default: $MK_CACHE_DIR, else ~/.cache/majority-kernels).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Where results are stored.
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
    /// Where experiment files are looked up by name.
    #[arg(long)]
    experiments_dir: Option<PathBuf>,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Model families (comma-separated): `mlp` (on MNIST), `resnet` (on CIFAR-10),
    /// `transformer` (2 x 128 encoder on SST-2).
    #[arg(long, value_delimiter = ',', default_value = "mlp,resnet,transformer")]
    family: Vec<String>,
    /// Hidden widths of the MLP.
    #[arg(long, value_delimiter = ',', default_value = "512,512")]
    hidden: Vec<usize>,
    /// Basic blocks per stage of the ResNet (3,3,3 is ResNet-20).
    #[arg(long, value_delimiter = ',', default_value = "3,3,3")]
    blocks: Vec<usize>,
    /// Channels per stage of the ResNet.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64")]
    widths: Vec<usize>,
    /// Stem of the ResNet: `cifar` (3x3, on CIFAR-10 32x32) or `imagenet` (7x7 stride 2 and
    /// max-pool, on Tiny ImageNet 64x64).
    #[arg(long, default_value = "cifar")]
    stem: String,
    /// Encoder of the transformer family: layers,hidden,heads,ffn (6,384,12,1536 is the
    /// all-MiniLM-L6-v2 size).
    #[arg(long, value_delimiter = ',', default_value = "2,128,4,512")]
    encoder: Vec<usize>,
    /// Longest sequence of the transformer family's batches, in tokens (each batch is padded
    /// to its longest sentence, as in training).
    #[arg(long, default_value_t = 64)]
    max_len: usize,
    /// Time a pre-trained checkpoint's encoder instead of `--encoder` (e.g. `all-MiniLM-L6-v2`
    /// under the data dir, or a Hub id), tokenised by its own tokenizer.
    #[arg(long)]
    pretrained: Option<String>,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Copies per kernel to compare against the plain model.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    k: Vec<usize>,
    /// Timed steps per measurement (default: per family, about a second of CPU work).
    #[arg(long)]
    steps: Option<usize>,
    /// Alternating repeats (median reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Folder for the parquet rows (`<backend>-<machine>.parquet`) and source of the overhead
    /// figure.
    #[arg(long, default_value = "results/bench")]
    out_dir: PathBuf,
    /// Folder of the overhead figure.
    #[arg(long, default_value = "plots")]
    plots_dir: PathBuf,
    /// Print only; write neither parquet nor figure.
    #[arg(long)]
    no_save: bool,
    /// CSV from `benches/reference/pytorch_step.py` on this machine, printed beside the run.
    #[arg(long, value_name = "CSV")]
    reference: Option<PathBuf>,
}

/// Commands that read stored results only.
#[derive(Args)]
struct StoredArgs {
    /// Experiments (default: every experiment file).
    experiments: Vec<String>,
    #[arg(long, default_value = "quick")]
    profile: String,
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
    #[arg(long)]
    experiments_dir: Option<PathBuf>,
}

#[derive(Args)]
struct DocsArgs {
    /// Profile of the stored runs that RESULTS.md shows.
    #[arg(long, default_value = "quick")]
    profile: String,
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
    #[arg(long)]
    experiments_dir: Option<PathBuf>,
    #[arg(long, default_value = "plots")]
    plots_dir: PathBuf,
    #[arg(long, default_value = "docs")]
    docs_dir: PathBuf,
    /// Write nothing; fail (exit 2) when a docs file differs from the stored results.
    #[arg(long)]
    check: bool,
}

#[derive(Args)]
struct BaselineArgs {
    experiment: String,
    #[arg(long, default_value = "quick")]
    profile: String,
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
    #[arg(long, default_value = "baselines")]
    baselines_dir: PathBuf,
}

#[derive(Args)]
struct CompareArgs {
    /// The new method, as an experiment entry: `mk` or `{name: mk, mixing: uniform}`.
    #[arg(long)]
    method: String,
    /// The experiment whose stored baselines it is compared with.
    #[arg(long)]
    experiment: String,
    #[arg(long, default_value = "quick")]
    profile: String,
    /// Overrides of the experiment file (must leave the recipe equal to the stored one).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    overrides: Vec<String>,
    #[arg(long, default_value = "baselines")]
    baselines_dir: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct PlotArgs {
    #[command(flatten)]
    stored: StoredArgs,
    /// Where figures are written.
    #[arg(long, default_value = "plots")]
    plots_dir: PathBuf,
}

#[derive(Args)]
struct ListArgs {
    #[arg(long)]
    experiments_dir: Option<PathBuf>,
}

fn backend(name: &Option<String>) -> Result<BackendKind, Error> {
    match name {
        Some(name) => name.parse(),
        None => BackendKind::default_compiled(),
    }
}

/// The run options of `experiment` under `profile` that the common flags give (no overrides,
/// every dataset, no shard, a checkpoint every epoch).
fn base_run_options(
    common: CommonArgs,
    experiment: String,
    profile: String,
    quiet: bool,
    mode: Mode,
) -> Result<RunOptions, Error> {
    Ok(RunOptions {
        experiment,
        profile,
        overrides: Vec::new(),
        backend: backend(&common.backend)?,
        data_dir: common.data_dir,
        cache_dir: common.cache_dir,
        results_dir: common.results_dir,
        experiments_dir: common
            .experiments_dir
            .unwrap_or_else(runner::default_experiments_dir),
        quiet,
        mode,
        datasets: Vec::new(),
        shard: None,
        phase: None,
        checkpoint_every: 1,
        estimate_cost: false,
        tflops: None,
    })
}

fn run_options(args: ExperimentArgs, mode: Mode) -> Result<RunOptions, Error> {
    Ok(RunOptions {
        shard: args.shard.as_deref().map(str::parse).transpose()?,
        phase: args.phase.as_deref().map(str::parse).transpose()?,
        checkpoint_every: args.checkpoint_every,
        datasets: args.datasets,
        overrides: args.overrides,
        ..base_run_options(args.common, args.experiment, args.profile, args.quiet, mode)?
    })
}

fn main() -> ExitCode {
    majority_kernels::results::memory::keep_freed_memory();
    let cli = Cli::parse();
    let outcome = majority_kernels::workers::run_on_worker_threads(move || match cli.command {
        Command::Experiment(words) => {
            #[derive(Parser)]
            #[command(name = "reproduce")]
            struct ExperimentCli {
                #[command(flatten)]
                args: ExperimentArgs,
            }
            let argv = std::iter::once("reproduce".to_string()).chain(words);
            match ExperimentCli::try_parse_from(argv) {
                Ok(parsed) => run_options(parsed.args, Mode::Train).and_then(|o| runner::run(&o)),
                Err(e) => e.exit(),
            }
        }
        Command::Report(args) => run_options(args, Mode::Report).and_then(|o| runner::run(&o)),
        Command::Plan(args) => match args.tflops {
            Some(rate) if !(rate.is_finite() && rate > 0.0) => Err(Error::Usage(format!(
                "--tflops {rate}: expected a positive rate in TFLOP/s"
            ))),
            tflops => run_options(args.experiment, Mode::Plan)
                .map(|o| RunOptions {
                    estimate_cost: args.cost || tflops.is_some(),
                    tflops,
                    ..o
                })
                .and_then(|o| runner::run(&o)),
        },
        Command::Bench(args) => backend(&args.common.backend).and_then(|backend| {
            let saved = (!args.no_save).then(|| (args.out_dir.clone(), args.plots_dir.clone()));
            let families = args
                .family
                .iter()
                .map(|f| f.parse())
                .collect::<Result<Vec<bench::Family>, Error>>()?;
            bench::run(&BenchOptions {
                backend,
                data_dir: args.common.data_dir,
                families,
                mlp_hidden: args.hidden,
                resnet_blocks: args.blocks,
                resnet_widths: args.widths,
                resnet_stem: args.stem.parse()?,
                encoder: args.encoder,
                max_len: args.max_len,
                pretrained: args.pretrained,
                batch_size: args.batch,
                ks: args.k,
                steps: args.steps,
                repeats: args.repeats,
                out_dir: (!args.no_save).then_some(args.out_dir),
                plots_dir: (!args.no_save).then_some(args.plots_dir),
                reference: args.reference,
            })
            .and_then(|mut out| {
                // The generated part of docs/MEASUREMENTS.md follows the stored rows.
                if let Some((rows, plots)) = saved
                    && let Some(doc) = docs::write_measurements(&rows, &plots, "docs".as_ref())?
                {
                    out.push_str(&format!("docs: {}\n", doc.display()));
                }
                Ok(out)
            })
        }),
        Command::Docs(args) => docs::run(
            &docs::DocsOptions {
                results_dir: args.results_dir,
                experiments_dir: args
                    .experiments_dir
                    .unwrap_or_else(runner::default_experiments_dir),
                plots_dir: args.plots_dir,
                docs_dir: args.docs_dir,
                profile: args.profile,
            },
            args.check,
        ),
        Command::Claims(args) => majority_kernels::report::claims::run(
            &args.results_dir,
            &args
                .experiments_dir
                .unwrap_or_else(runner::default_experiments_dir),
            &args.experiments,
            &args.profile,
        ),
        Command::Plots(args) => majority_kernels::report::plots::run(
            &args.stored.results_dir,
            &args
                .stored
                .experiments_dir
                .unwrap_or_else(runner::default_experiments_dir),
            &args.plots_dir,
            &args.stored.experiments,
            &args.stored.profile,
        ),
        Command::Baselines(args) => majority_kernels::compare::export(
            &args.results_dir,
            &args.baselines_dir,
            &args.experiment,
            &args.profile,
        ),
        Command::Compare(args) => base_run_options(
            args.common,
            args.experiment.clone(),
            args.profile.clone(),
            args.quiet,
            Mode::Train,
        )
        .and_then(|run| {
            majority_kernels::compare::compare(&majority_kernels::compare::CompareOptions {
                method: args.method,
                experiment: args.experiment,
                profile: args.profile,
                overrides: args.overrides,
                baselines_dir: args.baselines_dir,
                run,
            })
        }),
        Command::List(args) => {
            let dir = args
                .experiments_dir
                .unwrap_or_else(runner::default_experiments_dir);
            let names = majority_kernels::experiment::list(&dir);
            let mut out = format!(
                "experiments ({}): {}\nmethods:\n",
                dir.display(),
                names.join(", ")
            );
            for name in methods::NAMES {
                let info = methods::info(name).expect("registered");
                out.push_str(&format!(
                    "  {name:<18} {:<11} {}\n",
                    format!("{:?}", info.role).to_lowercase(),
                    info.about
                ));
            }
            Ok(out)
        }
    });
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(match err {
                Error::Config { .. } | Error::Usage(_) => 2,
                _ => 1,
            })
        }
    }
}
