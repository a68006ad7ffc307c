//! Runs an experiment: resolves it, plans its runs, trains what is not stored yet (or only
//! one shard of it), stores each run as it finishes, and renders the table from stored runs.

mod cost;
mod datasets;
mod execute;
mod record;
mod session;
mod shard;
mod tables;

use std::path::{Path, PathBuf};

pub use shard::Shard;

use crate::backend::BackendKind;
use crate::error::{Error, Result};
use crate::experiment::{self, ResolvedExperiment};

/// What `reproduce <experiment>` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub experiment: String,
    pub profile: String,
    pub overrides: Vec<String>,
    pub backend: BackendKind,
    pub data_dir: Option<PathBuf>,
    /// Folder of decoded-image caches (default: `MK_CACHE_DIR` or `~/.cache/majority-kernels`).
    pub cache_dir: Option<PathBuf>,
    pub results_dir: PathBuf,
    pub experiments_dir: PathBuf,
    /// No progress bars (also implied when stderr is not a terminal).
    pub quiet: bool,
    pub mode: Mode,
    /// Only these datasets of the experiment (all when empty); the table file is then not
    /// rewritten, so a partial run never replaces the full table.
    pub datasets: Vec<String>,
    /// Train only this shard of the plan.
    pub shard: Option<Shard>,
    /// Train only this phase's runs (tuning, or final runs whose tuning is stored); both when
    /// `None`.
    pub phase: Option<crate::experiment::Phase>,
    /// Save a checkpoint every this many epochs (0: never).
    pub checkpoint_every: usize,
    /// Plan mode: follow the listing with the runs' estimated training arithmetic
    /// ([`cost`]), also in hours at `tflops` (a sustained TFLOP/s) when given.
    pub estimate_cost: bool,
    pub tflops: Option<f64>,
}

/// Train and report, report only, or list the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Report,
    Plan,
}

/// Runs (or resumes) an experiment and returns its markdown table (or, in plan mode, the list
/// of runs).
pub fn run(options: &RunOptions) -> Result<String> {
    let path = experiment::locate(&options.experiment, &options.experiments_dir)?;
    let mut resolved = experiment::load(&path, &options.profile, &options.overrides)?;
    select_datasets(&mut resolved, &options.datasets)?;
    execute::execute(&resolved, options)
}

/// Keeps only the dataset entries named in `names` (all when empty); an unknown name is an
/// error that lists the experiment's datasets.
fn select_datasets(resolved: &mut ResolvedExperiment, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let entries = &mut resolved.experiment.datasets;
    let present: Vec<String> = entries.iter().map(|e| e.dataset.clone()).collect();
    if let Some(missing) = names.iter().find(|n| !present.contains(n)) {
        return Err(Error::Usage(format!(
            "--dataset {missing}: experiment `{}` has no such dataset (it has: {})",
            resolved.experiment.name,
            present.join(", ")
        )));
    }
    entries.retain(|e| names.contains(&e.dataset));
    Ok(())
}

/// The default experiments folder: `experiments/` in the working directory, else beside
/// the crate's manifest (so `cargo run` works from anywhere in the checkout).
pub fn default_experiments_dir() -> PathBuf {
    let local = Path::new("experiments");
    if local.is_dir() {
        return local.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments")
}
