//! Runs an experiment: resolves it, plans its runs, trains what is not stored yet (or only
//! one shard of it), stores each run as it finishes, and renders the table from stored runs.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::{BURN_VERSION, BackendKind, machine_description};
use crate::data::{self, DataSplits, Examples, LoadOptions};
use crate::error::{Error, Result};
use crate::experiment::{self, ResolvedExperiment, RunSpec};
use crate::methods::MethodContext;
use crate::report::table;
use crate::results::{CurvePoint, ModelStore, ResultsDir, RunRecord, memory, provenance};
use crate::train::{CheckpointDir, TrainData, evaluate, subset_seed};
use crate::with_backend;

/// One of `count` disjoint slices of an experiment's runs: run `i` of the plan belongs to
/// shard `i % count`. Written `index/count`, 0-based (`0/3`, `1/3`, `2/3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Whether the run at `position` in the plan belongs to this shard.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::Usage(format!(
                "--shard `{text}`: expected INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4"
            ))
        };
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            index.trim().parse().map_err(|_| bad())?,
            count.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

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
    /// Save a checkpoint every this many epochs (0: never).
    pub checkpoint_every: usize,
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
    crate::backend::prepare(
        options.backend,
        &options
            .cache_dir
            .clone()
            .unwrap_or_else(crate::data::cache::default_dir),
    )?;
    with_backend!(options.backend, B => execute::<B>(&resolved, options))
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

fn execute<B: AutodiffBackend>(
    resolved: &ResolvedExperiment,
    options: &RunOptions,
) -> Result<String> {
    let experiment = &resolved.experiment;
    let file = resolved.source.display().to_string();
    let dirs = data::search_dirs(options.data_dir.clone());
    // One load per distinct (dataset, options); text is tokenised to the model's length.
    let mut datasets: Vec<(String, LoadOptions, DataSplits)> = Vec::new();
    for entry in &experiment.datasets {
        let load = entry.load_options(options.cache_dir.clone());
        if !datasets
            .iter()
            .any(|(name, o, _)| *name == entry.dataset && *o == load)
        {
            let splits = data::load(&entry.dataset, &dirs, &load)
                .map_err(|e| in_entry(&file, &entry.dataset, e))?;
            datasets.push((entry.dataset.clone(), load, splits));
        }
    }
    let splits_of = |index: usize| {
        let entry = &experiment.datasets[index];
        let load = entry.load_options(options.cache_dir.clone());
        &datasets
            .iter()
            .find(|(n, o, _)| *n == entry.dataset && *o == load)
            .expect("loaded above")
            .2
    };
    let fingerprints: Vec<String> = (0..experiment.datasets.len())
        .map(|i| splits_of(i).fingerprint.clone())
        .collect();
    let runs = experiment::plan(experiment, &fingerprints, provenance::NUMERICS_VERSION);

    let dir = ResultsDir::new(&options.results_dir, &experiment.name, &resolved.profile);
    for (path, reason) in dir.audit()? {
        eprintln!(
            "warning: set aside unreadable results file {} ({reason})",
            path.display()
        );
    }
    let owned = |position: usize| options.shard.is_none_or(|s| s.owns(position));

    if options.mode == Mode::Plan {
        let mut out = String::new();
        for (position, spec) in runs.iter().enumerate().filter(|(p, _)| owned(*p)) {
            let earlier = spec
                .earlier_ids()
                .into_iter()
                .find(|(_, id)| dir.is_done(id));
            let status = if dir.is_done(&spec.id()) {
                "stored".to_string()
            } else if let Some((version, _)) = earlier {
                format!("pending (stored by numerics v{version}, shown in tables until rerun)")
            } else {
                "pending".to_string()
            };
            let _ = writeln!(out, "{position:>4}  {}  {status}", spec.id());
        }
        return Ok(out);
    }

    let pending: Vec<&RunSpec> = runs
        .iter()
        .enumerate()
        .filter(|(p, r)| owned(*p) && !dir.is_done(&r.id()))
        .map(|(_, r)| r)
        .collect();
    if options.mode == Mode::Train && !pending.is_empty() {
        // Written first: an unwritable results folder fails before any training.
        ResultsDir::write_text(&dir.root().join("experiment.yaml"), &resolved.resolved_yaml)?;
        let trainer = Trainer::<B> {
            options,
            resolved,
            dir: &dir,
            models: ModelStore::new(dir.root().join("models")),
            device: B::Device::default(),
            machine: machine_description(),
            commit: provenance::git_commit(),
        };
        let started = Instant::now();
        let shard = options
            .shard
            .map(|s| format!(" (shard {}/{})", s.index, s.count))
            .unwrap_or_default();
        eprintln!(
            "{}{shard}: {} runs planned, {} stored, {} to train on {} ({})",
            experiment.name,
            runs.len(),
            runs.iter().filter(|r| dir.is_done(&r.id())).count(),
            pending.len(),
            options.backend,
            trainer.machine
        );
        for (i, spec) in pending.iter().enumerate() {
            trainer.train_one(spec, splits_of(spec.dataset_index), i + 1, pending.len())?;
        }
        eprintln!(
            "{}{shard}: trained {} runs in {:.1} s",
            experiment.name,
            pending.len(),
            started.elapsed().as_secs_f64()
        );
    }

    let stored: Vec<RunRecord> = dir.runs()?;
    let (planned, earlier) = planned_runs(&runs, &stored);
    let title = format!("{} ({} profile)", experiment.name, resolved.profile);
    let mut markdown = table::markdown(&title, &planned, runs.len());
    if earlier > 0 {
        markdown.push_str(&format!(
            "{earlier} of these runs were stored by an earlier numerics version of the code (its \
             commits are on the Code line); running the experiment retrains them with this \
             version.\n"
        ));
    }
    let table_path = options
        .results_dir
        .join(format!("{}-{}.md", experiment.name, resolved.profile));
    if options.datasets.is_empty() {
        ResultsDir::write_text(&table_path, &markdown)?;
        ResultsDir::write_text(
            &table_path.with_extension("tex"),
            &table::latex(&title, &planned, runs.len()),
        )?;
    }
    Ok(markdown)
}

/// The stored run of every planned spec: the current numerics version's, else the newest
/// earlier version's (a table keeps showing what was measured until the run is redone).
/// Returns the runs and how many came from an earlier version.
fn planned_runs(specs: &[RunSpec], stored: &[RunRecord]) -> (Vec<RunRecord>, usize) {
    let find = |id: &str| stored.iter().find(|r| r.run_id == id);
    let mut earlier = 0;
    let runs = specs
        .iter()
        .filter_map(|spec| {
            find(&spec.id()).or_else(|| {
                let old = spec.earlier_ids().into_iter().find_map(|(_, id)| find(&id));
                earlier += usize::from(old.is_some());
                old
            })
        })
        .cloned()
        .collect();
    (runs, earlier)
}

/// A usage error from loading a dataset names the experiment file it came from.
fn in_entry(file: &str, dataset: &str, error: Error) -> Error {
    match error {
        Error::Usage(message) => Error::config(file, format!("dataset `{dataset}`: {message}")),
        other => other,
    }
}

/// State shared by the runs of one invocation.
struct Trainer<'a, B: AutodiffBackend> {
    options: &'a RunOptions,
    resolved: &'a ResolvedExperiment,
    dir: &'a ResultsDir,
    /// Trained models runs share (ensemble members, teachers, the wide model).
    models: ModelStore,
    device: B::Device,
    machine: String,
    commit: String,
}

impl<B: AutodiffBackend> Trainer<'_, B> {
    fn train_one(
        &self,
        spec: &RunSpec,
        splits: &DataSplits,
        index: usize,
        total: usize,
    ) -> Result<()> {
        let started = Instant::now();
        let recipe = &spec.recipe;
        // Data slices are seeded by the experiment seed so every method sees the same examples.
        let subset = |data: &Examples, n: Option<usize>, salt: u64| match n {
            Some(n) => data.subset(n, subset_seed(spec.seed, salt)),
            None => data.clone(),
        };
        let train = subset(&splits.train, recipe.train_subset, 1);
        let test = subset(&splits.test, recipe.test_subset, 2);
        let train_eval = subset(&train, recipe.eval_train_subset, 3);

        let progress = self.progress_bar(spec, index, total);
        let method = &self.resolved.experiment.methods[spec.method_index].method;
        let checkpoint = CheckpointDir {
            dir: self.dir.root().join("checkpoints").join(spec.id()),
            every_epochs: self.options.checkpoint_every,
        };
        let ctx = MethodContext::<B> {
            data: TrainData {
                train: &train,
                train_eval: &train_eval,
                test: &test,
            },
            model: &spec.model,
            recipe,
            k: spec.k,
            seed: spec.seed,
            device: &self.device,
            progress: &progress,
            checkpoint: Some(checkpoint.clone()),
            models: Some(&self.models),
            data_fingerprint: &spec.data,
        };
        memory::reset_peak_rss();
        let output = method.run::<B>(&ctx)?;
        let peak_rss_bytes = memory::peak_rss_bytes();
        progress.finish_and_clear();

        // The table reports the deployed small model, evaluated here, not the method's own log.
        let final_train =
            evaluate::<B::InnerBackend, _>(&output.deployed, &train_eval, 1000, &self.device);
        let final_test =
            evaluate::<B::InnerBackend, _>(&output.deployed, &test, 1000, &self.device);
        let record = RunRecord {
            run_id: spec.id(),
            experiment: spec.experiment.clone(),
            profile: self.resolved.profile.clone(),
            dataset: spec.dataset.clone(),
            model: method
                .spec()
                .deployed_spec(&spec.model, spec.k)
                .label(&train),
            method: spec.method.clone(),
            options: spec.options.to_string(),
            k: spec.k as i64,
            mixing: method.spec().mixing_label(spec.k),
            init: method.spec().init_label(),
            seed: spec.seed as i64,
            epochs: output.log.points.last().map_or(0, |p| p.epoch as i64),
            steps: output.log.steps as i64,
            teacher_steps: output.log.teacher_steps as i64,
            train_acc: final_train.accuracy,
            train_loss: final_train.loss,
            test_acc: final_test.accuracy,
            test_loss: final_test.loss,
            metric: splits.metric.name().into(),
            train_score: final_train.score(splits.metric),
            test_score: final_test.score(splits.metric),
            deployed_params: output.deployed.num_params() as i64,
            trained_params: output.trained_params as i64,
            wall_clock_s: started.elapsed().as_secs_f64(),
            step_ms: output.log.step_ms(),
            state_bytes: Some(memory::state_bytes(
                output.trained_params,
                recipe.optimizer.state_buffers(),
            )),
            peak_rss_bytes,
            status: if output.log.diverged {
                "diverged"
            } else {
                "completed"
            }
            .into(),
            backend: format!("{} ({})", self.options.backend, B::name(&self.device)),
            device: self.machine.clone(),
            burn_version: BURN_VERSION.into(),
            git_commit: self.commit.clone(),
            config_hash: spec.config_hash(),
            finished_at: provenance::unix_now(),
        };
        let curve: Vec<CurvePoint> = output
            .log
            .points
            .iter()
            .map(|p| CurvePoint::new(p, splits.metric))
            .collect();
        self.dir.store(&record, &curve)?;
        for (_, earlier) in spec.earlier_ids() {
            self.dir.supersede(&earlier)?;
        }
        checkpoint.clear();
        eprintln!(
            "[{index}/{total}] {}: test acc {:.2}%, train acc {:.2}%, {:.1} s, {:.2} ms/step{}{}",
            record.run_id,
            100.0 * record.test_acc,
            100.0 * record.train_acc,
            record.wall_clock_s,
            record.step_ms,
            if output.log.resumed_after_epoch > 0 {
                format!(" (resumed after epoch {})", output.log.resumed_after_epoch)
            } else {
                String::new()
            },
            if output.log.diverged {
                " (diverged)"
            } else {
                ""
            }
        );
        Ok(())
    }

    fn progress_bar(&self, spec: &RunSpec, index: usize, total: usize) -> ProgressBar {
        if self.options.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(0).with_prefix(format!("[{index}/{total}] {}", spec.id()));
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg} ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_fall_back_to_a_run_stored_by_earlier_numerics() {
        let recipe: crate::train::Recipe =
            serde_norway::from_str("{epochs: 1, batch_size: 8, optimizer: {name: sgd, lr: 0.1}}")
                .unwrap();
        let spec = |seed: u64| RunSpec {
            experiment: "t".into(),
            dataset: "mnist".into(),
            model: crate::models::ModelSpec::Mlp {
                hidden: vec![8],
                bias: true,
            },
            recipe: recipe.clone(),
            method: "baseline".into(),
            options: serde_json::json!({}),
            k: 1,
            seed,
            data: "fingerprint".into(),
            code_version: provenance::NUMERICS_VERSION,
            dataset_index: 0,
            method_index: 0,
        };
        let specs = [spec(0), spec(1), spec(2)];
        let (old_version, old_id) = specs[0].earlier_ids()[0].clone();
        assert_eq!(old_version, provenance::NUMERICS_VERSION - 1);
        assert_ne!(
            old_id,
            specs[0].id(),
            "the numerics version is part of the id"
        );
        let stored_as = |id: String, seed: i64| RunRecord {
            run_id: id,
            ..crate::results::store::tests::record("baseline", seed, 0.9)
        };
        // Seed 0 only under the earlier version, seed 1 under both, seed 2 not at all.
        let stored = vec![
            stored_as(old_id, 0),
            stored_as(specs[1].earlier_ids()[0].1.clone(), 1),
            stored_as(specs[1].id(), 1),
        ];
        let (runs, earlier) = planned_runs(&specs, &stored);
        let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, [stored[0].run_id.as_str(), specs[1].id().as_str()]);
        assert_eq!(earlier, 1, "the current version wins where both are stored");
    }

    #[test]
    fn shards_partition_the_plan() {
        let shards: Vec<Shard> = (0..3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        for position in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.owns(position)).count(), 1);
        }
        for bad in ["3/3", "1", "a/2", "0/0"] {
            let err = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("INDEX/COUNT"), "{err}");
        }
    }
}
