//! The stored runs an experiment's tables report, found without the data: its tuning runs and,
//! for every final run of its current plan, the stored run of the same dataset, method,
//! options, k and seed. Claims, figures and `RESULTS.md` read these, so runs of entries the
//! experiment file no longer has, or of an older recipe a rerun replaced, never mix in.

use std::path::Path;

use crate::error::{Error, Result};
use crate::experiment::{self, Experiment, RunSpec};
use crate::results::RunRecord;

/// The experiment `name` at `profile`, or `None` when its file has no such profile (its runs
/// are then read as stored) or cannot be read (said on stderr).
pub fn experiment_for(
    name: &str,
    experiments_dir: &Path,
    profile: &str,
) -> Result<Option<Experiment>> {
    let path = experiment::locate(name, experiments_dir)?;
    match experiment::load(&path, profile, &[]) {
        Ok(resolved) => Ok(Some(resolved.experiment)),
        Err(Error::Config { message, .. })
            if message.starts_with(&format!("no profile `{profile}`")) =>
        {
            Ok(None)
        }
        Err(e) => {
            eprintln!(
                "warning: the experiment file of `{name}` cannot be read ({e}): every stored run \
                 is reported, with the default claims configuration"
            );
            Ok(None)
        }
    }
}

/// The runs of `stored` the tables of `experiment` report (see [`planned_rows`]); every
/// stored run when there is no experiment to plan.
pub fn reported_runs(stored: &[RunRecord], experiment: Option<&Experiment>) -> Vec<RunRecord> {
    match experiment {
        Some(experiment) => planned_and_reported(stored, experiment).1,
        None => stored.to_vec(),
    }
}

/// The final runs `experiment` plans (built without the data, see [`planned_specs`]) and the
/// runs of `stored` its tables report.
pub fn planned_and_reported(
    stored: &[RunRecord],
    experiment: &Experiment,
) -> (Vec<RunSpec>, Vec<RunRecord>) {
    let specs = planned_specs(experiment);
    let tune_seeds = experiment.tune.as_ref().map_or(&[][..], |t| &t.seeds[..]);
    let rows = planned_rows(&specs, tune_seeds, stored);
    (specs, rows)
}

/// The plan of `experiment`, built without the data: every entry gets a placeholder
/// fingerprint (the same for entries that load the same data), so the order and count are the
/// plan's and only the ids differ.
pub fn planned_specs(experiment: &Experiment) -> Vec<RunSpec> {
    // The final runs' identities (dataset, method, options, k, seed) do not depend on tuning.
    let fingerprints: Vec<String> = experiment
        .datasets
        .iter()
        .map(|e| format!("{}:{:?}", e.dataset, e.load_options(None)))
        .collect();
    experiment::plan(
        experiment,
        &fingerprints,
        crate::results::provenance::NUMERICS_VERSION,
        &|_| None,
    )
    .finals
    .into_iter()
    .map(|run| run.legacy)
    .collect()
}

/// The stored tuning rows of the planned (dataset, method, options, k) on the experiment's
/// `tune_seeds`, then the stored row of every planned final run, in plan order: the row
/// recording the same dataset, method, options, k and seed (the newest when a rerun stored it
/// twice).
pub fn planned_rows(specs: &[RunSpec], tune_seeds: &[u64], stored: &[RunRecord]) -> Vec<RunRecord> {
    let mut used: Vec<bool> = stored.iter().map(|r| r.role == "tune").collect();
    let groups: Vec<(&str, &str, String, i64)> = specs
        .iter()
        .map(|s| (&*s.dataset, &*s.method, s.options.to_string(), s.k as i64))
        .collect();
    let mut rows: Vec<RunRecord> = stored
        .iter()
        .filter(|r| {
            r.role == "tune"
                && tune_seeds.contains(&(r.seed as u64))
                && groups.iter().any(|(dataset, method, options, k)| {
                    *dataset == r.dataset
                        && *method == r.method
                        && *options == r.options
                        && *k == r.k
                })
        })
        .cloned()
        .collect();
    for spec in specs {
        let options = spec.options.to_string();
        let found = stored
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                !used[*i]
                    && r.dataset == spec.dataset
                    && r.method == spec.method
                    && r.options == options
                    && r.k == spec.k as i64
                    && r.seed == spec.seed as i64
            })
            .max_by_key(|(_, r)| r.finished_at);
        if let Some((i, row)) = found {
            used[i] = true;
            rows.push(row.clone());
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::store::tests::record;

    #[test]
    fn only_the_current_plans_runs_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("t.yaml"),
            "name: t\ndatasets:\n  - dataset: mnist\n    model: {family: mlp, hidden: [32]}\n    \
             recipe: {epochs: 1, batch_size: 8, optimizer: {name: sgd, lr: 0.1}}\n\
             methods: [baseline]\nk: [4]\nseeds: [0]\nprofiles:\n  smoke: {}\n",
        )
        .unwrap();
        let experiment = experiment_for("t", tmp.path(), "smoke").unwrap().unwrap();
        let baseline = |test_acc: f64, finished_at: i64| RunRecord {
            k: 1,
            finished_at,
            ..record("baseline", 0, test_acc)
        };
        // An older recipe's run of the same seed, its rerun, and a run of an entry the
        // experiment file no longer has.
        let stored = vec![
            baseline(0.3, 1),
            baseline(0.5, 2),
            record("adv_only", 0, 0.9),
        ];
        let reported = reported_runs(&stored, Some(&experiment));
        let scores: Vec<(&str, f64)> = reported
            .iter()
            .map(|r| (r.method.as_str(), r.test_acc))
            .collect();
        assert_eq!(scores, [("baseline", 0.5)]);
        // No experiment (file without the profile): every stored run.
        assert!(experiment_for("t", tmp.path(), "paper").unwrap().is_none());
        assert_eq!(reported_runs(&stored, None).len(), 3);
    }
}
