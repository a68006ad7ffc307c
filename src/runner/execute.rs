//! One invocation over an experiment: plan its runs, set aside unreadable stored files, then
//! list the plan, or run what is pending (of this shard), and render the tables. Only the
//! training itself needs a backend: listing the plan and reporting read files alone.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;

use super::datasets::Datasets;
use super::record::Provenance;
use super::session::Session;
use super::{Mode, RunOptions, tables};
use crate::error::{Error, Result};
use crate::experiment::{self, Phase, Plan, ResolvedExperiment, RunSpec};
use crate::results::provenance::{self, NUMERICS_VERSION, run_machine_description};
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
    let dir = ResultsDir::new(&options.results_dir, &experiment.name, &resolved.profile);
    for (path, reason) in dir.audit()? {
        eprintln!(
            "warning: set aside unreadable results file {} ({reason})",
            path.display()
        );
    }
    // The tasks' trivial references (labels only: cheap), refreshed with the data they were
    // computed on; a report writes them only beside runs already stored.
    if options.mode == Mode::Train || (options.mode == Mode::Report && dir.root().is_dir()) {
        dir.store_references(&datasets.references())?;
    }
    let fingerprints = datasets.fingerprints();
    let plan_now = || -> Result<Plan> {
        let scores = stored_validation_scores(&dir)?;
        Ok(experiment::plan(
            experiment,
            &fingerprints,
            NUMERICS_VERSION,
            &|id| scores.get(id).copied(),
        ))
    };
    let mut plan = plan_now()?;
    let owned = |position: usize| options.shard.is_none_or(|s| s.owns(position));

    if options.mode == Mode::Plan {
        let mut listing = plan_listing(&plan, &dir, &owned);
        if options.estimate_cost {
            listing.push_str(&super::cost::estimate(
                experiment,
                &plan,
                &datasets,
                &owned,
                options.tflops,
            ));
        }
        return Ok(listing);
    }

    if options.mode == Mode::Train {
        let phases: &[Phase] = match options.phase {
            Some(Phase::Tune) => &[Phase::Tune],
            Some(Phase::Final) => &[Phase::Final],
            None => &[Phase::Tune, Phase::Final],
        };
        let mut prepared = false;
        for &phase in phases {
            // Final runs are planned after the tuning runs trained above are stored.
            plan = plan_now()?;
            let pending: Vec<(&RunSpec, Vec<String>)> = pending_runs(&plan, phase, &dir, &owned);
            if pending.is_empty() {
                continue;
            }
            if !prepared {
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
                prepared = true;
            }
            with_backend!(options.backend, B => train_pending::<B>(
                resolved, options, &dir, &datasets, &plan, phase, &pending,
            ))?;
        }
        plan = plan_now()?;
        let waiting = plan
            .finals
            .iter()
            .enumerate()
            .filter(|(i, f)| f.spec.is_none() && owned(plan.tuning.len() + i))
            .count();
        if waiting > 0 {
            let message = format!(
                "{}: {waiting} final runs wait for tuning runs not stored yet (other shards, or \
                 `--phase final` before `--phase tune`); run again once they are",
                experiment.name
            );
            // The final phase of a sweep must not pass for done (a Slurm dependency would go
            // on); a single-phase run reports and leaves the waiting runs for the next call.
            if options.phase == Some(Phase::Final) {
                return Err(Error::Usage(message));
            }
            eprintln!("{message}");
        }
    }

    let write_to = options
        .datasets
        .is_empty()
        .then_some(options.results_dir.as_path());
    tables::render(&dir, &plan, &experiment.name, &resolved.profile, write_to)
}

/// The validation score of every stored run by id (NaN when the run has none or diverged: a
/// diverged model's score is its NaN weights', not a result).
fn stored_validation_scores(dir: &ResultsDir) -> Result<HashMap<String, f64>> {
    Ok(dir
        .runs()?
        .into_iter()
        .map(|r| {
            let score = match r.status.as_str() {
                "completed" => r.validation_score.unwrap_or(f64::NAN),
                _ => f64::NAN,
            };
            (r.run_id, score)
        })
        .collect())
}

/// The runs of `phase` this invocation owns that are not stored, each with the ids its result
/// replaces (the same run stored by earlier code or before the tuning protocol).
fn pending_runs<'p>(
    plan: &'p Plan,
    phase: Phase,
    dir: &ResultsDir,
    owned: &dyn Fn(usize) -> bool,
) -> Vec<(&'p RunSpec, Vec<String>)> {
    match phase {
        Phase::Tune => plan
            .tuning
            .iter()
            .enumerate()
            .filter(|(p, r)| owned(*p) && !dir.is_done(&r.id()))
            .map(|(_, r)| (r, r.earlier_ids().into_iter().map(|(_, id)| id).collect()))
            .collect(),
        Phase::Final => plan
            .finals
            .iter()
            .enumerate()
            .filter(|(i, _)| owned(plan.tuning.len() + i))
            .filter_map(|(_, f)| f.spec.as_ref().map(|s| (s, f.earlier_ids())))
            .filter(|(s, _)| !dir.is_done(&s.id()))
            .collect(),
    }
}

/// `reproduce plan`: every run this invocation owns with its position and status.
fn plan_listing(plan: &Plan, dir: &ResultsDir, owned: &dyn Fn(usize) -> bool) -> String {
    let mut out = String::new();
    for (position, spec) in plan.tuning.iter().enumerate().filter(|(p, _)| owned(*p)) {
        let status = if dir.is_done(&spec.id()) {
            "stored"
        } else {
            "pending"
        };
        let _ = writeln!(out, "{position:>4}  tune   {}  {status}", spec.id());
    }
    for (i, run) in plan.finals.iter().enumerate() {
        let position = plan.tuning.len() + i;
        if !owned(position) {
            continue;
        }
        let earlier = run.earlier_ids().into_iter().find(|id| dir.is_done(id));
        let chosen = run
            .tuning
            .as_ref()
            .and_then(|t| t.choice.map(|c| (c, t.at_edge)))
            .map(|((point, score), at_edge)| {
                if score == f64::NEG_INFINITY {
                    return format!(" at {} (every grid point diverged)", point.label());
                }
                format!(
                    " at {} (validation {score:.4}{})",
                    point.label(),
                    if at_edge {
                        "; at the grid's edge: the best value may lie beyond it"
                    } else {
                        ""
                    }
                )
            })
            .unwrap_or_default();
        let (id, status) = match (&run.spec, &run.tuning) {
            (Some(spec), _) if dir.is_done(&spec.id()) => (spec.id(), format!("stored{chosen}")),
            (Some(spec), _) => (
                spec.id(),
                match earlier {
                    Some(_) => format!(
                        "pending{chosen} (an earlier version or protocol's run is shown in \
                         tables until rerun)"
                    ),
                    None => format!("pending{chosen}"),
                },
            ),
            (None, Some(t)) => (
                format!(
                    "{}-{}-k{}-s{} (methods[{}])",
                    run.legacy.dataset,
                    run.legacy.method,
                    run.legacy.k,
                    run.legacy.seed,
                    run.legacy.method_index
                ),
                format!(
                    "waiting for tuning ({} of {} tuning runs stored)",
                    t.stored, t.needed
                ),
            ),
            (None, None) => unreachable!("untuned final runs always have a spec"),
        };
        let _ = writeln!(out, "{position:>4}  final  {id}  {status}");
    }
    out
}

/// Trains the `pending` runs of `phase` one after the other, storing each as it finishes.
fn train_pending<B: AutodiffBackend>(
    resolved: &ResolvedExperiment,
    options: &RunOptions,
    dir: &ResultsDir,
    datasets: &Datasets<'_>,
    plan: &Plan,
    phase: Phase,
    pending: &[(&RunSpec, Vec<String>)],
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
            machine: run_machine_description(),
            commit: provenance::git_commit(),
        },
        device,
    };
    let started = Instant::now();
    let shard = options
        .shard
        .map(|s| format!(" (shard {}/{})", s.index, s.count))
        .unwrap_or_default();
    let (planned, stored) = match phase {
        Phase::Tune => (
            plan.tuning.len(),
            plan.tuning.iter().filter(|r| dir.is_done(&r.id())).count(),
        ),
        Phase::Final => (
            plan.finals.len(),
            plan.ready().filter(|r| dir.is_done(&r.id())).count(),
        ),
    };
    eprintln!(
        "{}{shard}, {} runs: {planned} planned, {stored} stored, {} to train on {} ({})",
        experiment.name,
        phase.name(),
        pending.len(),
        options.backend,
        session.stamp.machine
    );
    for (i, (spec, replaces)) in pending.iter().enumerate() {
        session.run_one(
            spec,
            replaces,
            datasets.splits(spec.dataset_index),
            i + 1,
            pending.len(),
        )?;
    }
    eprintln!(
        "{}{shard}: trained {} {} runs in {:.1} s",
        experiment.name,
        pending.len(),
        phase.name(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
