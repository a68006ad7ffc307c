//! Stored baselines and `reproduce compare`: a new method against the committed reference runs.
//!
//! `reproduce baselines <experiment>` copies an experiment's stored runs (every method, curves
//! included) and its resolved experiment file into `baselines/<experiment>/<profile>/`, with the
//! commits that produced them. `reproduce compare --method <entry> --experiment <e>` then trains
//! only the new method, on the stored experiment's datasets, models, recipes, k and seeds, and
//! prints it beside the stored rows with a paired comparison per row. A requested recipe
//! (profile and `--set` overrides) that differs from the stored one is an error naming each
//! differing field: results on other recipes are not comparable.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_norway::Value;

use crate::atomic;
use crate::error::{Error, Result};
use crate::experiment::{self, Experiment};
use crate::methods::MethodEntry;
use crate::report::stats::{Verdict, paired};
use crate::report::table;
use crate::results::{ResultsDir, RunRecord, parquet_files};
use crate::runner::{self, Mode, RunOptions};

/// Where the stored baselines of `experiment` / `profile` live.
pub fn baseline_dir(baselines: &Path, experiment: &str, profile: &str) -> PathBuf {
    baselines.join(experiment).join(profile)
}

/// Copies the stored runs of `experiment` / `profile` from `results` into `baselines`.
pub fn export(results: &Path, baselines: &Path, experiment: &str, profile: &str) -> Result<String> {
    let source = ResultsDir::new(results, experiment, profile);
    let runs = source.runs()?;
    if runs.is_empty() {
        return Err(Error::Usage(format!(
            "no stored runs of `{experiment}` ({profile} profile) in {}: run the experiment first",
            results.display()
        )));
    }
    let target = baseline_dir(baselines, experiment, profile);
    for sub in ["runs", "curves"] {
        let (from, into) = (source.root().join(sub), target.join(sub));
        let sources = parquet_files(&from)?;
        let names: Vec<_> = sources.iter().filter_map(|p| p.file_name()).collect();
        for path in &sources {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            atomic::write(&into.join(path.file_name().unwrap_or_default()), &bytes)?;
        }
        // The baselines mirror the results: runs the results no longer hold (superseded by a
        // rerun) would otherwise stay beside their replacements.
        for stale in parquet_files(&into)?
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| !names.contains(&n)))
        {
            std::fs::remove_file(&stale).map_err(|e| Error::io(&stale, e))?;
        }
    }
    let yaml = source.root().join("experiment.yaml");
    let text = std::fs::read_to_string(&yaml).map_err(|e| Error::io(&yaml, e))?;
    atomic::write(&target.join("experiment.yaml"), text.as_bytes())?;
    let mut commits: Vec<&str> = runs.iter().map(|r| r.git_commit.as_str()).collect();
    commits.sort();
    commits.dedup();
    let mut machines: Vec<&str> = runs.iter().map(|r| r.device.as_str()).collect();
    machines.sort();
    machines.dedup();
    let note = format!(
        "# {experiment}, {profile} profile\n\n{} runs copied from `{}` by `reproduce baselines {experiment} \
         --profile {profile}`.\n\n- commits: {}\n- machines: {}\n- experiment file: `experiment.yaml` \
         (resolved: profile and overrides applied)\n",
        runs.len(),
        source.root().display(),
        commits.join(", "),
        machines.join(", ")
    );
    atomic::write(&target.join("SOURCE.md"), note.as_bytes())?;
    Ok(format!(
        "stored {} runs of {experiment} ({profile}) in {}\n",
        runs.len(),
        target.display()
    ))
}

/// What `reproduce compare` was asked.
pub struct CompareOptions {
    /// The new method as an experiment entry: `mk` or `{name: mk, mixing: uniform}`.
    pub method: String,
    pub experiment: String,
    pub profile: String,
    pub overrides: Vec<String>,
    pub baselines_dir: PathBuf,
    /// Runs of the new method go to `<results>/compare-<experiment>/<profile>/`.
    pub run: RunOptions,
}

/// Dotted paths where two YAML values differ, with both values.
fn differences(path: &str, stored: &Value, requested: &Value, out: &mut Vec<String>) {
    match (stored, requested) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            let mut keys: Vec<&Value> = Vec::new();
            for key in a.keys().chain(b.keys()) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            for key in keys {
                let name = key
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| format!("{key:?}"));
                let at = if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => differences(&at, x, y, out),
                    (x, y) if x != y => {
                        out.push(format!("{at}: stored {}, requested {}", show(x), show(y)))
                    }
                    _ => {}
                }
            }
        }
        (Value::Sequence(a), Value::Sequence(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}.{i}"), x, y, out);
            }
        }
        (a, b) if a != b => out.push(format!(
            "{path}: stored {}, requested {}",
            show(Some(a)),
            show(Some(b))
        )),
        _ => {}
    }
}

fn show(value: Option<&Value>) -> String {
    match value {
        None => "(absent)".into(),
        Some(v) => serde_json::to_string(v).unwrap_or_else(|_| format!("{v:?}")),
    }
}

/// The parts of an experiment a comparison depends on.
fn comparable(e: &Experiment) -> Result<Value> {
    let value = serde_norway::to_value((&e.datasets, &e.k, &e.seeds, &e.tune))
        .map_err(|err| Error::Usage(format!("experiment does not serialise: {err}")))?;
    let Value::Sequence(parts) = value else {
        unreachable!("a tuple serialises as a sequence")
    };
    let mut map = serde_norway::Mapping::new();
    for (key, part) in ["datasets", "k", "seeds", "tune"].iter().zip(parts) {
        map.insert(Value::String(key.to_string()), part);
    }
    Ok(Value::Mapping(map))
}

/// Trains the new method on the stored baselines' settings and prints the comparison.
pub fn compare(options: &CompareOptions) -> Result<String> {
    let dir = baseline_dir(
        &options.baselines_dir,
        &options.experiment,
        &options.profile,
    );
    let stored_path = dir.join("experiment.yaml");
    if !stored_path.is_file() {
        return Err(Error::Usage(format!(
            "no stored baselines for `{}` ({} profile): {} is missing; create them with \
             `reproduce baselines {} --profile {}`",
            options.experiment,
            options.profile,
            stored_path.display(),
            options.experiment,
            options.profile
        )));
    }
    let stored_text =
        std::fs::read_to_string(&stored_path).map_err(|e| Error::io(&stored_path, e))?;
    let stored: Experiment = serde_norway::from_str(&stored_text)
        .map_err(|e| Error::config(stored_path.display().to_string(), e.to_string()))?;

    // The recipe the user asks for: the experiment file with its profile and overrides.
    let path = experiment::locate(&options.experiment, &options.run.experiments_dir)?;
    let requested = experiment::load(&path, &options.profile, &options.overrides)?;
    let mut diffs = Vec::new();
    differences(
        "",
        &comparable(&stored)?,
        &comparable(&requested.experiment)?,
        &mut diffs,
    );
    if !diffs.is_empty() {
        return Err(Error::config(
            path.display().to_string(),
            format!(
                "recipe mismatch with the stored baselines ({}): {}",
                stored_path.display(),
                diffs.join("; ")
            ),
        ));
    }

    // The stored experiment with only the new method, under its own name.
    let entry = MethodEntry::from_yaml(&options.method)
        .map_err(|e| Error::Usage(format!("--method `{}`: {e}", options.method)))?;
    let name = format!("compare-{}", options.experiment);
    let mut new = stored.clone();
    new.name = name.clone();
    new.methods = vec![entry];
    new.profiles = [(options.profile.clone(), Default::default())]
        .into_iter()
        .collect();
    let work = options.run.results_dir.join(&name).join(&options.profile);
    let file = work.join("compare.yaml");
    let yaml = serde_norway::to_string(&new)
        .map_err(|e| Error::Usage(format!("comparison experiment does not serialise: {e}")))?;
    atomic::write(&file, yaml.as_bytes())?;
    let run = RunOptions {
        experiment: file.display().to_string(),
        profile: options.profile.clone(),
        overrides: Vec::new(),
        mode: Mode::Train,
        ..options.run.clone()
    };
    runner::run(&run)?;

    let fresh = ResultsDir::new(&options.run.results_dir, &name, &options.profile).runs()?;
    let baselines = ResultsDir::new(
        &options.baselines_dir,
        &options.experiment,
        &options.profile,
    )
    .runs()?;
    Ok(report(
        &options.experiment,
        &options.profile,
        &baselines,
        &fresh,
    ))
}

/// The stored rows and the new method's, then each new row against each stored row.
fn report(experiment: &str, profile: &str, baselines: &[RunRecord], fresh: &[RunRecord]) -> String {
    let mut all: Vec<RunRecord> = baselines.to_vec();
    all.extend(fresh.iter().cloned());
    let finals = all.iter().filter(|r| r.role == "final").count();
    // The table counts tuning runs as cost; the comparisons pair final runs only.
    let baselines: Vec<RunRecord> = baselines
        .iter()
        .filter(|r| r.role == "final")
        .cloned()
        .collect();
    let fresh: Vec<RunRecord> = fresh
        .iter()
        .filter(|r| r.role == "final")
        .cloned()
        .collect();
    let (baselines, fresh) = (&baselines[..], &fresh[..]);
    let mut out = table::markdown(
        &format!("{experiment} ({profile} profile): stored baselines and the new method"),
        &all,
        finals,
    );
    let _ = writeln!(
        out,
        "\n| dataset | new method | against | seeds | difference (pts) | 95% CI | p (paired t) | verdict |\n|---|---|---|---:|---:|---|---:|---|"
    );
    let new_rows = table::groups(fresh);
    let old_rows = table::groups(baselines);
    let scores = |runs: &[&RunRecord]| -> Vec<(i64, f64)> {
        runs.iter()
            .filter(|r| r.status == "completed")
            .map(|r| (r.seed, 100.0 * r.test_score))
            .collect()
    };
    for (label, runs) in &new_rows {
        for (other, stored) in old_rows
            .iter()
            .filter(|(_, s)| s[0].dataset == runs[0].dataset)
        {
            let Some(p) = paired(&scores(runs), &scores(stored)) else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:+.2} | {} | {} | {} |",
                runs[0].dataset,
                table::full_label(label, runs[0]),
                table::full_label(other, stored[0]),
                p.n,
                p.mean_diff,
                if p.ci.0.is_finite() {
                    format!("[{:.2}, {:.2}]", p.ci.0, p.ci.1)
                } else {
                    "—".into()
                },
                p.p_value.map_or("—".into(), |v| format!("{v:.3}")),
                Verdict::of(&p, true)
                    .label()
                    .replace("supported", "better")
                    .replace("contradicted", "worse"),
            );
        }
    }
    out
}
