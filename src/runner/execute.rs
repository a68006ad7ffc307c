//! One invocation over an experiment: plan its runs, set aside unreadable stored files, then
//! list the plan, or run what is pending (of this shard), and render the tables. Only the
//! training itself needs a backend: listing the plan and reporting read files alone.

use std::fmt::Write as _;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;

use super::datasets::Datasets;
use super::record::Provenance;
use super::session::Session;
use super::{Mode, RunOptions, tables};
use crate::error::Result;
use crate::experiment::{self, ResolvedExperiment, RunSpec};
use crate::results::provenance::{self, NUMERICS_VERSION, machine_description};
use crate::results::{ModelStore, ResultsDir};
use crate::with_backend;

pub(super) fn execute(resolved: &ResolvedExperiment, options: &RunOptions) -> Result<String> {
    let experiment = &resolved.experiment;
    let file = resolved.source.display().to_string();
    let datasets = Datasets::load(
        experiment,
        &file,
        options.data_dir.clone(),
        options.cache_dir.clone(),
    )?;
    let runs = experiment::plan(experiment, &datasets.fingerprints(), NUMERICS_VERSION);

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
        crate::atomic::write(
            &dir.root().join("experiment.yaml"),
            resolved.resolved_yaml.as_bytes(),
        )?;
        crate::backend::prepare(
            options.backend,
            &options
                .cache_dir
                .clone()
                .unwrap_or_else(crate::data::cache::default_dir),
        )?;
        with_backend!(options.backend, B => train_pending::<B>(
            resolved, options, &dir, &datasets, &runs, &pending,
        ))?;
    }

    let write_to = options
        .datasets
        .is_empty()
        .then_some(options.results_dir.as_path());
    tables::render(&dir, &runs, &experiment.name, &resolved.profile, write_to)
}

/// Trains the `pending` runs of the plan `runs` one after the other, storing each as it
/// finishes.
fn train_pending<B: AutodiffBackend>(
    resolved: &ResolvedExperiment,
    options: &RunOptions,
    dir: &ResultsDir,
    datasets: &Datasets<'_>,
    runs: &[RunSpec],
    pending: &[&RunSpec],
) -> Result<()> {
    let experiment = &resolved.experiment;
    let device = B::Device::default();
    let session = Session::<B> {
        options,
        dir,
        methods: &experiment.methods,
        models: ModelStore::new(dir.root().join("models")),
        stamp: Provenance {
            profile: resolved.profile.clone(),
            backend: format!("{} ({})", options.backend, B::name(&device)),
            machine: machine_description(),
            commit: provenance::git_commit(),
        },
        device,
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
        session.stamp.machine
    );
    for (i, spec) in pending.iter().enumerate() {
        session.run_one(
            spec,
            datasets.splits(spec.dataset_index),
            i + 1,
            pending.len(),
        )?;
    }
    eprintln!(
        "{}{shard}: trained {} runs in {:.1} s",
        experiment.name,
        pending.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
