//! One invocation over an experiment: plan its runs, set aside unreadable stored files, then
//! list the plan, or run what is pending (of this shard), and render the tables.

use std::fmt::Write as _;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;

use super::datasets::Datasets;
use super::record::Provenance;
use super::session::Session;
use super::{Mode, RunOptions, tables};
use crate::error::{Error, Result};
use crate::experiment::{self, ResolvedExperiment, RunSpec};
use crate::results::ResultsDir;
use crate::results::provenance::{self, machine_description};

pub(super) fn execute<B: AutodiffBackend>(
    resolved: &ResolvedExperiment,
    options: &RunOptions,
) -> Result<String> {
    let experiment = &resolved.experiment;
    let file = resolved.source.display().to_string();
    let datasets = Datasets::load(
        experiment,
        &file,
        options.data_dir.clone(),
        options.cache_dir.clone(),
    )?;
    let (runs, methods) = experiment::plan::<B>(experiment, &datasets.fingerprints())
        .map_err(|e| Error::config(&file, e))?;

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
        let device = B::Device::default();
        let session = Session::<B> {
            options,
            dir: &dir,
            methods: &methods,
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
    }

    // A run of some datasets only never replaces the full table.
    let write_to = options
        .datasets
        .is_empty()
        .then_some(options.results_dir.as_path());
    tables::render(&dir, &runs, &experiment.name, &resolved.profile, write_to)
}
